"""The command lines of the stack's processes, their nginx.conf, and the database they share.

Stdlib only at import time; the Django settings are read when a function needs them.
"""

import os
import shutil
import sys
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from scripts.render_nginx import prepare_prefix, render_nginx
from scripts.stack.processes import StackError


def database_url(settings_dict: dict | None = None) -> str:
    """The database Django uses (default: the open connection's) as a DATABASE_URL for another
    process; ValueError when another process cannot share it."""
    if settings_dict is None:
        from django.db import connection

        settings_dict = connection.settings_dict
    engine, name = settings_dict["ENGINE"], str(settings_dict["NAME"])
    if engine == "django.db.backends.sqlite3":
        if name == ":memory:" or name.startswith("file:"):
            raise ValueError("other processes need a file-based SQLite database (TEST NAME).")
        return f"sqlite:///{Path(name).resolve()}"
    if engine == "django.db.backends.postgresql":
        auth = urllib.parse.quote(settings_dict.get("USER") or "", safe="")
        if settings_dict.get("PASSWORD"):
            auth += ":" + urllib.parse.quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{urllib.parse.quote(name, safe='')}"
    raise ValueError(f"no DATABASE_URL for a {engine} database.")


WEB_SERVERS = ("gunicorn", "granian")
# The line an instance's log has for each web worker it starts.
WORKER_START_LINES = {"gunicorn": "Booting worker", "granian": "Spawning worker"}
# The logger of each server's access lines.
ACCESS_LOGGERS = {"gunicorn": "gunicorn.access", "granian": "granian.access"}


def web_server() -> str:
    """The web server of the instances: WEB_SERVER, gunicorn unless told."""
    server = os.environ.get("WEB_SERVER", "").strip().lower() or "gunicorn"
    if server not in WEB_SERVERS:
        raise StackError(f"WEB_SERVER={server!r}: one of {', '.join(WEB_SERVERS)}.")
    return server


def web_command(port: int, *, python: str = sys.executable, server: str | None = None) -> list[str]:
    """One web instance on 127.0.0.1:port, under gunicorn (project/gunicorn.conf.py) or granian
    (project/granian_server.py), as WEB_SERVER says unless `server` is given."""
    if (server or web_server()) == "granian":
        return [python, "-m", "project.granian_server", "--bind", f"127.0.0.1:{port}"]
    return [python, "-m", "gunicorn", "-c", "project/gunicorn.conf.py"] + [
        "project.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
    ]


def worker_starts(log: str, server: str | None = None) -> int:
    """How many web workers an instance's log says it started (its first ones included)."""
    return log.count(WORKER_START_LINES[server or web_server()])


def worker_command(queues: Iterable[str] = ("default",)) -> list[str]:
    """One RQ worker (scripts/worker; it runs $PYTHON, default `python`)."""
    return ["scripts/worker", *queues]


def scheduler_command(python: str = sys.executable) -> list[str]:
    """RQ's cron scheduler: cleanups and the admin's scoring schedules (predictions/cron.py)."""
    return [python, "manage.py", "run_scheduler"]


def nginx_binary() -> str | None:
    """Path of the nginx executable (scripts/setup installs it), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_command(conf: Path, *, binary: str | None = None) -> list[str]:
    """nginx in the foreground (nginx.conf says `daemon off`) with conf's directory as prefix."""
    binary = binary or nginx_binary()
    if binary is None:
        raise StackError("nginx is not installed; run ./scripts/setup.")
    prefix = Path(conf).parent
    return [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]


def redis_command(socket_path: Path, data_dir: Path) -> list[str]:
    """A redis-server on a unix socket only, keeping nothing on disk."""
    return [shutil.which("redis-server") or "redis-server", "--port", "0"] + [
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
    ]


def write_nginx_conf(
    prefix: Path,
    *,
    listen_port: int,
    upstream_ports: list[int],
    upstream_header: bool = False,
    max_body_bytes: int | None = None,
    metrics_allowed_networks: list[str] | None = None,
) -> Path:
    """Render nginx.conf into prefix (with its log and temp directories); returns its path.

    What is not given comes from the Django settings (the same env vars as the instances)."""
    from django.conf import settings

    prepare_prefix(prefix)
    conf = Path(prefix) / "nginx.conf"
    conf.write_text(
        render_nginx(
            listen_port=listen_port,
            upstream_ports=upstream_ports,
            prefix=prefix,
            static_root=Path(settings.STATIC_ROOT),
            max_body_bytes=settings.MAX_UPLOAD_BYTES if max_body_bytes is None else max_body_bytes,
            metrics_allowed_networks=(
                settings.METRICS_ALLOWED_NETWORKS
                if metrics_allowed_networks is None
                else metrics_allowed_networks
            ),
            web_timeout_seconds=settings.WEB_TIMEOUT_SECONDS,
            upstream_header=upstream_header,
        )
    )
    return conf
