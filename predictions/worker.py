"""The RQ worker class: loads the default models once, before it forks work horses, and
serves the worker's Prometheus metrics.

RQ runs every job in a freshly forked horse, so a model loaded inside a job is loaded again by
the next one. Loaded in the worker itself, it is inherited by every horse (copy-on-write).
"""

import gc
import logging

from django.conf import settings
from rq import Worker

from modelregistry import services as registry_services

from . import metrics

logger = logging.getLogger(__name__)
HORSE = "horse"


class ModelportWorker(Worker):
    def work(self, *args, **kwargs):
        if settings.WORKER_METRICS_PORT:
            if metrics.MULTIPROCESS_DIR:
                metrics.serve_worker_metrics(
                    port=settings.WORKER_METRICS_PORT, address=settings.WORKER_METRICS_ADDRESS
                )
            else:
                logger.warning(
                    "WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: the work "
                    "horses' metrics would be lost, so none are served (use scripts/worker)."
                )
        registry_services.warm_defaults()
        # Keep the garbage collector of each horse off the inherited objects: scanning them
        # would write to their pages and copy them all (copy-on-write) in every horse.
        gc.freeze()
        return super().work(*args, **kwargs)

    def main_work_horse(self, job, queue):
        # One horse at a time: each continues the previous one's metric files.
        metrics.set_process_name(HORSE)
        return super().main_work_horse(job, queue)

    def monitor_work_horse(self, job, queue):
        try:
            return super().monitor_work_horse(job, queue)
        finally:
            metrics.mark_process_dead(HORSE)
