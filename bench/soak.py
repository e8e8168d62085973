"""Soak: single-row predictions at a steady concurrency for minutes, through nginx to the two
instances, with worker recycling on: p99 per window and the RSS of every web worker over time.

    ./scripts/bench soak [--minutes 5] [--connections 8] [--window 10] [--json FILE]

Worker recycling (WEB_MAX_REQUESTS, 50,000 by default) happens several times in five minutes at
these rates; a recycled worker's successor is started before it stops (project/gunicorn.conf.py),
so recycling should not show in the p99. The overall p99 is that of every request of the soak,
merged from each window's latency distribution (bench/post.lua's tail). RSS growth is measured
per worker process, from its first sample once booted to its last, so a recycled worker does not
count as a drop.
"""

import argparse
import bisect
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import (
    MODEL,
    demo_rows,
    prepare,
    run_measurement,
    start_stack,
    temporary_stack,
    write_json,
)
from bench.run import worker_boots
from bench.wrk import Scenario, check_answers, run_wrk, write_payloads


@dataclass
class Window:
    """One window of the soak: wrk's figures and the web workers' memory after it."""

    second: float  # since the soak started, at the window's end
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    failures: int
    worker_boots: int  # gunicorn workers booted during the window, all instances
    rss_mb: dict[str, float] = field(default_factory=dict)  # "web1/<pid>" -> RSS
    requests: int = 0
    tail_ms: tuple[float, ...] = ()  # latency at the percentiles 90, 90.01, ..., 100


TAIL_START, TAIL_STEP = 90.0, 0.01  # the percentiles of bench/post.lua's tail


def merged_percentile(windows: list[Window], percentile: float) -> float | None:
    """The latency at `percentile` (90 or more) over the requests of every window.

    Within a window, the share of requests at or below a latency x is at least the highest
    percentile of its tail whose latency is <= x (none below its p90). The smallest x at which
    those shares, weighted by each window's requests, reach `percentile` is the answer: never
    below the true figure, and above it by at most 0.01 % of each window's requests.
    """
    parts = [(w.requests, w.tail_ms) for w in windows if w.requests and w.tail_ms]
    total = sum(requests for requests, _ in parts)
    if not total or percentile < TAIL_START:
        return None
    needed = percentile / 100 * total
    for latency in sorted({value for _, tail in parts for value in tail}):
        below = 0.0
        for requests, tail in parts:
            if at_or_below := bisect.bisect_right(tail, latency):
                below += requests * (TAIL_START + (at_or_below - 1) * TAIL_STEP) / 100
        if below >= needed * (1 - 1e-12):
            return latency
    return max(tail[-1] for _, tail in parts)


def rss_mb(pid: int) -> float | None:
    """The resident memory of a process, in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker_memory(stack) -> dict[str, float]:
    """RSS of every gunicorn worker (the children of each instance's master), by instance/pid."""
    found = {}
    for name, process in stack.processes.items():
        if not name.startswith("web"):
            continue
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
        except OSError:
            continue
        for pid in map(int, children.split()):
            if (rss := rss_mb(pid)) is not None:
                found[f"{name}/{pid}"] = round(rss, 1)
    return found


BOOT_SECONDS = (
    30.0  # a worker may still be loading Django and the models this long after it appears
)


def growth_per_worker(windows: list[Window]) -> dict[str, float]:
    """RSS of each worker process at its last sample minus its baseline, in MiB. The baseline
    is its first sample taken BOOT_SECONDS or more after it was first seen: before that it may
    still be booting (a successor started during the soak boots while the machine is loaded).
    A worker without a later sample after its baseline is left out (too short-lived to say)."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for window in windows:
        for worker, rss in window.rss_mb.items():
            seen.setdefault(worker, []).append((window.second, rss))
    growth = {}
    for worker, samples in seen.items():
        booted = [rss for second, rss in samples if second >= samples[0][0] + BOOT_SECONDS]
        if len(booted) >= 2:
            growth[worker] = round(booted[-1] - booted[0], 1)
    return growth


def soak(args, token: str, frame, expected) -> int:
    """Start the stack, check its answers, load it window by window; report."""
    with temporary_stack("modelport-soak-") as stack:
        payloads = write_payloads(frame, stack.workdir, single_rows=len(frame))
        url = start_stack(stack) + f"/api/v1/models/{MODEL}/predict"
        check_answers(
            stack.instance_urls, f"/api/v1/models/{MODEL}/predict", token, payloads, expected
        )
        scenario = Scenario(
            "soak",
            f"single-row JSON, c={args.connections}",
            *payloads["single"],
            args.connections,
            1,
            lines=True,
        )
        print(f"bench: soak, {scenario.label}, {args.minutes:g} min ...", flush=True)
        windows, started = [], time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            boots = worker_boots(stack)
            result = run_wrk(url, scenario, token, args.window, verbose=False)
            windows.append(
                Window(
                    second=round(time.monotonic() - started, 1),
                    requests_per_second=round(result.requests_per_second, 1),
                    p50_ms=round(result.p50_ms, 2),
                    p99_ms=round(result.p99_ms, 2),
                    max_ms=round(result.max_ms, 2),
                    failures=result.failures,
                    worker_boots=worker_boots(stack) - boots,
                    rss_mb=worker_memory(stack),
                    requests=result.requests,
                    tail_ms=result.tail_ms,
                )
            )
            print(format_window(windows[-1]), flush=True)
    return report(args, windows)


def format_window(window: Window) -> str:
    memory = ", ".join(f"{name} {rss:.0f}" for name, rss in sorted(window.rss_mb.items()))
    return (
        f"  {window.second:6.0f} s  {window.requests_per_second:7.0f} req/s  p50 "
        f"{window.p50_ms:6.2f} ms  p99 {window.p99_ms:7.2f} ms  max {window.max_ms:7.1f} ms  "
        f"failures {window.failures}  boots {window.worker_boots}  RSS MiB: {memory}"
    )


def report(args, windows: list[Window]) -> int:
    """The summary (overall and worst window p99, failures, RSS growth), and the JSON file if
    asked."""
    growth = growth_per_worker(windows)
    overall = merged_percentile(windows, 99)
    summary = {
        "minutes": args.minutes,
        "connections": args.connections,
        "windows": len(windows),
        "requests_per_second": round(
            sum(w.requests_per_second for w in windows) / max(len(windows), 1), 1
        ),
        "overall_p99_ms": None if overall is None else round(overall, 2),
        "worst_window_p99_ms": max((w.p99_ms for w in windows), default=None),
        "median_window_p99_ms": sorted(w.p99_ms for w in windows)[len(windows) // 2]
        if windows
        else None,
        "max_ms": max((w.max_ms for w in windows), default=None),
        "failures": sum(w.failures for w in windows),
        "worker_boots": sum(w.worker_boots for w in windows),
        "largest_rss_growth_mb": max(growth.values(), default=None),
        "rss_growth_mb": growth,
    }
    print(
        "bench: soak summary",
        json.dumps({k: v for k, v in summary.items() if k != "rss_growth_mb"}),
    )
    if args.json:
        write_json(args.json, {"summary": summary, "windows": [asdict(w) for w in windows]})
    return 1 if summary["failures"] else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5, help="how long (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="concurrency (default 8)")
    parser.add_argument("--window", type=float, default=10, help="seconds per window (default 10)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.connections < 1 or args.window < 1:
        parser.error("--minutes must be > 0, --connections >= 1 and --window >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare(wrk=True)
    if prepared is None:
        return 1
    token, _version, predictor, names = prepared
    frame, expected = demo_rows(predictor, names, 1000)
    return run_measurement(lambda: soak(args, token, frame, expected))


if __name__ == "__main__":
    sys.exit(main())
