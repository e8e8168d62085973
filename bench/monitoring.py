"""What monitoring costs: single-row requests with the request log and metrics on, then off.

Starts the benchmark stack (bench/common.py: nginx, two gunicorn instances, its own Redis) once
with the defaults (REQUEST_LOG_ENABLED and METRICS_ENABLED true) and once with both false,
alternating `--rounds` times so that drift in the machine's load hits both alike, and runs wrk
with single-row JSON requests at concurrency 1 and 16 for `--seconds` each. Prints p50/p99 and
requests/s per setting, the median over rounds, and the cost of monitoring as a share.

Run it with ./scripts/bench monitoring (see bench/README.md).
"""

import argparse
import os
import statistics
import sys
import time

from bench.common import (
    MODEL,
    demo_rows,
    prepare,
    run_measurement,
    start_stack,
    temporary_stack,
)
from bench.wrk import Scenario, check_answers, run_wrk, write_payloads

SETTINGS = {
    "on": {"REQUEST_LOG_ENABLED": "true", "METRICS_ENABLED": "true"},
    "off": {"REQUEST_LOG_ENABLED": "false", "METRICS_ENABLED": "false"},
}
CONCURRENCY = (1, 16)
# The issue's budget: logging may cost at most about 10% of single-row latency.
BUDGET_SHARE = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench monitoring", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--seconds", type=float, default=10, help="wrk time per figure (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up before each figure (2)")
    parser.add_argument("--rounds", type=int, default=2, help="on/off alternations (2)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        parser.error("--seconds must be > 0, --warmup >= 0 and --rounds >= 1")
    return args


def measure(setting: str, args, token: str, frame, expected) -> dict:
    """Start the stack with one setting, run wrk at each concurrency, stop it."""
    with temporary_stack("modelport-bench-monitoring-", env=SETTINGS[setting]) as stack:
        payloads = write_payloads(frame, stack.workdir, single_rows=len(frame))
        url = start_stack(stack, own_redis=True, announce=False)
        path = f"/api/v1/models/{MODEL}/predict"
        check_answers(stack.instance_urls, path, token, payloads, expected)
        figures = {}
        for connections in CONCURRENCY:
            scenario = Scenario(
                f"single_c{connections}", "single row", *payloads["single"], connections, 1
            )
            if args.warmup:
                run_wrk(url + path, scenario, token, args.warmup, verbose=False)
            result = run_wrk(url + path, scenario, token, args.seconds, verbose=False)
            if result.failures:
                raise RuntimeError(f"{setting}, c={connections}: {result.failures} failures")
            figures[connections] = result
            print(
                f"bench: monitoring {setting}, c={connections}: p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.1f} ms, {result.requests_per_second:.0f} req/s",
                flush=True,
            )
        return figures


def measure_rounds(args, token: str, version, frame, expected) -> int:
    """Alternate the settings --rounds times, then print the medians and the cost."""
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for setting in ("on", "off"):
            runs[setting].append(measure(setting, args, token, frame, expected))
    print()
    print(
        f"{MODEL} v{version.number}, single-row JSON through nginx, 2 instances, "
        f"{os.cpu_count()} CPUs; median of {args.rounds} round(s) of {args.seconds:g} s; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'':<6}{'monitoring on':>30}{'monitoring off':>30}{'cost (p50)':>14}")
    for connections in CONCURRENCY:
        row = {}
        for setting in ("on", "off"):
            results = [run[connections] for run in runs[setting]]
            row[setting] = (
                statistics.median(r.p50_ms for r in results),
                statistics.median(r.p99_ms for r in results),
                statistics.median(r.requests_per_second for r in results),
            )
        cost = row["on"][0] / row["off"][0] - 1
        cells = [f"p50 {p50:5.2f} p99 {p99:6.1f} {rps:5.0f}/s" for p50, p99, rps in row.values()]
        print(f"c={connections:<4}{cells[0]:>30}{cells[1]:>30}{cost:>+13.1%}")
    print(f"budget: monitoring at most {BUDGET_SHARE:.0%} of single-row latency (c=1)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare(wrk=True)
    if prepared is None:
        return 1
    token, version, predictor, names = prepared
    frame, expected = demo_rows(predictor, names, 1)
    return run_measurement(
        lambda: measure_rounds(args, token, version, frame, expected), interrupted="interrupted"
    )


if __name__ == "__main__":
    sys.exit(main())
