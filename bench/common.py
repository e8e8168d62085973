"""What every benchmark shares: Django and the demo model, the stack (scripts/stack) in a temp dir,
signals, the CPU other processes take, the results table and the JSON file.

The stack is started the way scripts/run starts it (project/gunicorn.conf.py with WEB_WORKERS=1,
nginx rendered by scripts/render_nginx.py, with X-Upstream), on free ports, against the normal
database that scripts/setup prepared. Every process is stopped by PID (then its process group),
on errors and on Ctrl-C too.
"""

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
MODEL = "house-prices"  # the demo model scripts/setup registers; its rows come from demo.py
WEB_INSTANCES = 2
STARTUP_SECONDS = 90
# Warn when other processes keep this many CPUs busy before starting or while measuring.
BUSY_CPUS_WARNING = 0.25


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


def demo_model():
    """(version, predictor, feature names) of the demo model's default version."""
    from modelregistry import loader, selectors

    version = selectors.resolve_version(MODEL)
    names = [feature["name"] for feature in version.input_schema["features"]]
    return version, loader.get_predictor(version), names


def demo_rows(predictor, names: list[str], rows: int):
    """rows of the demo data (seed 2024) as the model takes them, and its predictions for them
    in this process: (frame, list of predictions)."""
    import numpy as np

    from modelregistry import demo

    frame = demo.house_prices_data(rows=rows, seed=2024)[names]
    return frame, np.asarray(predictor.predict(frame)).tolist()


def prepare(*, wrk: bool) -> tuple | None:
    """Django (after checking for wrk when it is needed), the admin's API token and the demo
    model: (token, version, predictor, feature names); None, after saying why, without them."""
    if wrk and shutil.which("wrk") is None:
        print("bench: wrk is missing; run ./scripts/bench (it installs wrk).", file=sys.stderr)
        return None
    setup_django()  # before numpy/scikit-learn load: the in-process figures are for one thread
    token = admin_token()
    if token is None:
        return None
    return (token, *demo_model())


# --- Signals ----------------------------------------------------------------------------------


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def ignore_signals() -> dict:
    """While stopping: a second Ctrl-C must not cut the clean-up short. Returns the handlers
    it replaced."""
    return {
        signum: signal.signal(signum, signal.SIG_IGN)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }


def run_measurement(measure: Callable[[], int], interrupted: str = "interrupted; stopping") -> int:
    """measure()'s exit status, with SIGTERM and SIGHUP ending it like Ctrl-C (130); a
    RuntimeError (a process that did not start, a wrong answer) is printed and gives 1."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    try:
        return measure()
    except KeyboardInterrupt:
        print(f"bench: {interrupted}.", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        ignore_signals()


# --- The stack --------------------------------------------------------------------------------


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


@contextlib.contextmanager
def temporary_stack(
    prefix: str, *, env: dict | None = None, keep_logs: Path | None = None
) -> Iterator[Stack]:
    """A Stack in a temp dir of its own (nothing started yet), its processes' environment
    stack_env() with env over it. On leaving, with signals ignored meanwhile: every process
    stopped, the logs copied to keep_logs, the temp dir removed."""
    stack = Stack(Path(tempfile.mkdtemp(prefix=prefix)), {**stack_env(), **(env or {})})
    try:
        yield stack
    finally:
        handlers = ignore_signals()
        try:
            stack.stop()
            if keep_logs:
                stack.copy_logs(keep_logs)
                print(f"bench: logs copied to {keep_logs}", file=sys.stderr)
            shutil.rmtree(stack.workdir, ignore_errors=True)
        finally:
            for signum, handler in handlers.items():  # another round may follow
                signal.signal(signum, handler)


def start_stack(stack: Stack, *, own_redis: bool = False, announce: bool = True) -> str:
    """Start redis (unless the env has REDIS_URL and not own_redis), the gunicorn instances and
    nginx (with X-Upstream); wait until they answer; return nginx's base URL."""
    if announce:
        print(f"bench: starting redis, {WEB_INSTANCES} gunicorn instances, nginx ...", flush=True)
    started = time.monotonic()
    if own_redis or not stack.env.get("REDIS_URL"):
        stack.start_redis()
    ports = stack.start_instances(WEB_INSTANCES)
    url = stack.start_nginx(ports, upstream_header=True)  # the figures tell instances apart
    stack.wait_ready(STARTUP_SECONDS)
    if announce:
        print(f"bench: ready at {url} in {time.monotonic() - started:.1f} s", flush=True)
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
        """(time, machine busy seconds, ours), or None without /proc."""
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

    def background(self) -> float | None:
        """CPUs other processes keep busy over one second before we start; warns when too many."""
        before = self.snapshot()
        time.sleep(1)  # the window measured, not a wait for something
        busy = self.other_cpus(before)
        if busy is not None and busy > BUSY_CPUS_WARNING:
            print(
                f"bench: warning: the machine is already busy ({busy:.1f} of {os.cpu_count()} "
                "CPUs in use before starting); the figures will be low and noisy.",
                file=sys.stderr,
            )
        return busy


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


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table: measured, in-process, their ratio, the target."""
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


def write_json(path: Path, results: dict) -> None:
    """Write the results as indented JSON (creating the directory) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nbench: results written to {path}")
