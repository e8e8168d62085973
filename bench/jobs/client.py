"""The jobs API as the benchmark uses it: a streamed upload, the status polls, the download."""

import http.client
import shutil
import time
import urllib.parse
import uuid
from pathlib import Path

from scripts.stack import Stack, http_request

UPLOAD_PIECE_BYTES = 1024 * 1024
FINISHED = {"succeeded", "failed", "cancelled"}


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
    """GET url (with the token) into the file target, streamed."""
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
    """GET url (with the token) as JSON; RuntimeError unless it answers 200."""
    response = http_request("GET", url, headers={"Authorization": f"Token {token}"})
    if response.status != 200:
        raise RuntimeError(f"GET {url}: status {response.status}: {response.body[:500]!r}")
    return response.json()


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
        time.sleep(poll)  # the polling interval (--poll) of a condition wait
