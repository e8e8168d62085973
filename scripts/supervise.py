"""Keep one command running: restart it when it dies, pass signals on (stdlib only).

    python scripts/supervise.py [--pidfile FILE] -- COMMAND [ARGS...]

scripts/run starts each gunicorn instance and each RQ worker through it, so an instance killed
with -9 (master and workers) is back within a second or two and nginx sends it traffic again.
The command runs in its own session (a kill of its process group does not reach us). SIGHUP is
passed on (gunicorn reloads gracefully); SIGTERM and SIGINT are passed on and end the
supervision once the command has exited. A command that keeps dying quickly is restarted with a
growing delay, up to MAX_DELAY_SECONDS.
"""

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 10.0  # a run this long resets the delay


class Supervisor:
    def __init__(self, command: list[str], pidfile: Path | None):
        self.command = command
        self.pidfile = pidfile
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def forward(self, signum, frame) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def start(self) -> None:
        self.child = subprocess.Popen(self.command, start_new_session=True)
        if self.pidfile:
            self.pidfile.write_text(f"{self.child.pid}\n")

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.forward)
        delay = FIRST_DELAY_SECONDS
        while True:
            started = time.monotonic()
            self.start()
            status = self.child.wait()
            if self.stopping:
                return status
            ran = time.monotonic() - started
            delay = FIRST_DELAY_SECONDS if ran >= HEALTHY_AFTER_SECONDS else delay
            print(
                f"supervise: {self.command[0]} (pid {self.child.pid}) exited with {status} after "
                f"{ran:.1f} s; restarting in {delay:g} s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            if self.stopping:
                return status
            delay = min(delay * 2, MAX_DELAY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", type=Path, help="write the command's current pid here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to supervise after --")
    return Supervisor(command, args.pidfile).run()


if __name__ == "__main__":
    sys.exit(main())
