"""Throwaway sandboxes for student code: bubblewrap (``bwrap``) plus resource limits.

Every run gets a fresh mount namespace in which only these exist: the system's ``/usr`` and
``/etc`` and the course's Python environment, all read-only; the course package (in the answers
sandbox only its allow-listed modules, so that the reference implementations cannot be imported);
``/grader`` with the programs in ``inside/`` and the run's input files, read-only; and an empty,
size-limited ``tmpfs`` as home and working directory. There is no network (a new network namespace
with only loopback), a new PID namespace (when the run ends, the kernel kills every process left in
it), and limits on wall time, address space, processes, open files and file size. A system-call filter
(:mod:`.seccomp`) refuses what namespaces do not isolate, above all the kernel keyrings, so that no
two runs share anything.

When the grader runs as root, bwrap sets up the mounts and ``setpriv`` drops to an unprivileged
user id of its own per worker slot, with no capabilities: the process limit then counts only that
sandbox's processes, so a fork bomb cannot starve another student's run. As an ordinary user,
bwrap uses a user namespace and the process limit is shared by the grader's sandboxes.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import seccomp

INSIDE = Path(__file__).resolve().parent / "inside"
PACKAGE = Path(__file__).resolve().parents[1]  # src/bncourse
# Course modules an answer may import while its functions are being checked. Everything else in
# the package (reference implementations, check helpers, the grader) is hidden in that sandbox.
MODULES_VISIBLE_TO_ANSWERS = ("__init__.py", "plotting.py")
HOME = "/home/student"
FIRST_SANDBOX_UID = 61000


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 300
    cell_seconds: int = 60
    memory_mb: int = 4096  # address space per process
    processes: int = 64  # per sandbox when the grader runs as root
    file_mb: int = 64  # largest file a process may write
    workdir_mb: int = 256  # size of the tmpfs home (counts against RAM)
    open_files: int = 256


class SlotPool:
    """Worker slots. Each slot is its own unprivileged user id when running as root, and its own
    control group (memory and process caps for everything in its sandbox) where the grader may
    create them."""

    def __init__(self, workers: int, limits: Limits):
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(workers):
            self._free.put(slot)
        self.cgroups = Cgroups(workers, limits)

    def acquire(self) -> int:
        return self._free.get()

    def release(self, slot: int) -> None:
        self._free.put(slot)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cgroups.remove()


# Which cgroup.procs files each slot's sandboxes join; filled by Cgroups, read by command().
_CGROUP_PROCS: dict[int, list[Path]] = {}


class Cgroups:
    """Per-slot caps on the memory (tmpfs included) and the number of processes of a sandbox.

    rlimits alone cap each process, not a sandbox: 64 processes of 4 GB, or a RAM-backed folder,
    could still exhaust the machine. Control groups cap the whole sandbox, so the kernel's
    out-of-memory killer stays inside it. They need a writable cgroup hierarchy (root, v1 or
    delegated v2); elsewhere ``kind`` says "none" and only the rlimits apply."""

    def __init__(self, slots: int, limits: Limits):
        self.dirs: list[Path] = []
        self.kind = "none"
        if os.geteuid() != 0:
            return
        _remove_stale_groups()
        try:
            self.kind = self._create(slots, limits)
        except OSError:
            self.remove()
            self.kind = "none"

    def _create(self, slots: int, limits: Limits) -> str:
        mine = _own_cgroups()
        name = f"bncourse-{os.getpid()}"
        root = Path("/sys/fs/cgroup")
        if (root / "memory" / "cgroup.procs").exists() and (root / "pids" / "cgroup.procs").exists():
            for slot in range(slots):
                memory = root / "memory" / mine.get("memory", "/").lstrip("/") / f"{name}-{slot}"
                pids = root / "pids" / mine.get("pids", "/").lstrip("/") / f"{name}-{slot}"
                for folder in (memory, pids):
                    folder.mkdir()
                    self.dirs.append(folder)
                (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                if (memory / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                (pids / "pids.max").write_text(str(limits.processes))
                _CGROUP_PROCS[slot] = [memory / "cgroup.procs", pids / "cgroup.procs"]
            return "cgroup v1"
        if (root / "cgroup.controllers").exists():
            parent = root / mine.get("", "/").lstrip("/") / name
            parent.mkdir()
            self.dirs.append(parent)
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
            for slot in range(slots):
                group = parent / f"slot{slot}"
                group.mkdir()
                self.dirs.insert(0, group)
                (group / "memory.max").write_text(str(limits.memory_mb * 2**20))
                if (group / "memory.swap.max").exists():
                    (group / "memory.swap.max").write_text("0")
                (group / "pids.max").write_text(str(limits.processes))
                _CGROUP_PROCS[slot] = [group / "cgroup.procs"]
            return "cgroup v2"
        return "none"

    def remove(self) -> None:
        _CGROUP_PROCS.clear()
        for folder in self.dirs:
            try:
                folder.rmdir()
            except OSError:
                pass
        self.dirs = []


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path ("" is the v2 hierarchy)."""
    groups = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            groups[controller] = path
    return groups


def _remove_stale_groups() -> None:
    """Groups left by a grader that was killed (their pid no longer exists)."""
    for folder in Path("/sys/fs/cgroup").glob("**/bncourse-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for child in sorted(folder.glob("*/"), reverse=True):
                try:
                    child.rmdir()
                except OSError:
                    pass
            try:
                folder.rmdir()
            except OSError:
                pass


def require_bwrap() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed: run `make sandbox-tools` "
                                 "(it installs Debian's bubblewrap package) or `apt-get install bubblewrap`")
    return path


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def _ro_binds() -> list[Path]:
    """Read-only paths the course's Python needs: the interpreter and the virtual environment."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix)]
    return [p for p in dict.fromkeys(paths) if p not in (Path("/usr"), Path("/etc"))
            and not str(p).startswith(("/usr/", "/etc/"))]


def popen(program: str, args: list[str], *, limits: Limits, slot: int, inputs: Path, answers_only: bool = False,
          pass_fds: tuple[int, ...] = (), **kwargs) -> subprocess.Popen:
    """Start ``inside/<program>`` in a fresh sandbox under the system-call filter of :mod:`.seccomp`."""
    fd = seccomp.filter_fd()
    try:
        cmd = command(program, args, limits=limits, slot=slot, inputs=inputs, answers_only=answers_only,
                      seccomp_fd=fd)
        return subprocess.Popen(cmd, pass_fds=(*pass_fds, fd), **kwargs)
    finally:
        os.close(fd)


def command(program: str, args: list[str], *, limits: Limits, slot: int, inputs: Path, seccomp_fd: int,
            answers_only: bool = False) -> list[str]:
    """The command line that runs ``inside/<program>`` with ``args`` in a fresh sandbox.

    ``inputs`` is a folder of the run's input files, visible read-only at ``/input``.
    With ``answers_only`` the course package shows only :data:`MODULES_VISIBLE_TO_ANSWERS`.
    ``seccomp_fd`` holds the system-call filter (:func:`.seccomp.filter_fd`), passed to bwrap.
    """
    bwrap = require_bwrap()
    as_root = os.geteuid() == 0
    cmd = []
    if _CGROUP_PROCS.get(slot):
        # Join the slot's control groups first, so that bwrap and everything it starts are capped.
        join = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        cmd += ["/bin/sh", "-c", join, "sh", *map(str, _CGROUP_PROCS[slot]), "--"]
    cmd += [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--seccomp", str(seccomp_fd)]
    if not as_root:
        cmd += ["--unshare-user"]
    # /tmp first: later mounts go on top of earlier ones, and the course may live under /tmp.
    size = str(limits.workdir_mb * 2**20)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm",
            "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        top = Path("/") / name
        if top.is_symlink():
            cmd += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            cmd += ["--ro-bind", str(top), str(top)]
    made = {Path("/tmp"), Path("/proc"), Path("/dev")}  # already mounted: never re-create or chmod them

    def make_parents(target: Path) -> None:
        for parent in _ancestors(target):  # world-traversable parents (e.g. /root is 0700 outside)
            if parent not in made and not str(parent).startswith(("/usr", "/etc")):
                cmd.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(parent)

    def bind(source: Path, target: Path | None = None) -> None:
        target = target or source
        make_parents(target)
        cmd.extend(["--ro-bind", str(source), str(target)])

    for path in _ro_binds():
        bind(path)
    if answers_only:
        # An empty folder over the package (wherever it is installed, even inside the environment
        # bound above), then only the allowed modules on top of it.
        make_parents(PACKAGE)
        cmd += ["--perms", "0755", "--size", str(2**20), "--tmpfs", str(PACKAGE)]
        made.add(PACKAGE)
        for name in MODULES_VISIBLE_TO_ANSWERS:
            if (PACKAGE / name).exists():
                bind(PACKAGE / name)
    else:
        bind(PACKAGE)
    bind(INSIDE, Path("/grader"))
    bind(inputs, Path("/input"))
    cmd += ["--perms", "1777", "--size", size, "--tmpfs", HOME,
            "--chdir", HOME, "--clearenv"]
    env = {
        "HOME": HOME, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config",
        "IPYTHONDIR": "/tmp/ipython", "MPLCONFIGDIR": "/tmp/matplotlib", "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # One thread per sandbox: the workers already use every core.
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd.append("--")
    if as_root:
        uid = str(FIRST_SANDBOX_UID + slot)
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs"]
    processes = limits.processes if as_root else max(limits.processes, _user_processes() + 512)
    cmd += ["prlimit", f"--as={limits.memory_mb * 2**20}", f"--fsize={limits.file_mb * 2**20}",
            f"--nproc={processes}", f"--nofile={limits.open_files}", "--core=0", "--",
            str(Path(sys.prefix) / "bin" / "python"), "-s", f"/grader/{program}", *args]
    return cmd


def stop(process: subprocess.Popen | None, slot: int | None = None) -> None:
    """End a sandbox: killing bwrap ends its PID namespace and everything in it."""
    if process and process.poll() is None:
        process.kill()
    if process:
        process.wait()
        if slot is not None:
            wait_until_gone(slot)


def wait_until_gone(slot: int, timeout: float = 10.0) -> None:
    """After a sandbox is killed, wait until the kernel has removed its processes, so that the next
    sandbox of this slot (same uid, same process limit) starts from zero."""
    if os.geteuid() != 0:
        return
    uid, deadline = FIRST_SANDBOX_UID + slot, time.monotonic() + timeout
    while time.monotonic() < deadline and any(_owner(p) == uid for p in Path("/proc").iterdir() if p.name.isdigit()):
        time.sleep(0.05)


def _user_processes() -> int:
    uid = os.getuid()
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def check_available() -> None:
    """Fail early, in plain words, when sandboxes cannot be created here."""
    bwrap = require_bwrap()
    try:
        fd = seccomp.filter_fd()
    except seccomp.UnsupportedArchitecture as exc:
        raise SandboxUnavailable(str(exc)) from None
    try:
        probe = subprocess.run([bwrap, "--unshare-pid", "--unshare-net", *([] if os.geteuid() == 0 else ["--unshare-user"]),
                                "--seccomp", str(fd), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                               capture_output=True, text=True, pass_fds=(fd,))
    finally:
        os.close(fd)
    if probe.returncode != 0:
        raise SandboxUnavailable("bubblewrap cannot create a sandbox on this machine "
                                 f"({probe.stderr.strip() or probe.returncode}). Unprivileged user namespaces "
                                 "must be enabled (sysctl kernel.unprivileged_userns_clone=1), or run the grader "
                                 "in a container that allows them (see autograder/GRADING.md).")
