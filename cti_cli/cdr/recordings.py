"""From `cdr.recordingfile` to a file in the recordings folder — and never outside it.

`recordingfile` is whatever the dialplan put there: FreePBX stores a bare name and files it
under `YYYY/MM/DD/`; other setups store a relative or absolute path. The value comes from
callers' data (caller id ends up in file names), so it is treated as hostile: a path that
resolves outside the recordings folder (`..`, a foreign absolute path, a symlink leading out)
is *refused* and never opened.

The folder's tree is writable by the asterisk user, who may swap a folder for a symlink at any
moment. So a path is never resolved and then opened: the recordings folder is opened once, and
every file is reached from that directory fd one component at a time (`openat` with
`O_NOFOLLOW`). A symlink met on the way is read and followed only while it stays inside the
folder, again from the folder's fd.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from cti_cli.cdr.wav import WavError, WavInfo, wav_info

_NAME_DATE = re.compile(r"-(\d{4})(\d{2})(\d{2})-\d{6}-")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_LINKS = 40  # what the kernel allows in one path resolution
_SWAPPED = "a symbolic link was swapped in on its path since it was located"


class RecStatus(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    REFUSED = "refused"
    UNREADABLE = "unreadable"
    NONE = "none"  # the row has no recording


@dataclass(frozen=True)
class Recording:
    """What became of one `recordingfile` value."""

    name: str
    status: RecStatus
    path: Path | None = None  # where it is (present) or was looked for (missing)
    size: int | None = None
    audio: WavInfo | None = None
    problem: str | None = None  # why refused/unreadable, or what is wrong with the audio
    rel: str | None = None  # present: its path inside the recordings folder (for copying)

    @property
    def seconds(self) -> float | None:
        return self.audio.seconds if self.audio else None


class OutsideFolder(Exception):
    """A name or a symlink on the way leads out of the recordings folder."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class NotRegularFile(OSError):
    def __init__(self, where: str) -> None:
        super().__init__(errno.EISDIR, "not a regular file", where)


def candidates(name: str, calldate: datetime | None, root: Path) -> list[Path]:
    """Where a `recordingfile` value may live, most likely first."""
    if os.path.isabs(name):
        return [Path(name)]
    if "/" in name:
        return [root / name]
    places: list[Path] = []
    if match := _NAME_DATE.search(name):
        places.append(root.joinpath(*match.groups(), name))
    if calldate is not None:
        places.append(root / f"{calldate:%Y}" / f"{calldate:%m}" / f"{calldate:%d}" / name)
    places.append(root / name)
    return list(dict.fromkeys(places))


def _below(path: str, root: str) -> str | None:
    """`path` relative to `root` when lexically inside it ("" for the root itself), else None."""
    root = root.rstrip("/") or "/"
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


class RecordingsFolder:
    """The recordings folder, held open: every file is opened from its directory fd.

    The folder itself may be a symlink (an NFS mount point); what is below it is never
    followed out of it. Use as a context manager, or `close()`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.real = os.path.realpath(path)
        self._roots = list(dict.fromkeys((self.real, os.path.normpath(os.path.abspath(path)))))
        self._fd: int | None = None

    def __enter__(self) -> RecordingsFolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _root_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def relative(self, place: str) -> str:
        """The normalised path of `place` (absolute, or relative to the folder) inside the
        folder; `OutsideFolder` when it leads out. Lexical only: nothing is resolved."""
        if os.path.isabs(place):
            norm = os.path.normpath(place)
            for root in self._roots:
                rel = _below(norm, root)
                if rel is not None:
                    return rel
            # maybe it names the folder by another way in (a symlinked parent): map it only
            real = os.path.realpath(norm)
            rel = _below(real, self.real)
            if rel is None:
                raise OutsideFolder(real)
            return rel
        norm = posixpath.normpath(place)
        if norm == ".." or norm.startswith("../"):
            raise OutsideFolder(os.path.normpath(os.path.join(self.real, place)))
        return "" if norm == "." else norm

    def open(self, rel: str, *, follow: bool = True) -> tuple[int, str]:
        """Open the regular file at `rel` (see `relative`) for reading, walking from the
        folder's fd; return the fd and the path inside the folder it was found at. Symlinks
        are followed while they stay inside the folder; with `follow=False` (a path `open`
        already returned) any symlink on the way — swapped in since — is refused.
        Raises `OutsideFolder`, `NotRegularFile` or `OSError`."""
        root = self._root_fd()
        parts = [p for p in rel.split("/") if p]
        links = 0
        while True:
            if not parts:
                raise NotRegularFile(self.real)
            cur = root
            try:
                for i, part in enumerate(parts):
                    last = i == len(parts) - 1
                    try:
                        fd = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=cur)
                    except OSError as exc:
                        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        try:
                            target = os.readlink(part, dir_fd=cur)
                        except OSError:
                            raise exc from None
                        if not follow:
                            raise OSError(
                                errno.ELOOP, _SWAPPED, os.path.join(self.real, rel)
                            ) from None
                        links += 1
                        if links > _MAX_LINKS:
                            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel) from None
                        parts = self._follow(target, parts[:i], parts[i + 1 :])
                        break
                    if cur != root:
                        os.close(cur)
                    cur = fd
                else:
                    if not stat.S_ISREG(os.fstat(cur).st_mode):
                        raise NotRegularFile(os.path.join(self.real, *parts))
                    fd, cur = cur, root
                    return fd, "/".join(parts)
            finally:
                if cur != root:
                    os.close(cur)

    def _follow(self, target: str, before: list[str], after: list[str]) -> list[str]:
        """The components after replacing a symlink (in folder `before`) by its `target`."""
        if os.path.isabs(target):
            norm = os.path.normpath(target)
            rel = next((r for r in (_below(norm, root) for root in self._roots) if r is not None),
                       None)  # fmt: skip
            if rel is None:
                raise OutsideFolder(os.path.join(norm, *after))
            joined = posixpath.join(rel, *after)
        else:
            joined = posixpath.join(*before, target, *after)
        norm = posixpath.normpath(joined)
        if norm == ".." or norm.startswith("../"):
            raise OutsideFolder(os.path.normpath(os.path.join(self.real, joined)))
        return [p for p in norm.split("/") if p and p != "."]


def locate(
    name: str,
    calldate: datetime | None,
    recordings_dir: Path,
    folder: RecordingsFolder | None = None,
) -> Recording:
    """Find and inspect one recording; only files proven inside the folder are opened."""
    if not name:
        return Recording(name, RecStatus.NONE)
    if "\x00" in name:
        return Recording(name, RecStatus.REFUSED, problem="the name contains a NUL byte")
    if folder is None:
        with RecordingsFolder(recordings_dir) as own:
            return _locate(name, calldate, own)
    return _locate(name, calldate, folder)


def _locate(name: str, calldate: datetime | None, folder: RecordingsFolder) -> Recording:
    root = Path(folder.real)
    places = candidates(name, calldate, root)
    for place in places:
        try:
            fd, rel = folder.open(folder.relative(str(place)))
        except OutsideFolder as out:
            why = f"resolves to {out.target}, outside the recordings folder {folder.path}"
            return Recording(name, RecStatus.REFUSED, path=place, problem=why)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return Recording(name, RecStatus.UNREADABLE, path=place, problem=exc.strerror)
        return _inspect(name, fd, root / rel, rel)
    return Recording(name, RecStatus.MISSING, path=places[0])


def _inspect(name: str, fd: int, path: Path, rel: str) -> Recording:
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if path.suffix.lower() != ".wav":
            return Recording(name, RecStatus.PRESENT, path=path, size=size, rel=rel)
        try:
            audio = wav_info(handle, size)
        except WavError as exc:
            return Recording(
                name, RecStatus.PRESENT, path=path, size=size, problem=str(exc), rel=rel
            )
        except OSError as exc:
            return Recording(name, RecStatus.UNREADABLE, path=path, size=size, problem=exc.strerror)
    return Recording(
        name, RecStatus.PRESENT, path=path, size=size, audio=audio, problem=audio.problem, rel=rel
    )


class RecordingFinder:
    """`locate` with memory (the legs of one call usually share one recording file), holding
    the recordings folder open so that copying reaches the very folder that was searched."""

    def __init__(self, recordings_dir: Path) -> None:
        self.recordings_dir = recordings_dir
        self.folder = RecordingsFolder(recordings_dir)
        self._seen: dict[str, Recording] = {}

    def __enter__(self) -> RecordingFinder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.folder.close()

    def __call__(self, name: str | None, calldate: datetime | None) -> Recording:
        if not name:
            return Recording("", RecStatus.NONE)
        if name not in self._seen:
            self._seen[name] = locate(name, calldate, self.recordings_dir, self.folder)
        return self._seen[name]
