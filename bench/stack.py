"""The benchmarks' own stack: redis, gunicorn instances and nginx on free ports, in a temp dir.

Started the way scripts/run does (project/gunicorn.conf.py with WEB_WORKERS=1,
scripts/render_nginx.py), against the normal database that scripts/setup prepared. Every process
is started in its own session and stopped by PID (then its process group), on errors and on
Ctrl-C too. bench/run.py (the prediction API) and bench/jobs.py (background jobs) use it.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "house-prices"  # the demo model scripts/setup registers; its rows come from demo.py
WEB_INSTANCES = 2
STARTUP_SECONDS = 90
# Warn when other processes keep this many CPUs busy before starting or while measuring.
BUSY_CPUS_WARNING = 0.25
STOP_SECONDS = 15


# --- Set-up -----------------------------------------------------------------------------------


def setup_django() -> None:
    """One BLAS/OpenMP thread (before numpy loads: the in-process figures are for one thread),
    then Django with the project's settings."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def admin_token() -> str | None:
    """A new API token of the admin user scripts/setup created; None when there is no such user."""
    from django.contrib.auth import get_user_model

    from core.authentication import create_token

    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        print(f"bench: no user {username!r}; run ./scripts/setup first.", file=sys.stderr)
        return None
    return create_token(user)[1]


def stack_env() -> dict:
    """The environment of every process of the stack: ours (after setup_django), one web worker
    per instance unless WEB_WORKERS says otherwise."""
    env = {
        **os.environ,
        "WEB_WORKERS": os.environ.get("WEB_WORKERS", "1"),
        # The figures are for scoring: the bench sends the same rows again and again.
        "PREDICTION_CACHE_ENABLED": os.environ.get("PREDICTION_CACHE_ENABLED", "false"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # project.wsgi and manage.py set it
    return env


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C, through the finally blocks that stop it."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)


def ignore_signals() -> None:
    """While stopping: a second Ctrl-C must not cut the clean-up short."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


# --- Processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(method: str, url: str, *, body: bytes | None = None, headers=None):
    """(status, body) of one request on a fresh connection."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path or "/", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Stack:
    """The processes this run started, their logs, and how to stop them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir()
        self.processes: dict[str, subprocess.Popen] = {}
        self.instance_urls: list[str] = []  # each gunicorn instance's base URL, web1 first

    def start(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, not them: we stop them in order
            )
        self.processes[name] = process
        return process

    def worker_boots(self) -> int:
        """Gunicorn workers booted so far, all instances (more than one each: max_requests)."""
        return sum(
            path.read_text(errors="replace").count("Booting worker with pid")
            for path in self.log_dir.glob("web*.log")
        )

    def log_tails(self, lines: int = 25) -> str:
        tails = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"----- {path.name} -----\n" + "\n".join(text))
        return "\n".join(tails)

    def wait_until_healthy(self, url: str, name: str, deadline: float) -> None:
        """Poll GET url until it answers 200; fail when the process dies or time runs out."""
        process = self.processes[name]
        last_error = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"{name} exited with status {process.returncode}"
                break
            try:
                status, body = http_request("GET", url)
                if status == 200:
                    return
                last_error = f"status {status}: {body[:200]!r}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not become healthy ({last_error}).\n{self.log_tails()}")

    def stop(self) -> None:
        """SIGTERM every process (nginx first), wait, then SIGKILL its group if it lingers."""
        _stop(list(reversed(self.processes.values())))

    def stop_process(self, name: str) -> None:
        """Stop one process of the stack the same way (its log stays)."""
        _stop([self.processes.pop(name)])

    def copy_logs(self, target: Path) -> None:
        """Copy the processes' logs and nginx's to `target`."""
        shutil.copytree(self.log_dir, target, dirs_exist_ok=True)
        nginx_logs = self.workdir / "nginx" / "logs"
        if nginx_logs.is_dir():
            shutil.copytree(nginx_logs, target / "nginx", dirs_exist_ok=True)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # Its own session, so its group holds only what it started (gunicorn's workers,
            # an RQ worker's work horse).
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            # A master that died first may leave orphans in its group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_stack(stack: Stack, settings, env: dict, *, own_redis: bool = False) -> str:
    """Start redis (unless env has REDIS_URL and not `own_redis`), the gunicorn instances and
    nginx; set env["REDIS_URL"] to the Redis they use and return nginx's base URL."""
    from scripts.render_nginx import prepare_prefix, render_nginx

    if own_redis or not env.get("REDIS_URL"):
        redis_dir = stack.workdir / "redis"
        redis_dir.mkdir()
        redis_socket = redis_dir / "redis.sock"
        redis_bin = shutil.which("redis-server") or "redis-server"
        stack.start(
            "redis",
            [redis_bin, "--port", "0", "--unixsocket", str(redis_socket)]
            + ["--unixsocketperm", "700", "--dir", str(redis_dir), "--save", "", "--appendonly"]
            + ["no"],
            env,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not redis_socket.exists():
            if stack.processes["redis"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start.\n{stack.log_tails()}")
            time.sleep(0.05)
        env["REDIS_URL"] = f"unix://{redis_socket}?db=0"

    web_ports = [free_port() for _ in range(WEB_INSTANCES)]
    nginx_port = free_port()
    for i, port in enumerate(web_ports, start=1):
        metrics_dir = stack.workdir / "metrics" / f"web{i}"  # as scripts/run: one per instance
        stack.start(
            f"web{i}",
            [sys.executable, "-m", "gunicorn", "-c", "project/gunicorn.conf.py"]
            + ["project.wsgi:application", "--bind", f"127.0.0.1:{port}"],
            {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        )

    nginx_prefix = stack.workdir / "nginx"
    prepare_prefix(nginx_prefix)
    nginx_conf = nginx_prefix / "nginx.conf"
    nginx_conf.write_text(
        render_nginx(
            listen_port=nginx_port,
            upstream_ports=web_ports,
            prefix=nginx_prefix,
            static_root=Path(settings.STATIC_ROOT),
            max_body_bytes=settings.MAX_UPLOAD_BYTES,
            metrics_allowed_networks=settings.METRICS_ALLOWED_NETWORKS,
            web_timeout_seconds=settings.WEB_TIMEOUT_SECONDS,
            upstream_header=True,  # the tests and figures tell the instances apart by it
        )
    )
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx_bin is None:
        raise RuntimeError("nginx is not installed; run ./scripts/setup.")
    error_log = nginx_prefix / "logs" / "error.log"
    stack.start(
        "nginx",
        [nginx_bin, "-p", str(nginx_prefix), "-c", str(nginx_conf), "-e", str(error_log)],
        env,
    )

    deadline = time.monotonic() + STARTUP_SECONDS
    for i, port in enumerate(web_ports, start=1):
        stack.wait_until_healthy(f"http://127.0.0.1:{port}/healthz", f"web{i}", deadline)
    url = f"http://127.0.0.1:{nginx_port}"
    stack.wait_until_healthy(f"{url}/healthz", "nginx", deadline)
    stack.instance_urls = [f"http://127.0.0.1:{port}" for port in web_ports]
    return url


# --- CPU used by others -----------------------------------------------------------------------


class CpuMeter:
    """How much CPU the rest of the machine took while we measured (Linux /proc; else None).

    Busy time of the whole machine minus that of this process and its descendants (the stack,
    wrk, and the children they already reaped), in CPUs: 1.0 is one core kept busy.
    """

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")

    def _machine(self) -> float:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:9]]
        # user nice system idle iowait irq softirq steal: idle and iowait are free; irq and
        # softirq are mostly our own loopback traffic, which no process is charged with.
        return (sum(values) - sum(values[3:7])) / self.tick

    def _ours(self) -> float:
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue  # gone meanwhile
            fields = text[text.rindex(")") + 2 :].split()
            pid = int(entry.name)
            children.setdefault(int(fields[1]), []).append(pid)
            ticks[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += ticks.get(pid, 0)
            todo += children.get(pid, [])
        return total / self.tick

    def snapshot(self) -> tuple[float, float, float] | None:
        try:
            return time.monotonic(), self._machine(), self._ours()
        except (OSError, ValueError, IndexError):
            return None

    def other_cpus(self, before) -> float | None:
        """CPUs' worth of time used by other processes since snapshot `before`."""
        after = self.snapshot()
        if before is None or after is None or after[0] <= before[0]:
            return None
        other = (after[1] - before[1]) - (after[2] - before[2])
        return max(0.0, other / (after[0] - before[0]))
