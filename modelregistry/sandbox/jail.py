"""Run a module in a confined child process: it can write only inside its own work dir.

The parent calls `run(module, args, workdir=...)`, which starts
`python -m modelregistry.sandbox.jail ... MODULE ARGS`; that child confines itself (`confine`)
before it imports MODULE, then runs MODULE as `__main__`. Confinement, strongest first:

- Landlock (Linux >= 5.13; this module speaks to the kernel through `syscall`, no dependency):
  every write outside the work dir is refused (create, write, truncate, delete, rename, link),
  whatever the uid; reading stays allowed (the child imports numpy and scikit-learn). From ABI 4
  on it cannot open or accept TCP connections (Redis, PostgreSQL), from ABI 6 on it cannot
  signal processes outside its sandbox. It cannot be lifted by the child.
- No capabilities: a child of a root parent keeps uid 0 (this machine's interpreter lives in
  /root, which no other uid may enter) but drops every capability and sets no_new_privs, so it
  cannot regain them by exec: no mount, module load, raw socket or DAC override.
- Resource limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU), a wall-clock timeout in
  the parent that kills the whole process group, and death with the parent (PR_SET_PDEATHSIG).

Without Landlock the child refuses to run unless the parent allows it (`require_landlock`);
then only the dropped capabilities and the limits remain, and it says so on stderr.

Kept free of Django imports: the child imports it before anything else.
"""

import argparse
import contextlib
import ctypes
import os
import resource
import runpy
import signal
import subprocess
import sys
from pathlib import Path

# linux/landlock.h; the syscall numbers are the same on every architecture (>= 5.1 table).
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_WRITE_FILE = 1 << 1
OUT_OF_MEMORY_MARK = "Cannot allocate memory"  # one of artifacts.OUT_OF_MEMORY_SIGNS
NEAR_LIMIT = 0.9  # a peak above this share of RLIMIT_AS means the limit was what failed
FS_REMOVE_DIR, FS_REMOVE_FILE = 1 << 4, 1 << 5
FS_MAKE_ANY = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
FS_REFER = 1 << 13  # ABI 2: link or rename a file into another directory
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CAPABILITY_VERSION_3 = 0x20080522

EXIT_UNCONFINED = 70  # the child stops: Landlock is required but unavailable
STDOUT, STDERR = "stdout.txt", "stderr.txt"  # the child's output, in its work dir
OUTPUT_TAIL_BYTES = 64 * 1024


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _prctl(option: int, value: int) -> None:
    """prctl(option, value, 0, 0, 0); OSError on failure."""
    zero = ctypes.c_ulong(0)
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def _syscall(number: int, *args) -> int:
    """A raw syscall; OSError on failure."""
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except OSError:
        return 0


def _write_rights(abi: int) -> int:
    """Every filesystem right that changes something, as far as this ABI knows them."""
    rights = FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_ANY
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _allow(ruleset: int, path: str, rights: int) -> None:
    """Allow `rights` beneath `path` (a directory) or on it (a file)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _syscall(
            SYS_LANDLOCK_ADD_RULE,
            ctypes.c_int(ruleset),
            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(fd)


def restrict_writes(workdir: str, abi: int) -> None:
    """Landlock this process and its future children: writes only beneath `workdir` (and to
    /dev/null), no TCP (ABI >= 4), no signals or abstract sockets outside (ABI >= 6)."""
    rights = _write_rights(abi)
    attr = _RulesetAttr(handled_access_fs=rights)
    size = 8  # an older kernel refuses the fields it does not know
    if abi >= 4:
        attr.handled_access_net, size = NET_BIND_TCP | NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL, 24
    ruleset = _syscall(
        SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    try:
        _allow(ruleset, workdir, rights)
        # Libraries open /dev/null for writing; only file rights may be granted on a file.
        _allow(ruleset, os.devnull, rights & (FS_WRITE_FILE | FS_TRUNCATE))
        _syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def drop_capabilities() -> None:
    """Empty this process's capability sets (with no_new_privs set, exec cannot refill them)."""
    data = (_CapData * 2)()  # all zero: nothing effective, permitted or inheritable
    if _libc.capset(ctypes.byref(_CapHeader(CAPABILITY_VERSION_3, 0)), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")


def limit_resources(memory_mb: int, cpu_seconds: int) -> None:
    """Cap the address space, the size of any file written (the work dir's too) and CPU time
    (SIGXCPU at the limit, SIGKILL 5 s later)."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write a core file


def confine(workdir: str, *, memory_mb: int, cpu_seconds: int, require_landlock: bool) -> str:
    """Confine this process as the module docstring says; return a line describing how.

    Raises SystemExit(EXIT_UNCONFINED) when Landlock is required but unavailable.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # an orphan must not run on
    limit_resources(memory_mb, cpu_seconds)
    # Landlock needs it (without CAP_SYS_ADMIN); it also keeps exec from granting privileges.
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    abi = landlock_abi()
    if abi:
        restrict_writes(workdir, abi)
        how = f"Landlock ABI {abi}"
    elif require_landlock:
        print(
            "jail: Landlock is not available in this kernel; refusing to run unconfined "
            "(SANDBOX_REQUIRE_LANDLOCK=false allows it).",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_UNCONFINED)
    else:
        how = "no Landlock: writes are NOT confined to the work dir"
    drop_capabilities()
    return f"jail: {how}, uid {os.geteuid()}, {memory_mb} MiB, {cpu_seconds} CPU s"


def child_env(workdir: str, extra: dict[str, str]) -> dict[str, str]:
    """A small environment: no secrets (DATABASE_URL, DJANGO_SECRET_KEY) reach the child."""
    env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = os.environ.get(name, "1")  # as the web processes run (gunicorn.conf)
    env |= {
        "HOME": workdir,  # libraries that keep a cache or an id write there, not in ~
        "TMPDIR": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # the repository root
    }
    return env | extra


def run(
    module: str,
    args: list[str],
    *,
    workdir: str,
    timeout: float,
    memory_mb: int,
    require_landlock: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m module *args` confined to `workdir`; kill it after `timeout` seconds.

    Returns the finished process with the end of its stdout and stderr as text; raises
    subprocess.TimeoutExpired.
    """
    command = [
        sys.executable,
        "-P",  # sys.path gets no cwd entry
        "-m",
        "modelregistry.sandbox.jail",
        f"--workdir={workdir}",
        f"--memory-mb={memory_mb}",
        f"--cpu-seconds={max(1, int(timeout))}",
        *([] if require_landlock else ["--allow-unconfined"]),
        module,
        *args,
    ]
    # Output goes to files of the work dir, not pipes: the child cannot fill the parent's memory.
    with open(Path(workdir, STDOUT), "wb") as stdout, open(Path(workdir, STDERR), "wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=child_env(workdir, env or {}),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it may have ended in the meantime
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return subprocess.CompletedProcess(
        command, process.returncode, _tail(workdir, STDOUT), _tail(workdir, STDERR)
    )


def read_inside(workdir: str, name: str) -> bytes:
    """The bytes of file `name` directly in `workdir`, never through a link the child made."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"not a file name in the work dir: {name!r}")
    fd = os.open(Path(workdir, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _tail(workdir: str, name: str) -> str:
    """The end of an output file of the child (enough for a traceback), as text."""
    try:
        data = read_inside(workdir, name)
    except OSError:
        return ""
    return data[-OUTPUT_TAIL_BYTES:].decode(errors="replace")


def main() -> None:
    """Child side: confine, then run the module named on the command line as __main__."""
    parser = argparse.ArgumentParser(prog="python -m modelregistry.sandbox.jail")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    parser.add_argument("--allow-unconfined", action="store_true")
    parser.add_argument("module")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    how = confine(
        options.workdir,
        memory_mb=options.memory_mb,
        cpu_seconds=options.cpu_seconds,
        require_landlock=not options.allow_unconfined,
    )
    print(how, file=sys.stderr)
    sys.argv = [options.module, *options.args]
    try:
        runpy.run_module(options.module, run_name="__main__", alter_sys=True)
    except BaseException:
        # Under RLIMIT_AS a failed allocation inside an import can surface as any error
        # (SystemError, ImportError): say so when the address space reached the limit.
        if near_memory_limit():
            print(f"{OUT_OF_MEMORY_MARK} (address space reached the limit)", file=sys.stderr)
        raise


def near_memory_limit() -> bool:
    """Whether this process's address space has reached its RLIMIT_AS (within NEAR_LIMIT)."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    return limit != resource.RLIM_INFINITY and address_space_peak() >= NEAR_LIMIT * limit


def address_space_peak() -> int:
    """The largest address space this process has had, in bytes (VmPeak), or 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


if __name__ == "__main__":
    main()
