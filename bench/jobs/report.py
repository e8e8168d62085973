"""The report of the jobs bench: the table, a few lines per run on where time and memory went,
the JSON file."""

import os
import statistics
import sys
from dataclasses import asdict

from bench.common import BUSY_CPUS_WARNING, MODEL, WEB_INSTANCES, Row, format_table, write_json
from bench.jobs.runs import JobRun, Step

# From the issue: what the job pipeline should reach on this machine.
TARGET_PEAK_RSS_BYTES = 300_000_000  # 300 MB (286 MiB): every RQ worker process and work horse
TARGET_WEB_GROWTH_MIB = 64  # the gunicorn worker receiving the upload
TARGET_WORKERS = 2  # with this many workers, a job takes at most the in-process time
MIB = 1024 * 1024


def mib(value: int) -> float:
    """Bytes in MiB."""
    return value / MIB


def report_rows(runs: list[JobRun], limit: dict) -> list[Row]:
    """The table's rows: per worker count, time, throughput and memory against the targets."""
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
                f"<= {TARGET_PEAK_RSS_BYTES / 1e6:.0f} MB",
                worker_peak <= mib(TARGET_PEAK_RSS_BYTES),
            ),
            Row(
                f"{label}: work horse peak RSS",
                "MiB",
                horse_peak,
                None,
                f"<= {TARGET_PEAK_RSS_BYTES / 1e6:.0f} MB",
                horse_peak <= mib(TARGET_PEAK_RSS_BYTES) if horse_peak else None,
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
    lines += describe_steps(run, chunk)
    loads = run.model_loads or []
    if loads:
        lines.append(
            f"  model loaded {len(loads)} times by the workers' horses "
            f"({statistics.mean(loads):.2f} s each, {sum(loads):.1f} s in all)"
        )
    lines.append("  CPU: " + "; ".join(describe_cpu(run)))
    lines += describe_memory(run)
    if run.max_abs_diff is not None:
        lines.append(
            f"  result: {'correct' if run.correct else 'WRONG'}, max abs diff from in-process "
            f"{run.max_abs_diff:.3g}, rows_failed {run.rows_failed}"
        )
    for problem in run.problems or []:
        lines.append(f"  PROBLEM: {problem}")
    return lines


def describe_steps(run: JobRun, chunk: dict) -> list[str]:
    """When the plan, the chunks and the finish ran (RQ's times), next to one chunk in-process."""
    steps = run.steps or []
    if not steps:
        return []
    plan = [s for s in steps if s.name == "plan"]
    chunks = [s for s in steps if s.name.startswith("chunk-")]
    finish = [s for s in steps if s.name == "finish"]
    start = run.started_wall
    parts = []
    if plan:
        parts.append(
            f"plan starts at {plan[0].started - start:.2f} s, takes {plan[0].seconds:.2f} s"
        )
    if chunks:
        parts.append(describe_chunks(chunks, start))
    if finish:
        parts.append(
            f"finish at {finish[0].started - start:.2f} s, takes {finish[0].seconds:.2f} s"
        )
    lines = ["  steps: " + "; ".join(parts)]
    if chunks and chunk:
        lines.append(
            f"  one chunk ({chunk['rows']:,} rows) through the same code in this process: "
            f"{chunk['seconds']:.2f} s; in a work horse: mean "
            f"{statistics.mean(s.seconds for s in chunks):.2f} s"
        )
    return lines


def describe_chunks(chunks: list[Step], start: float) -> str:
    """When the chunks ran, how long each took, and how many each worker took."""
    durations = [s.seconds for s in chunks]
    per_worker: dict[str, int] = {}
    for s in chunks:
        per_worker[s.worker] = per_worker.get(s.worker, 0) + 1
    return (
        f"{len(chunks)} chunks from {min(s.started for s in chunks) - start:.2f} s to "
        f"{max(s.ended for s in chunks) - start:.2f} s, each {min(durations):.2f}-"
        f"{max(durations):.2f} s (mean {statistics.mean(durations):.2f} s; "
        + ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items()))
        + ")"
    )


def describe_cpu(run: JobRun) -> list[str]:
    """CPU seconds of the workers, the receiving web worker, this process and the others."""
    cpu = []
    if run.rq_cpu_seconds is not None:
        cpu.append(f"RQ workers + horses {run.rq_cpu_seconds:.1f} s")
    if run.web_cpu_seconds is not None:
        cpu.append(f"receiving gunicorn worker {run.web_cpu_seconds:.1f} s (upload + polls)")
    cpu.append(f"this process {run.bench_cpu_seconds:.1f} s (upload, polls, sampling)")
    if run.other_cpus is not None:
        cpu.append(f"other processes on the machine {run.other_cpus:.2f} CPUs on average")
    return cpu


def describe_memory(run: JobRun) -> list[str]:
    """Memory of the RQ workers, their horses by step, and the web workers."""
    processes = run.processes or []
    workers = [p for p in processes if p.parent == 0]
    horses = [p for p in processes if p.is_horse]
    others = [p for p in processes if p.parent != 0 and not p.is_horse]
    memory_parts = [
        f"{p.role} RSS {mib(p.first_rss):.0f} MiB at the start, peak {mib(p.peak):.0f} MiB"
        for p in sorted(workers, key=lambda p: p.role)
    ]
    memory_parts += [f"{p.role} ({p.step}) peak {mib(p.peak):.0f} MiB" for p in others]
    by_step: dict[str, int] = {}
    for horse in horses:
        kind = horse.step.split("-")[0] if horse.step else "?"
        by_step[kind] = max(by_step.get(kind, 0), horse.peak)
    if horses:
        memory_parts.append(
            f"{len(horses)} horses seen, peak by step: "
            + ", ".join(f"{kind} {mib(peak):.0f} MiB" for kind, peak in sorted(by_step.items()))
        )
    lines = ["  memory: " + "; ".join(memory_parts)]
    if run.reaped:
        lines.append("  " + describe_reaped(run.reaped))
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
    return lines


def describe_reaped(reaped: dict[int, tuple[str, int]]) -> str:
    """Every horse's peak as its worker reaped it (wait4's ru_maxrss), the highest by step."""
    by_step: dict[str, int] = {}
    for step, peak in reaped.values():
        kind = step.split("-")[0]
        by_step[kind] = max(by_step.get(kind, 0), peak)
    return f"{len(reaped)} horses reaped (peak RSS from wait4, none missed): " + ", ".join(
        f"{kind} {mib(peak):.0f} MiB" for kind, peak in sorted(by_step.items())
    )


def print_report(args, version, background: float | None, limit: dict, chunk: dict, runs) -> int:
    """Print the table and the lines of each run (and write the JSON file); 1 when a result
    was wrong."""
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
        f"`succeeded` is seen (polled every {args.poll:g} s); RSS in MiB: workers from /proc, "
        f"horses as their worker reaped them (wait4), also sampled every {args.sample_ms:g} ms"
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
        write_json(args.json, results_json(args, version, background, limit, chunk, runs, rows))
    failed = [run for run in runs if not run.correct]
    if failed:
        print(
            "bench: WRONG results with " + ", ".join(f"{r.workers} worker(s)" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0


def results_json(args, version, background, limit: dict, chunk: dict, runs, rows) -> dict:
    """What --json writes."""
    return {
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
    }
