"""Render the nginx.conf template at the repository root (stdlib only).

Only the known ${UPPER_CASE} placeholders are replaced; nginx's own $variables stay as they are.
scripts/stack/ (the launcher of scripts/run, bench/ and the e2e tests) imports render_nginx() and
prepare_prefix(); the command line renders a config by hand (e.g. for several machines).
"""

import argparse
import ipaddress
import os
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "nginx.conf"
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render_nginx(
    *,
    listen_port: int,
    upstream_ports: list[int],
    prefix: Path,
    static_root: Path,
    max_body_bytes: int,
    metrics_allowed_networks: list[str],
    web_timeout_seconds: int,
    upstream_header: bool = False,
) -> str:
    """Return nginx.conf for one listen port in front of gunicorn instances on upstream_ports.

    `upstream_header` adds X-Upstream (which instance answered) to every proxied response: for
    the e2e tests and benchmarks only, never in production (it names internal addresses)."""
    if not upstream_ports:
        raise ValueError("nginx needs at least one upstream port.")
    servers = "\n".join(
        f"        server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;" for port in upstream_ports
    )
    # As root, nginx's workers would run as "nobody" and could not read files under var/.
    user_directive = "user root;" if os.geteuid() == 0 else ""
    values = {
        "USER_DIRECTIVE": user_directive,
        "LISTEN_PORT": str(listen_port),
        "UPSTREAM_SERVERS": servers,
        "PREFIX": str(Path(prefix).resolve()),
        "STATIC_ROOT": str(Path(static_root).resolve()),
        "MAX_BODY_BYTES": str(max_body_bytes),
        # gunicorn answers (or kills its worker) first; nginx's 504 is only for a hung instance.
        "PROXY_TIMEOUT_SECONDS": str(web_timeout_seconds + 30),
        # A request that could not be sent (instance down) may try every instance once.
        "NEXT_UPSTREAM_TRIES": str(len(upstream_ports)),
        "UPSTREAM_HEADER": (
            "add_header X-Upstream $upstream_addr always;" if upstream_header else ""
        ),
        "METRICS_ALLOW": "\n".join(
            f"            allow {network};" for network in metrics_allowed_networks
        ),
    }

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"nginx.conf uses ${{{name}}}, which render_nginx() does not know.")
        return values[name]

    return _PLACEHOLDER.sub(substitute, TEMPLATE.read_text())


def prepare_prefix(prefix: Path) -> None:
    """Create the log and temp directories nginx expects under prefix."""
    for name in ("logs", "tmp"):
        (Path(prefix) / name).mkdir(parents=True, exist_ok=True)


def _port_list(value: str) -> list[int]:
    return [int(port) for port in value.split(",") if port.strip()]


def _network_list(value: str) -> list[str]:
    return [str(ipaddress.ip_network(item.strip(), strict=False)) for item in value.split(",")]


def main(argv: list[str] | None = None) -> int:
    """Command line: render the template into --output and create the prefix directories."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream-ports", type=_port_list, required=True, help="e.g. 8001,8002")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--static-root", type=Path, required=True)
    parser.add_argument("--max-body-bytes", type=int, required=True)
    parser.add_argument(
        "--metrics-allowed-networks",
        type=_network_list,
        required=True,
        help="CIDRs, comma-separated",
    )
    parser.add_argument("--web-timeout-seconds", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    prepare_prefix(args.prefix)
    text = render_nginx(
        listen_port=args.listen_port,
        upstream_ports=args.upstream_ports,
        prefix=args.prefix,
        static_root=args.static_root,
        max_body_bytes=args.max_body_bytes,
        metrics_allowed_networks=args.metrics_allowed_networks,
        web_timeout_seconds=args.web_timeout_seconds,
    )
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
