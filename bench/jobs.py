"""Benchmark background jobs: a 1,000,000-row CSV scored as a job, with 1 and with 2 RQ workers.

Starts the stack of bench/stack.py (always with its own redis-server, so that only the workers
started here take the jobs), writes the CSV once into a temp dir, and for each worker count
starts that many `scripts/worker` processes (RQ workers), submits the CSV through nginx
(POST /api/v1/models/house-prices/jobs, multipart field `file`), polls the job until it has
succeeded (bounded by a deadline), downloads the result and compares it with the predictions of
this process. Meanwhile a thread samples /proc: the gunicorn workers while they receive the upload,
the RQ workers and their work horses (one forked child per RQ job) throughout. Next to it, the
in-process figure: the same CSV read with pandas and scored by the same pipeline in one thread.

Every process started here is stopped by PID at the end, on errors and on Ctrl-C too, and the
jobs it created are deleted (rows and files). Run it with ./scripts/bench jobs; see
bench/README.md.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bench.run import Row, format_table
from bench.stack import (
    BUSY_CPUS_WARNING,
    MODEL,
    STARTUP_SECONDS,
    WEB_INSTANCES,
    CpuMeter,
    Stack,
    admin_token,
    http_request,
    ignore_signals,
    setup_django,
    stack_env,
    start_stack,
    stop_on_signals,
)

# From the issue: what the job pipeline should reach on this machine.
TARGET_WORKER_PEAK_MIB = 300  # every RQ worker process and every work horse
TARGET_WEB_GROWTH_MIB = 64  # the gunicorn worker receiving the upload
TARGET_WORKERS = 2  # with this many workers, a job takes at most the in-process time

MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UPLOAD_PIECE_BYTES = 1024 * 1024
WORKER_COMMAND = ["scripts/worker", "default"]  # as scripts/run starts them
FINISHED = {"succeeded", "failed", "cancelled"}
MODEL_LOADED = re.compile(r"loaded \S+ v\d+ in ([0-9.]+) s")


# --- /proc ------------------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in bytes; None once it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    values[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return None
    if len(values) != 2:
        return None  # a zombie has no memory left to report
    return values["VmRSS"], values["VmHWM"]


def children(pid: int) -> list[int]:
    """The child processes of `pid` (of its main thread, which is where gunicorn and RQ fork)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        pass
    found = []  # kernels without CONFIG_PROC_CHILDREN: scan every process
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int, reaped: bool = True) -> float | None:
    """CPU time of a process (utime stime), with that of the children it has reaped (cutime
    cstime) when `reaped`."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11 : 15 if reaped else 13]) / CLOCK_TICKS


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (/proc/<pid>/clear_refs); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class ProcessPeak:
    """What the sampler saw of one process: its peak, and when it was alive (time.time())."""

    pid: int
    role: str
    parent: int
    first_seen: float
    last_seen: float
    first_rss: int
    peak_rss: int  # highest VmRSS sampled
    peak_hwm: int  # highest VmHWM read: also covers peaks between samples
    samples: int = 0
    cpu_first: float = 0.0  # CPU seconds (utime + stime) at the first and the last sample
    cpu_last: float = 0.0
    step: str = ""  # for a work horse: the RQ job it ran (plan, chunk-N, finish)

    @property
    def peak(self) -> int:
        return max(self.peak_rss, self.peak_hwm)

    @property
    def cpu(self) -> float:
        """CPU seconds used while it was sampled."""
        return self.cpu_last - self.cpu_first


class MemorySampler:
    """Samples VmRSS and VmHWM of some processes and all their descendants every `interval`.

    Work horses live from a fraction of a second to a few seconds; a horse's VmHWM, read at each
    sample, covers its peaks between samples too, except in the last interval before it exits.
    """

    def __init__(self, roots: dict[str, int], interval: float):
        self.roots = roots
        self.interval = interval
        self.seen: dict[int, ProcessPeak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self) -> dict[int, ProcessPeak]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()
        return self.seen

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = time.time()
        for role, pid in self.roots.items():
            self._visit(pid, role, 0, now)

    def _visit(self, pid: int, role: str, parent: int, now: float) -> None:
        values = memory(pid)
        if values is None:
            return
        rss, hwm = values
        cpu = cpu_seconds(pid, reaped=False)
        peak = self.seen.get(pid)
        if peak is None:
            peak = self.seen[pid] = ProcessPeak(pid, role, parent, now, now, rss, rss, hwm)
            # A horse is seen first a moment after its fork: count its CPU from 0.
            peak.cpu_first = (cpu or 0.0) if parent == 0 else 0.0
        peak.last_seen, peak.samples = now, peak.samples + 1
        peak.cpu_last = cpu if cpu is not None else peak.cpu_last
        peak.peak_rss, peak.peak_hwm = max(peak.peak_rss, rss), max(peak.peak_hwm, hwm)
        child_role = f"{role} horse" if parent == 0 else f"{role} child"
        for child in children(pid):
            self._visit(child, child_role, pid, now)


# --- HTTP -------------------------------------------------------------------------------------


def post_file(url: str, token: str, path: Path, timeout: float) -> tuple[int, dict, bytes, float]:
    """POST `path` as the multipart field `file`, streamed from disk.

    Returns (status, headers, body, seconds until the whole body was sent).
    """
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.putrequest("POST", parts.path + (f"?{parts.query}" if parts.query else ""))
        conn.putheader("Authorization", f"Token {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
        conn.endheaders()
        conn.send(head)
        with open(path, "rb") as handle:
            while piece := handle.read(UPLOAD_PIECE_BYTES):
                conn.send(piece)
        conn.send(tail)
        sent = time.perf_counter() - started
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read(), sent
    finally:
        conn.close()


def download(url: str, token: str, target: Path, timeout: float = 120) -> None:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(
            "GET",
            parts.path + (f"?{parts.query}" if parts.query else ""),
            headers={"Authorization": f"Token {token}"},
        )
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: status {response.status}: {response.read(500)!r}")
        with open(target, "wb") as out:
            shutil.copyfileobj(response, out, UPLOAD_PIECE_BYTES)
    finally:
        conn.close()


def get_json(url: str, token: str) -> dict:
    status, body = http_request("GET", url, headers={"Authorization": f"Token {token}"})
    if status != 200:
        raise RuntimeError(f"GET {url}: status {status}: {body[:500]!r}")
    return json.loads(body)


# --- The input and the in-process figure ------------------------------------------------------


def write_csv(path: Path, rows: int, seed: int, names: list[str]) -> None:
    """The demo rows without `price`, rounded to 4 decimals (about 66 bytes a row)."""
    from modelregistry import demo

    frame = demo.house_prices_data(rows=rows, seed=seed).drop(columns=["price"])[names]
    frame.round(4).to_csv(path, index=False)


def in_process(estimator, csv_path: Path, names: list[str]) -> tuple[dict, object]:
    """Read the CSV with pandas and predict, in one thread of this process.

    Returns (figures, predictions).
    """
    import numpy as np
    import pandas as pd

    try:
        # pandas >= 3.1 reads a large CSV file with several threads by default.
        pd.set_option("mode.max_threads", 1)
    except (KeyError, pd.errors.OptionError):
        pass
    peak_reset = reset_peak(os.getpid())
    rss_before = memory(os.getpid())[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    frame = pd.read_csv(csv_path)
    read = time.perf_counter()
    predictions = np.asarray(estimator.predict(frame[names]))
    finished, cpu_finished = time.perf_counter(), time.process_time()
    rss_after, hwm = memory(os.getpid())
    seconds = finished - started
    figures = {
        "read_seconds": read - started,
        "predict_seconds": finished - read,
        "seconds": seconds,
        "rows_per_second": len(frame) / seconds,
        "cpu_seconds": cpu_finished - cpu_started,
        "rss_growth_bytes": (hwm if peak_reset else rss_after) - rss_before,
    }
    return figures, predictions


def one_chunk_in_process(version, csv_path: Path) -> dict:
    """The first chunk of the job, read and scored through the job's own code in this process:
    what a work horse does, without forking, importing and loading the model."""
    from django.conf import settings

    from predictions import formats
    from predictions.services.scoring import score_rows

    plan = formats.CSV.plan_chunks(csv_path)
    started = time.perf_counter()
    parsed = formats.CSV.read_chunk(csv_path, plan, 0)
    result = score_rows(version=version, parsed=parsed)
    return {
        "chunks": len(plan.ranges),
        "chunk_bytes": settings.JOB_CHUNK_BYTES,
        "rows": result.rows,
        "seconds": time.perf_counter() - started,
    }


# --- One job ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One RQ job of a PredictionJob, as RQ recorded it."""

    name: str  # plan, chunk-N, finish
    worker: str  # our name for the RQ worker that ran it
    started: float  # time.time()
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class JobRun:
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
    processes: list | None = None  # ProcessPeak of the RQ workers and their horses
    steps: list | None = None
    model_loads: list | None = None  # seconds of each model load the workers logged
    max_abs_diff: float | None = None
    correct: bool = False
    problems: list | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def web_growth(self) -> int:
        return self.web_peak - self.web_rss_before

    def peak(self, horses: bool) -> int:
        chosen = [p.peak for p in self.processes or [] if (p.parent != 0) == horses]
        return max(chosen, default=0)


def _timestamp(value) -> float | None:
    if not value:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def start_workers(stack: Stack, env: dict, count: int, redis_url: str) -> dict[str, int]:
    """Start `count` RQ workers; wait until each has registered. Returns name -> PID."""
    import redis
    from rq import Worker

    names = [f"rq{i}of{count}" for i in range(1, count + 1)]
    pids = {}
    for name in names:
        worker_env = {
            **env,
            "PYTHON": sys.executable,
            "PROMETHEUS_MULTIPROC_DIR": str(stack.workdir / "metrics" / name),
        }
        pids[name] = stack.start(name, WORKER_COMMAND, worker_env).pid
    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            registered = {worker.pid for worker in Worker.all(connection=connection)}
            if set(pids.values()) <= registered:
                return pids
            dead = [name for name in names if stack.processes[name].poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else "not registered in time"
                raise RuntimeError(f"RQ workers did not start ({why}).\n{stack.log_tails()}")
            time.sleep(0.1)
    finally:
        connection.close()


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
    """Name the RQ job each horse ran: the step of its worker its lifetime overlaps most."""
    roles = {p.pid: p.role for p in processes if p.parent == 0}
    for horse in processes:
        if horse.parent == 0:
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


def wait_for_job(url: str, token: str, deadline: float, workers, stack: Stack, poll: float):
    """Poll the job until it is finished; (job, polls). Cancels it when the deadline passes."""
    polls = 0
    while True:
        job = get_json(url, token)
        polls += 1
        if job["status"] in FINISHED:
            return job, polls
        dead = [name for name in workers if stack.processes[name].poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited during the job.\n{stack.log_tails()}")
        if time.monotonic() > deadline:
            if job["links"].get("cancel"):
                base = url[: url.index("/api/")]
                http_request(
                    "POST",
                    base + job["links"]["cancel"],
                    headers={"Authorization": f"Token {token}"},
                )
            raise RuntimeError(
                f"job {job['id']} did not finish before the deadline: {job['status']}, "
                f"{job['rows_done']} rows done; cancelled."
            )
        time.sleep(poll)


def wait_for_no_horses(worker_pids, seconds: float = 10) -> None:
    """After the job: wait until the last horse has exited (so its CPU time is counted)."""
    deadline = time.monotonic() + seconds
    while any(children(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def web_workers(stack: Stack) -> dict[str, int]:
    """The gunicorn worker process of each instance: name (web1, ...) -> PID."""
    found = {}
    for i in range(1, WEB_INSTANCES + 1):
        pids = children(stack.processes[f"web{i}"].pid)
        if len(pids) != 1:
            raise RuntimeError(f"web{i} has {len(pids)} worker processes, expected 1.")
        found[f"web{i}"] = pids[0]
    return found


def run_job(
    *,
    stack: Stack,
    url: str,
    token: str,
    csv_path: Path,
    workers: dict[str, int],
    expected,
    redis_url: str,
    args,
    meter: CpuMeter,
    created: list,
) -> JobRun:
    """Submit the CSV as a job, wait for it, check its result; everything measured on the way."""
    import numpy as np
    import pyarrow.parquet as pq

    run = JobRun(workers=len(workers), problems=[])
    webs = web_workers(stack)
    ports = {urllib.parse.urlsplit(u).port: f"web{i}" for i, u in enumerate(stack.instance_urls, 1)}
    before = {name: memory(pid)[0] for name, pid in webs.items()}
    reset = all(reset_peak(pid) for pid in webs.values())
    web_cpu = {name: cpu_seconds(pid) for name, pid in webs.items()}
    rq_cpu = sum(cpu_seconds(pid) or 0 for pid in workers.values())
    cpu_before, bench_cpu = meter.snapshot(), time.process_time()
    deadline = time.monotonic() + args.deadline
    sampler = MemorySampler(dict(workers), args.sample_ms / 1000)
    with sampler, MemorySampler(webs, args.sample_ms / 1000) as web_sampler:
        run.started_wall, started = time.time(), time.perf_counter()
        status, headers, body, run.sent_seconds = post_file(
            f"{url}/api/v1/models/{MODEL}/jobs", token, csv_path, timeout=args.deadline
        )
        run.submit_seconds = time.perf_counter() - started
        web_peaks = web_sampler.stop()
        after = {name: memory(pid) for name, pid in webs.items()}
        if status != 202:
            raise RuntimeError(f"submitting the job: status {status}: {body[:500]!r}")
        job = json.loads(body)
        run.job_id = job["id"]
        created.append(job["id"])
        upstream = headers.get("X-Upstream", "")
        run.instance = ports.get(int(upstream.rsplit(":", 1)[-1] or 0), "")
        job, run.polls = wait_for_job(url + job["url"], token, deadline, workers, stack, args.poll)
        run.seconds = time.perf_counter() - started
        wait_for_no_horses(workers.values())
    run.other_cpus = meter.other_cpus(cpu_before)
    run.bench_cpu_seconds = time.process_time() - bench_cpu
    run.rq_cpu_seconds = sum(cpu_seconds(pid) or 0 for pid in workers.values()) - rq_cpu

    # The gunicorn worker that received the upload: its peak while receiving, over its RSS before.
    receiver = run.instance or max(webs, key=lambda name: web_peaks[webs[name]].peak)
    pid = webs[receiver]
    run.web_rss_before = before[receiver]
    sampled = web_peaks[pid].peak_rss
    if reset and after[receiver]:
        run.web_peak = max(after[receiver][1], sampled)
        run.web_peak_source = "VmHWM (reset before the upload)"
    else:
        run.web_peak = sampled
        run.web_peak_source = f"VmRSS sampled every {args.sample_ms:g} ms"
    others = [name for name in webs if name != receiver]
    run.other_web_growth = max(
        (web_peaks[webs[name]].peak_rss - before[name] for name in others), default=0
    )
    if web_cpu[receiver] is not None:
        run.web_cpu_seconds = (cpu_seconds(pid) or 0) - web_cpu[receiver]

    run.rows, run.rows_failed = job["rows_done"], job["rows_failed"]
    run.input_bytes = job["input_bytes"]
    finished_at = _timestamp(job.get("finished_at"))
    if finished_at:
        run.finished_at_seconds = finished_at - run.started_wall
    if job["status"] != "succeeded":
        run.problems.append(f"job {job['status']}: {job.get('failure_reason')}")
        run.processes = list(sampler.seen.values())
        return run

    names = {pid: name for name, pid in workers.items()}
    run.steps = rq_steps(run.job_id, _chunks_total(run.job_id), redis_url, names)
    run.processes = list(sampler.seen.values())
    label_horses(run.processes, run.steps, args.sample_ms / 1000)
    run.model_loads = [
        float(match)
        for name in workers
        for match in MODEL_LOADED.findall(
            (stack.log_dir / f"{name}.log").read_text(errors="replace")
        )
    ]

    # Correctness: every row scored, in order, with the predictions of this process.
    result_path = stack.workdir / f"result-{run.workers}.parquet"
    download(url + job["links"]["download_parquet"], token, result_path)
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
    run.correct = not run.problems
    return run


def _chunks_total(job_id: str) -> int:
    """How many chunks the job was cut into (the API does not say; the row does)."""
    from predictions.models import PredictionJob

    return (
        PredictionJob.objects.filter(pk=job_id).values_list("chunks_total", flat=True).first() or 0
    )


def schema_problem() -> str:
    """Why the job table cannot take a job, when the database was made by an older migration."""
    from django.db import DatabaseError, connection

    from predictions.models import PredictionJob

    table = PredictionJob._meta.db_table
    try:
        with connection.cursor() as cursor:
            found = connection.introspection.get_table_description(cursor, table)
    except DatabaseError as exc:
        return f"cannot read the table {table}: {exc}"
    fields = {field.column for field in PredictionJob._meta.concrete_fields}
    missing = sorted(fields - {column.name for column in found})
    extra = sorted(c.name for c in found if c.name not in fields and not c.null_ok)
    if not missing and not extra:
        return ""
    return (
        f"the database does not match predictions/models.py (table {table}: "
        + "; ".join(
            text
            for text in (
                f"missing {', '.join(missing)}" if missing else "",
                f"extra NOT NULL {', '.join(extra)}" if extra else "",
            )
            if text
        )
        + "): it was made by an older version of a migration, so no job can be stored. "
        "Recreate it, or run with DATABASE_URL and MEDIA_ROOT pointing at a scratch place."
    )


def delete_jobs(job_ids: list) -> None:
    """The jobs this run created: rows and files (MEDIA_ROOT is the normal one)."""
    if not job_ids:
        return
    from predictions import jobfiles
    from predictions.models import PredictionJob

    for job_id in job_ids:
        jobfiles.remove_job_files(job_id)
    PredictionJob.objects.filter(pk__in=job_ids).delete()


# --- Report -----------------------------------------------------------------------------------


def mib(value: int) -> float:
    return value / MIB


def report_rows(runs: list[JobRun], limit: dict) -> list[Row]:
    rows = []
    for run in runs:
        label = f"{run.workers} worker{'s' if run.workers > 1 else ''}"
        timed = run.workers == TARGET_WORKERS and run.correct
        worker_peak, horse_peak = mib(run.peak(horses=False)), mib(run.peak(horses=True))
        rows += [
            Row(
                f"{label}: job end-to-end",
                "s",
                run.seconds,
                limit["seconds"],
                "<= in-process" if run.workers == TARGET_WORKERS else "",
                run.seconds <= limit["seconds"] if timed else None,
            ),
            Row(f"{label}: throughput", "rows/s", run.rows_per_second, limit["rows_per_second"]),
            Row(f"{label}: upload until 202", "s", run.submit_seconds),
            Row(
                f"{label}: web worker growth receiving",
                "MiB",
                mib(run.web_growth),
                None,
                f"< {TARGET_WEB_GROWTH_MIB} MiB",
                mib(run.web_growth) < TARGET_WEB_GROWTH_MIB,
            ),
            Row(
                f"{label}: RQ worker peak RSS",
                "MiB",
                worker_peak,
                None,
                f"<= {TARGET_WORKER_PEAK_MIB} MiB",
                worker_peak <= TARGET_WORKER_PEAK_MIB,
            ),
            Row(
                f"{label}: work horse peak RSS",
                "MiB",
                horse_peak,
                None,
                f"<= {TARGET_WORKER_PEAK_MIB} MiB",
                horse_peak <= TARGET_WORKER_PEAK_MIB if horse_peak else None,
            ),
        ]
    return rows


def describe(run: JobRun, chunk: dict) -> list[str]:
    """Where the time and the memory of one run went, in a few lines."""
    label = f"{run.workers} worker{'s' if run.workers > 1 else ''}"
    lines = [
        f"{label}: job {run.job_id}, {run.rows:,} rows, {run.input_bytes / 1e6:.1f} MB; "
        f"upload {run.submit_seconds:.2f} s (body sent to nginx after {run.sent_seconds:.2f} s; "
        f"received by {run.instance or '?'}), succeeded seen after {run.seconds:.2f} s "
        f"({run.polls} polls; finished_at "
        + (f"{run.finished_at_seconds:.2f} s)" if run.finished_at_seconds is not None else "?)")
    ]
    steps = run.steps or []
    if steps:
        start = run.started_wall
        plan = [s for s in steps if s.name == "plan"]
        chunks = [s for s in steps if s.name.startswith("chunk-")]
        finish = [s for s in steps if s.name == "finish"]
        parts = []
        if plan:
            parts.append(
                f"plan starts at {plan[0].started - start:.2f} s, takes {plan[0].seconds:.2f} s"
            )
        if chunks:
            durations = [s.seconds for s in chunks]
            per_worker = {}
            for s in chunks:
                per_worker[s.worker] = per_worker.get(s.worker, 0) + 1
            parts.append(
                f"{len(chunks)} chunks from {min(s.started for s in chunks) - start:.2f} s to "
                f"{max(s.ended for s in chunks) - start:.2f} s, each {min(durations):.2f}-"
                f"{max(durations):.2f} s (mean {statistics.mean(durations):.2f} s; "
                + ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items()))
                + ")"
            )
        if finish:
            parts.append(
                f"finish at {finish[0].started - start:.2f} s, takes {finish[0].seconds:.2f} s"
            )
        lines.append("  steps: " + "; ".join(parts))
        if chunks and chunk:
            lines.append(
                f"  one chunk ({chunk['rows']:,} rows) through the same code in this process: "
                f"{chunk['seconds']:.2f} s; in a work horse: mean "
                f"{statistics.mean(s.seconds for s in chunks):.2f} s"
            )
    loads = run.model_loads or []
    if loads:
        lines.append(
            f"  model loaded {len(loads)} times by the workers' horses "
            f"({statistics.mean(loads):.2f} s each, {sum(loads):.1f} s in all)"
        )
    cpu = []
    if run.rq_cpu_seconds is not None:
        cpu.append(f"RQ workers + horses {run.rq_cpu_seconds:.1f} s")
    if run.web_cpu_seconds is not None:
        cpu.append(f"receiving gunicorn worker {run.web_cpu_seconds:.1f} s (upload + polls)")
    cpu.append(f"this process {run.bench_cpu_seconds:.1f} s (upload, polls, sampling)")
    if run.other_cpus is not None:
        cpu.append(f"other processes on the machine {run.other_cpus:.2f} CPUs on average")
    lines.append("  CPU: " + "; ".join(cpu))
    processes = run.processes or []
    workers = [p for p in processes if p.parent == 0]
    horses = [p for p in processes if p.parent != 0]
    memory_parts = [
        f"{p.role} RSS {mib(p.first_rss):.0f} MiB at the start, peak {mib(p.peak):.0f} MiB"
        for p in sorted(workers, key=lambda p: p.role)
    ]
    by_step: dict[str, int] = {}
    for horse in horses:
        kind = horse.step.split("-")[0] if horse.step else "?"
        by_step[kind] = max(by_step.get(kind, 0), horse.peak)
    if horses:
        memory_parts.append(
            f"{len(horses)} horses seen, peak by step: "
            + ", ".join(f"{kind} {mib(peak):.0f} MiB" for kind, peak in sorted(by_step.items()))
        )
    lines.append("  memory: " + "; ".join(memory_parts))
    chunk_horses = [h for h in horses if h.step.startswith("chunk-")]
    if chunk_horses:
        lines.append(
            f"  chunk horses: {statistics.mean(h.cpu for h in chunk_horses):.2f} CPU s each, "
            f"alive {statistics.mean(h.last_seen - h.first_seen for h in chunk_horses):.2f} s "
            "(as sampled)"
        )
    lines.append(
        f"  web: {run.instance or '?'} {mib(run.web_rss_before):.0f} MiB before, peak "
        f"{mib(run.web_peak):.0f} MiB ({run.web_peak_source}); the other instance grew "
        f"{mib(run.other_web_growth):.1f} MiB"
    )
    if run.max_abs_diff is not None:
        lines.append(
            f"  result: {'correct' if run.correct else 'WRONG'}, max abs diff from in-process "
            f"{run.max_abs_diff:.3g}, rows_failed {run.rows_failed}"
        )
    for problem in run.problems or []:
        lines.append(f"  PROBLEM: {problem}")
    return lines


# --- Main -------------------------------------------------------------------------------------


def _worker_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("at least one worker count, each 1 or more")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench jobs", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument(
        "--workers", type=_worker_counts, default=[1, 2], help="worker counts (default 1,2)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="of the demo rows (default 2024)")
    parser.add_argument(
        "--deadline", type=float, default=600, help="seconds allowed per job (default 600)"
    )
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between status polls (default 0.1)"
    )
    parser.add_argument(
        "--sample-ms", type=float, default=20, help="/proc sampling interval (default 20)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the processes' logs here at the end"
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.deadline <= 0 or args.poll <= 0 or args.sample_ms <= 0:
        parser.error("--rows must be >= 1; --deadline, --poll and --sample-ms > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()  # before numpy/scikit-learn load: the in-process figure is for one thread
    from django.conf import settings

    from modelregistry import loader, selectors

    token = admin_token()
    if token is None:
        return 1
    problem = schema_problem()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 1
    version = selectors.resolve_version(MODEL)
    estimator = loader.get_predictor(version)
    names = [feature["name"] for feature in version.input_schema["features"]]

    stop_on_signals()
    meter = CpuMeter()
    before = meter.snapshot()
    time.sleep(1)
    background = meter.other_cpus(before)
    if background is not None and background > BUSY_CPUS_WARNING:
        print(
            f"bench: warning: the machine is already busy ({background:.1f} of {os.cpu_count()} "
            "CPUs in use before starting); the figures will be low and noisy.",
            file=sys.stderr,
        )
    workdir = Path(tempfile.mkdtemp(prefix="modelport-bench-jobs-"))
    stack = Stack(workdir)
    created: list[str] = []
    runs: list[JobRun] = []
    limit: dict = {}
    chunk: dict = {}
    try:
        csv_path = workdir / "rows.csv"
        print(f"bench: writing {args.rows:,} rows to {csv_path} ...", flush=True)
        write_csv(csv_path, args.rows, args.seed, names)
        print(f"bench: {csv_path.stat().st_size / 1e6:.1f} MB", flush=True)

        print(f"bench: in-process {MODEL} v{version.number}, 1 thread ...", flush=True)
        before = meter.snapshot()
        limit, expected = in_process(estimator, csv_path, names)
        limit["other_cpus"] = meter.other_cpus(before)
        chunk = one_chunk_in_process(version, csv_path)

        env = stack_env()
        print(f"bench: starting redis, {WEB_INSTANCES} gunicorn instances, nginx ...", flush=True)
        started = time.monotonic()
        url = start_stack(stack, settings, env, own_redis=True)
        print(f"bench: ready at {url} in {time.monotonic() - started:.1f} s", flush=True)

        for count in args.workers:
            print(f"bench: {count} RQ worker(s) ...", flush=True)
            workers = start_workers(stack, env, count, env["REDIS_URL"])
            try:
                run = run_job(
                    stack=stack,
                    url=url,
                    token=token,
                    csv_path=csv_path,
                    workers=workers,
                    expected=expected,
                    redis_url=env["REDIS_URL"],
                    args=args,
                    meter=meter,
                    created=created,
                )
                runs.append(run)
                print(
                    f"bench: {count} worker(s): {run.seconds:.1f} s, "
                    f"{'correct' if run.correct else 'PROBLEMS: ' + '; '.join(run.problems)}",
                    flush=True,
                )
            finally:
                for name in workers:
                    stack.stop_process(name)
    except KeyboardInterrupt:
        print("bench: interrupted; stopping.", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        ignore_signals()  # a second Ctrl-C must not cut this short
        stack.stop()
        if args.keep_logs:
            stack.copy_logs(args.keep_logs)
            print(f"bench: logs copied to {args.keep_logs}", file=sys.stderr)
        try:
            delete_jobs(created)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = report_rows(runs, limit)
    print()
    print(
        f"{MODEL} v{version.number}; {args.rows:,} rows as a {runs[0].input_bytes / 1e6:.1f} MB "
        f"CSV job (chunks of {chunk.get('chunk_bytes', 0) / MIB:g} MiB: {chunk.get('chunks')}); "
        f"{WEB_INSTANCES} gunicorn instances x 1 worker behind nginx; {os.cpu_count()} CPUs; "
        f"CPUs busy before start: {'?' if background is None else f'{background:.2f}'} (other "
        "processes)"
    )
    print(
        f"in-process: pandas.read_csv {limit['read_seconds']:.2f} s + predict "
        f"{limit['predict_seconds']:.2f} s, 1 thread ({limit['cpu_seconds']:.2f} CPU s), RSS "
        f"growth {mib(limit['rss_growth_bytes']):.0f} MiB; end-to-end = submit start until "
        f"`succeeded` is seen (polled every {args.poll:g} s); RSS in MiB from /proc, horses "
        f"sampled every {args.sample_ms:g} ms"
    )
    print(format_table(rows))
    print()
    for run in runs:
        print("\n".join(describe(run, chunk)))
    busy = [run for run in runs if run.other_cpus and run.other_cpus > BUSY_CPUS_WARNING]
    if limit.get("other_cpus") and limit["other_cpus"] > BUSY_CPUS_WARNING:
        print(f"warning: other processes kept {limit['other_cpus']:.2f} CPUs busy in-process")
    for run in busy:
        print(
            f"warning: other processes kept {run.other_cpus:.2f} CPUs busy during the "
            f"{run.workers}-worker job"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model": MODEL,
                    "version": version.number,
                    "rows": args.rows,
                    "cpus": os.cpu_count(),
                    "busy_cpus_before_start": background,
                    "in_process": limit,
                    "one_chunk_in_process": chunk,
                    "runs": [
                        {
                            **asdict(run),
                            "rows_per_second": run.rows_per_second,
                            "web_growth_bytes": run.web_growth,
                        }
                        for run in runs
                    ],
                    "table": [asdict(row) for row in rows],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nbench: results written to {args.json}")
    failed = [run for run in runs if not run.correct]
    if failed:
        print(
            "bench: WRONG results with " + ", ".join(f"{r.workers} worker(s)" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
