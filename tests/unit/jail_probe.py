"""A tiny child for tests/unit/test_sandbox.py, run under `modelregistry.sandbox.jail` as code
that got past the allowlist would run: it tries to write, connect, hog memory or time.

`python -m modelregistry.sandbox.jail ... tests.unit.jail_probe MODE [ARGS]`; writes
`outcome.json` in its work dir (the current directory) as the checking children do.
"""

import json
import os
import socket
import sys
import time


def attempt(action) -> str:
    """'done' when `action()` succeeded, else the error it raised."""
    try:
        action()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "done"


def write(path: str) -> None:
    with open(path, "w") as handle:
        handle.write("owned")


def capabilities() -> str:
    """The effective capability set, as /proc shows it (hex)."""
    with open("/proc/self/status") as status:
        return next(line.split()[1] for line in status if line.startswith("CapEff:"))


def probe(mode: str, args: list[str]) -> dict:
    if mode == "writes":
        inside, outside, redis_port = args
        return {
            "inside": attempt(lambda: write(inside)),
            "outside": attempt(lambda: write(outside)),
            "mkdir": attempt(lambda: os.mkdir(outside + ".d")),
            "symlink": attempt(lambda: os.symlink("/etc/passwd", outside + ".link")),
            "connect": attempt(lambda: socket.create_connection(("127.0.0.1", int(redis_port)), 2)),
            "capabilities": capabilities(),
            "environment": sorted(os.environ),
        }
    if mode == "sleep":
        time.sleep(float(args[0]))
    if mode == "memory":
        hog = bytearray(int(args[0]) * 1024 * 1024)
        return {"allocated": len(hog)}
    return {"ok": True}


if __name__ == "__main__":
    outcome = probe(sys.argv[1], sys.argv[2:])
    with open("outcome.json", "w") as handle:
        json.dump(outcome, handle)
