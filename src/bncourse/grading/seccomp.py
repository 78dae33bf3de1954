"""The system-call filter of every sandbox: what bubblewrap's namespaces do not isolate.

Namespaces give each sandbox its own mounts, processes, network (abstract unix sockets included),
SysV IPC and host name, and fresh ``tmpfs`` folders (``/tmp``, ``/dev/shm``, home). Some kernel
facilities have no namespace at all, and a sandbox never needs them: above all the *keyrings*
(``keyctl``, ``add_key``, ``request_key``), which belong to the user id. When the grader runs as
root every sandbox of a worker slot has the same uid, so without this filter a notebook run, where
the course package (with its reference implementations) is importable, could leave the reference in
the user keyring for that slot's answers sandbox, or for the next student, to read back.

The filter is a classic-BPF program, built here (libseccomp is not needed), that bwrap loads with
``--seccomp FD`` just before it starts the sandbox's first program; every process in the sandbox
inherits it and cannot remove it. It

* refuses every system call made with another calling convention than the machine's own
  (``int 0x80`` and the x32 ABI on x86_64, 32-bit ARM on aarch64): the numbers below would not apply;
* returns ``EPERM`` for the calls in :data:`DENIED`, and for ``clone`` with a namespace flag;
* returns ``ENOSYS`` for :data:`UNSUPPORTED` (``clone3``, whose flags it cannot read, and io_uring),
  so that libraries fall back to the ordinary calls, as they do on older kernels;
* allows everything else.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16 if struct.pack("=I", 1) == struct.pack("<I", 1) else 20
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | BPF_J* | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
ALLOW = 0x7FFF0000  # SECCOMP_RET_ALLOW
ERRNO = 0x00050000  # SECCOMP_RET_ERRNO | errno

# Namespace flags of clone(); CLONE_NEWTIME (0x80) is only valid in clone3 and unshare.
CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

DENIED = (
    # keyrings: not namespaced, shared by every process of a uid
    "keyctl", "add_key", "request_key",
    # other processes, the kernel and its tracing
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "bpf", "perf_event_open",
    "userfaultfd", "syslog", "lookup_dcookie", "fanotify_init",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    # namespaces and mounts (bwrap has made its own before the filter is loaded)
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    # the machine's state
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "sethostname", "setdomainname", "vhangup",
    # x86 only: port I/O and long-gone calls
    "iopl", "ioperm", "uselib", "create_module", "get_kernel_syms", "query_module", "nfsservctl", "_sysctl",
)
UNSUPPORTED = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")

# System call numbers (from the kernel's unistd headers); a name missing from a table does not exist there.
X86_64 = {
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "syslog": 103, "lookup_dcookie": 212, "fanotify_init": 300, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169, "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "quotactl_fd": 443, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "clock_adjtime": 305, "sethostname": 170, "setdomainname": 171, "vhangup": 153, "iopl": 172, "ioperm": 173,
    "uselib": 134, "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "nfsservctl": 180,
    "_sysctl": 156, "clone": 56, "clone3": 435, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427,
}
AARCH64 = {  # the generic table (asm-generic/unistd.h)
    "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
    "syslog": 116, "lookup_dcookie": 18, "fanotify_init": 262, "kexec_load": 104, "kexec_file_load": 294,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "reboot": 142, "unshare": 97, "setns": 268,
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "swapon": 224, "swapoff": 225, "acct": 89,
    "quotactl": 60, "quotactl_fd": 443, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171,
    "clock_adjtime": 266, "sethostname": 161, "setdomainname": 162, "vhangup": 58, "nfsservctl": 42,
    "clone": 220, "clone3": 435, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}
# machine -> (AUDIT_ARCH_*, numbers, first number of another ABI sharing this arch value or None)
ARCHITECTURES = {
    "x86_64": (0xC000003E, X86_64, 0x40000000),  # __X32_SYSCALL_BIT: x32 calls report the x86_64 arch
    "aarch64": (0xC00000B7, AARCH64, None),
}


class UnsupportedArchitecture(RuntimeError):
    """No system-call table for this machine: the sandboxes cannot be made safe here."""


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter as bwrap reads it: an array of ``struct sock_filter``."""
    machine = machine or platform.machine()
    if machine not in ARCHITECTURES:
        raise UnsupportedArchitecture(f"the grader's sandboxes need a system-call filter, and there is none for "
                                      f"{machine!r} (only {', '.join(ARCHITECTURES)})")
    arch, numbers, other_abi = ARCHITECTURES[machine]
    denied = sorted({numbers[n] for n in DENIED if n in numbers})
    unsupported = sorted({numbers[n] for n in UNSUPPORTED if n in numbers})
    # Instructions with symbolic jump targets, resolved below: ("jeq", k, label) jumps when equal.
    code: list[tuple] = [("ld", _ARCH), ("jne", arch, "enosys"), ("ld", _NR)]
    if other_abi is not None:
        code.append(("jge", other_abi, "enosys"))
    code += [("jeq", nr, "enosys") for nr in unsupported]
    code += [("jeq", nr, "eperm") for nr in denied]
    code += [("jeq", numbers["clone"], "clone"), ("ret", ALLOW),
             ("label", "clone"), ("ld", _ARG0_LOW), ("jset", CLONE_NEW_FLAGS, "eperm"), ("ret", ALLOW),
             ("label", "eperm"), ("ret", ERRNO | errno.EPERM),
             ("label", "enosys"), ("ret", ERRNO | errno.ENOSYS)]
    labels, position = {}, 0
    for item in code:
        if item[0] == "label":
            labels[item[1]] = position
        else:
            position += 1
    out, position = [], 0
    for item in code:
        op = item[0]
        if op == "label":
            continue
        if op == "ld":
            out.append(_insn(_LD_ABS, item[1]))
        elif op == "ret":
            out.append(_insn(_RET, item[1]))
        else:
            offset = labels[item[2]] - position - 1
            if not 0 <= offset <= 255:
                raise AssertionError("seccomp filter jump out of range")
            if op == "jne":
                out.append(_insn(_JEQ, item[1], 0, offset))
            else:
                out.append(_insn({"jeq": _JEQ, "jge": _JGE, "jset": _JSET}[op], item[1], offset, 0))
        position += 1
    return b"".join(out)


def filter_fd() -> int:
    """A readable file descriptor holding :func:`program`, for ``bwrap --seccomp FD`` (the caller
    passes it to bwrap and closes it afterwards)."""
    data = program()
    fd = os.memfd_create("bncourse-seccomp", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else None
    if fd is None:
        read_end, write_end = os.pipe()  # the program is far smaller than a pipe's buffer
        os.write(write_end, data)
        os.close(write_end)
        return read_end
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
