"""One job of the jobs bench: start N RQ workers, submit the CSV, follow the job to its end
with /proc sampling, read the peak of every work horse from the workers' logs (each worker logs
a horse's wait4 ru_maxrss when it reaps it), and check the result against the in-process
predictions."""

import argparse
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.common import MODEL, STARTUP_SECONDS, WEB_INSTANCES, CpuMeter
from bench.jobs.client import download, post_file, wait_for_job
from bench.jobs.data import chunks_total
from bench.jobs.sampling import (
    MemorySampler,
    ProcessPeak,
    children,
    cpu_seconds,
    memory,
    reset_peak,
)
from scripts.stack import Stack

MODEL_LOADED = re.compile(r"loaded \S+ v\d+ in ([0-9.]+) s")


@dataclass
class Step:
    """One RQ job of a PredictionJob, as RQ recorded it."""

    name: str  # plan, chunk-N, finish
    worker: str  # our name for the RQ worker that ran it
    started: float  # time.time()
    ended: float

    @property
    def seconds(self) -> float:
        """How long it ran."""
        return self.ended - self.started


@dataclass
class JobRun:
    """What one job with `workers` RQ workers measured."""

    workers: int
    job_id: str = ""
    started_wall: float = 0.0  # time.time() at submit start
    instance: str = ""  # the gunicorn instance that received the upload (web1, web2)
    sent_seconds: float = 0.0  # until the client had sent the whole body (to nginx)
    submit_seconds: float = 0.0  # until the 202
    seconds: float = 0.0  # submit start -> status `succeeded` seen by polling
    finished_at_seconds: float | None = None  # submit start -> the job's finished_at
    polls: int = 0
    rows: int = 0
    rows_failed: int = 0
    input_bytes: int = 0
    web_rss_before: int = 0
    web_peak: int = 0
    web_peak_source: str = ""
    other_web_growth: int = 0
    web_cpu_seconds: float | None = None
    rq_cpu_seconds: float | None = None
    bench_cpu_seconds: float = 0.0  # this process: upload, polls, /proc sampling
    other_cpus: float | None = None
    processes: list | None = None  # ProcessPeak of the RQ workers and their children, sampled
    reaped: dict | None = None  # horse pid -> (step, peak RSS bytes), as its worker logged it
    steps: list | None = None
    model_loads: list | None = None  # seconds of each model load the workers logged
    max_abs_diff: float | None = None
    correct: bool = False
    problems: list | None = None

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second, end to end."""
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def web_growth(self) -> int:
        """How much the receiving gunicorn worker grew while receiving the upload."""
        return self.web_peak - self.web_rss_before

    def peak(self, horses: bool) -> int:
        """The highest peak of the RQ workers, or of their horses: as the workers logged them
        when they reaped them (every horse, to the page), else as sampled."""
        if horses and self.reaped:
            return max(peak for _, peak in self.reaped.values())
        chosen = [p.peak for p in self.processes or [] if p.is_horse == horses]
        return max(chosen, default=0)


def _timestamp(value) -> float | None:
    if not value:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def start_workers(stack: Stack, count: int) -> dict[str, int]:
    """Start count RQ workers (scripts/worker, as scripts/run starts them); wait until each has
    registered in Redis. Returns name -> PID."""
    names = [f"rq{i}of{count}" for i in range(1, count + 1)]
    started = stack.start_workers(count, names=names)
    stack.wait_ready(STARTUP_SECONDS)
    return {name: process.pid for name, process in started.items()}


def rq_steps(job_id: str, chunks: int, redis_url: str, worker_names: dict[int, str]) -> list:
    """The plan, chunk and finish RQ jobs of a job, with the worker that ran each."""
    import redis
    from rq import Worker
    from rq.job import Job
    from rq.serializers import JSONSerializer

    ids = [f"{job_id}-plan", *(f"{job_id}-chunk-{i}" for i in range(chunks)), f"{job_id}-finish"]
    connection = redis.Redis.from_url(redis_url)
    try:
        rq_names = {w.name: worker_names.get(w.pid, w.name) for w in Worker.all(connection)}
        fetched = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
    finally:
        connection.close()
    steps = []
    for rq_job in fetched:
        if rq_job is None or not rq_job.started_at or not rq_job.ended_at:
            continue
        steps.append(
            Step(
                name=rq_job.id[len(job_id) + 1 :],
                worker=rq_names.get(rq_job.worker_name, rq_job.worker_name or "?"),
                started=rq_job.started_at.timestamp(),
                ended=rq_job.ended_at.timestamp(),
            )
        )
    return steps


def label_horses(processes: list[ProcessPeak], steps: list[Step], margin: float) -> None:
    """Name the RQ job each sampled horse ran: the step of its worker its lifetime overlaps most."""
    roles = {p.pid: p.role for p in processes if p.parent == 0}
    for horse in processes:
        if not horse.is_horse:
            continue
        worker = roles.get(horse.parent, "")
        best, best_overlap = "", 0.0
        for step in steps:
            if step.worker != worker:
                continue
            overlap = min(step.ended, horse.last_seen + margin) - max(
                step.started, horse.first_seen - margin
            )
            if overlap > best_overlap:
                best, best_overlap = step.name, overlap
        horse.step = best or "?"


def reaped_horses(log_texts: list[str], job_id: str) -> dict[int, tuple[str, int]]:
    """The job's horses as the workers' logs say they reaped them: pid -> (step, peak RSS)."""
    from predictions.worker import read_horse_peaks

    prefix = f"{job_id}-"
    return {
        pid: (rq_id.removeprefix(prefix), peak)
        for text in log_texts
        for pid, rq_id, peak in read_horse_peaks(text)
        if rq_id.startswith(prefix)
    }


def mark_horses(processes: list[ProcessPeak], reaped: dict[int, tuple[str, int]]) -> None:
    """With the workers' logs: a child that is no horse is RQ's scheduler (--with-scheduler);
    a horse's step is the one its worker logged."""
    for process in processes:
        if process.parent != 0:
            process.is_horse = process.pid in reaped
            process.step = reaped[process.pid][0] if process.is_horse else "scheduler"


def worker_logs(stack: Stack, workers) -> list[str]:
    """The log of each RQ worker (its horses' lines included)."""
    return [(stack.log_dir / f"{name}.log").read_text(errors="replace") for name in workers]


def wait_for_reaped(stack: Stack, workers, job_id: str, seconds: float = 10) -> None:
    """After the job: wait until the workers have reaped every horse of it (and logged its peak),
    so that its CPU time is counted. The finish step is the last."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        steps = {step for step, _ in reaped_horses(worker_logs(stack, workers), job_id).values()}
        if "finish" in steps:
            return
        time.sleep(0.02)  # the polling interval of a condition wait


def web_workers(stack: Stack) -> dict[str, int]:
    """The gunicorn worker process of each instance: name (web1, ...) -> PID."""
    found = {}
    for i in range(1, WEB_INSTANCES + 1):
        pids = children(stack.processes[f"web{i}"].pid)
        if len(pids) != 1:
            raise RuntimeError(f"web{i} has {len(pids)} worker processes, expected 1.")
        found[f"web{i}"] = pids[0]
    return found


@dataclass
class Target:
    """What every job of the bench is sent to and checked against."""

    stack: Stack
    url: str  # nginx's base URL
    token: str
    csv_path: Path
    expected: object  # the in-process predictions
    args: argparse.Namespace
    created: list[str]  # the ids of the jobs submitted, deleted at the end


def run_job(target: Target, workers: dict[str, int]) -> JobRun:
    """Submit the CSV as a job, wait for it, check its result; everything measured on the way."""
    stack, sample_ms = target.stack, target.args.sample_ms
    run = JobRun(workers=len(workers), problems=[])
    webs = web_workers(stack)
    baseline = web_baseline(webs)
    rq_cpu = sum(cpu_seconds(pid) or 0 for pid in workers.values())
    meter = CpuMeter()
    cpu_before, bench_cpu = meter.snapshot(), time.process_time()
    with MemorySampler(dict(workers), sample_ms / 1000) as sampler:
        job, web_peaks, after = submit_and_wait(run, target, workers, webs)
    run.other_cpus = meter.other_cpus(cpu_before)
    run.bench_cpu_seconds = time.process_time() - bench_cpu
    run.rq_cpu_seconds = sum(cpu_seconds(pid) or 0 for pid in workers.values()) - rq_cpu
    record_web(run, webs, baseline, web_peaks, after, sample_ms)
    record_job(run, job)
    run.processes = list(sampler.seen.values())
    if job["status"] != "succeeded":
        run.problems.append(f"job {job['status']}: {job.get('failure_reason')}")
        return run
    record_steps(run, stack, workers, sample_ms / 1000)
    check_result(run, target, target.url + job["links"]["download_parquet"])
    run.correct = not run.problems
    return run


def web_baseline(webs: dict[str, int]) -> tuple[dict, bool, dict]:
    """Before the upload: each gunicorn worker's RSS, whether its VmHWM could be reset, and its
    CPU seconds."""
    before = {name: memory(pid)[0] for name, pid in webs.items()}
    reset = all(reset_peak(pid) for pid in webs.values())
    return before, reset, {name: cpu_seconds(pid) for name, pid in webs.items()}


def submit_and_wait(run: JobRun, target: Target, workers: dict[str, int], webs: dict[str, int]):
    """Upload the CSV (the web workers sampled meanwhile; the job's id goes to target.created),
    then poll until the job has finished. Returns (job, the web workers' peaks, their memory
    right after the upload)."""
    stack, url, token, args = target.stack, target.url, target.token, target.args
    deadline = time.monotonic() + args.deadline
    with MemorySampler(webs, args.sample_ms / 1000) as web_sampler:
        run.started_wall, started = time.time(), time.perf_counter()
        status, headers, body, run.sent_seconds = post_file(
            f"{url}/api/v1/models/{MODEL}/jobs", token, target.csv_path, timeout=args.deadline
        )
        run.submit_seconds = time.perf_counter() - started
        web_peaks = web_sampler.stop()
        after = {name: memory(pid) for name, pid in webs.items()}
    if status != 202:
        raise RuntimeError(f"submitting the job: status {status}: {body[:500]!r}")
    job = json.loads(body)
    run.job_id = job["id"]
    target.created.append(job["id"])
    ports = {urllib.parse.urlsplit(u).port: f"web{i}" for i, u in enumerate(stack.instance_urls, 1)}
    upstream = headers.get("X-Upstream", "")
    run.instance = ports.get(int(upstream.rsplit(":", 1)[-1] or 0), "")
    job, run.polls = wait_for_job(url + job["url"], token, deadline, workers, stack, args.poll)
    run.seconds = time.perf_counter() - started
    wait_for_reaped(stack, workers, run.job_id)
    return job, web_peaks, after


def record_web(run: JobRun, webs, baseline, web_peaks, after, sample_ms: float) -> None:
    """The gunicorn worker that received the upload: its peak while receiving, over its RSS
    before; how much the other one grew; the receiver's CPU time."""
    before, reset, web_cpu = baseline
    receiver = run.instance or max(webs, key=lambda name: web_peaks[webs[name]].peak)
    pid = webs[receiver]
    run.web_rss_before = before[receiver]
    sampled = web_peaks[pid].peak_rss
    if reset and after[receiver]:
        run.web_peak = max(after[receiver][1], sampled)
        run.web_peak_source = "VmHWM (reset before the upload)"
    else:
        run.web_peak = sampled
        run.web_peak_source = f"VmRSS sampled every {sample_ms:g} ms"
    others = [name for name in webs if name != receiver]
    run.other_web_growth = max(
        (web_peaks[webs[name]].peak_rss - before[name] for name in others), default=0
    )
    if web_cpu[receiver] is not None:
        run.web_cpu_seconds = (cpu_seconds(pid) or 0) - web_cpu[receiver]


def record_job(run: JobRun, job: dict) -> None:
    """What the finished job says about itself."""
    run.rows, run.rows_failed = job["rows_done"], job["rows_failed"]
    run.input_bytes = job["input_bytes"]
    finished_at = _timestamp(job.get("finished_at"))
    if finished_at:
        run.finished_at_seconds = finished_at - run.started_wall


def record_steps(run: JobRun, stack: Stack, workers: dict[str, int], margin: float) -> None:
    """The job's RQ jobs (which worker, when), each horse's step and logged peak, the model
    loads logged."""
    names = {pid: name for name, pid in workers.items()}
    run.steps = rq_steps(run.job_id, chunks_total(run.job_id), stack.env["REDIS_URL"], names)
    logs = worker_logs(stack, workers)
    run.reaped = reaped_horses(logs, run.job_id)
    label_horses(run.processes, run.steps, margin)
    if run.reaped:
        mark_horses(run.processes, run.reaped)
    run.model_loads = [float(match) for text in logs for match in MODEL_LOADED.findall(text)]


def check_result(run: JobRun, target: Target, url: str) -> None:
    """Every row scored, in order, with the predictions of this process (problems otherwise)."""
    import numpy as np
    import pyarrow.parquet as pq

    expected = target.expected
    result_path = target.stack.workdir / f"result-{run.workers}.parquet"
    download(url, target.token, result_path)
    table = pq.read_table(result_path)
    result_path.unlink()
    rows = table["row"].to_numpy()
    got = table["prediction"].to_numpy(zero_copy_only=False)
    if run.rows_failed:
        run.problems.append(f"{run.rows_failed} rows failed")
    if len(got) != len(expected) or not np.array_equal(rows, np.arange(len(expected))):
        run.problems.append(f"the result has {len(got)} rows, not 0..{len(expected) - 1} in order")
    else:
        got = got.astype(float)
        run.max_abs_diff = float(np.nanmax(np.abs(got - expected))) if len(got) else 0.0
        if not np.allclose(got, expected, rtol=1e-9, atol=1e-9):
            run.problems.append(f"predictions differ (max abs diff {run.max_abs_diff:.3g})")
