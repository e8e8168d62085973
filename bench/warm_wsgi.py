"""project.wsgi's application, warmed as project/gunicorn.conf.py's post_worker_init does (the
default models loaded, the long-lived objects frozen out of the garbage collector's sight), for
the servers bench/webservers.py compares gunicorn with, which have no such hook."""

import gc
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from project.wsgi import application  # noqa: E402


def _warm() -> None:
    from modelregistry import services  # once project.wsgi has set Django up

    services.warm_defaults()
    gc.collect()
    gc.freeze()


_warm()

__all__ = ["application"]
