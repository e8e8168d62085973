"""project.wsgi's application as each granian worker loads it (project/granian_server.py), set
up as project/gunicorn.conf.py's hooks set up a gunicorn worker, before the first request:

- one BLAS/OpenMP thread per process (before numpy is imported);
- a metrics slot (`web0`, `web1`, ...: core/metrics.py): the lowest one no live worker of the
  instance holds, held by an exclusive lock on a file beside the metrics for as long as the
  process lives (the kernel lets go when it dies, however it dies). A recycled worker's
  successor starts while it still runs, so it takes another slot, and the next successor takes
  the one let go. The live gauges a dead worker left in a slot are dropped before the slot is
  reused; its counters are continued;
- the default models loaded, then the long-lived objects frozen out of the garbage collector's
  sight (a full collection walking them stops every thread for about 120 ms);
- the exit handlers run when the worker stops: a granian worker is a multiprocessing child,
  which leaves by `os._exit` after multiprocessing's own finalizers, without Python's `atexit`
  handlers (the request log writes the rows it still holds in one); those it inherited from
  the launcher are dropped first;
- last, a file named after its pid in MODELPORT_READY_DIR: the launcher waits for it before it
  stops the worker this one replaces (project/granian_server.py).
"""

import atexit
import fcntl
import gc
import itertools
import multiprocessing.util
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
# The exit handlers this worker runs are its own: not those it inherited from the launcher.
atexit._clear()

_slot_lock = None  # the open lock file of this process's slot, kept open for its life


def claim_metrics_slot(metrics_dir: str) -> str:
    """Lock the lowest free slot of the directory and return its name."""
    global _slot_lock
    from prometheus_client import multiprocess

    for slot in itertools.count():
        name = f"web{slot}"
        handle = open(os.path.join(metrics_dir, f"{name}.lock"), "a")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _slot_lock = handle
        multiprocess.mark_process_dead(name, metrics_dir)  # what the last holder left live
        return name
    raise AssertionError("unreachable")


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Read by core.metrics when the app is imported, just below.
    os.environ["MODELPORT_METRICS_PROCESS"] = claim_metrics_slot(
        os.environ["PROMETHEUS_MULTIPROC_DIR"]
    )

from project.wsgi import application  # noqa: E402


def _warm() -> None:
    from modelregistry import services  # once project.wsgi has set Django up

    services.warm_defaults()
    gc.collect()
    gc.freeze()


_warm()
multiprocessing.util.Finalize(None, atexit._run_exitfuncs, exitpriority=0)
if os.environ.get("MODELPORT_READY_DIR"):  # ready: the launcher may stop the worker replaced
    open(os.path.join(os.environ["MODELPORT_READY_DIR"], str(os.getpid())), "w").close()  # noqa: SIM115

__all__ = ["application"]
