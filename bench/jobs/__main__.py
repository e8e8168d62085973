"""The command line of the jobs bench: python -m bench.jobs (./scripts/bench jobs [...])."""

import argparse
import sys
from pathlib import Path

import bench.jobs
from bench.common import (
    MODEL,
    CpuMeter,
    ignore_signals,
    prepare,
    run_measurement,
    start_stack,
    temporary_stack,
)
from bench.jobs.data import delete_jobs, in_process, one_chunk_in_process, schema_problem, write_csv
from bench.jobs.report import print_report
from bench.jobs.runs import JobRun, Target, run_job, start_workers


def _worker_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("at least one worker count, each 1 or more")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench jobs",
        description=bench.jobs.__doc__.splitlines()[0],
        allow_abbrev=False,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument(
        "--workers", type=_worker_counts, default=[1, 2], help="worker counts (default 1,2)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="of the demo rows (default 2024)")
    parser.add_argument(
        "--deadline", type=float, default=600, help="seconds allowed per job (default 600)"
    )
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between status polls (default 0.1)"
    )
    parser.add_argument(
        "--sample-ms", type=float, default=20, help="/proc sampling interval (default 20)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the processes' logs here at the end"
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.deadline <= 0 or args.poll <= 0 or args.sample_ms <= 0:
        parser.error("--rows must be >= 1; --deadline, --poll and --sample-ms > 0")
    return args


def measure(args, token: str, version, estimator, names: list[str]) -> int:
    """Write the CSV, take the in-process figures, start the stack, run one job per worker
    count; then stop everything, delete the jobs and report."""
    background = CpuMeter().background()
    created: list[str] = []
    try:
        with temporary_stack("modelport-bench-jobs-", keep_logs=args.keep_logs) as stack:
            csv_path = stack.workdir / "rows.csv"
            limit, chunk, expected = measure_in_process(args, csv_path, version, estimator, names)
            url = start_stack(stack, own_redis=True)
            target = Target(stack, url, token, csv_path, expected, args, created)
            runs = [run_with_workers(count, target) for count in args.workers]
    finally:
        ignore_signals()  # a second Ctrl-C must not cut this short
        delete_jobs(created)
    return print_report(args, version, background, limit, chunk, runs)


def measure_in_process(args, csv_path: Path, version, estimator, names: list[str]):
    """Write the CSV, then read and score it in this process; (figures, one chunk, predictions)."""
    print(f"bench: writing {args.rows:,} rows to {csv_path} ...", flush=True)
    write_csv(csv_path, args.rows, args.seed, names)
    print(f"bench: {csv_path.stat().st_size / 1e6:.1f} MB", flush=True)
    print(f"bench: in-process {MODEL} v{version.number}, 1 thread ...", flush=True)
    meter = CpuMeter()
    before = meter.snapshot()
    limit, expected = in_process(estimator, csv_path, names)
    limit["other_cpus"] = meter.other_cpus(before)
    return limit, one_chunk_in_process(version, csv_path), expected


def run_with_workers(count: int, target: Target) -> JobRun:
    """Start count RQ workers, run the job, stop the workers."""
    print(f"bench: {count} RQ worker(s) ...", flush=True)
    workers = start_workers(target.stack, count)
    try:
        run = run_job(target, workers)
        print(
            f"bench: {count} worker(s): {run.seconds:.1f} s, "
            f"{'correct' if run.correct else 'PROBLEMS: ' + '; '.join(run.problems)}",
            flush=True,
        )
        return run
    finally:
        for name in workers:
            target.stack.stop_process(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare(wrk=False)
    if prepared is None:
        return 1
    problem = schema_problem()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 1
    return run_measurement(lambda: measure(args, *prepared))


if __name__ == "__main__":
    sys.exit(main())
