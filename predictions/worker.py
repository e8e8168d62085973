"""The RQ worker class: loads the default models once, before it forks work horses, and
serves the worker's Prometheus metrics (its process tree, the queues, jobs by status, and the
peak memory of each horse it reaped).

RQ runs every job in a freshly forked horse, so a model loaded inside a job is loaded again by
the next one. Loaded in the worker itself, it is inherited by every horse (copy-on-write).

Each horse's peak RSS comes from the kernel when the worker reaps it (wait4's rusage), so even a
horse that lives a few milliseconds is counted: a log line (read_horse_peaks() reads them back)
and the histogram modelport_rq_horse_peak_rss_bytes.

RQ's own loop retries a lost Redis only inside part of its wait for a job; a Redis error
anywhere else (finishing a job, a heartbeat, the suspension check, maintenance, setting the
worker's state) ends the worker. Ours carries on through those: the job in flight may be lost (its
status says so, see services.queue.is_alive), and the wait for the next job retries Redis, backing
off up to MAX_REDIS_WAIT_SECONDS, until it is back.
"""

import gc
import logging
import os
import re
import time

import django_rq
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError
from rq import Worker

from core import exposition, logs, metrics
from modelregistry import services as registry_services

from .models import JobStatus, PredictionJob
from .services.queue import LOG_CONTEXT_META

logger = logging.getLogger(__name__)
HORSE = "horse"
MAX_REDIS_WAIT_SECONDS = 10.0  # RQ's default is 60: back within seconds of Redis
HORSE_PEAK_LINE = re.compile(r"work horse (\d+) of (\S+) exited: peak RSS ([0-9.]+) MiB")


class ModelportWorker(Worker):
    max_connection_wait_time = MAX_REDIS_WAIT_SECONDS
    _horse_peak_rss_bytes = 0  # of the horse being monitored, once reaped

    def work(self, *args, **kwargs):
        if settings.WORKER_METRICS_PORT:
            if metrics.MULTIPROCESS_DIR:
                exposition.serve_metrics(
                    worker_registry(),
                    port=settings.WORKER_METRICS_PORT,
                    address=settings.WORKER_METRICS_ADDRESS,
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

    def execute_job(self, job, queue):
        try:
            return self._execute_job(job, queue)
        except RedisError as exc:
            logger.error("Redis went away during job %s; the worker carries on: %s", job.id, exc)

    def dequeue_job_and_maintain_ttl(self, *args, **kwargs):
        wait_seconds = 1.0
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(*args, **kwargs)
            except RedisError as exc:
                logger.error("Redis did not answer, retrying in %.0f s: %s", wait_seconds, exc)
                time.sleep(wait_seconds)  # a backoff, as RQ's own
                wait_seconds = min(wait_seconds * 2, MAX_REDIS_WAIT_SECONDS)

    def heartbeat(self, *args, **kwargs):
        try:
            return super().heartbeat(*args, **kwargs)
        except RedisError as exc:
            logger.warning("heartbeat not sent, Redis did not answer: %s", exc)

    def check_for_suspension(self, burst):
        try:
            return super().check_for_suspension(burst)
        except RedisError as exc:
            logger.warning("suspension not checked, Redis did not answer: %s", exc)

    def run_maintenance_tasks(self):
        try:
            return super().run_maintenance_tasks()
        except RedisError as exc:
            logger.warning("maintenance put off, Redis did not answer: %s", exc)

    def _execute_job(self, job, queue):
        # The worker's lines about the step and the horse's (forked inside) carry the context of
        # the request that queued the job, our job id and the step's RQ id.
        fields = dict(job.meta.get(LOG_CONTEXT_META) or {})
        if "job_id" not in fields and job.args:
            fields["job_id"] = job.args[0]  # every entry point takes our job id first
        fields["rq_job_id"] = job.id
        with logs.context(**fields):
            return super().execute_job(job, queue)

    def main_work_horse(self, job, queue):
        # One horse at a time: each continues the previous one's metric files.
        metrics.set_process_name(HORSE)
        return super().main_work_horse(job, queue)

    def monitor_work_horse(self, job, queue):
        horse_pid, self._horse_peak_rss_bytes = self.horse_pid, 0
        try:
            return super().monitor_work_horse(job, queue)
        finally:
            metrics.mark_process_dead(HORSE)
            self._report_horse_peak(job, horse_pid)

    def wait_for_horse(self):
        pid, status, rusage = super().wait_for_horse()
        if pid and rusage is not None:
            # ru_maxrss is in KiB (Linux). A forked child's count starts from its own pages, not
            # from its parent's peak; the pages it shares with the worker count, as in VmHWM.
            peak = rusage.ru_maxrss * 1024
            self._horse_peak_rss_bytes = max(self._horse_peak_rss_bytes, peak)
        return pid, status, rusage

    def _report_horse_peak(self, job, horse_pid: int) -> None:
        peak = self._horse_peak_rss_bytes
        if not peak:
            return  # not reaped here: the wait ended in an error
        logger.info(
            "work horse %d of %s exited: peak RSS %.1f MiB", horse_pid, job.id, peak / metrics.MIB
        )
        metrics.observe_horse_peak(task=job.func_name.rsplit(".", 1)[-1], rss_bytes=peak)


class QueueCollector:
    """Read at scrape time by the RQ workers' endpoint: jobs waiting in each RQ queue, live
    workers, and background jobs in the database by status. Every worker reports the same
    figures, so dashboards take the max over workers, not the sum."""

    def collect(self):
        try:
            depth = GaugeMetricFamily(
                "modelport_rq_queue_depth", "Jobs waiting in each RQ queue.", labels=["queue"]
            )
            for name in settings.RQ_QUEUES:
                depth.add_metric([name], django_rq.get_queue(name).count)
            workers = GaugeMetricFamily(
                "modelport_rq_workers",
                "RQ workers registered in Redis.",
                Worker.count(connection=django_rq.get_connection()),
            )
            yield from (depth, workers)
        except RedisError as exc:
            logger.warning("queue metrics left out, Redis did not answer: %s", exc)
        try:
            counts = dict(
                PredictionJob.objects.values_list("status").annotate(count=Count("pk")).order_by()
            )
            jobs = GaugeMetricFamily(
                "modelport_jobs", "Background jobs in the database, by status.", labels=["status"]
            )
            for status in JobStatus:
                jobs.add_metric([status.value], counts.get(status.value, 0))
            yield jobs
        except DatabaseError as exc:
            logger.warning("job metrics left out, the database did not answer: %s", exc)
        finally:
            connection.close()  # each scrape runs in a new thread of the metrics server


def read_horse_peaks(log_text: str) -> list[tuple[int, str, int]]:
    """(pid, RQ job id, peak RSS in bytes) of every horse a worker's log lines say it reaped, in
    order: what bench/jobs and the e2e tests read."""
    return [
        (int(pid), rq_job_id, round(float(mib) * metrics.MIB))
        for pid, rq_job_id, mib in HORSE_PEAK_LINE.findall(log_text)
    ]


def worker_registry() -> CollectorRegistry:
    """The RQ worker's endpoint: the worker and its horses, queue depth, jobs by status."""
    return exposition.registry(
        exposition.ProcessTreeCollector(os.getpid, ("worker", "horse")), QueueCollector()
    )
