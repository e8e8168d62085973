"""scripts/run's stack: write var/Procfile and var/nginx/nginx.conf, print the URLs, exec honcho.

    python -m scripts.stack.run --port 8000 --instances 2 --base-port 8001 --workers 1 \\
        --worker-metrics-base-port 9101 [--admin-info TEXT]

Each Procfile line runs one process of the stack (the commands of scripts/stack/commands.py, as
bench/ and the e2e tests run them) under scripts/supervise.py, which restarts it when it dies and
cleans up its process group when it stops; honcho stops them all on Ctrl-C. Without REDIS_URL,
a redis-server of its own on var/redis.sock, supervised the same way.
"""

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from scripts.stack.commands import (
    nginx_command,
    redis_command,
    scheduler_command,
    web_command,
    worker_command,
    write_nginx_conf,
)
from scripts.stack.processes import ROOT

VAR = ROOT / "var"


def supervised(
    pidfile: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    wait_for: Path | None = None,
) -> str:
    """A Procfile command: command under scripts/supervise.py, its current pid in pidfile."""
    prefix = ["env", *(f"{name}={value}" for name, value in env.items())] if env else []
    options = ["--pidfile", pidfile] + (["--wait-for", str(wait_for)] if wait_for else [])
    return shlex.join([*prefix, "python", "scripts/supervise.py", *options, "--", *command])


def procfile_lines(args: argparse.Namespace, redis_socket: Path | None) -> dict[str, str]:
    """Process name -> command of every process but nginx."""
    lines = {}
    if redis_socket:
        # Supervised like the instances: honcho stops everything when one process ends, so a
        # Redis that dies must come back on its own rather than take the stack down.
        lines["redis"] = supervised("var/redis.pid", redis_command(redis_socket, VAR / "redis"))
    for i, port in enumerate(instance_ports(args), start=1):
        # Each instance keeps its Prometheus files in its own directory (emptied at its start);
        # kill -HUP var/web$i.pid reloads it gracefully.
        lines[f"web{i}"] = supervised(
            f"var/web{i}.pid",
            web_command(port, python="python"),
            env={"PROMETHEUS_MULTIPROC_DIR": str(VAR / "metrics" / f"web{i}")},
        )
    for i in range(1, args.workers + 1):
        lines[f"worker{i}"] = supervised(
            f"var/worker{i}.pid",
            worker_command(),
            env={
                "PROMETHEUS_MULTIPROC_DIR": str(VAR / "metrics" / f"worker{i}"),
                "WORKER_METRICS_PORT": str(args.worker_metrics_base_port + i - 1),
            },
            # The workers connect at once; redis-server starts alongside them.
            wait_for=redis_socket,
        )
    # One scheduler per site (RQ's cron): the cleanup commands and the scoring schedules.
    lines["scheduler"] = supervised(
        "var/scheduler.pid", scheduler_command(python="python"), wait_for=redis_socket
    )
    return lines


def instance_ports(args: argparse.Namespace) -> list[int]:
    """The web instances' ports: base-port and up."""
    return [args.base_port + i for i in range(args.instances)]


def banner(args: argparse.Namespace, admin_info: str) -> str:
    """What scripts/run prints before starting."""
    ports = " ".join(str(port) for port in instance_ports(args))
    metrics = " ".join(
        f"http://127.0.0.1:{args.worker_metrics_base_port + i}/metrics" for i in range(args.workers)
    )
    return f"""
Modelport is starting (Ctrl-C stops it):
  admin     http://127.0.0.1:{args.port}/admin/
  API       http://127.0.0.1:{args.port}/api/v1/models/
  instances {ports} (gunicorn), {args.workers} RQ worker(s), Redis {os.environ["REDIS_URL"]}
  metrics   http://127.0.0.1:<instance port>/metrics, {metrics}
  monitor   http://127.0.0.1:{args.port}/monitoring/ (staff)
{admin_info}
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--port", type=int, required=True, help="nginx's")
    parser.add_argument("--instances", type=int, required=True, help="gunicorn instances")
    parser.add_argument("--base-port", type=int, required=True, help="the first instance's")
    parser.add_argument("--workers", type=int, required=True, help="RQ workers")
    parser.add_argument("--worker-metrics-base-port", type=int, required=True)
    parser.add_argument("--admin-info", default="", help="printed with the URLs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the Procfile and nginx.conf, then run honcho in place of this process."""
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    (VAR / "nginx").mkdir(parents=True, exist_ok=True)
    redis_socket = None
    if not os.environ.get("REDIS_URL"):
        redis_socket = VAR / "redis.sock"
        (VAR / "redis").mkdir(exist_ok=True)
        redis_socket.unlink(missing_ok=True)
        os.environ["REDIS_URL"] = f"unix://{redis_socket}?db=0"
    lines = procfile_lines(args, redis_socket)
    # The monitoring page shows each instance's /readyz.
    os.environ["MONITORED_INSTANCES"] = os.environ.get("MONITORED_INSTANCES") or ",".join(
        f"http://127.0.0.1:{port}" for port in instance_ports(args)
    )
    # nginx takes its static root and body limit from the Django settings (same env vars).
    command = nginx_command(
        write_nginx_conf(VAR / "nginx", listen_port=args.port, upstream_ports=instance_ports(args))
    )
    checked = subprocess.run([*command, "-t", "-q"], cwd=ROOT)
    if checked.returncode:
        return checked.returncode
    lines["nginx"] = supervised("var/nginx.pid", command)
    procfile = VAR / "Procfile"
    procfile.write_text("".join(f"{name}: {line}\n" for name, line in lines.items()))

    print(banner(args, args.admin_info), flush=True)
    # The environment is already complete: don't let honcho read .env over it.
    honcho = ["honcho", "start", "--env", "/dev/null", "--procfile", str(procfile)]
    os.execvp("honcho", [*honcho, "--app-root", str(ROOT)])


if __name__ == "__main__":
    sys.exit(main())
