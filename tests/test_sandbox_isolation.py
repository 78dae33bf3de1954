"""No two sandboxes share anything: the system-call filter, and what one run leaves for the next.

Hostile cases (issue 14): a notebook run, where the course package is importable, tries to leave the
reference implementations where the answers sandbox of the same slot (same uid when the grader runs
as root) could pick them up: the user keyring, ``/dev/shm``, ``/tmp``, the home folder, SysV IPC, an
abstract unix socket. Expected outcome: the keyring calls fail with EPERM, and nothing left by one
sandbox is visible in another, while it runs or after it ended. Ordinary Python, numpy, torch and
subprocesses still work under the filter.
"""

import platform
import re
from pathlib import Path

import pytest

from bncourse.grading import sandbox, seccomp, trusted
from conftest import printed_json_of_notebook_run

LIMITS = sandbox.Limits(cell_seconds=30, wall_seconds=90)
MACHINE = platform.machine()
NUMBERS = seccomp.ARCHITECTURES.get(MACHINE, (None, {}, None))[1]

PROBES = '''
import ctypes, errno, os, socket, subprocess, sys

_libc = ctypes.CDLL(None, use_errno=True)
NR = %(numbers)r
KEY = 0x62636F75  # SysV key both sandboxes use
ABSTRACT = "\\0bncourse-isolation-test"

def _call(name, *args):
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(NR[name] if isinstance(name, str) else name),
                           *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")

def syscalls():
    out = {
        "keyctl": _call("keyctl", 0, -4, 1),  # KEYCTL_GET_KEYRING_ID of the user keyring, creating it
        "add_key": _call("add_key", b"user", b"reference", b"def batchnorm_forward(): ...", 28, -4),
        "request_key": _call("request_key", b"user", b"reference", None, 0),
        "unshare_user": _call("unshare", 0x10000000),
        "clone_newuser": _call("clone", 0x10000000 | 17, 0, 0, 0, 0),  # CLONE_NEWUSER | SIGCHLD
        "ptrace": _call("ptrace", 0, 0, 0, 0),  # PTRACE_TRACEME
        "bpf": _call("bpf", 0, 0, 0),
        "perf_event_open": _call("perf_event_open", 0, 0, -1, -1, 0),
        "userfaultfd": _call("userfaultfd", 0),
        "mount": _call("mount", b"none", b"/tmp", b"tmpfs", 0, 0),
        "io_uring_setup": _call("io_uring_setup", 1, 0),
        "clone3": _call("clone3", 0, 0),
    }
    if "%(machine)s" == "x86_64":
        out["x32_keyctl"] = _call(0x40000000 | NR["keyctl"], 0, -4, 1)
    return out

def ordinary_work():
    import numpy as np
    import torch
    import multiprocessing
    x = torch.randn(8, 4, requires_grad=True)
    (x * 2).sum().backward()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        squares = pool.map(abs, [-1, -2, -3])
    return {"numpy": float(np.linalg.norm(np.ones(4))), "grad": float(x.grad.sum()), "pool": squares,
            "subprocess": subprocess.run(["sh", "-c", "echo hi"], capture_output=True, text=True).stdout,
            "thread": __import__("threading").Thread(target=lambda: None).start() is None}

def leave_traces():
    """What a notebook run would do to hand the reference to a later sandbox."""
    left = {"keyring": _call("add_key", b"user", b"reference", b"leak", 4, -4)}
    for folder in ("/tmp", "/dev/shm", os.path.expanduser("~")):
        with open(os.path.join(folder, "reference.py"), "w") as f:
            f.write("leak")
    _libc.shmget.restype = ctypes.c_int
    left["shm"] = _libc.shmget(KEY, 4096, 0o1666)  # IPC_CREAT | 0666
    left["msg"] = _libc.msgget(KEY, 0o1666)
    global _listener
    _listener = socket.socket(socket.AF_UNIX)
    _listener.bind(ABSTRACT)
    _listener.listen()
    return left

def find_traces():
    found = []
    if _call("request_key", b"user", b"reference", None, 0) == "ok":
        found.append("keyring")
    for folder in ("/tmp", "/dev/shm", os.path.expanduser("~")):
        if os.path.exists(os.path.join(folder, "reference.py")):
            found.append(folder)
    if _libc.shmget(KEY, 0, 0) >= 0:
        found.append("sysv shm")
    if _libc.msgget(KEY, 0) >= 0:
        found.append("sysv msg")
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(ABSTRACT)
        found.append("abstract socket")
    except OSError:
        pass
    return found
''' % {"numbers": NUMBERS, "machine": MACHINE}

needs_table = pytest.mark.skipif(not NUMBERS, reason=f"no system-call filter for {MACHINE}")


def plan(source=PROBES):
    return [{"index": 0, "name": "probes", "role": "answer", "source": source}]


def _header_numbers(header: Path, prefix: str = "__NR_") -> dict[str, int]:
    found = {}
    for line in header.read_text().splitlines():
        match = re.match(rf"#define {prefix}(\w+)\s+(\d+)\s*$", line)
        if match:
            found[match[1]] = int(match[2])
    return found


@pytest.mark.parametrize("machine", sorted(seccomp.ARCHITECTURES))
def test_the_filter_is_a_valid_program_for_each_architecture(machine):
    code = seccomp.program(machine)
    assert len(code) % 8 == 0 and 0 < len(code) // 8 < 4096  # BPF_MAXINSNS
    numbers = seccomp.ARCHITECTURES[machine][1]
    assert set(numbers) >= set(seccomp.UNSUPPORTED) | {"clone", "keyctl", "add_key", "request_key"}
    assert set(numbers) <= set(seccomp.DENIED) | set(seccomp.UNSUPPORTED) | {"clone"}


def test_the_filter_refuses_an_unknown_architecture():
    with pytest.raises(seccomp.UnsupportedArchitecture):
        seccomp.program("mips")


@pytest.mark.parametrize("machine, header, prefix", [
    ("x86_64", Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), "__NR_"),
    ("x86_64", Path("/usr/include/asm/unistd_64.h"), "__NR_"),
    ("aarch64", Path("/usr/include/asm-generic/unistd.h"), "__NR(?:3264)?_"),
])
def test_the_system_call_numbers_match_the_kernel_headers(machine, header, prefix):
    if not header.exists():
        pytest.skip(f"{header} is not installed")
    from_header = _header_numbers(header, prefix)
    table = seccomp.ARCHITECTURES[machine][1]
    assert {n: table[n] for n in table if n in from_header} == {n: from_header[n] for n in table if n in from_header}


@needs_table
def test_inside_a_sandbox_the_filtered_calls_fail_and_ordinary_work_still_runs():
    with trusted.AnswerServer(plan(), LIMITS, slot=0) as server:
        results = server.call("syscalls", (), {})
        work = server.call("ordinary_work", (), {})
    expected = {name: "EPERM" for name in results}
    expected.update(io_uring_setup="ENOSYS", clone3="ENOSYS", x32_keyctl="ENOSYS")
    assert results == {k: expected[k] for k in results}
    assert work == {"numpy": 2.0, "grad": 64.0, "pool": [1, 2, 3], "subprocess": "hi\n", "thread": True}


@needs_table
def test_the_notebook_run_is_filtered_too():
    probe = PROBES + "\nimport json\nprint('RESULT' + json.dumps(syscalls()))"
    results = printed_json_of_notebook_run(probe, "RESULT", LIMITS)
    for name in ("keyctl", "add_key", "request_key", "unshare_user", "clone_newuser", "ptrace", "mount"):
        assert results[name] == "EPERM", name


@needs_table
def test_a_sandbox_sees_nothing_an_earlier_or_concurrent_sandbox_of_its_slot_left():
    with trusted.AnswerServer(plan(), LIMITS, slot=0) as first:
        left = first.call("leave_traces", (), {})
        assert left["keyring"] == "EPERM"  # the one facility namespaces do not separate: refused
        assert left["shm"] >= 0 and left["msg"] >= 0  # these were made, in the first sandbox's namespace
        assert first.call("find_traces", (), {}) == ["/tmp", "/dev/shm", "/home/student", "sysv shm", "sysv msg",
                                                     "abstract socket"]  # the probe itself works
        with trusted.AnswerServer(plan(), LIMITS, slot=0) as concurrent:
            assert concurrent.call("find_traces", (), {}) == []
    with trusted.AnswerServer(plan(), LIMITS, slot=0) as later:
        assert later.call("find_traces", (), {}) == []


def _run_filter(code: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    """A tiny classic-BPF interpreter for the instructions the filter uses, on one seccomp_data."""
    import struct

    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    program = [struct.unpack("=HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    accumulator, pc = 0, 0
    while True:
        op, jt, jf, k = program[pc]
        if op == 0x20:
            accumulator = struct.unpack_from("=I", data, k)[0]
        elif op == 0x06:
            return k
        elif op in (0x15, 0x35, 0x45):
            taken = {0x15: accumulator == k, 0x35: accumulator >= k, 0x45: bool(accumulator & k)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        pc += 1


@pytest.mark.parametrize("machine", sorted(seccomp.ARCHITECTURES))
def test_the_filter_decides_as_documented(machine):
    """Each architecture's program, run on made-up system calls (aarch64 cannot be run here)."""
    import errno

    code = seccomp.program(machine)
    arch, numbers, other_abi = seccomp.ARCHITECTURES[machine]
    eperm, enosys = seccomp.ERRNO | errno.EPERM, seccomp.ERRNO | errno.ENOSYS
    for name, nr in numbers.items():
        if name in seccomp.DENIED:
            assert _run_filter(code, arch, nr) == eperm, name
        elif name in seccomp.UNSUPPORTED:
            assert _run_filter(code, arch, nr) == enosys, name
    ordinary = {"x86_64": (0, 1, 2, 9, 57, 59, 231), "aarch64": (63, 64, 56, 222, 221, 94)}[machine]
    for nr in ordinary:  # read, write, openat, mmap, fork/execve, exit_group ...
        assert _run_filter(code, arch, nr) == seccomp.ALLOW, nr
    clone = numbers["clone"]
    assert _run_filter(code, arch, clone, 0x01200011) == seccomp.ALLOW  # what fork() passes
    assert _run_filter(code, arch, clone, 0x003D0F00) == seccomp.ALLOW  # what pthread_create passes
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert _run_filter(code, arch, clone, flag | 17) == eperm, hex(flag)
    assert _run_filter(code, 0x40000003, numbers["keyctl"]) == enosys  # i386 (int 0x80) or another ABI
    assert _run_filter(code, 0x40000028, 0) == enosys  # 32-bit ARM
    if other_abi is not None:
        assert _run_filter(code, arch, other_abi | numbers["keyctl"]) == enosys  # x32
