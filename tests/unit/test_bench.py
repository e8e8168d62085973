"""bench/wrk.py's wrk output parser, on real wrk output, the soak's figures, and the jobs
bench's memory figures from the workers' logs (the benchmarks themselves are not tests)."""

import numpy as np
import pytest

from bench.jobs.report import describe_memory, report_rows
from bench.jobs.runs import JobRun, mark_horses, reaped_horses
from bench.jobs.sampling import ProcessPeak
from bench.soak import Window, growth_per_worker, merged_percentile
from bench.wrk import parse_wrk_output
from core.metrics import MIB

# wrk 4.1.0 --latency with bench/post.lua: single rows at c=1 through nginx.
GOOD_RUN = """\
Running 1s test @ http://127.0.0.1:47371/api/v1/models/house-prices/predict
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    40.73ms    9.37ms  59.48ms   75.00%
    Req/Sec    23.40      5.10    30.00     60.00%
  Latency Distribution
     50%   40.37ms
     75%   47.35ms
     90%   52.16ms
     99%   59.48ms
  24 requests in 1.02s, 12.82KB read
Requests/sec:     23.55
Transfer/sec:     12.58KB
BENCH_RESULT {"requests": 24, "duration_us": 1019063, "bytes": 13128, "good": 24, \
"non_2xx": 0, "bad_body": 0, "last_bad_status": 0, "socket_errors": {"connect": 0, "read": 0, \
"write": 0, "timeout": 0}, "latency_us": {"mean": 40733.8, "max": 59483.0, "p50": 40370.0, \
"p90": 52163.0, "p99": 59483.0}}
"""

# The same script against a server that answers 501 to every POST.
FAILED_RUN = """\
Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.28ms    2.05ms   9.95ms   83.24%
    Req/Sec     0.98k   306.40     1.45k    60.00%
  Latency Distribution
     50%    1.07ms
     75%    3.65ms
     90%    5.28ms
     99%    8.20ms
  982 requests in 1.00s, 532.62KB read
  Non-2xx or 3xx responses: 982
Requests/sec:    980.78
Transfer/sec:    531.96KB
BENCH_RESULT {"requests": 982, "duration_us": 1001243, "bytes": 545406, "good": 0, \
"non_2xx": 982, "bad_body": 0, "last_bad_status": 501, "socket_errors": {"connect": 0, \
"read": 0, "write": 0, "timeout": 0}, "latency_us": {"mean": 2277.2, "max": 9947.0, \
"p50": 1066.0, "p90": 5279.0, "p99": 8198.0}}
"""


def test_parses_the_figures_of_a_good_run():
    result = parse_wrk_output(GOOD_RUN)
    assert result.requests == result.good == 24
    assert result.requests_per_second == pytest.approx(23.55, abs=0.01)  # as wrk printed it
    assert result.p50_ms == pytest.approx(40.37)
    assert result.p90_ms == pytest.approx(52.163)
    assert result.p99_ms == pytest.approx(59.483)
    assert result.failures == 0


def test_counts_failed_responses():
    result = parse_wrk_output(FAILED_RUN)
    assert (result.non_2xx, result.last_bad_status) == (982, 501)
    assert result.failures == 982
    assert result.p50_ms == pytest.approx(1.066)


def test_output_without_the_result_line_is_an_error():
    without = "\n".join(line for line in GOOD_RUN.splitlines() if "BENCH_RESULT" not in line)
    with pytest.raises(ValueError, match="BENCH_RESULT"):
        parse_wrk_output(without)


def test_soak_rss_growth_is_per_worker_process_from_its_booted_sample():
    samples = [
        {"web1/10": 300.0, "web2/20": 310.0},
        {"web1/10": 304.5, "web2/21": 40.0},  # web2/20 recycled: its successor is booting
        {"web1/10": 305.0, "web2/21": 150.0},
        {"web1/10": 305.5, "web2/21": 280.0},
        {"web1/10": 306.0, "web2/21": 300.0},  # 30 s after web2/21 appeared: its baseline
        {"web1/10": 306.5, "web2/21": 303.0},
    ]
    windows = [Window(10 * i, 1, 1, 1, 1, 0, 0, rss_mb=rss) for i, rss in enumerate(samples)]
    # web1/10 from its sample at 30 s; web2/20 was seen once (left out); web2/21 once booted.
    assert growth_per_worker(windows) == {"web1/10": 1.0, "web2/21": 3.0}


def wrk_tail(latencies: list[int]) -> tuple[float, ...]:
    """What bench/post.lua prints as the tail, with wrk's own percentile rule (stats.c)."""
    ordered = sorted(latencies)

    def percentile(p: float) -> int:
        rank = min(max(round(p / 100 * len(ordered) + 0.5), 1), len(ordered))
        return ordered[rank - 1]

    return tuple(percentile(90 + step / 100) / 1000 for step in range(1001))


def test_soak_overall_p99_is_the_p99_of_every_request_not_of_the_windows():
    rng = np.random.default_rng(7)
    # Four quiet windows and one with a slow spell: their p99s say little of the whole.
    samples = [rng.integers(1_000, 20_000, size=size).tolist() for size in (9000, 11000, 8000)]
    samples.append(rng.integers(1_000, 20_000, size=9000).tolist() + [900_000] * 400)
    samples.append(rng.integers(2_000, 30_000, size=12000).tolist())
    windows = [
        Window(10 * i, 1, 1, 1, 1, 0, 0, requests=len(s), tail_ms=wrk_tail(s))
        for i, s in enumerate(samples)
    ]
    every = np.concatenate(samples) / 1000
    merged = merged_percentile(windows, 99)
    assert np.percentile(every, 99, method="inverted_cdf") <= merged
    assert merged <= np.percentile(every, 99.01, method="inverted_cdf")
    # Neither the median nor the worst window's p99 is that figure.
    window_p99 = sorted(tail[900] for tail in (w.tail_ms for w in windows))
    assert merged not in (window_p99[2], window_p99[-1])


def test_soak_overall_p99_needs_the_tails():
    assert merged_percentile([Window(10, 1, 1, 1, 1, 0, 0)], 99) is None


JOB = "0b7c6f2e-8a1d-4c3e-9f00-123456789abc"
WORKER_LOG = f"""\
2026-12-03 12:43:04,561 INFO rq.scheduler [-] Scheduler for default started with PID 30
2026-12-03 12:43:21,640 INFO predictions.worker [r1] work horse 31 of {JOB}-plan exited: \
peak RSS 214.6 MiB
2026-12-03 12:43:22,100 INFO predictions.worker [r1] work horse 32 of {JOB}-chunk-0 exited: \
peak RSS 288.8 MiB
2026-12-03 12:43:22,300 INFO predictions.worker [r9] work horse 40 of other-chunk-0 exited: \
peak RSS 999.0 MiB
2026-12-03 12:43:25,900 INFO predictions.worker [r1] work horse 33 of {JOB}-finish exited: \
peak RSS 273.1 MiB
"""


def sampled(pid: int, parent: int, peak_mib: float) -> ProcessPeak:
    peak = round(peak_mib * MIB)
    return ProcessPeak(pid, "rq1of1", parent, 0.0, 1.0, peak, peak, peak, is_horse=parent != 0)


def test_the_jobs_bench_takes_every_horse_peak_from_the_workers_logs():
    run = JobRun(workers=1, job_id=JOB, rows=1, seconds=1.0, correct=True)
    # The sampler missed the peak of the chunk horse and saw RQ's scheduler as a child.
    run.processes = [sampled(20, 0, 299.1), sampled(30, 20, 205.2), sampled(32, 20, 250.0)]
    run.reaped = reaped_horses([WORKER_LOG], JOB)
    mark_horses(run.processes, run.reaped)
    assert run.reaped == {
        31: ("plan", round(214.6 * MIB)),
        32: ("chunk-0", round(288.8 * MIB)),
        33: ("finish", round(273.1 * MIB)),
    }
    assert [(p.pid, p.is_horse, p.step) for p in run.processes[1:]] == [
        (30, False, "scheduler"),
        (32, True, "chunk-0"),
    ]
    assert run.peak(horses=True) == round(288.8 * MIB)
    assert run.peak(horses=False) == round(299.1 * MIB)
    rows = {row.label: row for row in report_rows([run], {"seconds": 1.0, "rows_per_second": 1.0})}
    assert rows["1 worker: work horse peak RSS"].measured == pytest.approx(288.8)
    memory = "\n".join(describe_memory(run))
    assert "3 horses reaped" in memory and "chunk 289 MiB" in memory
    assert "(scheduler) peak 205 MiB" in memory
