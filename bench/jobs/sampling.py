"""What /proc says about the processes of a job: memory, children, CPU time, and a sampler
thread that follows the RQ workers and their work horses (Linux only)."""

import os
import threading
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in bytes; None once it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    values[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return None
    if len(values) != 2:
        return None  # a zombie has no memory left to report
    return values["VmRSS"], values["VmHWM"]


def children(pid: int) -> list[int]:
    """The child processes of `pid` (of its main thread, which is where gunicorn and RQ fork)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        pass
    found = []  # kernels without CONFIG_PROC_CHILDREN: scan every process
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int, reaped: bool = True) -> float | None:
    """CPU time of a process (utime stime), with that of the children it has reaped (cutime
    cstime) when `reaped`."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11 : 15 if reaped else 13]) / CLOCK_TICKS


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (/proc/<pid>/clear_refs); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class ProcessPeak:
    """What the sampler saw of one process: its peak, and when it was alive (time.time())."""

    pid: int
    role: str
    parent: int
    first_seen: float
    last_seen: float
    first_rss: int
    peak_rss: int  # highest VmRSS sampled
    peak_hwm: int  # highest VmHWM read: also covers peaks between samples
    samples: int = 0
    cpu_first: float = 0.0  # CPU seconds (utime + stime) at the first and the last sample
    cpu_last: float = 0.0
    step: str = ""  # for a work horse: the RQ job it ran (plan, chunk-N, finish)
    is_horse: bool = False  # a descendant of a worker; not RQ's scheduler (known from the logs)

    @property
    def peak(self) -> int:
        """The highest memory seen, sampled RSS or VmHWM."""
        return max(self.peak_rss, self.peak_hwm)

    @property
    def cpu(self) -> float:
        """CPU seconds used while it was sampled."""
        return self.cpu_last - self.cpu_first


class MemorySampler:
    """Samples VmRSS and VmHWM of some processes and all their descendants every `interval`.

    Work horses live from a fraction of a second to a few seconds; a horse's VmHWM, read at each
    sample, covers its peaks between samples too, except in the last interval before it exits.
    """

    def __init__(self, roots: dict[str, int], interval: float):
        self.roots = roots
        self.interval = interval
        self.seen: dict[int, ProcessPeak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self) -> dict[int, ProcessPeak]:
        """Stop sampling, after one last sample; what was seen, by pid."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()
        return self.seen

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = time.time()
        for role, pid in self.roots.items():
            self._visit(pid, role, 0, now)

    def _visit(self, pid: int, role: str, parent: int, now: float) -> None:
        values = memory(pid)
        if values is None:
            return
        rss, hwm = values
        cpu = cpu_seconds(pid, reaped=False)
        peak = self.seen.get(pid)
        if peak is None:
            peak = self.seen[pid] = ProcessPeak(
                pid, role, parent, now, now, rss, rss, hwm, is_horse=parent != 0
            )
            # A horse is seen first a moment after its fork: count its CPU from 0.
            peak.cpu_first = (cpu or 0.0) if parent == 0 else 0.0
        peak.last_seen, peak.samples = now, peak.samples + 1
        peak.cpu_last = cpu if cpu is not None else peak.cpu_last
        peak.peak_rss, peak.peak_hwm = max(peak.peak_rss, rss), max(peak.peak_hwm, hwm)
        child_role = f"{role} horse" if parent == 0 else f"{role} child"
        for child in children(pid):
            self._visit(child, child_role, pid, now)
