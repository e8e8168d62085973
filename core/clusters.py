"""Dask clusters that run this project's code: a local cluster or a scheduler's address, and a
worker plugin that sets Django up in every worker before it takes a task.

Nothing here imports Django's models: a worker unpickles the plugin before Django is set up.
A worker of a remote cluster (`dask worker ADDRESS`) needs what an RQ worker needs: this
project importable, the same settings (environment), the database and the artifact storage;
for s3:// datasets, the S3 service's variables too (S3_ENDPOINT_URL, AWS_*...: a worker opens
the bucket from its own settings). A local cluster's workers inherit this process's environment.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

CONNECT_TIMEOUT_SECONDS = 30


class DjangoSetup(WorkerPlugin):
    """Set Django up in a worker (once; a worker thread of this process finds it done)."""

    name = "modelport-django-setup"

    def setup(self, worker) -> None:
        import django
        from django.apps import apps

        if not apps.ready:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
            django.setup()


@contextmanager
def connect(
    *, scheduler: str = "", workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a local cluster of `workers` processes
    (one thread each, on 127.0.0.1, no dashboard) that inherit this environment plus `env`.
    The local cluster is stopped on leaving."""
    if scheduler:
        with Client(scheduler, timeout=CONNECT_TIMEOUT_SECONDS) as client:
            client.register_plugin(DjangoSetup())
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env=env or {},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(DjangoSetup())
        yield client
