"""The one launcher of the stack: redis-server, gunicorn web instances, RQ workers and nginx.

bench/ and the e2e fixtures (tests/e2e/conftest.py) start a Stack on free ports in a directory
of their own; scripts/run writes its Procfile with `python -m scripts.stack.run` (the same
commands, each under scripts/supervise.py, which starts and cleans up through
scripts/stack/processes.py):

    stack = Stack(workdir, env)
    ports = stack.start_instances(2)
    stack.start_workers(1)
    stack.start_nginx(ports, upstream_header=True)
    stack.wait_ready()
    ...
    stack.stop()

Every process runs in its own session (a Ctrl-C reaches us, not it) and is stopped by PID, then
by process group, which also ends what a leader that died first left behind.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

from scripts.stack.commands import (
    ACCESS_LOGGERS,
    database_url,
    nginx_binary,
    nginx_command,
    redis_command,
    web_command,
    web_server,
    worker_command,
    worker_starts,
    write_nginx_conf,
)
from scripts.stack.processes import (
    STARTUP_SECONDS,
    Response,
    StackError,
    free_port,
    http_request,
    kill_group,
    launch,
    log_tails,
    running,
    stop_processes,
    wait_for_path,
    wait_for_workers,
    wait_ready,
)

__all__ = [
    "ACCESS_LOGGERS",
    "STARTUP_SECONDS",
    "Response",
    "Stack",
    "StackError",
    "database_url",
    "free_port",
    "http_request",
    "kill_group",
    "launch",
    "log_tails",
    "nginx_binary",
    "nginx_command",
    "redis_command",
    "running",
    "stop_processes",
    "wait_for_path",
    "wait_for_workers",
    "wait_ready",
    "web_command",
    "web_server",
    "worker_starts",
    "worker_command",
    "write_nginx_conf",
]


class Stack:
    """The processes started together, where their logs are, how to reach and stop them."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = Path(workdir)
        self.env = env  # every process's; start_redis() sets REDIS_URL in it
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}  # in start order
        self.instance_urls: list[str] = []  # each web instance's base URL, web1 first
        self.metrics_dirs: dict[str, Path] = {}  # PROMETHEUS_MULTIPROC_DIR of each process
        self.worker_metrics_urls: dict[str, str] = {}
        self.nginx_prefix = self.workdir / "nginx"
        self.nginx_conf = self.nginx_prefix / "nginx.conf"
        self.url = ""  # nginx's base URL
        self.max_body_bytes = 0  # nginx's client_max_body_size
        self._health_urls: dict[str, str] = {}  # what wait_ready() polls, by process name
        self._workers: list[str] = []

    def launch(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start one process of the stack, output in log_dir/name.log."""
        process = launch(name, command, env=self.env if env is None else env, log_dir=self.log_dir)
        self.processes[name] = process
        return process

    def start_redis(self) -> str:
        """A redis-server of its own on a unix socket; waits for it, sets and returns REDIS_URL."""
        data_dir = self.workdir / "redis"
        data_dir.mkdir(exist_ok=True)
        socket_path = data_dir / "redis.sock"
        socket_path.unlink(missing_ok=True)  # a killed server leaves it behind
        process = self.launch("redis", redis_command(socket_path, data_dir))
        wait_for_path(
            socket_path, process=process, timeout_seconds=STARTUP_SECONDS, log_dir=self.log_dir
        )
        self.env["REDIS_URL"] = f"unix://{socket_path}?db=0"
        return self.env["REDIS_URL"]

    def start_instances(self, count: int, *, ports: list[int] | None = None) -> list[int]:
        """Start count web instances (web1, ...) on ports (default: free ones); returns the
        ports. Each keeps its Prometheus files in a directory of its own."""
        ports = ports or [free_port() for _ in range(count)]
        if len(ports) != count:
            raise ValueError(f"{count} instances need {count} ports, not {ports}.")
        for port in ports:
            name = f"web{len(self.instance_urls) + 1}"
            self.metrics_dirs[name] = self.workdir / "metrics" / name
            env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dirs[name])}
            self.launch(name, web_command(port), env)
            self.instance_urls.append(f"http://127.0.0.1:{port}")
            self._health_urls[name] = f"http://127.0.0.1:{port}/healthz"
        return ports

    def start_workers(
        self, count: int, *, names: list[str] | None = None, serve_metrics: bool = False
    ) -> dict[str, subprocess.Popen]:
        """Start count RQ workers (worker1, ... unless named) on the default queue; with
        serve_metrics each serves its metrics on a free port (worker_metrics_urls)."""
        names = names or [f"worker{len(self._workers) + i}" for i in range(1, count + 1)]
        if len(names) != count:
            raise ValueError(f"{count} workers need {count} names, not {names}.")
        started = {}
        for name in names:
            self.metrics_dirs[name] = self.workdir / "metrics" / name
            env = {
                **self.env,
                "PYTHON": sys.executable,
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dirs[name]),
            }
            if serve_metrics:
                port = free_port()
                env["WORKER_METRICS_PORT"] = str(port)
                self.worker_metrics_urls[name] = f"http://127.0.0.1:{port}/metrics"
            started[name] = self.launch(name, worker_command(), env)
            self._workers.append(name)
        return started

    def start_nginx(
        self,
        upstream_ports: list[int],
        port: int | None = None,
        *,
        upstream_header: bool = False,
        max_body_bytes: int | None = None,
    ) -> str:
        """nginx on port (default: a free one) in front of upstream_ports; returns its URL.
        upstream_header adds X-Upstream (tests and benchmarks only, see render_nginx)."""
        from django.conf import settings

        port = port or free_port()
        self.max_body_bytes = max_body_bytes or settings.MAX_UPLOAD_BYTES
        write_nginx_conf(
            self.nginx_prefix,
            listen_port=port,
            upstream_ports=upstream_ports,
            upstream_header=upstream_header,
            max_body_bytes=self.max_body_bytes,
        )
        self.launch("nginx", nginx_command(self.nginx_conf))
        self.url = f"http://127.0.0.1:{port}"
        self._health_urls["nginx"] = f"{self.url}/healthz"
        return self.url

    def wait_ready(self, timeout_seconds: float = STARTUP_SECONDS) -> None:
        """Wait until every instance and nginx answer /healthz and every worker has registered
        in Redis, all within timeout_seconds; StackError (with the logs' tails) otherwise."""
        deadline = time.monotonic() + timeout_seconds
        for name, url in self._health_urls.items():
            if name in self.processes:
                remaining = deadline - time.monotonic()
                wait_ready(
                    url,
                    process=self.processes[name],
                    timeout_seconds=remaining,
                    log_dir=self.log_dir,
                )
        workers = {name: self.processes[name] for name in self._workers if name in self.processes}
        if workers:
            wait_for_workers(
                workers,
                self.env["REDIS_URL"],
                timeout_seconds=deadline - time.monotonic(),
                log_dir=self.log_dir,
            )

    def request(self, method: str, path: str, *, base_url: str | None = None, **kwargs):
        """Send one request (through nginx unless base_url says otherwise)."""
        return http_request(method, (base_url or self.url) + path, **kwargs)

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every process log, for a failure message."""
        return log_tails(self.log_dir, lines)

    def stop_process(self, name: str) -> None:
        """Stop one process of the stack (its log stays)."""
        stop_processes([self.processes.pop(name)])

    def stop(self) -> None:
        """Stop every process this stack started, last started first."""
        processes = list(reversed(self.processes.values()))
        self.processes.clear()
        stop_processes(processes)

    def copy_logs(self, target: Path) -> None:
        """Copy the processes' logs and nginx's to target."""
        shutil.copytree(self.log_dir, target, dirs_exist_ok=True)
        nginx_logs = self.nginx_prefix / "logs"
        if nginx_logs.is_dir():
            shutil.copytree(nginx_logs, Path(target) / "nginx", dirs_exist_ok=True)
