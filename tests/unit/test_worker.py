"""The RQ worker survives a Redis that goes away (RQ's own loop quits on most of its Redis calls):
each step that talks to Redis logs and goes on, and the wait for a job retries until Redis is back
on the same socket, as a supervisor would restart it."""

import logging
import subprocess
import threading

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from predictions.worker import ModelportWorker
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
