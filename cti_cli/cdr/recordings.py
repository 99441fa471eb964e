"""From `cdr.recordingfile` to a file in the recordings folder — and never outside it.

`recordingfile` is whatever the dialplan put there: FreePBX stores a bare name and files it
under `YYYY/MM/DD/`; other setups store a relative or absolute path. The value comes from
callers' data (caller id ends up in file names), so it is treated as hostile: a path that
resolves outside the recordings folder (`..`, a foreign absolute path, a symlink leading out)
is *refused* and never opened.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cti_cli.cdr.wav import WavError, WavInfo, wav_info

_NAME_DATE = re.compile(r"-(\d{4})(\d{2})(\d{2})-\d{6}-")


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

    @property
    def seconds(self) -> float | None:
        return self.audio.seconds if self.audio else None


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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def locate(name: str, calldate: datetime | None, recordings_dir: Path) -> Recording:
    """Resolve and inspect one recording; only files proven inside the folder are opened."""
    if not name:
        return Recording(name, RecStatus.NONE)
    if "\x00" in name:
        return Recording(name, RecStatus.REFUSED, problem="the name contains a NUL byte")
    root = os.path.realpath(recordings_dir)
    places = candidates(name, calldate, Path(root))
    for place in places:
        real = os.path.realpath(place)
        if not _inside(real, root):
            why = f"resolves to {real}, outside the recordings folder {recordings_dir}"
            return Recording(name, RecStatus.REFUSED, path=place, problem=why)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return Recording(name, RecStatus.UNREADABLE, path=Path(real), problem=exc.strerror)
        if not stat.S_ISREG(info.st_mode):
            return Recording(
                name, RecStatus.UNREADABLE, path=Path(real), problem="not a regular file"
            )
        return _inspect(name, Path(real))
    return Recording(name, RecStatus.MISSING, path=places[0])


def open_inside(path: Path) -> int:
    """Open a resolved recording for reading without following a symlink swapped in since."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(0, "not a regular file", str(path))
    return fd


def _inspect(name: str, path: Path) -> Recording:
    try:
        fd = open_inside(path)
    except OSError as exc:
        return Recording(name, RecStatus.UNREADABLE, path=path, problem=exc.strerror)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if path.suffix.lower() != ".wav":
            return Recording(name, RecStatus.PRESENT, path=path, size=size)
        try:
            audio = wav_info(handle, size)
        except WavError as exc:
            return Recording(name, RecStatus.PRESENT, path=path, size=size, problem=str(exc))
        except OSError as exc:
            return Recording(name, RecStatus.UNREADABLE, path=path, size=size, problem=exc.strerror)
    return Recording(
        name, RecStatus.PRESENT, path=path, size=size, audio=audio, problem=audio.problem
    )


class RecordingFinder:
    """`locate` with memory: the legs of one call usually share one recording file."""

    def __init__(self, recordings_dir: Path) -> None:
        self.recordings_dir = recordings_dir
        self._seen: dict[str, Recording] = {}

    def __call__(self, name: str | None, calldate: datetime | None) -> Recording:
        if not name:
            return Recording("", RecStatus.NONE)
        if name not in self._seen:
            self._seen[name] = locate(name, calldate, self.recordings_dir)
        return self._seen[name]
