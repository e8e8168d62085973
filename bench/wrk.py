"""wrk and what it sends: the request bodies, a check of every answer, one timed run of
bench/post.lua and the figures it prints. bench/run.py and bench/monitoring.py use it."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.stack import http_request

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
RESULT_PREFIX = "BENCH_RESULT "
# wrk's default (2 s) would count a slow batch as a timeout instead of measuring it.
WRK_TIMEOUT = "30s"


# --- wrk output -------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run measured (from the BENCH_RESULT line that bench/post.lua prints)."""

    requests: int
    seconds: float
    good: int
    non_2xx: int
    bad_body: int
    last_bad_status: int
    socket_errors: dict[str, int]
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # The latency at each percentile from 90 to 100 in steps of 0.01 (bench/post.lua's tail).
    tail_ms: tuple[float, ...] = ()

    @property
    def requests_per_second(self) -> float:
        """Requests per second over the run."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        """Responses that were not 2xx with every row scored, plus socket errors."""
        return self.non_2xx + self.bad_body + sum(self.socket_errors.values())


def parse_wrk_output(text: str) -> WrkResult:
    """Read wrk's output with bench/post.lua's BENCH_RESULT line; ValueError when it has none."""
    lines = [line for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if len(lines) != 1:
        raise ValueError(
            f"expected one {RESULT_PREFIX.strip()} line in the wrk output, found {len(lines)}:\n"
            + text[-2000:]
        )
    data = json.loads(lines[0][len(RESULT_PREFIX) :])
    latency = data["latency_us"]
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        good=int(data["good"]),
        non_2xx=int(data["non_2xx"]),
        bad_body=int(data["bad_body"]),
        last_bad_status=int(data["last_bad_status"]),
        socket_errors={name: int(count) for name, count in data["socket_errors"].items()},
        mean_ms=latency["mean"] / 1000,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        tail_ms=tuple(value / 1000 for value in data.get("tail_us", ())),
    )


# --- Payloads and checks ----------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    label: str
    body_file: Path
    content_type: str
    connections: int
    rows: int  # rows per request
    lines: bool = False  # one body per line of the file, taken in turn


def write_payloads(frame, workdir: Path, *, single_rows: int) -> dict[str, tuple[Path, str]]:
    """The request bodies, written to files for wrk: name -> (path, content type). "single" has
    one body per line: the first `single_rows` rows, each its own request."""
    records = frame.to_dict(orient="records")
    singles = (json.dumps({"inputs": r}, separators=(",", ":")) for r in records[:single_rows])
    bodies = {
        "single": ("\n".join(singles) + "\n", "application/json"),
        "records": (json.dumps({"inputs": records}, separators=(",", ":")), "application/json"),
        "columns": (
            json.dumps(
                {"columns": list(frame.columns), "data": frame.to_numpy().tolist()},
                separators=(",", ":"),
            ),
            "application/json",
        ),
        "csv": (frame.to_csv(index=False), "text/csv"),
    }
    files = {}
    for name, (text, content_type) in bodies.items():
        path = workdir / f"{name}.body"
        path.write_text(text)
        files[name] = (path, content_type)
    return files


def check_answers(urls: list[str], path: str, token: str, payloads, expected) -> None:
    """POST every body to every instance: all rows scored, same values as in this process.

    This also loads the model into each instance before anything is timed.
    """
    import numpy as np

    for url in urls:
        for name, (body_file, content_type) in payloads.items():
            data = body_file.read_bytes()
            response = http_request(
                "POST",
                url + path,
                body=data.splitlines()[0] if name == "single" else data,
                headers={"Authorization": f"Token {token}", "Content-Type": content_type},
            )
            body = response.body
            if response.status != 200:
                raise RuntimeError(f"{name} to {url}: status {response.status}: {body[:500]!r}")
            answer = json.loads(body)
            got = [answer["prediction"]] if name == "single" else answer["predictions"]
            want = expected[:1] if name == "single" else expected
            if answer["rows_failed"] or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
                raise RuntimeError(f"{name} to {url}: unexpected answer {body[:500]!r}")


def run_wrk(url: str, scenario: Scenario, token: str, seconds: float, verbose: bool) -> WrkResult:
    """Run wrk with bench/post.lua against url for about `seconds`; what it measured."""
    threads = min(2, scenario.connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{scenario.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(scenario.body_file),
        scenario.content_type,
        token,
        *(["lines"] if scenario.lines else []),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {seconds + 60:g} s.") from None
    finally:
        if process.poll() is None:  # interrupted or timed out: wrk must not outlive us
            process.kill()
        process.wait()
    if verbose:
        print(stdout, stderr, sep="", file=sys.stderr)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr[-2000:]}")
    return parse_wrk_output(stdout)
