"""Keep one command running: restart it when it dies, pass signals on (stdlib only).

    python scripts/supervise.py [--pidfile FILE] [--wait-for PATH] -- COMMAND [ARGS...]

scripts/run starts each gunicorn instance and each RQ worker through it, so an instance killed
with -9 (master and workers) is back within a second or two and nginx sends it traffic again.
The command runs in its own session (a kill of its process group does not reach us), started by
scripts/stack/processes.py like every process of the stack. SIGHUP is passed on (gunicorn
reloads gracefully); SIGTERM and SIGINT are passed on and end the supervision once the command
has exited, and what it left in its process group is killed. A command that keeps dying quickly
is restarted with a growing delay, up to MAX_DELAY_SECONDS.
"""

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.stack.processes import StackError, kill_group, launch, wait_for_path

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 10.0  # a run this long resets the delay
WAIT_FOR_SECONDS = 10.0  # --wait-for: then start anyway (and restart until it works)


class Supervisor:
    def __init__(self, command: list[str], pidfile: Path | None):
        self.command = command
        self.pidfile = pidfile
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def forward(self, signum, frame) -> None:
        """Pass a signal on to the command; SIGTERM and SIGINT also end the supervision."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def start(self) -> None:
        """Start the command and write its pid to the pid file."""
        self.child = launch(Path(self.command[0]).name, self.command)
        if self.pidfile:
            self.pidfile.write_text(f"{self.child.pid}\n")

    def run(self) -> int:
        """Run the command until told to stop, restarting it when it dies; its last status."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.forward)
        delay = FIRST_DELAY_SECONDS
        while True:
            started = time.monotonic()
            self.start()
            status = self.child.wait()
            if self.stopping:
                kill_group(self.child.pid)
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
                kill_group(self.child.pid)
                return status
            delay = min(delay * 2, MAX_DELAY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", type=Path, help="write the command's current pid here")
    parser.add_argument("--wait-for", type=Path, help="first wait until this path exists")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to supervise after --")
    if args.wait_for:
        try:
            wait_for_path(args.wait_for, timeout_seconds=WAIT_FOR_SECONDS)
        except StackError as exc:
            print(f"supervise: {exc}", file=sys.stderr, flush=True)
    return Supervisor(command, args.pidfile).run()


if __name__ == "__main__":
    sys.exit(main())
