"""`Client(url, token)`: a Modelport server's registry, predictions, jobs and dataset runs over
HTTP.

Every method returns the server's JSON answer as plain dicts and lists (the README's shapes);
every error is a `ModelportError`. Files are streamed both ways, never read whole.
"""

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from .errors import ModelportError

__all__ = ["Client", "Progress"]

API = "/api/v1"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
# Reading an answer: a version upload is checked in a sandbox before it answers (seconds).
READ_TIMEOUT_SECONDS = 300.0
DOWNLOAD_CHUNK_BYTES = 256 * 1024

# progress(bytes done, bytes in all or None when unknown), called as bytes go or come.
Progress = Callable[[int, int | None], None]


class _CountingFile:
    """A binary file whose reads report `progress`: httpx streams a multipart upload by reading
    its files piece by piece, so the reads are the upload's progress."""

    def __init__(self, file: BinaryIO, progress: Progress | None):
        self._file, self._progress, self.done = file, progress, 0
        try:
            self.total: int | None = os.fstat(file.fileno()).st_size
        except (AttributeError, OSError):  # a BytesIO: its size from seeking to its end
            here = file.tell()
            self.total = file.seek(0, os.SEEK_END)
            file.seek(here)

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self.done += len(chunk)
        if self._progress is not None:
            self._progress(self.done, self.total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._file.seek(offset, whence)
        self.done = position
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def _job_id(job: Mapping | str) -> str:
    return str(job["id"]) if isinstance(job, Mapping) else str(job)


def _model_path(name: str, version: int | None) -> str:
    path = f"{API}/models/{name}"
    return f"{path}/versions/{int(version)}" if version is not None else path


def _is_dataframe(rows: Any) -> bool:
    """A pandas DataFrame, without importing pandas: whoever made one has imported it."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(rows, pandas.DataFrame)


def _frame_body(frame) -> dict:
    """A DataFrame as the columnar form; a missing value (NaN, None, NaT) is null, as in a CSV."""
    cells = frame.astype(object).where(frame.notna(), None)
    return {"columns": [str(column) for column in frame.columns], "data": cells.values.tolist()}


def _json_default(value):
    """numpy scalars and anything else json cannot write (dates: their text)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _download_format(path: Path, format: str | None) -> str:
    if format is not None:
        return format
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


class Client:
    """One Modelport server: `Client("http://127.0.0.1:8000", token)`; use it as a context
    manager, or call `close()`, to release its connections."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        from . import __version__

        self.url = url.rstrip("/")
        headers = {"User-Agent": f"modelport-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- plumbing

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise ModelportError.from_transport(str(request.url), exc) from None
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            raise ModelportError.from_response(response)
        return response

    def _call(self, method: str, path: str, **kwargs) -> Any:
        """The JSON answer of one request, or its ModelportError."""
        request = self._http.build_request(method, path, **kwargs)
        return self._send(request).json()

    def _every_page(self, path: str, **params) -> list[dict]:
        """Every item of a paginated list: its pages' `results`, following `next` links."""
        items: list[dict] = []
        page = self._call("GET", path, params=params or None)
        while True:
            items.extend(page["results"])
            if not page.get("next"):
                return items
            page = self._call("GET", page["next"])

    def _upload_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._timeout, read=max(self._timeout, READ_TIMEOUT_SECONDS))

    # --- registry

    def models(self) -> list[dict]:
        """Every model, with its default and latest version."""
        return self._every_page(f"{API}/models/")

    def model(self, name: str) -> dict:
        """One model: input schema, output info, versions, the audit trail."""
        return self._call("GET", f"{API}/models/{name}/")

    def versions(self, name: str) -> list[dict]:
        """A model's versions, newest first."""
        return self._every_page(f"{API}/models/{name}/versions/")

    def version(self, name: str, number: int) -> dict:
        """One version: status, schema, how it is served."""
        return self._call("GET", f"{API}/models/{name}/versions/{int(number)}/")

    def upload_version(
        self,
        name: str,
        path: str | os.PathLike,
        *,
        sample: str | os.PathLike | None = None,
        notes: str = "",
        description: str = "",
        format: str | None = None,
        progress: Progress | None = None,
    ) -> dict:
        """Upload an artifact (.skops) as a new version, with an optional CSV of reference rows
        (`sample`); answers when the server has checked it (staff only). Not promoted."""
        data = {"notes": notes, "description": description}
        if format:
            data["format"] = format
        with open(path, "rb") as artifact:
            files = {"file": (Path(path).name, _CountingFile(artifact, progress))}
            sample_file = open(sample, "rb") if sample is not None else None
            try:
                if sample_file is not None:
                    files["sample"] = (Path(sample).name, sample_file)
                return self._call(
                    "POST",
                    f"{API}/models/{name}/versions/",
                    data=data,
                    files=files,
                    timeout=self._upload_timeout(),
                )
            finally:
                if sample_file is not None:
                    sample_file.close()

    def promote(self, name: str, number: int) -> dict:
        """Make version `number` the default (staff only); answers with the version."""
        return self._call("POST", f"{API}/models/{name}/versions/{int(number)}/promote")

    def rollback(self, name: str) -> dict:
        """Return to the default before the last promotion (staff only); answers with the
        change (`from_version`, `to_version`)."""
        return self._call("POST", f"{API}/models/{name}/rollback")

    # --- predictions

    def predict(
        self,
        name: str,
        rows: Mapping | Sequence[Mapping] | Any,
        *,
        version: int | None = None,
        probabilities: bool = False,
    ) -> dict:
        """Score rows: a dict is one row (answered with `prediction`), a list of dicts or a
        pandas DataFrame a batch (`predictions`, in order; a DataFrame's missing values are
        nulls). Bad rows get None and an entry in `errors`; a ModelportError (422,
        `no_valid_rows`) when no row could be scored. An input too big to answer now comes
        back as a job (`id`, `status`): `wait()` for it."""
        if _is_dataframe(rows):
            body: Any = _frame_body(rows)
        elif isinstance(rows, Mapping):
            body = dict(rows)
        elif isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
            body = list(rows)
        else:
            raise TypeError("rows must be a dict (one row), a list of dicts or a DataFrame")
        content = json.dumps(body, default=_json_default, separators=(",", ":")).encode()
        return self._call(
            "POST",
            _model_path(name, version) + "/predict",
            content=content,
            headers={"Content-Type": "application/json"},
            params={"probabilities": "true"} if probabilities else None,
        )

    def predict_file(
        self,
        name: str,
        file: str | os.PathLike | BinaryIO,
        *,
        filename: str | None = None,
        version: int | None = None,
        probabilities: bool = False,
        progress: Progress | None = None,
    ) -> dict:
        """Score a CSV, JSON, JSON lines or Parquet file (the server reads its format from the
        name); a file over the server's synchronous bounds comes back as a job."""
        return self._post_file(
            _model_path(name, version) + "/predict",
            file,
            filename=filename,
            params={"probabilities": "true"} if probabilities else None,
            progress=progress,
        )

    def _post_file(
        self,
        path: str,
        file: str | os.PathLike | BinaryIO,
        *,
        filename: str | None,
        params: dict | None,
        progress: Progress | None,
        data: dict | None = None,
    ) -> Any:
        opened = open(file, "rb") if isinstance(file, (str, os.PathLike)) else None
        source = opened or file
        name = filename or Path(str(file if opened else getattr(file, "name", "input"))).name
        try:
            return self._call(
                "POST",
                path,
                files={"file": (name, _CountingFile(source, progress))},
                data=data,
                params=params,
                timeout=self._upload_timeout(),
            )
        finally:
            if opened is not None:
                opened.close()

    # --- jobs

    def submit_job(
        self,
        name: str,
        path: str | os.PathLike,
        *,
        version: int | None = None,
        id_column: str | None = None,
        progress: Progress | None = None,
    ) -> dict:
        """Score a file in the background (CSV, JSON lines, Parquet or JSON, by its name): the
        upload is streamed, `progress(done, total)` called as it goes; answers with the job."""
        return self._post_file(
            _model_path(name, version) + "/jobs",
            path,
            filename=None,
            params=None,
            data={"id_column": id_column} if id_column else None,
            progress=progress,
        )

    def jobs(self, *, model: str | None = None, status: str | None = None) -> list[dict]:
        """The caller's jobs, newest first (every page), of one model or in one state if asked."""
        filters = {name: value for name, value in (("model", model), ("status", status)) if value}
        return self._every_page(f"{API}/jobs/", **filters)

    def job(self, job: Mapping | str) -> dict:
        """A job's state: `status`, `progress` (0 to 1), `rows_total`, `rows_done`, ..."""
        return self._call("GET", f"{API}/jobs/{_job_id(job)}/")

    def cancel(self, job: Mapping | str) -> dict:
        """Cancel a job that has not finished."""
        return self._call("POST", f"{API}/jobs/{_job_id(job)}/cancel")

    def wait(
        self,
        job: Mapping | str,
        *,
        timeout: float | None = None,
        on_update: Callable[[dict], None] | None = None,
        poll_seconds: float = 0.2,
        max_poll_seconds: float = 2.0,
    ) -> dict:
        """Poll the job until it has finished (`succeeded`, `failed` or `cancelled`) and return
        it; `on_update(job)` sees every state read. The interval grows from `poll_seconds` to
        `max_poll_seconds` while nothing moves and starts again when the job does. Past
        `timeout` seconds: a ModelportError (`wait_timeout`); the job goes on."""
        return self._poll(
            lambda: self.job(job), "Job", timeout, on_update, poll_seconds, max_poll_seconds
        )

    def _poll(
        self,
        read: Callable[[], dict],
        noun: str,
        timeout: float | None,
        on_update: Callable[[dict], None] | None,
        poll_seconds: float,
        max_poll_seconds: float,
    ) -> dict:
        """Read the state until it has finished, the interval growing while nothing moves."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval, last = poll_seconds, None
        while True:
            state = read()
            if on_update is not None:
                on_update(state)
            if state["status"] in FINISHED:
                return state
            seen = (state["status"], state.get("rows_done"), state.get("progress"))
            interval = poll_seconds if seen != last else min(interval * 1.5, max_poll_seconds)
            last = seen
            pause = interval
            if deadline is not None:
                pause = min(interval, deadline - time.monotonic())
                if pause <= 0:
                    raise ModelportError(
                        status=None,
                        code="wait_timeout",
                        title=f"The {noun.lower()} has not finished",
                        detail=f"{noun} {state['id']} is still {state['status']} after "
                        f"{timeout} s.",
                        body=state,
                    )
            time.sleep(pause)  # the polling interval of a wait on the server's state

    # --- datasets (staff)

    def score_dataset(
        self,
        name: str,
        input: str | os.PathLike,
        output: str | os.PathLike,
        *,
        version: int | None = None,
        errors: str | os.PathLike | None = None,
        id_column: str | None = None,
        scheduler: str | None = None,
        partition_rows: int | None = None,
        probabilities: bool | None = None,
    ) -> dict:
        """Score a Parquet dataset where it lives (a file, folder or glob the server can read,
        local to it or s3://, inside its DATASET_LOCATIONS) on a Dask cluster, in the
        background (staff only): predictions to `output`, bad rows to `errors` (default
        OUTPUT/_errors). Answers with the queued run: `wait_dataset()` for it."""
        body: dict[str, Any] = {"input": os.fspath(input), "output": os.fspath(output)}
        options = {
            "errors": os.fspath(errors) if errors is not None else None,
            "id_column": id_column,
            "scheduler": scheduler,
            "partition_rows": partition_rows,
            "probabilities": probabilities,
        }
        body.update({key: value for key, value in options.items() if value is not None})
        return self._call("POST", _model_path(name, version) + "/datasets", json=body)

    def dataset_runs(self, *, model: str | None = None, status: str | None = None) -> list[dict]:
        """Every dataset run, newest first (every page), of one model or in one state if asked."""
        filters = {name: value for name, value in (("model", model), ("status", status)) if value}
        return self._every_page(f"{API}/datasets/", **filters)

    def dataset_run(self, run: Mapping | str) -> dict:
        """A dataset run's state: `status`, `progress`, `rows_total`, `rows_done`, partitions."""
        return self._call("GET", f"{API}/datasets/{_job_id(run)}/")

    def wait_dataset(
        self,
        run: Mapping | str,
        *,
        timeout: float | None = None,
        on_update: Callable[[dict], None] | None = None,
        poll_seconds: float = 0.2,
        max_poll_seconds: float = 2.0,
    ) -> dict:
        """Poll the dataset run until it has finished and return it, as `wait()` does a job's."""
        return self._poll(
            lambda: self.dataset_run(run),
            "Dataset run",
            timeout,
            on_update,
            poll_seconds,
            max_poll_seconds,
        )

    def download(
        self,
        job: Mapping | str,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Stream a succeeded job's predictions to `path`: Parquet for a .parquet name (or
        `format="parquet"`), CSV otherwise. The file appears only once it is complete."""
        target = Path(path)
        kind = _download_format(target, format)
        request = self._http.build_request(
            "GET", f"{API}/jobs/{_job_id(job)}/download", params={"format": kind}
        )
        return self._stream_to(request, target, progress)

    def download_errors(
        self, job: Mapping | str, path: str | os.PathLike, *, progress: Progress | None = None
    ) -> Path:
        """Stream a succeeded job's per-row errors (CSV: row, field, code, message) to `path`."""
        request = self._http.build_request("GET", f"{API}/jobs/{_job_id(job)}/errors")
        return self._stream_to(request, Path(path), progress)

    def _stream_to(self, request: httpx.Request, target: Path, progress: Progress | None) -> Path:
        response = self._send(request, stream=True)
        # The length on the wire (nginx may gzip a CSV): progress counts the bytes as sent.
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    if progress is not None:
                        progress(response.num_bytes_downloaded, total)
            os.replace(temporary, target)
        except httpx.TransportError as exc:
            os.unlink(temporary)
            raise ModelportError.from_transport(str(request.url), exc) from None
        except BaseException:
            os.unlink(temporary)
            raise
        finally:
            response.close()
        return target
