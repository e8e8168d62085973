"""The one exception the client raises: a problem+json body from the server, or a local failure
(the server cannot be reached, a wait ran out of time) in the same shape."""

from typing import Any

import httpx


class ModelportError(Exception):
    """An error answer (RFC 9457 problem details) or a failure to get one.

    `status` is the HTTP status (None when no answer came), `code` the server's stable code
    (e.g. `model_not_found`, `no_valid_rows`), `errors` the per-row or per-field errors, `body`
    the whole problem body as sent.
    """

    def __init__(
        self,
        *,
        status: int | None,
        code: str,
        title: str,
        detail: str = "",
        errors: list | None = None,
        request_id: str | None = None,
        retry_after: str | None = None,
        body: dict | None = None,
    ):
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body if body is not None else {}
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.status} {self.code}" if self.status else self.code
        return (
            f"{self.title} ({where}): {self.detail}" if self.detail else f"{self.title} ({where})"
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> "ModelportError":
        """The error of an answer with status >= 400 (its body read already)."""
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Not ours (a proxy's HTML page, say): keep what it said, briefly.
            text = response.text.strip()
            body = {"title": response.reason_phrase or "Error", "detail": text[:500]}
        return cls(
            status=response.status_code,
            code=str(body.get("code") or f"http_{response.status_code}"),
            title=str(body.get("title") or response.reason_phrase or "Error"),
            detail=str(body.get("detail") or ""),
            errors=body.get("errors") if isinstance(body.get("errors"), list) else [],
            request_id=body.get("request_id") or response.headers.get("X-Request-ID"),
            retry_after=response.headers.get("Retry-After"),
            body=body,
        )

    @classmethod
    def from_transport(cls, url: str, exc: httpx.TransportError) -> "ModelportError":
        """No answer: the server could not be reached, or did not answer in time."""
        if isinstance(exc, httpx.TimeoutException):
            code, title = "timeout", "The server did not answer in time"
        else:
            code, title = "connection_failed", "Cannot reach the server"
        return cls(
            status=None, code=code, title=title, detail=f"{url}: {exc or type(exc).__name__}"
        )
