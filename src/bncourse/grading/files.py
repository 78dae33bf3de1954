"""Reading what students handed in, and writing what the grader produces (trusted side).

Reading: only regular files, never through a symbolic link (``O_NOFOLLOW``, checked on the open
file), never more than a limit, never blocking on a FIFO or a device. Writing: whole files,
renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotARegularFile(OSError):
    """A path in a submission that is a link, a folder, a device or a FIFO: never read."""


def read_regular(path: Path, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of ``path``, which must be a regular file and not a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if os.path.islink(path):
            raise NotARegularFile(f"{path.name} is a symbolic link; links are never followed") from None
        raise exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotARegularFile(f"{path.name} is not a regular file")
        return f.read(limit + 1)


def is_regular(path: Path) -> bool:
    """A regular file, not reached through a link (the path itself is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_real_dir(path: Path) -> bool:
    """A folder that is not a symbolic link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
