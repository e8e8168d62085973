"""Benchmark the prediction API through nginx, next to the in-process limit of the same model.

Starts the stack the way scripts/run does, but on free ports and in a temp dir (scripts/stack
through bench/common.py): its own redis-server (unless REDIS_URL is set), two gunicorn
instances (project/gunicorn.conf.py with WEB_WORKERS=1) and nginx (scripts/render_nginx.py),
against the normal database that scripts/setup prepared. Then wrk (bench/post.lua) posts single
rows and 1,000-row batches (JSON records, JSON columns/data, CSV) for a bounded time each, and
the same pipeline is timed in this process. Every process started here is stopped by PID at the
end, on errors and on Ctrl-C too.

Run it with ./scripts/bench (which sets up and installs wrk); see bench/README.md.
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import (
    BUSY_CPUS_WARNING,
    MODEL,
    WEB_INSTANCES,
    CpuMeter,
    Row,
    demo_rows,
    format_table,
    prepare,
    run_measurement,
    start_stack,
    temporary_stack,
    write_json,
)
from bench.wrk import Scenario, WrkResult, check_answers, run_wrk, write_payloads
from scripts.stack import Stack, http_request, worker_starts

# From the issues: what the API should reach on this machine.
TARGET_BATCH_ROWS_PER_SECOND = 120_000
TARGET_SINGLE_P50_MS = 10.0
TARGET_SINGLE_C16_PER_SECOND = 1_000
TARGET_SINGLE_C16_P99_MS = 60.0
# With the prediction cache on, single rows come from a set this small, again and again.
CACHE_REPEAT_ROWS = 100


# --- In-process ---------------------------------------------------------------------------


def time_calls(function, seconds: float) -> list[float]:
    """Call function() again and again for `seconds`; the duration of each call in seconds."""
    durations = []
    end = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        function()
        finished = time.perf_counter()
        durations.append(finished - started)
        if finished >= end:
            return durations


def in_process(estimator, frame, seconds: float, warmup: float) -> dict:
    """The same pipeline called directly in this process (one thread), single rows and a batch."""
    single = frame.iloc[:1]
    time_calls(lambda: estimator.predict(single), warmup / 2)
    single_calls = time_calls(lambda: estimator.predict(single), seconds)
    time_calls(lambda: estimator.predict(frame), warmup / 2)
    batch_calls = time_calls(lambda: estimator.predict(frame), seconds)
    return {
        "single_calls_per_second": len(single_calls) / sum(single_calls),
        "single_p50_ms": statistics.median(single_calls) * 1000,
        "single_p99_ms": statistics.quantiles(single_calls, n=100)[98] * 1000,
        "batch_rows_per_second": len(frame) * len(batch_calls) / sum(batch_calls),
        "batch_p50_ms": statistics.median(batch_calls) * 1000,
    }


# --- Report -----------------------------------------------------------------------------------


def cache_lookups(urls: list[str]) -> dict[str, float]:
    """Prediction cache lookups so far by result (hit, miss, error), summed over the instances'
    own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {"hit": 0.0, "miss": 0.0, "error": 0.0}
    for url in urls:
        response = http_request("GET", url + "/metrics")
        if response.status != 200:
            raise RuntimeError(f"{url}/metrics: status {response.status}")
        for family in text_string_to_metric_families(response.body.decode()):
            if family.name == "modelport_prediction_cache_requests":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["result"]] += sample.value
    return counts


def hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Cache hits as a percentage of the lookups between two counts; None without lookups."""
    hits, lookups = after["hit"] - before["hit"], sum(after.values()) - sum(before.values())
    return 100 * hits / lookups if lookups else None


def batching_state(version) -> str:
    """Whether single rows are batched, and why not (predictions/batching.py decides)."""
    from django.conf import settings

    from predictions import batching

    if not settings.BATCH_ENABLED:
        return "batching off (BATCH_ENABLED)"
    if batching.is_enabled(version, 1):
        return "batching on"
    latency_ms = serving_plan(version).call_latency_ms
    return f"batching not used (a call costs {latency_ms} ms < BATCH_MIN_CALL_MS)"


def serving_plan(version):
    """The version's ServingPlan (modelregistry/serving.py): its path and exactness."""
    from modelregistry import serving

    return serving.plan_for(version)


def report_rows(
    results: dict[str, WrkResult], scenarios, limit: dict, hit_rates: dict | None = None
) -> list[Row]:
    """The table's rows: per scenario, the figures beside the in-process ones and the targets."""
    rows = []
    for scenario in scenarios:
        result = results[scenario.name]
        if scenario.rows == 1:
            c1 = scenario.connections == 1
            c16 = scenario.connections == 16
            rows += [
                Row(
                    f"{scenario.label}: throughput",
                    "req/s",
                    result.requests_per_second,
                    limit["single_calls_per_second"],
                    f">= {TARGET_SINGLE_C16_PER_SECOND:,} req/s" if c16 else "",
                    result.requests_per_second >= TARGET_SINGLE_C16_PER_SECOND if c16 else None,
                ),
                Row(
                    f"{scenario.label}: p50",
                    "ms",
                    result.p50_ms,
                    limit["single_p50_ms"],
                    f"<= {TARGET_SINGLE_P50_MS:g} ms" if c1 else "",
                    result.p50_ms <= TARGET_SINGLE_P50_MS if c1 else None,
                ),
                Row(
                    f"{scenario.label}: p99",
                    "ms",
                    result.p99_ms,
                    limit["single_p99_ms"],
                    f"< {TARGET_SINGLE_C16_P99_MS:g} ms" if c16 else "",
                    result.p99_ms < TARGET_SINGLE_C16_P99_MS if c16 else None,
                ),
            ]
            rate = (hit_rates or {}).get(scenario.name)
            if rate is not None:
                rows.append(Row(f"{scenario.label}: cache hit rate", "%", rate))
        else:
            rows_per_second = result.requests_per_second * scenario.rows
            is_json = scenario.content_type == "application/json"
            rows += [
                Row(
                    f"{scenario.label}: throughput",
                    "rows/s",
                    rows_per_second,
                    limit["batch_rows_per_second"],
                    f">= {TARGET_BATCH_ROWS_PER_SECOND:,} rows/s" if is_json else "",
                    rows_per_second >= TARGET_BATCH_ROWS_PER_SECOND if is_json else None,
                ),
                Row(f"{scenario.label}: p50", "ms", result.p50_ms, limit["batch_p50_ms"]),
            ]
    return rows


# --- Main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10,
        help="measuring time per figure, whole seconds for wrk (default 10)",
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="warm-up time before each figure (default 2)"
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows per batch (default 1000)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the processes' logs here at the end"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.rows < 1:
        parser.error("--seconds must be > 0, --warmup >= 0 and --rows >= 1")
    return args


@dataclass
class Measured:
    """What one run measured: the in-process limit, and wrk's figures per scenario."""

    limit: dict
    scenarios: list[Scenario]
    results: dict[str, WrkResult] = field(default_factory=dict)
    hit_rates: dict[str, float | None] = field(default_factory=dict)
    other_load: dict[str, float | None] = field(default_factory=dict)
    restarts_during: dict[str, int] = field(default_factory=dict)
    restarts: int = 0


def worker_boots(stack: Stack) -> int:
    """Web workers started so far, all instances (more than one each once they recycle)."""
    return sum(
        worker_starts(path.read_text(errors="replace")) for path in stack.log_dir.glob("web*.log")
    )


def scenarios_for(args, payloads, single_rows: int, cache_on: bool) -> list[Scenario]:
    """Single rows at c=1 and c=16, the batches at c=4."""
    batch = f"{args.rows:,}-row"
    singles = (
        f"single-row JSON ({single_rows} rows again and again)" if cache_on else "single-row JSON"
    )
    return [
        Scenario("single_c1", f"{singles}, c=1", *payloads["single"], 1, 1, lines=True),
        Scenario("single_c16", f"{singles}, c=16", *payloads["single"], 16, 1, lines=True),
        Scenario("records_c4", f"{batch} JSON inputs, c=4", *payloads["records"], 4, args.rows),
        Scenario("columns_c4", f"{batch} JSON columns, c=4", *payloads["columns"], 4, args.rows),
        Scenario("csv_c4", f"{batch} CSV, c=4", *payloads["csv"], 4, args.rows),
    ]


def measure_scenarios(
    measured: Measured, stack: Stack, url: str, token: str, args, meter: CpuMeter, cache_on: bool
) -> None:
    """Run wrk for each scenario (after a warm-up), with what else happened meanwhile."""
    for scenario in measured.scenarios:
        print(f"bench: {scenario.label} ...", flush=True)
        if args.warmup:
            run_wrk(url, scenario, token, args.warmup, args.verbose)
        counted = cache_on and scenario.rows == 1
        lookups = cache_lookups(stack.instance_urls) if counted else None
        boots, before = worker_boots(stack), meter.snapshot()
        result = run_wrk(url, scenario, token, args.seconds, args.verbose)
        measured.results[scenario.name] = result
        measured.other_load[scenario.name] = meter.other_cpus(before)
        if counted:
            measured.hit_rates[scenario.name] = hit_rate(
                lookups, cache_lookups(stack.instance_urls)
            )
        measured.restarts_during[scenario.name] = worker_boots(stack) - boots
        if result.failures:
            print(
                f"bench: {scenario.label}: {result.non_2xx} non-2xx (last status "
                f"{result.last_bad_status}), {result.bad_body} with failed rows, socket "
                f"errors {result.socket_errors}",
                file=sys.stderr,
            )


def is_cache_on(env: dict) -> bool:
    """Whether the instances run with the prediction cache (the bench turns it off by default)."""
    return env["PREDICTION_CACHE_ENABLED"].lower() in ("1", "true", "yes", "on")


def measure(args, token: str, version, estimator, frame, expected) -> int:
    """Start the stack, check its answers, time the model in-process and each scenario through
    nginx, stop the stack; then report."""
    # Other work on the machine takes cores from the stack and wrk: say so next to the figures.
    meter = CpuMeter()
    background = meter.background()
    with temporary_stack("modelport-bench-", keep_logs=args.keep_logs) as stack:
        cache_on = is_cache_on(stack.env)
        single_rows = CACHE_REPEAT_ROWS if cache_on else len(frame)
        payloads = write_payloads(frame, stack.workdir, single_rows=single_rows)
        url = start_stack(stack)
        path = f"/api/v1/models/{MODEL}/predict"
        check_answers(stack.instance_urls, path, token, payloads, expected)

        print(f"bench: in-process {MODEL} v{version.number}, 1 thread ...", flush=True)
        before = meter.snapshot()
        limit = in_process(estimator, frame, args.seconds, args.warmup)
        measured = Measured(limit, scenarios_for(args, payloads, single_rows, cache_on))
        measured.other_load["in_process"] = meter.other_cpus(before)
        measure_scenarios(measured, stack, url + path, token, args, meter, cache_on)
        measured.restarts = max(0, worker_boots(stack) - WEB_INSTANCES)
    return report(args, version, stack.env, background, measured)


def report(args, version, env: dict, background: float | None, measured: Measured) -> int:
    """Print the table (and write the JSON file); 1 when any response failed."""
    cache_on = is_cache_on(env)
    rows = report_rows(measured.results, measured.scenarios, measured.limit, measured.hit_rates)
    path = serving_plan(version).path
    print()
    print(
        f"{MODEL} v{version.number} served by {path}; {batching_state(version)}; "
        "prediction cache "
        f"{'on' if cache_on else 'off'}; {WEB_INSTANCES} gunicorn instances x "
        f"{env['WEB_WORKERS']} worker(s) x {env.get('WEB_THREADS') or 4} threads behind nginx; "
        f"{os.cpu_count()} CPUs; "
        f"{args.seconds:g} s per figure after {args.warmup:g} s warm-up; CPUs busy before "
        f"start: {'?' if background is None else f'{background:.2f}'} (other processes)"
    )
    if measured.restarts:
        during = ", ".join(f"{name} ({n})" for name, n in measured.restarts_during.items() if n)
        print(
            f"gunicorn restarted {measured.restarts} worker(s) during the run (max_requests); "
            f"while measuring: {during or 'none'}"
        )
    print(
        f"in-process: the same model's predict() ({path}, as it serves) on the "
        "same rows, one DataFrame row or 1,000 per call, 1 thread, no HTTP"
    )
    print(format_table(rows))
    loads = measured.other_load.items()
    busy = {name: load for name, load in loads if load and load > BUSY_CPUS_WARNING}
    if busy:
        shown = ", ".join(f"{name} {load:.2f}" for name, load in busy.items())
        print(f"warning: other processes kept CPUs busy while measuring: {shown}")
    failures = {name: r.failures for name, r in measured.results.items() if r.failures}
    if args.json:
        write_json(args.json, results_json(args, version, cache_on, background, measured, rows))
    if failures:
        print(f"bench: FAILED responses in {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def results_json(args, version, cache_on: bool, background, measured: Measured, rows) -> dict:
    """What --json writes."""
    return {
        "model": MODEL,
        "version": version.number,
        "serving_path": serving_plan(version).path,
        "batching": batching_state(version),
        "prediction_cache": cache_on,
        "cache_hit_rate_percent": measured.hit_rates,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "batch_rows": args.rows,
        "web_instances": WEB_INSTANCES,
        "cpus": os.cpu_count(),
        "busy_cpus_before_start": background,
        "gunicorn_worker_restarts": measured.restarts,
        "worker_restarts_while_measuring": measured.restarts_during,
        "other_cpus_while_measuring": measured.other_load,
        "wrk": {
            name: {**asdict(result), "requests_per_second": result.requests_per_second}
            for name, result in measured.results.items()
        },
        "in_process": measured.limit,
        "table": [asdict(row) for row in rows],
        "failures": {name: r.failures for name, r in measured.results.items() if r.failures},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare(wrk=True)
    if prepared is None:
        return 1
    token, version, estimator, names = prepared
    frame, expected = demo_rows(estimator, names, args.rows)
    return run_measurement(lambda: measure(args, token, version, estimator, frame, expected))


if __name__ == "__main__":
    sys.exit(main())
