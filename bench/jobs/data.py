"""The input and the in-process figures of the jobs bench, and the job rows in the database."""

import os
import time
from pathlib import Path

from bench.jobs.sampling import memory, reset_peak


def write_csv(path: Path, rows: int, seed: int, names: list[str]) -> None:
    """The demo rows without `price`, rounded to 4 decimals (about 66 bytes a row)."""
    from modelregistry import demo

    frame = demo.house_prices_data(rows=rows, seed=seed).drop(columns=["price"])[names]
    frame.round(4).to_csv(path, index=False)


def in_process(estimator, csv_path: Path, names: list[str]) -> tuple[dict, object]:
    """Read the CSV with pandas and predict, in one thread of this process.

    Returns (figures, predictions).
    """
    import numpy as np
    import pandas as pd

    try:
        # pandas >= 3.1 reads a large CSV file with several threads by default.
        pd.set_option("mode.max_threads", 1)
    except (KeyError, pd.errors.OptionError):
        pass
    peak_reset = reset_peak(os.getpid())
    rss_before = memory(os.getpid())[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    frame = pd.read_csv(csv_path)
    read = time.perf_counter()
    predictions = np.asarray(estimator.predict(frame[names]))
    finished, cpu_finished = time.perf_counter(), time.process_time()
    rss_after, hwm = memory(os.getpid())
    seconds = finished - started
    figures = {
        "read_seconds": read - started,
        "predict_seconds": finished - read,
        "seconds": seconds,
        "rows_per_second": len(frame) / seconds,
        "cpu_seconds": cpu_finished - cpu_started,
        "rss_growth_bytes": (hwm if peak_reset else rss_after) - rss_before,
    }
    return figures, predictions


def one_chunk_in_process(version, csv_path: Path) -> dict:
    """The first chunk of the job, read and scored through the job's own code in this process:
    what a work horse does, without forking, importing and loading the model."""
    from django.conf import settings

    from predictions import formats
    from predictions.services.scoring import score_rows

    with open(csv_path, "rb") as handle:
        plan = formats.CSV.plan_chunks(handle)
        started = time.perf_counter()
        parsed = formats.CSV.read_chunk(handle, plan, 0)
    result = score_rows(version=version, parsed=parsed)
    return {
        "chunks": len(plan.ranges),
        "chunk_bytes": settings.JOB_CHUNK_BYTES,
        "rows": result.rows,
        "seconds": time.perf_counter() - started,
    }


def chunks_total(job_id: str) -> int:
    """How many chunks the job was cut into (the API does not say; the row does)."""
    from predictions.models import PredictionJob

    return (
        PredictionJob.objects.filter(pk=job_id).values_list("chunks_total", flat=True).first() or 0
    )


def schema_problem() -> str:
    """Why the job table cannot take a job, when the database was made by an older migration."""
    from django.db import DatabaseError, connection

    from predictions.models import PredictionJob

    table = PredictionJob._meta.db_table
    try:
        with connection.cursor() as cursor:
            found = connection.introspection.get_table_description(cursor, table)
    except DatabaseError as exc:
        return f"cannot read the table {table}: {exc}"
    fields = {field.column for field in PredictionJob._meta.concrete_fields}
    missing = sorted(fields - {column.name for column in found})
    extra = sorted(c.name for c in found if c.name not in fields and not c.null_ok)
    if not missing and not extra:
        return ""
    return (
        f"the database does not match predictions/models.py (table {table}: "
        + "; ".join(
            text
            for text in (
                f"missing {', '.join(missing)}" if missing else "",
                f"extra NOT NULL {', '.join(extra)}" if extra else "",
            )
            if text
        )
        + "): it was made by an older version of a migration, so no job can be stored. "
        "Recreate it, or run with DATABASE_URL and MEDIA_ROOT pointing at a scratch place."
    )


def delete_jobs(job_ids: list) -> None:
    """The jobs this run created: rows and files (MEDIA_ROOT is the normal one)."""
    if not job_ids:
        return
    from predictions import jobfiles
    from predictions.models import PredictionJob

    for job_id in job_ids:
        jobfiles.remove_job_files(job_id)
    PredictionJob.objects.filter(pk__in=job_ids).delete()
