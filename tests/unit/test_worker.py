"""The RQ worker survives a Redis that goes away (RQ's own loop quits on most of its Redis calls):
each step that talks to Redis logs and goes on, and the wait for a job retries until Redis is back
on the same socket, as a supervisor would restart it. It reports the peak memory of every work
horse it reaps."""

import logging
import subprocess
import threading

import pytest
from prometheus_client import REGISTRY
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from core.metrics import MIB
from predictions.worker import ModelportWorker, read_horse_peaks
from scripts.stack.commands import redis_command
from scripts.stack.processes import wait_for_path


class RedisOnSocket:
    def __init__(self, directory):
        self.directory = directory
        self.socket_path = directory / "redis.sock"
        self.process = None

    def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)  # a killed server leaves its socket behind
        command = redis_command(self.socket_path, self.directory)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for_path(self.socket_path, process=self.process, timeout_seconds=10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisOnSocket(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def worker_and_queue(redis_server):
    connection = Redis(
        unix_socket_path=str(redis_server.socket_path),
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    return ModelportWorker([queue], connection=connection, serializer=JSONSerializer), queue


def test_steps_outside_the_wait_carry_on_when_redis_is_gone(redis_server, worker_and_queue, caplog):
    worker, queue = worker_and_queue
    job = queue.enqueue("predictions.tasks.plan_job", "x")
    redis_server.kill()
    worker.heartbeat()
    worker.check_for_suspension(burst=False)
    worker.run_maintenance_tasks()
    worker.execute_job(job, queue)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Redis did not answer" in message for message in messages) == 3
    assert any(f"Redis went away during job {job.id}" in message for message in messages)


class RetrySeen(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record):
        if "retrying" in record.getMessage():
            self.seen.set()


def test_the_wait_for_a_job_retries_until_redis_is_back(redis_server, worker_and_queue):
    worker, queue = worker_and_queue
    redis_server.kill()
    retry_seen = RetrySeen()
    logging.getLogger("predictions.worker").addHandler(retry_seen)
    enqueued = []

    def restart_redis_once_the_worker_retries():
        assert retry_seen.seen.wait(timeout=30)
        redis_server.start()
        enqueued.append(queue.enqueue("predictions.tasks.plan_job", "x"))

    restarter = threading.Thread(target=restart_redis_once_the_worker_retries)
    restarter.start()
    try:
        job, _ = worker.dequeue_job_and_maintain_ttl(timeout=5)
    finally:
        restarter.join()
        logging.getLogger("predictions.worker").removeHandler(retry_seen)
    assert job.id == enqueued[0].id


ALLOCATED_MIB = 64


def allocate(mib: int) -> int:
    """An RQ job that touches `mib` MiB (every page) and returns their size."""
    block = bytearray(mib * MIB)
    block[::4096] = b"x" * len(block[::4096])
    return len(block)


def horse_peaks_observed(task: str) -> float:
    return REGISTRY.get_sample_value("modelport_rq_horse_peak_rss_bytes_count", {"task": task}) or 0


def test_the_peak_of_each_horse_is_logged_and_observed(worker_and_queue, caplog):
    worker, queue = worker_and_queue
    before = horse_peaks_observed("allocate")
    job = queue.enqueue("tests.unit.test_worker.allocate", ALLOCATED_MIB)
    with caplog.at_level(logging.INFO, logger="predictions.worker"):
        worker.execute_job(job, queue)
    assert job.get_status() == "finished"
    [(_, rq_job_id, peak)] = read_horse_peaks(caplog.text)
    assert rq_job_id == job.id
    assert peak >= ALLOCATED_MIB * MIB  # every page the horse touched, however briefly
    assert horse_peaks_observed("allocate") == before + 1


def test_read_horse_peaks_reads_text_and_json_lines():
    log = (
        "2026-01-01 INFO predictions.worker [-] work horse 11 of j-chunk-0 exited: "
        "peak RSS 120.5 MiB\n"
        "2026-01-01 INFO rq.worker [-] Job OK (j-chunk-0)\n"
        '{"level": "INFO", "message": "work horse 12 of j-finish exited: peak RSS 80.0 MiB"}\n'
    )
    assert read_horse_peaks(log) == [
        (11, "j-chunk-0", round(120.5 * MIB)),
        (12, "j-finish", 80 * MIB),
    ]
