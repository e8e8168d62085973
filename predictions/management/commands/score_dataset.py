"""Score a Parquet dataset where it lives with a Dask cluster (predictions/services/datasets.py)."""

import logging
import os

from django.core.management.base import BaseCommand, CommandError

from core import clusters
from core.errors import ServingError
from predictions import services
from predictions.services import datasets


def _model_and_number(spec: str) -> tuple[str, int | None]:
    name, _, number = spec.partition(":")
    if not number:
        return name, None
    if not number.isdigit():
        raise CommandError(f"{spec!r}: the version after ':' is a number, e.g. {name}:2.")
    return name, int(number)


class Command(BaseCommand):
    help = (
        "Score a Parquet dataset (a file, a directory of files or a glob; local, s3:// with the "
        "settings' S3 service, or another fsspec URL) with a registered version on a Dask "
        "cluster: predictions and bad rows as Parquet."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", metavar="NAME[:VERSION]", help="default version if omitted")
        parser.add_argument("--input", required=True, metavar="PATH", help="the Parquet dataset")
        parser.add_argument(
            "--output", required=True, metavar="PATH", help="a new folder for the predictions"
        )
        parser.add_argument(
            "--errors", default="", metavar="PATH", help="the bad rows (default OUTPUT/_errors)"
        )
        parser.add_argument(
            "--scheduler", default="", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://h:8786"
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 1,
            help="processes of the local cluster, without --scheduler (default: one per CPU)",
        )
        parser.add_argument("--id-column", default="", help="an input column copied as 'id'")
        parser.add_argument(
            "--partition-rows",
            type=int,
            default=datasets.PARTITION_ROWS,
            help=f"rows per partition at most (default {datasets.PARTITION_ROWS:,})",
        )
        parser.add_argument(
            "--no-probabilities",
            action="store_true",
            help="a classifier's predictions without its class probabilities",
        )

    def handle(self, *args, model, input, output, errors, scheduler, workers, **options):
        if workers < 1 or options["partition_rows"] < 1:
            raise CommandError("--workers and --partition-rows are 1 or more.")
        if options["verbosity"] < 2:  # Dask's own INFO lines (cluster start and stop) with -v 2
            logging.getLogger("distributed").setLevel(logging.WARNING)
        name, number = _model_and_number(model)
        try:
            version = services.servable_version(name, number)
        except ServingError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        with clusters.connect(scheduler=scheduler, workers=workers) as client:
            try:
                run = datasets.score_dataset(
                    version=version,
                    input=input,
                    output=output,
                    errors_output=errors,
                    client=client,
                    id_column=options["id_column"],
                    with_probabilities=False if options["no_probabilities"] else None,
                    partition_rows=options["partition_rows"],
                    scheduler=scheduler,
                )
            except ServingError as exc:
                raise CommandError(f"{exc.code}: {exc.detail}") from None
        seconds = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(
            f"Scored {run.rows_done:,} rows of {version} ({run.rows_failed:,} failed) in "
            f"{run.partitions_total} partitions on {run.workers} Dask worker(s), "
            f"{seconds:.1f} s: predictions in {run.output}, bad rows in {run.errors_output} "
            f"(run {run.id})."
        )
