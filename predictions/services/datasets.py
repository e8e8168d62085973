"""Scoring a Parquet dataset where it lives, with Dask (`manage.py score_dataset`).

The dataset's partitions (`lake.plan_dataset`: whole row groups, planned from the footers) are
those of a Dask DataFrame (`lake.dataset_frame`); a worker reads one, scores it with
`scoring.score_rows` (the one scoring path: the same validation, per-row errors and predictor as
a request or a job chunk) and writes its predictions and its bad rows as one Parquet file each
under a temporary folder. The client counts the partitions as their futures complete (the run's
progress), then moves the files into place: a failed run leaves nothing in its outputs.

Input and outputs are local paths or URLs (s3://bucket/prefix/: the settings' S3 service, see
lake.py); a task carries URLs, and the worker opens them with its own settings. An object store
renames nothing: there "moving into place" is server-side copies, then one bulk delete of the
temporary files (`lake.move_files`); a move that fails half-way removes what it had copied.

The estimator never travels through Dask's pickling: a task carries the version's row (its
fields), and each worker process loads the artifact through its own model cache (`loader`),
which reads it from storage and checks its sha256, once per process. The workers need what an
RQ worker needs (core/clusters.py).
"""

import logging
import posixpath
from typing import TYPE_CHECKING

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import F
from django.utils import timezone

from core.errors import ServingError
from modelregistry.models import ModelVersion

from ..errors import InvalidInput, OutputExists
from ..jobfiles import prediction_type
from ..lake import (
    PARTITION_ROWS,
    check_files,
    check_location,
    check_writable,
    dataset_frame,
    make_folder,
    move_files,
    open_location,
    plan_dataset,
)
from ..models import DatasetRun, JobStatus
from ..parsers import BATCH, ParsedInput
from .scoring import Prediction, score_rows

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

# The bad rows go here inside the output unless told otherwise: Parquet readers (pyarrow,
# Dask, Spark) skip names that start with "_" or ".", so the output reads as predictions only.
ERRORS_FOLDER = "_errors"


class PartitionFailed(Exception):
    """A ServingError raised in a worker, in a form that pickles back to the client whatever
    the error class's constructor takes."""

    def __init__(self, code: str, status_code: int, detail: str):
        super().__init__(code, status_code, detail)
        self.code, self.status_code, self.detail = code, status_code, detail

    def as_serving_error(self) -> ServingError:
        error = ServingError(self.detail)
        error.code, error.status_code = self.code, self.status_code
        return error


# --- On the workers ----------------------------------------------------------------------------


def _dataset_message(error: dict, row: int) -> str:
    """The error's message naming the row's number in the dataset, not in its partition."""
    prefix = f"row {error['row']}, "
    message = error["message"]
    return f"row {row}, {message[len(prefix) :]}" if message.startswith(prefix) else message


def _ids(frame: pd.DataFrame, id_column: str, positions: list[int] | None = None) -> pa.Array:
    """The id column (of the rows at `positions`), typed from the whole partition: a part
    without errors must not get a column of nulls that no other part's type matches."""
    ids = pa.Array.from_pandas(frame[id_column].reset_index(drop=True))
    return ids if positions is None else ids.take(pa.array(positions, pa.int64()))


def _predictions_table(
    frame: pd.DataFrame, result: Prediction, *, version: ModelVersion, id_column: str
) -> pa.Table:
    """row, id (when asked), prediction, and probability_<class> for each class when asked."""
    output = version.output_info
    columns = {"row": pa.array(frame.index.to_numpy(), pa.int64())}
    if id_column:
        columns["id"] = _ids(frame, id_column)
    columns["prediction"] = pa.array(result.predictions, prediction_type(output))
    if result.probabilities is not None:
        for label in output["classes"]:
            key = str(label)
            values = [None if row is None else row[key] for row in result.probabilities]
            columns[f"probability_{key}"] = pa.array(values, pa.float64())
    return pa.table(columns)


def _errors_table(frame: pd.DataFrame, result: Prediction, *, id_column: str) -> pa.Table:
    """row, id (when asked), field, code, message: one row per bad (row, field)."""
    positions = [error["row"] for error in result.errors]
    numbers = frame.index.to_numpy()[positions].tolist()
    columns = {"row": pa.array(numbers, pa.int64())}
    if id_column:
        columns["id"] = _ids(frame, id_column, positions)
    columns["field"] = pa.array([error.get("field") for error in result.errors], pa.string())
    columns["code"] = pa.array([error["code"] for error in result.errors], pa.string())
    columns["message"] = pa.array(
        [_dataset_message(e, n) for e, n in zip(result.errors, numbers, strict=True)], pa.string()
    )
    return pa.table(columns)


def part_name(index: int) -> str:
    return f"part.{index:05d}.parquet"


def _write(folder_url: str, index: int, table: pa.Table) -> None:
    fs, folder = open_location(folder_url)
    with fs.open(posixpath.join(folder, part_name(index)), "wb") as out:
        pq.write_table(table, out)


def score_partition(
    frame: pd.DataFrame,
    *,
    index: int,
    version: ModelVersion,
    with_probabilities: bool,
    id_column: str,
    output: str,
    errors_output: str,
) -> tuple[int, int]:
    """Score one partition and write its predictions and bad rows into the folders at the URLs
    `output` and `errors_output`; (rows, rows failed)."""
    try:
        if id_column and id_column not in frame.columns:
            raise InvalidInput(f"The dataset has no column {id_column!r} to copy as the id.")
        result = score_rows(
            version=version,
            parsed=ParsedInput(frame.reset_index(drop=True), BATCH),
            return_probabilities=with_probabilities,
        )
        predictions = _predictions_table(frame, result, version=version, id_column=id_column)
        _write(output, index, predictions)
        _write(errors_output, index, _errors_table(frame, result, id_column=id_column))
    except ServingError as exc:
        where = f"rows {frame.index[0]} to {frame.index[-1]}" if len(frame) else "a partition"
        raise PartitionFailed(exc.code, exc.status_code, f"{where}: {exc.detail}") from None
    return result.rows, result.rows_failed


# --- The run (on the client) -------------------------------------------------------------------


def _check_new(fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
    """Refuse an output that holds files, or that cannot be written (no bucket)."""
    if fs.exists(path) and (not fs.isdir(path) or fs.find(path)):
        raise OutputExists(f"{url!r} already exists: name a new output, or remove it first.")
    check_writable(fs, path, url)


def _move_parts(
    fs: fsspec.AbstractFileSystem,
    source: str,
    target: str,
    placed: list[tuple[fsspec.AbstractFileSystem, str]],
) -> None:
    """Move the files of the folder `source` into `target`, each noted in `placed` before it
    is written there (so a move that fails half-way can be undone)."""
    names = sorted(fs.ls(source, detail=False))
    targets = [posixpath.join(target, posixpath.basename(name)) for name in names]
    placed.extend((fs, name) for name in targets)
    move_files(fs, names, targets)


def fail_run(run_id, reason: str) -> None:
    """Mark an unfinished run failed with a readable reason (a finished one stays as it is)."""
    updated = DatasetRun.objects.filter(
        pk=run_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).update(status=JobStatus.FAILED, failure_reason=reason[:2000], finished_at=timezone.now())
    if updated:
        logger.warning("dataset run %s failed: %s", run_id, reason)


def _fail(run: DatasetRun, reason: str) -> None:
    fail_run(run.pk, reason)


def _remove(fs: fsspec.AbstractFileSystem, path: str, *, created: bool) -> None:
    """Remove a run's temporary folder, and the output folder when the run created it."""
    if fs.exists(path):
        fs.rm(path, recursive=True)
    parent = posixpath.dirname(path)
    if created and fs.exists(parent) and not fs.find(parent):
        fs.rm(parent, recursive=True)


def _score_partitions(run: DatasetRun, client: "Client", tasks: list) -> None:
    """Compute the tasks on the cluster; the run's figures grow as each partition is done."""
    from distributed import as_completed

    futures = client.compute(tasks)
    try:
        for future in as_completed(futures):
            rows, failed = future.result()
            DatasetRun.objects.filter(pk=run.pk).update(
                rows_done=F("rows_done") + rows,
                rows_failed=F("rows_failed") + failed,
                partitions_done=F("partitions_done") + 1,
            )
    finally:
        client.cancel(futures)


def probabilities_of(version: ModelVersion, asked: bool | None) -> bool:
    """Whether a run adds class probabilities: asked, or by default a classifier's (a model
    without them asked for them: InvalidInput)."""
    has_probabilities = bool(version.output_info.get("has_probabilities"))
    if asked and not has_probabilities:
        task = version.output_info["task"]
        raise InvalidInput(f"{version} is a {task} model without probabilities.")
    return has_probabilities if asked is None else asked


def default_errors_output(output: str) -> str:
    """Where the bad rows go unless told: inside the output, in a folder readers skip."""
    return posixpath.join(output, ERRORS_FOLDER)


def check_outputs(output: str, errors_output: str) -> None:
    """Refuse an output (or errors output) that already holds files (OutputExists, 409) or
    cannot be written (OutputNotWritable: no bucket)."""
    for url in (output, errors_output):
        fs, path = open_location(url)
        _check_new(fs, path, url)


def score_dataset(
    *,
    version: ModelVersion,
    input: str,
    output: str,
    client: "Client",
    errors_output: str = "",
    id_column: str = "",
    with_probabilities: bool | None = None,
    partition_rows: int = PARTITION_ROWS,
    scheduler: str = "",
    run: DatasetRun | None = None,
    locations: list[str] | None = None,
) -> DatasetRun:
    """Score a Parquet dataset on the Dask cluster of `client` into Parquet predictions at
    `output` and its bad rows at `errors_output` (default: `output`/_errors); the run's row
    records it (`run`: a queued row of the API, else a new one). Probabilities come with a
    classifier's predictions unless `with_probabilities` is False. With `locations`, the
    dataset's files and the outputs must lie inside them. A failed run is recorded, leaves its
    outputs as they were, and re-raises."""
    try:
        with_probabilities = probabilities_of(version, with_probabilities)
        errors_output = errors_output or default_errors_output(output)
        plan = plan_dataset(input, partition_rows=partition_rows)
        if locations is not None:
            check_files(input, plan.files, locations)
            check_location(output, locations, what="output")
            check_location(errors_output, locations, what="errors output")
        out_fs, out_path = open_location(output)
        errors_fs, errors_path = open_location(errors_output)
        _check_new(out_fs, out_path, output)
        _check_new(errors_fs, errors_path, errors_output)
    except BaseException as exc:
        if run is not None:
            _fail(run, exc.detail if isinstance(exc, ServingError) else repr(exc))
        raise
    created = {"output": not out_fs.exists(out_path), "errors": not errors_fs.exists(errors_path)}
    # The row of the version as the workers will see it, with its model (for names and metrics).
    version = ModelVersion.objects.select_related("registered_model").get(pk=version.pk)
    figures = {
        "scheduler": scheduler or "local",
        "workers": len(client.nthreads()),
        "rows_total": plan.rows,
        "partitions_total": len(plan.partitions),
        "started_at": timezone.now(),
        "status": JobStatus.RUNNING,
    }
    if run is None:
        run = DatasetRun.objects.create(
            version=version,
            input=input,
            output=output,
            errors_output=errors_output,
            id_column=id_column,
            partition_rows=partition_rows,
            with_probabilities=with_probabilities,
            **figures,
        )
    else:
        DatasetRun.objects.filter(pk=run.pk).update(errors_output=errors_output, **figures)
    temporary = {
        "output": (out_fs, posixpath.join(out_path, f".run-{run.id}")),
        "errors": (errors_fs, posixpath.join(errors_path, f".run-{run.id}")),
    }
    urls = {key: fs.unstrip_protocol(path) for key, (fs, path) in temporary.items()}
    placed: list[tuple[fsspec.AbstractFileSystem, str]] = []
    moved = False
    try:
        for fs, path in temporary.values():
            make_folder(fs, path)
        import dask  # here: a web process checks a run (dataset_runs) without loading Dask

        score = dask.delayed(score_partition)
        tasks = [
            score(
                part,
                index=index,
                version=version,
                with_probabilities=with_probabilities,
                id_column=id_column,
                output=urls["output"],
                errors_output=urls["errors"],
            )
            for index, part in enumerate(dataset_frame(plan).to_delayed())
        ]
        _score_partitions(run, client, tasks)
        _move_parts(out_fs, temporary["output"][1], out_path, placed)
        _move_parts(errors_fs, temporary["errors"][1], errors_path, placed)
        moved = True
    except PartitionFailed as exc:
        _fail(run, exc.detail)
        raise exc.as_serving_error() from None
    except ServingError as exc:
        _fail(run, exc.detail)
        raise
    except BaseException as exc:
        _fail(run, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if not moved:  # the outputs were new or empty: what is in them now is this run's
            for fs, name in placed:
                if fs.exists(name):
                    fs.rm(name)
        for key in ("errors", "output"):  # the errors folder may be inside the output
            fs, path = temporary[key]
            _remove(fs, path, created=created[key] and not moved)
    DatasetRun.objects.filter(pk=run.pk).update(
        status=JobStatus.SUCCEEDED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    logger.info("dataset run %s: %d rows, %d failed", run.id, run.rows_done, run.rows_failed)
    return run
