"""One app instance under granian (WEB_SERVER=granian): what project/gunicorn.conf.py is for
gunicorn, as a launcher, since granian reads no config file.

    python -m project.granian_server --bind 127.0.0.1:8001

The same knobs as gunicorn's (.env.example): WEB_WORKERS processes of WEB_THREADS threads each.
Recycling is by age rather than by request count: granian replaces a worker older than
WEB_MAX_LIFETIME_SECONDS (0: never; at least 60), successor first. granian's own hand-off waits
a fixed time between starting the new worker and stopping the old one, shorter than a worker
takes to load Django and the models on a busy machine, and an instance whose workers have all
stopped closes its port. So `ReadyServer` waits, as each worker starts, until the worker says
it is ready (project/granian_app.py touches a file named after its pid, in a directory of this
instance's, once it has loaded everything), at most WEB_BOOT_TIMEOUT_SECONDS; only then is the
old one stopped, after WEB_RECYCLE_HANDOFF_SECONDS more (for its server to take connections).
The old one finishes the requests it holds. SIGHUP replaces every worker the same way (a
graceful reload). A worker that dies is replaced. The per-worker set-up (one BLAS thread, a
metrics slot, the models loaded, the long-lived objects frozen) is project/granian_app.py's,
done as the worker imports the app.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent
APP = "project.granian_app:application"
# Access lines like gunicorn's (project/gunicorn.conf.py). granian's atoms read request headers
# only: the request id is the X-Request-ID nginx sends (core/logs.py reads it as `_h0`).
ACCESS_FORMAT = (
    '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms '
    "rid=%(header{x-request-id})s"
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not an integer.") from None


def log_config(log_format: str) -> dict:
    """granian's own lines (`_granian`, `granian.access`) as text, or as JSON objects like the
    app's (core/logs.py) with LOG_FORMAT=json."""
    formatter = (
        {"()": "core.logs.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "_granian": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


READY_DIR_VARIABLE = "MODELPORT_READY_DIR"  # read by project/granian_app.py


def wait_until_ready(worker, ready_dir: Path, timeout_seconds: float) -> None:
    """Until the worker has touched its file in ready_dir, has died, or the time is up."""
    marker = ready_dir / str(worker.inner.pid)
    deadline = time.monotonic() + timeout_seconds
    while not marker.exists() and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    marker.unlink(missing_ok=True)


def server(host: str, port: int):
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server.mp import MPServer

    ready_dir = Path(os.environ[READY_DIR_VARIABLE])
    boot_timeout = _env_int("WEB_BOOT_TIMEOUT_SECONDS", 60)

    class ReadyServer(MPServer):
        """granian's server, whose workers' `start` returns once the worker is ready."""

        def _spawn_worker(self, idx, target, callback_loader):
            worker = super()._spawn_worker(idx, target, callback_loader)
            start = worker.start

            def start_and_wait() -> None:
                start()
                wait_until_ready(worker, ready_dir, boot_timeout)

            worker.start = start_and_wait
            return worker

    lifetime = _env_int("WEB_MAX_LIFETIME_SECONDS", 3600)
    if 0 < lifetime < 60:
        raise SystemExit("WEB_MAX_LIFETIME_SECONDS is 0 (never) or at least 60.")
    keepalive_ms = _env_int("WEB_KEEPALIVE_SECONDS", 75) * 1000
    return ReadyServer(
        APP,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=_env_int("WEB_WORKERS", 1),
        blocking_threads=_env_int("WEB_THREADS", 4),
        http=HTTPModes.http1,
        # Longer than nginx's upstream keepalive_timeout (60 s): nginx, not the server, closes
        # idle connections, so a request is never sent on a connection being closed.
        http1_settings=HTTP1Settings(header_read_timeout=keepalive_ms, keep_alive=True),
        websockets=False,
        log_dictconfig=log_config(os.environ.get("LOG_FORMAT", "text").strip().lower()),
        log_access=True,
        log_access_format=ACCESS_FORMAT,
        respawn_failed_workers=True,
        respawn_interval=float(_env_int("WEB_RECYCLE_HANDOFF_SECONDS", 1)),
        workers_lifetime=lifetime or None,
        workers_kill_timeout=30,
        working_dir=ROOT,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    # .env, as the settings read it (the environment wins), as gunicorn.conf.py does.
    environ.Env.read_env(ROOT / ".env", overwrite=False)
    # Prometheus multiprocess mode (core/metrics.py): the instance's directory, emptied at its
    # start; its workers take slots in it (project/granian_app.py).
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir, exist_ok=True)
    # Removed by this process only (a TemporaryDirectory's exit handler would run in the forked
    # workers too: project/granian_app.py runs the exit handlers of a worker).
    ready_dir = tempfile.mkdtemp(prefix="modelport-web-ready-")
    os.environ[READY_DIR_VARIABLE] = ready_dir  # the workers inherit it
    try:
        server(host, int(port)).serve()
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
