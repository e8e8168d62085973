"""Benchmark scoring a Parquet dataset with Dask: rows/s with 1 and 2 Dask workers, beside the
RQ job path and the in-process limit, on the same demo rows.

Writes the demo rows (seed 2024, as the jobs bench) as a Parquet dataset of several files in a
temp dir, scores them in this process (one thread), then runs `predictions.services.datasets`
on a local Dask cluster (core/clusters.py) of each worker count, checks every prediction
against the in-process ones at a relative 1e-9, and deletes its run rows and files. The RQ
figures come from the jobs bench: `--run-jobs` runs it (./scripts/bench jobs, same rows and
worker counts), `--jobs-json FILE` reads the JSON of an earlier run.

Run it with ./scripts/bench datasets [--rows N] [--workers 1,2] [--run-jobs] [--json FILE].
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    MODEL,
    ROOT,
    CpuMeter,
    Row,
    demo_model,
    format_table,
    run_measurement,
    setup_django,
    write_json,
)

SEED = 2024
RELATIVE = 1e-9


def write_dataset(folder: Path, *, rows: int, files: int, names: list[str], seed: int = SEED):
    """The demo rows (without price, 4 decimals as the jobs bench's CSV) in `files` Parquet
    files of row groups of 100,000 rows; returns the rows as one frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelregistry import demo

    frame = demo.house_prices_data(rows=rows, seed=seed).drop(columns=["price"])[names].round(4)
    folder.mkdir(parents=True)
    per_file = -(-rows // files)
    for index, start in enumerate(range(0, rows, per_file)):
        table = pa.Table.from_pandas(frame.iloc[start : start + per_file], preserve_index=False)
        pq.write_table(table, folder / f"part-{index:03d}.parquet", row_group_size=100_000)
    return frame


def in_process(estimator, folder: Path, names: list[str]) -> tuple[dict, list]:
    """Read the dataset with pyarrow and predict, in one thread: (figures, predictions)."""
    import numpy as np
    import pyarrow.parquet as pq

    started = time.perf_counter()
    frame = pq.read_table(folder).to_pandas()
    read = time.perf_counter()
    predictions = np.asarray(estimator.predict(frame[names]))
    seconds = time.perf_counter() - started
    figures = {
        "read_seconds": read - started,
        "seconds": seconds,
        "rows_per_second": len(frame) / seconds,
    }
    return figures, predictions


def score_with_client(client, version, folder: Path, output: Path, expected, **options) -> dict:
    """One run of the dataset service on `client`'s cluster, checked against `expected`;
    its row is deleted afterwards (the files are the caller's)."""
    import numpy as np
    import pyarrow.parquet as pq

    from predictions.models import DatasetRun
    from predictions.services import datasets

    started = time.perf_counter()
    run = datasets.score_dataset(
        version=version, input=str(folder), output=str(output), client=client, **options
    )
    seconds = time.perf_counter() - started
    DatasetRun.objects.filter(pk=run.pk).delete()
    scored = pq.read_table(output, columns=["row", "prediction"]).to_pandas().sort_values("row")
    got = scored["prediction"].to_numpy(dtype=float)
    correct = len(got) == len(expected) and np.allclose(got, expected, rtol=RELATIVE, atol=0)
    return {
        "workers": run.workers,
        "partitions": run.partitions_total,
        "rows": run.rows_done,
        "rows_failed": run.rows_failed,
        "seconds": seconds,
        "rows_per_second": run.rows_done / seconds,
        "correct": bool(correct),
    }


def run_with_workers(count: int, version, folder: Path, expected, partition_rows: int) -> dict:
    """Start a local cluster of `count` worker processes, score the dataset, stop it."""
    from core import clusters

    print(f"bench: {count} Dask worker(s) ...", flush=True)
    output = folder.parent / f"scored-{count}"
    started = time.perf_counter()
    with clusters.connect(workers=count) as client:
        client.wait_for_workers(count)
        startup = time.perf_counter() - started
        figures = score_with_client(
            client, version, folder, output, expected, partition_rows=partition_rows
        )
    shutil.rmtree(output, ignore_errors=True)
    figures["cluster_start_seconds"] = startup
    print(
        f"bench: {count} worker(s): {figures['seconds']:.1f} s, "
        f"{'correct' if figures['correct'] else 'WRONG PREDICTIONS'}",
        flush=True,
    )
    return figures


def jobs_figures(args, workdir: Path) -> dict | None:
    """The RQ job path's JSON (bench/jobs): run now with --run-jobs, or read from --jobs-json."""
    if args.jobs_json:
        return json.loads(args.jobs_json.read_text())
    if not args.run_jobs:
        return None
    path = workdir / "jobs.json"
    workers = ",".join(map(str, args.workers))
    command = [sys.executable, "-m", "bench.jobs", "--rows", str(args.rows), "--workers", workers]
    print(f"bench: the RQ job path: {' '.join(command[1:])} ...", flush=True)
    subprocess.run([*command, "--json", str(path)], cwd=ROOT, check=True)
    return json.loads(path.read_text())


def report(limit: dict, dask_runs: list[dict], jobs: dict | None) -> list[Row]:
    """The table's rows: Dask per worker count, the RQ job path per worker count, scaling."""
    limit_rate = limit["rows_per_second"]
    rows = [
        Row(f"Dask, {run['workers']} worker(s)", "rows/s", run["rows_per_second"], limit_rate)
        for run in dask_runs
    ]
    for run in (jobs or {}).get("runs", []):
        label = f"RQ jobs, {run['workers']} worker(s)"
        rows.append(Row(label, "rows/s", run["rows_per_second"], limit_rate))
    if len(dask_runs) >= 2 and dask_runs[0]["rows_per_second"]:
        first, last = dask_runs[0], dask_runs[-1]
        rows.append(
            Row(
                f"Dask scaling {first['workers']} -> {last['workers']}",
                "x",
                last["rows_per_second"] / first["rows_per_second"],
            )
        )
    return rows


def measure(args) -> int:
    version, predictor, names = demo_model()
    background = CpuMeter().background()
    workdir = Path(tempfile.mkdtemp(prefix="modelport-bench-datasets-"))
    try:
        folder = workdir / "lake"
        print(f"bench: writing {args.rows:,} rows as {args.files} Parquet files ...", flush=True)
        write_dataset(folder, rows=args.rows, files=args.files, names=names)
        print(f"bench: in-process {MODEL} v{version.number}, 1 thread ...", flush=True)
        sklearn = getattr(predictor, "fallback", predictor)  # ONNX serves beside it
        limit, expected = in_process(sklearn.estimator, folder, names)
        dask_runs = [
            run_with_workers(count, version, folder, expected, args.partition_rows)
            for count in args.workers
        ]
        jobs = jobs_figures(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = report(limit, dask_runs, jobs)
    print(f"\n{MODEL} v{version.number}, {args.rows:,} rows; busy CPUs before: {background}")
    print(format_table(rows))
    if args.json:
        write_json(
            args.json,
            {
                "model": MODEL,
                "version": version.number,
                "rows": args.rows,
                "files": args.files,
                "partition_rows": args.partition_rows,
                "busy_cpus_before_start": background,
                "in_process": limit,
                "dask": dask_runs,
                "rq_jobs": jobs,
            },
        )
    return 0 if all(run["correct"] for run in dask_runs) else 1


def _counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("at least one worker count, each 1 or more")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench datasets", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files (default 8)")
    parser.add_argument("--workers", type=_counts, default=[1, 2], help="default 1,2")
    parser.add_argument(
        "--partition-rows", type=int, default=100_000, help="rows per partition (default 100,000)"
    )
    parser.add_argument("--run-jobs", action="store_true", help="run the RQ jobs bench too")
    parser.add_argument("--jobs-json", type=Path, metavar="FILE", help="its JSON from earlier")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if min(args.rows, args.files, args.partition_rows) < 1 or args.files > args.rows:
        parser.error("--rows, --files and --partition-rows must be >= 1, files <= rows")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    return run_measurement(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
