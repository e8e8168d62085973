"""Job callbacks: when a job ends, its status document is POSTed to the URL it named.

Only to a host in JOB_CALLBACK_ALLOWED_HOSTS, checked when the job is submitted and again when
each attempt is sent; the name is resolved then and an address that is not public (loopback,
private, link-local, reserved) is refused unless that address itself is listed. The request
goes to the address that was checked (no second lookup), redirects are never followed, and the
body is signed: `Modelport-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>` with
JOB_CALLBACK_SECRET. An answer other than 2xx is retried by RQ (queue.enqueue_callback) after
each of JOB_CALLBACK_RETRY_SECONDS; every attempt is recorded on the job.

urllib3 sends it: already installed (under requests), it connects to a given address while
checking TLS against the host name, and neither retries nor redirects unless asked.
"""

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson
import urllib3
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..errors import CallbackNotAllowed
from ..models import PredictionJob

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Modelport-Signature"
MAX_URL_LENGTH = 2000


class CallbackFailed(Exception):
    """The receiver did not take the callback (an error or a status other than 2xx): retried."""


def sign(body: bytes, timestamp: int, secret: str | None = None) -> str:
    """The Modelport-Signature value of `body` sent at `timestamp`."""
    key = (secret if secret is not None else settings.JOB_CALLBACK_SECRET).encode()
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _allowed_hosts() -> set[str]:
    return set(settings.JOB_CALLBACK_ALLOWED_HOSTS)


def _split(url: str) -> urllib.parse.SplitResult:
    if not _allowed_hosts():
        raise CallbackNotAllowed(
            "Callbacks are off on this server: JOB_CALLBACK_ALLOWED_HOSTS names no host."
        )
    if len(url) > MAX_URL_LENGTH:
        raise CallbackNotAllowed(f"'callback_url' is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise CallbackNotAllowed("'callback_url' is not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackNotAllowed("'callback_url' must be an http or https URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise CallbackNotAllowed("'callback_url' must not carry a user name or password.")
    return parts


def _checked_address(host: str, port: int) -> str:
    """The address to send to: `host` must be allowed, and so must every address it has."""
    host = host.lower()
    allowed = _allowed_hosts()
    if host not in allowed:
        raise CallbackNotAllowed(f"The host {host[:100]!r} is not in JOB_CALLBACK_ALLOWED_HOSTS.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise CallbackNotAllowed(f"The host {host[:100]!r} does not resolve.") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global and str(address) not in allowed:
            raise CallbackNotAllowed(
                f"The host {host[:100]!r} resolves to {address}, which is not a public address; "
                "list the address itself in JOB_CALLBACK_ALLOWED_HOSTS to allow it."
            )
        addresses.append(str(address))
    if not addresses:
        raise CallbackNotAllowed(f"The host {host[:100]!r} does not resolve.")
    return addresses[0]


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_callback_url(url: str) -> str:
    """The URL a job may call back when it ends; CallbackNotAllowed otherwise."""
    parts = _split(url)
    _checked_address(parts.hostname or "", _port(parts))
    return url


def _post(url: str, body: bytes, headers: dict) -> int:
    """POST `body` to the checked address of `url`; returns the status (redirects not followed)."""
    parts = _split(url)
    port = _port(parts)
    hostname = parts.hostname or ""
    address = _checked_address(hostname, port)
    timeout = urllib3.Timeout(total=settings.JOB_CALLBACK_TIMEOUT_SECONDS)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=hostname,
            assert_hostname=hostname,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    default_port = port == (443 if parts.scheme == "https" else 80)
    host = hostname if default_port else f"{hostname}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers={**headers, "Host": host},
            redirect=False,
            retries=False,
            assert_same_host=False,
        )
        return response.status
    finally:
        pool.close()


def _record(job_id, attempt: dict) -> None:
    with transaction.atomic():
        job = PredictionJob.objects.select_for_update().only("callback_attempts").get(pk=job_id)
        job.callback_attempts = [*job.callback_attempts, attempt]
        job.save(update_fields=["callback_attempts"])


def deliver_callback(job_id, *, document: Callable[[PredictionJob], dict]) -> None:
    """Send one attempt of the job's callback and record it; CallbackFailed to be retried."""
    job = PredictionJob.objects.select_related("version__registered_model", "owner").get(pk=job_id)
    if not job.callback_url:
        return
    body = orjson.dumps(document(job))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Modelport-Callback/1",
        SIGNATURE_HEADER: sign(body, timestamp),
    }
    attempt: dict[str, Any] = {"at": timezone.now().isoformat(), "status_code": None, "error": ""}
    try:
        attempt["status_code"] = _post(job.callback_url, body, headers)
    except CallbackNotAllowed as exc:
        attempt["error"] = exc.detail  # the allow list changed: never sent, never retried
        _record(job.pk, attempt)
        logger.warning("job %s callback refused: %s", job.pk, exc.detail)
        return
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        attempt["error"] = f"{type(exc).__name__}: {exc}"[:500]
    status = attempt["status_code"]
    if status is not None and 300 <= status < 400:
        attempt["error"] = "A redirect: not followed, not retried."
    _record(job.pk, attempt)
    if status is not None and 200 <= status < 400:
        logger.info("job %s callback answered %s", job.pk, status)
        return
    logger.warning("job %s callback not taken: %s", job.pk, attempt["error"] or status)
    raise CallbackFailed(f"callback of job {job.pk}: {attempt['error'] or status}")
