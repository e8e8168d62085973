"""The web layer side by side: the same WSGI app under gunicorn (gthread, the default), granian
and uWSGI, two instances of each behind the same nginx, measured with wrk in turn.

    ./scripts/bench webservers [--seconds 8] [--rounds 2] [--servers gunicorn,granian,uwsgi]

Each server runs 1 process with 4 threads per instance (gunicorn's default here), the models
loaded and the garbage collector's long-lived objects frozen before the first request, as
project/gunicorn.conf.py does. granian and uWSGI are not requirements of the service: install
them to compare (`pip install granian uwsgi`); a server that is missing is left out. The rounds
alternate the servers so that drift in the machine's load hits all of them.
"""

import argparse
import shutil
import statistics
import sys
from pathlib import Path

from bench.common import (
    MODEL,
    WEB_INSTANCES,
    demo_rows,
    prepare,
    run_measurement,
    temporary_stack,
)
from bench.wrk import Scenario, check_answers, run_wrk, write_payloads
from scripts.stack import free_port

THREADS = 4
APP = "bench.warm_wsgi:application"  # the app, warmed as gunicorn's post_worker_init does


def server_command(server: str, port: int) -> list[str] | None:
    """The command line of one instance of `server` on 127.0.0.1:port (None: not installed)."""
    bin_dir = Path(sys.executable).parent
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "-c", "project/gunicorn.conf.py"] + [
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--threads",
            str(THREADS),
        ]
    if server == "granian":
        binary = shutil.which("granian", path=str(bin_dir))
        return binary and [
            binary,
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--blocking-threads",
            str(THREADS),
            "--no-ws",
            APP,
        ]
    if server == "uwsgi":
        binary = shutil.which("uwsgi", path=str(bin_dir))
        return binary and [
            binary,
            "--http11-socket",
            f"127.0.0.1:{port}",
            "--module",
            APP,
            "--master",
            "--processes",
            "1",
            "--threads",
            str(THREADS),
            "--enable-threads",
            "--lazy-apps",
            "--die-on-term",
            "--disable-logging",
            "--buffer-size",
            "65535",
        ]
    raise ValueError(f"unknown server {server!r}")


def measure(server: str, args, token: str, frame, expected) -> dict[str, tuple]:
    """One round of one server: {scenario: (requests/s or rows/s, p50 ms, p99 ms)}."""
    with temporary_stack(f"modelport-{server}-") as stack:
        stack.start_redis()
        ports = [free_port() for _ in range(WEB_INSTANCES)]
        for index, port in enumerate(ports, start=1):
            name = f"web{index}"
            metrics_dir = stack.workdir / "metrics" / name
            metrics_dir.mkdir(parents=True)
            env = {
                **stack.env,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "MODELPORT_METRICS_PROCESS": "web0",
                "OMP_NUM_THREADS": "1",
            }
            stack.launch(name, server_command(server, port), env)
            stack.instance_urls.append(f"http://127.0.0.1:{port}")
            stack._health_urls[name] = f"http://127.0.0.1:{port}/healthz"
        stack.start_nginx(ports)
        stack.wait_ready()
        payloads = write_payloads(frame, stack.workdir, single_rows=len(frame))
        path = f"/api/v1/models/{MODEL}/predict"
        check_answers(stack.instance_urls, path, token, payloads, expected)
        url = stack.url + path
        scenarios = [
            Scenario("c1", "single row, c=1", *payloads["single"], 1, 1, lines=True),
            Scenario("c16", "single row, c=16", *payloads["single"], 16, 1, lines=True),
            Scenario("b1000", "1,000-row JSON, c=4", *payloads["records"], 4, len(frame)),
        ]
        figures = {}
        for scenario in scenarios:
            run_wrk(url, scenario, token, 2, verbose=False)  # warm-up
            result = run_wrk(url, scenario, token, args.seconds, verbose=False)
            if result.failures:
                raise RuntimeError(f"{server} {scenario.label}: {result.failures} failures")
            rate = result.requests_per_second * scenario.rows
            figures[scenario.name] = (rate, result.p50_ms, result.p99_ms)
            print(
                f"  {server:9} {scenario.label:20} {rate:10.0f}/s  p50 {result.p50_ms:6.2f} ms"
                f"  p99 {result.p99_ms:7.2f} ms",
                flush=True,
            )
        return figures


def compare(args, token: str, frame, expected) -> int:
    servers = [s for s in args.servers if server_command(s, 1) is not None]
    for missing in sorted(set(args.servers) - set(servers)):
        print(f"bench: {missing} is not installed; left out (pip install {missing})", flush=True)
    rounds: dict[str, list[dict]] = {server: [] for server in servers}
    for number in range(1, args.rounds + 1):
        print(f"bench: round {number} of {args.rounds}", flush=True)
        for server in servers if number % 2 else reversed(servers):
            rounds[server].append(measure(server, args, token, frame, expected))
    print("\n| server | single row c=1 p50 | c=16 | c=16 p99 | 1,000-row JSON c=4 |")
    print("|---|---|---|---|---|")
    for server, results in rounds.items():
        c1_p50, c16, c16_p99, b1000 = (
            statistics.median(r[scenario][index] for r in results)
            for scenario, index in (("c1", 1), ("c16", 0), ("c16", 2), ("b1000", 0))
        )
        print(
            f"| {server} | {c1_p50:.2f} ms | {c16:,.0f} req/s | {c16_p99:.1f} ms | "
            f"{b1000:,.0f} rows/s |"
        )
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench webservers", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=8, help="per scenario (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds (default 2)")
    parser.add_argument(
        "--servers",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=["gunicorn", "granian", "uwsgi"],
        help="comma-separated (default gunicorn,granian,uwsgi)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.servers) - {"gunicorn", "granian", "uwsgi"}
    if unknown or args.rounds < 1 or args.seconds < 1:
        parser.error(f"unknown servers {sorted(unknown)}" if unknown else "rounds/seconds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepared = prepare(wrk=True)
    if prepared is None:
        return 1
    token, _version, predictor, names = prepared
    frame, expected = demo_rows(predictor, names, 1000)
    return run_measurement(lambda: compare(args, token, frame, expected))


if __name__ == "__main__":
    sys.exit(main())
