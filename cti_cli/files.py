"""Reading a small file that a user named (only a regular file, and only so much of it), and
writing a private file so that a reader never sees half of it.

A FIFO given as the config would block `open()` forever; `/dev/zero` would be read until the
kernel kills us. `read_small` opens without blocking, refuses whatever is not a regular file and
stops reading past `limit` bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path names a FIFO, a device or a socket; `strerror` says which."""


class FileTooLarge(OSError):
    """The file holds more than the limit; `strerror` says how much is allowed."""


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def read_small(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.

    Raises `FileNotFoundError`, `IsADirectoryError`, `NotRegularFile`, `FileTooLarge` or any
    other `OSError` of opening and reading; none of them blocks.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise NotRegularFile(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 16, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileTooLarge(errno.EFBIG, f"is larger than {_size(limit)}", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes | list[bytes], *, durable: bool = True) -> None:
    """Replace `path` with `data` (bytes, or pieces written one after the other) atomically:
    a 0600 temp file in the same folder, renamed over the old one; `durable` also fsyncs the
    file and the folder (a config, secrets), which a cache rewritten every second skips.
    Raises the `OSError`; no temp file is left behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
