"""Copying a recording out of the monitor folder: never overwrite, and prove the copy is whole.

NFS mounts drop out mid-read; a copy that is shorter than its source is deleted and reported
rather than left looking like a real recording.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cti_cli.cdr.recordings import RecordingsFolder

MAX_SUFFIX = 9999


class CopyError(Exception):
    """The copy failed; the message says where and why (no partial file is left behind)."""


@dataclass(frozen=True)
class Copied:
    source: Path
    target: Path
    size: int


def _create_new(dest_dir: Path, name: str) -> tuple[int, Path]:
    """Create `name`, or `stem-1.ext`, `stem-2.ext`, … — whichever does not exist yet."""
    base = Path(name)
    for n in range(MAX_SUFFIX + 1):
        target = dest_dir / (name if n == 0 else f"{base.stem}-{n}{base.suffix}")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(target, flags, 0o666), target
        except FileExistsError:
            continue
    raise CopyError(f"{dest_dir} already holds {name} and {MAX_SUFFIX} numbered copies of it")


def copy_recording(
    source: Path,
    dest_dir: Path,
    folder: RecordingsFolder | None = None,
    rel: str | None = None,
) -> Copied:
    """Copy `source` (an already located, inside-the-folder recording) into `dest_dir`.

    The source is opened again from the recordings `folder`'s fd at `rel` (the path `locate`
    found it at), never by its path name: a folder on the way swapped for a symlink since it was
    located is refused. Without `folder`, `source`'s own folder is the one held open.
    """
    if folder is None or rel is None:
        with RecordingsFolder(source.parent) as own:
            return copy_recording(source, dest_dir, own, source.name)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CopyError(f"cannot create {dest_dir}: {exc.strerror}") from None
    if not dest_dir.is_dir():
        raise CopyError(f"{dest_dir} is not a folder")
    try:
        src_fd, _ = folder.open(rel, follow=False)
    except OSError as exc:
        raise CopyError(f"cannot read {source}: {exc.strerror}") from None
    with os.fdopen(src_fd, "rb") as src:
        src_stat = os.fstat(src.fileno())
        try:
            dst_fd, target = _create_new(dest_dir, source.name)
        except OSError as exc:
            raise CopyError(f"cannot write into {dest_dir}: {exc.strerror}") from None
        try:
            with os.fdopen(dst_fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
                written = os.fstat(dst.fileno()).st_size
            if written != src_stat.st_size:
                raise CopyError(
                    f"copy of {source} has {written} bytes but the source has "
                    f"{src_stat.st_size}; removed the incomplete copy"
                )
            os.utime(target, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns))
        except OSError as exc:
            _remove(target)
            raise CopyError(f"copying {source} to {target} failed: {exc.strerror}") from None
        except CopyError:
            _remove(target)
            raise
    return Copied(source, target, written)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
