"""Gunicorn settings for one app instance; the knobs are env vars listed in .env.example.

scripts/run starts WEB_INSTANCES of these behind nginx, each with its own --bind.
"""

import itertools
import os
import shutil
import signal
from pathlib import Path

import environ
from gunicorn import glogging

# .env, as the settings read it (the environment wins), so these knobs and LOG_FORMAT are the
# same for gunicorn started by hand as under scripts/run.
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

# Before any worker imports numpy/scikit-learn: one BLAS/OpenMP thread per process, otherwise
# every worker of every instance starts a pool per core and they fight over the cores.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not an integer.") from None


# Threads rather than processes: a request spends most of its time in numpy, which releases
# the GIL, and each process holds its own model cache.
worker_class = "gthread"
workers = _env_int("WEB_WORKERS", 1)
threads = _env_int("WEB_THREADS", 4)
# Far above the slowest synchronous request (PREDICT_SYNC_MAX_ROWS or _BYTES: about a second);
# bigger inputs become background jobs, so only a hung worker reaches it.
timeout = _env_int("WEB_TIMEOUT_SECONDS", 120)
graceful_timeout = 30
# Longer than nginx's upstream keepalive_timeout (60 s): nginx, not gunicorn, closes idle
# connections, so a request is never sent on a connection gunicorn is closing.
keepalive = _env_int("WEB_KEEPALIVE_SECONDS", 75)

# Recycle a worker now and then (a guard against slow leaks, e.g. in native code); 0 turns it
# off. The jitter (up to half again) spreads the workers of all instances apart in time, and
# each worker's replacement is started before it stops (post_request, child_exit below): the
# new worker loads Django and the models while the old one still answers, so an instance never
# waits for a worker to boot.
max_requests = _env_int("WEB_MAX_REQUESTS", 50_000)
max_requests_jitter = max_requests // 2
# How many requests before its last a worker asks for its replacement: enough for the new one
# to boot (a few seconds) at several hundred requests per second.
_handoff_requests = max(1, _env_int("WEB_RECYCLE_HANDOFF_REQUESTS", max_requests // 10))

# The longest request line gunicorn takes (its default is 4094): nginx refuses longer than its
# 8 KB header buffers itself, in problem+json (uri_too_long), so a long GET predict query is
# never gunicorn's plain-text 400.
limit_request_line = 8190

# Several instances run on one machine and would share the default control socket path;
# nothing here uses gunicornc.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


class JsonLogger(glogging.Logger):
    """gunicorn's own lines (access and error) as JSON objects, like the app's (core/logs.py):
    an access line has the request id (the response's X-Request-ID), method, path, status and
    duration_ms."""

    def setup(self, cfg):
        super().setup(cfg)
        from core.logs import JsonFormatter  # gunicorn has put its --chdir on sys.path

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


# LOG_FORMAT=json|text (project/settings.py reads it too, for the app's own lines).
if os.environ.get("LOG_FORMAT", "text").strip().lower() == "json":
    logger_class = JsonLogger


# Prometheus multiprocess mode (core/metrics.py): each instance has its own
# PROMETHEUS_MULTIPROC_DIR, emptied when the instance starts. Each worker writes its values
# under a slot name (web0, web1, ...) that the worker replacing it takes over, so recycled
# workers continue the same files instead of leaving one set per pid behind.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server):
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
        os.makedirs(_metrics_dir, exist_ok=True)


def pre_fork(server, worker):
    taken = {getattr(other, "metrics_slot", None) for other in server.WORKERS.values()}
    worker.metrics_slot = next(slot for slot in itertools.count() if slot not in taken)


def post_fork(server, worker):
    # Read by core.metrics when the app is imported, right after this hook.
    os.environ["MODELPORT_METRICS_PROCESS"] = f"web{worker.metrics_slot}"


def post_request(worker, req, environ, resp):
    # In the worker: close to its last request, ask the arbiter for one more worker (SIGTTIN),
    # once; the arbiter takes the count back down when this one exits (child_exit). From then
    # on this worker keeps no connection alive (gthread closes a connection after its response
    # when max_keepalived is reached): nginx's pooled connections move to the successor instead
    # of waiting, once this worker stops reading them, until it has exited.
    if worker.max_requests - worker.nr <= _handoff_requests and not getattr(
        worker, "asked_for_successor", False
    ):
        worker.asked_for_successor = True
        worker.max_keepalived = 0
        os.kill(os.getppid(), signal.SIGTTIN)


def child_exit(server, worker):
    # In the arbiter: a worker that asked for its successor has one; keep the configured count.
    if server.num_workers > server.cfg.workers:
        server.num_workers -= 1
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(f"web{worker.metrics_slot}", _metrics_dir)


def post_worker_init(worker):
    """Load every default model before the worker takes requests, not on the first one, then
    move everything loaded so far out of the garbage collector's sight: Django, pandas,
    scikit-learn and the models are about 200,000 objects that live as long as the worker, and
    a full collection that walks them all stops every thread for about 120 ms (seen as p99)."""
    import gc

    from modelregistry import services

    services.warm_defaults()
    gc.collect()
    gc.freeze()
