"""Benchmark the prediction API through nginx, next to the in-process limit of the same model.

Starts the stack the way scripts/run does, but on free ports and in a temp dir (bench/stack.py):
its own redis-server (unless REDIS_URL is set), two gunicorn instances (project/gunicorn.conf.py
with WEB_WORKERS=1) and nginx (scripts/render_nginx.py), against the normal database that
scripts/setup prepared. Then wrk (bench/post.lua) posts single rows and 1,000-row batches (JSON
records, JSON columns/data, CSV) for a bounded time each, and the same pipeline is timed in this
process. Every process started here is stopped by PID at the end, on errors and on Ctrl-C too.

Run it with ./scripts/bench (which sets up and installs wrk); see bench/README.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.stack import (
    BUSY_CPUS_WARNING,
    MODEL,
    WEB_INSTANCES,
    CpuMeter,
    Stack,
    admin_token,
    http_request,
    ignore_signals,
    setup_django,
    stack_env,
    start_stack,
    stop_on_signals,
)

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
RESULT_PREFIX = "BENCH_RESULT "
# wrk's default (2 s) would count a slow batch as a timeout instead of measuring it.
WRK_TIMEOUT = "30s"

# From the issues: what the API should reach on this machine.
TARGET_BATCH_ROWS_PER_SECOND = 120_000
TARGET_SINGLE_P50_MS = 10.0
TARGET_SINGLE_C16_PER_SECOND = 1_000
TARGET_SINGLE_C16_P99_MS = 60.0
# With the prediction cache on, single rows come from a set this small, again and again.
CACHE_REPEAT_ROWS = 100


# --- wrk output -------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run measured (from the BENCH_RESULT line that bench/post.lua prints)."""

    requests: int
    seconds: float
    good: int
    non_2xx: int
    bad_body: int
    last_bad_status: int
    socket_errors: dict[str, int]
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        """Responses that were not 2xx with every row scored, plus socket errors."""
        return self.non_2xx + self.bad_body + sum(self.socket_errors.values())


def parse_wrk_output(text: str) -> WrkResult:
    """Read wrk's output with bench/post.lua's BENCH_RESULT line; ValueError when it has none."""
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if len(lines) != 1:
        raise ValueError(
            f"expected one {RESULT_PREFIX.strip()} line in the wrk output, found {len(lines)}:\n"
            + text[-2000:]
        )
    data = json.loads(lines[0][len(RESULT_PREFIX) :])
    latency = data["latency_us"]
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        good=int(data["good"]),
        non_2xx=int(data["non_2xx"]),
        bad_body=int(data["bad_body"]),
        last_bad_status=int(data["last_bad_status"]),
        socket_errors={name: int(count) for name, count in data["socket_errors"].items()},
        mean_ms=latency["mean"] / 1000,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
    )


# --- Payloads and checks ----------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    label: str
    body_file: Path
    content_type: str
    connections: int
    rows: int  # rows per request
    lines: bool = False  # one body per line of the file, taken in turn


def write_payloads(frame, workdir: Path, *, single_rows: int) -> dict[str, tuple[Path, str]]:
    """The request bodies, written to files for wrk: name -> (path, content type). "single" has
    one body per line: the first `single_rows` rows, each its own request."""
    records = frame.to_dict(orient="records")
    singles = (json.dumps({"inputs": r}, separators=(",", ":")) for r in records[:single_rows])
    bodies = {
        "single": ("\n".join(singles) + "\n", "application/json"),
        "records": (json.dumps({"inputs": records}, separators=(",", ":")), "application/json"),
        "columns": (
            json.dumps(
                {"columns": list(frame.columns), "data": frame.to_numpy().tolist()},
                separators=(",", ":"),
            ),
            "application/json",
        ),
        "csv": (frame.to_csv(index=False), "text/csv"),
    }
    files = {}
    for name, (text, content_type) in bodies.items():
        path = workdir / f"{name}.body"
        path.write_text(text)
        files[name] = (path, content_type)
    return files


def check_answers(urls: list[str], path: str, token: str, payloads, expected) -> None:
    """POST every body to every instance: all rows scored, same values as in this process.

    This also loads the model into each instance before anything is timed.
    """
    import numpy as np

    for url in urls:
        for name, (body_file, content_type) in payloads.items():
            data = body_file.read_bytes()
            status, body = http_request(
                "POST",
                url + path,
                body=data.splitlines()[0] if name == "single" else data,
                headers={"Authorization": f"Token {token}", "Content-Type": content_type},
            )
            if status != 200:
                raise RuntimeError(f"{name} to {url}: status {status}: {body[:500]!r}")
            answer = json.loads(body)
            got = [answer["prediction"]] if name == "single" else answer["predictions"]
            want = expected[:1] if name == "single" else expected
            if answer["rows_failed"] or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
                raise RuntimeError(f"{name} to {url}: unexpected answer {body[:500]!r}")


# --- Measuring --------------------------------------------------------------------------------


def run_wrk(url: str, scenario: Scenario, token: str, seconds: float, verbose: bool) -> WrkResult:
    threads = min(2, scenario.connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{scenario.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(scenario.body_file),
        scenario.content_type,
        token,
        *(["lines"] if scenario.lines else []),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {seconds + 60:g} s.") from None
    finally:
        if process.poll() is None:  # interrupted or timed out: wrk must not outlive us
            process.kill()
        process.wait()
    if verbose:
        print(stdout, stderr, sep="", file=sys.stderr)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr[-2000:]}")
    return parse_wrk_output(stdout)


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


@dataclass
class Row:
    label: str
    unit: str
    measured: float
    in_process: float | None = None
    target: str = ""
    meets: bool | None = None
    ratio: float | None = field(init=False)

    def __post_init__(self):
        self.ratio = self.measured / self.in_process if self.in_process else None


def cache_lookups(urls: list[str]) -> dict[str, float]:
    """Prediction cache lookups so far by result (hit, miss, error), summed over the instances'
    own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {"hit": 0.0, "miss": 0.0, "error": 0.0}
    for url in urls:
        status, body = http_request("GET", url + "/metrics")
        if status != 200:
            raise RuntimeError(f"{url}/metrics: status {status}")
        for family in text_string_to_metric_families(body.decode()):
            if family.name == "modelport_prediction_cache_requests":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["result"]] += sample.value
    return counts


def hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
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


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    header = ("", "unit", "measured", "in-process", "ratio", "target")
    lines = [
        (
            row.label,
            row.unit,
            _figure(row.measured),
            _figure(row.in_process),
            f"{row.ratio:.2f}" if row.ratio is not None else "-",
            row.target + {True: "  met", False: "  MISSED", None: ""}[row.meets],
        )
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    aligned = []
    for line in [header, *lines]:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(line[2:5], widths[2:5], strict=True)]
        cells.append(line[5])
        aligned.append("  ".join(cells).rstrip())
    aligned.insert(1, "-" * len(aligned[0]))
    return "\n".join(aligned)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is missing; run ./scripts/bench (it installs wrk).", file=sys.stderr)
        return 1
    setup_django()  # before numpy/scikit-learn load: the in-process figures are for one thread
    import numpy as np
    from django.conf import settings

    from modelregistry import demo, loader, selectors

    token = admin_token()
    if token is None:
        return 1
    version = selectors.resolve_version(MODEL)
    estimator = loader.get_predictor(version)
    names = [feature["name"] for feature in version.input_schema["features"]]
    frame = demo.house_prices_data(rows=args.rows, seed=2024)[names]
    expected = np.asarray(estimator.predict(frame)).tolist()

    stop_on_signals()
    # Other work on the machine takes cores from the stack and wrk: say so next to the figures.
    meter = CpuMeter()
    before = meter.snapshot()
    time.sleep(1)
    background = meter.other_cpus(before)
    if background is not None and background > BUSY_CPUS_WARNING:
        print(
            f"bench: warning: the machine is already busy ({background:.1f} of {os.cpu_count()} "
            "CPUs in use before starting); the figures will be low and noisy.",
            file=sys.stderr,
        )
    other_load: dict[str, float | None] = {}
    restarts_during: dict[str, int] = {}
    workdir = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    stack = Stack(workdir)
    try:
        env = stack_env()
        cache_on = env["PREDICTION_CACHE_ENABLED"].lower() in ("1", "true", "yes", "on")
        single_rows = CACHE_REPEAT_ROWS if cache_on else len(frame)
        payloads = write_payloads(frame, workdir, single_rows=single_rows)
        print(f"bench: starting redis, {WEB_INSTANCES} gunicorn instances, nginx ...", flush=True)
        started = time.monotonic()
        url = start_stack(stack, settings, env)
        print(f"bench: ready at {url} in {time.monotonic() - started:.1f} s", flush=True)
        path = f"/api/v1/models/{MODEL}/predict"
        check_answers(stack.instance_urls, path, token, payloads, expected)

        print(f"bench: in-process {MODEL} v{version.number}, 1 thread ...", flush=True)
        before = meter.snapshot()
        limit = in_process(estimator, frame, args.seconds, args.warmup)
        other_load["in_process"] = meter.other_cpus(before)

        batch = f"{args.rows:,}-row"
        singles = (
            f"single-row JSON ({single_rows} rows again and again)"
            if cache_on
            else "single-row JSON"
        )
        scenarios = [
            Scenario("single_c1", f"{singles}, c=1", *payloads["single"], 1, 1, lines=True),
            Scenario("single_c16", f"{singles}, c=16", *payloads["single"], 16, 1, lines=True),
            Scenario("records_c4", f"{batch} JSON inputs, c=4", *payloads["records"], 4, args.rows),
            Scenario(
                "columns_c4", f"{batch} JSON columns, c=4", *payloads["columns"], 4, args.rows
            ),
            Scenario("csv_c4", f"{batch} CSV, c=4", *payloads["csv"], 4, args.rows),
        ]
        results: dict[str, WrkResult] = {}
        hit_rates: dict[str, float | None] = {}
        for scenario in scenarios:
            print(f"bench: {scenario.label} ...", flush=True)
            if args.warmup:
                run_wrk(url + path, scenario, token, args.warmup, args.verbose)
            counted = cache_on and scenario.rows == 1
            lookups = cache_lookups(stack.instance_urls) if counted else None
            boots, before = stack.worker_boots(), meter.snapshot()
            results[scenario.name] = result = run_wrk(
                url + path, scenario, token, args.seconds, args.verbose
            )
            other_load[scenario.name] = meter.other_cpus(before)
            if counted:
                hit_rates[scenario.name] = hit_rate(lookups, cache_lookups(stack.instance_urls))
            restarts_during[scenario.name] = stack.worker_boots() - boots
            if result.failures:
                print(
                    f"bench: {scenario.label}: {result.non_2xx} non-2xx (last status "
                    f"{result.last_bad_status}), {result.bad_body} with failed rows, socket "
                    f"errors {result.socket_errors}",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        print("bench: interrupted; stopping.", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        ignore_signals()  # a second Ctrl-C must not cut this short
        stack.stop()
        restarts = max(0, stack.worker_boots() - WEB_INSTANCES)
        if args.keep_logs:
            stack.copy_logs(args.keep_logs)
            print(f"bench: logs copied to {args.keep_logs}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)

    rows = report_rows(results, scenarios, limit, hit_rates)
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
    if restarts:
        during = ", ".join(f"{name} ({n})" for name, n in restarts_during.items() if n)
        print(
            f"gunicorn restarted {restarts} worker(s) during the run (max_requests); "
            f"while measuring: {during or 'none'}"
        )
    print(
        f"in-process: the same model's predict() ({path}, as it serves) on the "
        "same rows, one DataFrame row or 1,000 per call, 1 thread, no HTTP"
    )
    print(format_table(rows))
    busy = {name: load for name, load in other_load.items() if load and load > BUSY_CPUS_WARNING}
    if busy:
        shown = ", ".join(f"{name} {load:.2f}" for name, load in busy.items())
        print(f"warning: other processes kept CPUs busy while measuring: {shown}")
    failures = {name: result.failures for name, result in results.items() if result.failures}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model": MODEL,
                    "version": version.number,
                    "serving_path": serving_plan(version).path,
                    "batching": batching_state(version),
                    "prediction_cache": cache_on,
                    "cache_hit_rate_percent": hit_rates,
                    "seconds": args.seconds,
                    "warmup_seconds": args.warmup,
                    "batch_rows": args.rows,
                    "web_instances": WEB_INSTANCES,
                    "cpus": os.cpu_count(),
                    "busy_cpus_before_start": background,
                    "gunicorn_worker_restarts": restarts,
                    "worker_restarts_while_measuring": restarts_during,
                    "other_cpus_while_measuring": other_load,
                    "wrk": {
                        name: {
                            **asdict(result),
                            "requests_per_second": result.requests_per_second,
                        }
                        for name, result in results.items()
                    },
                    "in_process": limit,
                    "table": [asdict(row) for row in rows],
                    "failures": failures,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nbench: results written to {args.json}")
    if failures:
        print(f"bench: FAILED responses in {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
