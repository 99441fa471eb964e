"""Recording files: where a `recordingfile` value leads, what a WAV header really holds, copies."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from cdr_support import wav_bytes

from cti_cli.cdr.copying import CopyError, copy_recording
from cti_cli.cdr.recordings import RecordingFinder, RecStatus, locate
from cti_cli.cdr.wav import WavError, wav_info

CALLDATE = datetime(2026, 11, 25, 10, 0, 0)


def info_of(data: bytes):  # type: ignore[no-untyped-def]
    return wav_info(io.BytesIO(data), len(data))


# ---------------------------------------------------------------- WAV headers


def test_pcm_length_from_header() -> None:
    info = info_of(wav_bytes(2.25))
    assert (info.codec, info.sample_rate, info.channels, info.bits) == ("PCM", 8000, 1, 16)
    assert info.seconds == 2.25 and info.problem is None


def test_gsm_wav49_with_extra_chunks() -> None:
    # MixMonitor's wav49: GSM 6.10, 1625 bytes/s, a 20-byte fmt chunk and a fact chunk.
    fmt = struct.pack("<HHIIHHHH", 0x31, 1, 8000, 1625, 65, 0, 2, 320)
    audio = b"\x00" * 1625 * 3
    data = (
        b"RIFF" + struct.pack("<I", 4 + 28 + 12 + 8 + len(audio)) + b"WAVE"
        + b"fmt " + struct.pack("<I", 20) + fmt
        + b"fact" + struct.pack("<II", 4, 24000)
        + b"data" + struct.pack("<I", len(audio)) + audio
    )  # fmt: skip
    info = info_of(data)
    assert info.codec == "GSM 6.10" and info.seconds == 3.0


def test_unfinished_header_uses_the_bytes_on_disk() -> None:
    info = info_of(wav_bytes(1.5, declared=0))
    assert info.seconds == 1.5 and "no audio length" in (info.problem or "")


def test_truncated_audio_is_reported_with_what_remains() -> None:
    data = wav_bytes(5.0)[: 44 + 8000]
    info = info_of(data)
    assert info.seconds == 0.5
    assert info.problem == "truncated: header promises 80000 bytes of audio, file holds 8000"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"RIFF\x00\x00", "too short"),
        (b"ID3\x03" + b"\x00" * 60, "not a WAV file"),
        (wav_bytes(1.0)[:12], "no format chunk"),
        (wav_bytes(1.0)[:30], "truncated in the format chunk"),
        (wav_bytes(1.0)[:36], "no audio data chunk"),
    ],
)
def test_broken_headers(data: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message):
        info_of(data)


# ---------------------------------------------------------------- locating


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "monitor"
    folder.mkdir()
    return folder


def put(root: Path, rel: str, data: bytes = b"") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data or wav_bytes(1.0))
    return path


def test_freepbx_bare_name_is_found_under_its_date(root: Path) -> None:
    name = "out-79161234567-101-20261124-235959-1795641007.0.wav"
    path = put(root, f"2026/11/24/{name}")
    rec = locate(name, CALLDATE, root)  # calldate is the next day: the name's date wins
    assert (rec.status, rec.path, rec.seconds) == (RecStatus.PRESENT, path, 1.0)


def test_flat_folder_and_relative_and_absolute_paths(root: Path) -> None:
    flat = put(root, "q-200.wav")
    rel = put(root, "queues/support/call.wav")
    assert locate("q-200.wav", CALLDATE, root).path == flat
    assert locate("queues/support/call.wav", CALLDATE, root).path == rel
    assert locate(str(rel), CALLDATE, root).status is RecStatus.PRESENT


def test_non_wav_gets_size_only(root: Path) -> None:
    put(root, "2026/11/25/x.mp3", b"ID3" + b"\x00" * 97)
    rec = locate("x.mp3", CALLDATE, root)
    assert (rec.status, rec.size, rec.audio, rec.problem) == (RecStatus.PRESENT, 100, None, None)


def test_recordings_folder_reached_through_a_symlink_is_fine(root: Path, tmp_path: Path) -> None:
    put(root, "2026/11/25/a.wav")
    link = tmp_path / "nfs-mount"
    link.symlink_to(root)
    assert locate("a.wav", CALLDATE, link).status is RecStatus.PRESENT


@pytest.mark.parametrize("name", ["../outside.wav", "2026/../../outside.wav", "/etc/passwd"])
def test_names_leading_out_are_refused(root: Path, name: str) -> None:
    (root.parent / "outside.wav").write_bytes(wav_bytes(1.0))
    rec = locate(name, CALLDATE, root)
    assert rec.status is RecStatus.REFUSED and rec.size is None
    assert "outside the recordings folder" in (rec.problem or "")


def test_symlinked_file_or_folder_leading_out_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.wav").write_bytes(wav_bytes(1.0))
    (root / "2026/11").mkdir(parents=True)
    (root / "2026/11/25").symlink_to(outside)
    assert locate("b.wav", CALLDATE, root).status is RecStatus.REFUSED
    (root / "c.wav").symlink_to(outside / "b.wav")
    assert locate("c.wav", None, root).status is RecStatus.REFUSED


def test_nul_byte_folder_and_missing(root: Path) -> None:
    assert locate("a\x00.wav", CALLDATE, root).status is RecStatus.REFUSED
    (root / "2026/11/25/dir.wav").mkdir(parents=True)
    rec = locate("dir.wav", CALLDATE, root)
    assert rec.status is RecStatus.UNREADABLE and rec.problem == "not a regular file"
    missing = locate("gone.wav", CALLDATE, root)
    assert missing.status is RecStatus.MISSING and missing.path == root / "2026/11/25/gone.wav"
    assert locate("", CALLDATE, root).status is RecStatus.NONE


def _as_nobody(check: Callable[[], bool]) -> bool:
    """Run `check` in a child that has dropped root (root reads anything)."""
    if os.geteuid() != 0:
        return check()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgid(65534)
            os.setuid(65534)
            os._exit(0 if check() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_unreadable_file() -> None:
    base = Path(tempfile.mkdtemp(prefix="cti-unreadable-"))
    try:
        base.chmod(0o755)
        path = put(base, "2026/11/25/locked.wav")
        for folder in (base / "2026", base / "2026/11", base / "2026/11/25"):
            folder.chmod(0o755)
        path.chmod(0)
        assert _as_nobody(
            lambda: locate("locked.wav", CALLDATE, base).status is RecStatus.UNREADABLE
        )
    finally:
        shutil.rmtree(base)


def test_finder_looks_each_name_up_once(root: Path) -> None:
    put(root, "2026/11/25/a.wav")
    finder = RecordingFinder(root)
    first = finder("a.wav", CALLDATE)
    (root / "2026/11/25/a.wav").unlink()
    assert finder("a.wav", CALLDATE) is first
    assert finder(None, CALLDATE).status is RecStatus.NONE


# ---------------------------------------------------------------- copying


def test_copy_never_overwrites_and_keeps_bytes_and_mtime(root: Path, tmp_path: Path) -> None:
    source = put(root, "2026/11/25/a.wav", wav_bytes(0.5))
    os.utime(source, (1_700_000_000, 1_700_000_000))
    out = tmp_path / "new" / "dir"
    (tmp_path / "new").mkdir()
    copies = [copy_recording(source, out) for _ in range(3)]
    assert [c.target.name for c in copies] == ["a.wav", "a-1.wav", "a-2.wav"]
    for c in copies:
        assert c.target.read_bytes() == source.read_bytes() and c.size == source.stat().st_size
        assert c.target.stat().st_mtime == 1_700_000_000


def test_copy_into_a_file_or_from_a_symlink_fails_cleanly(root: Path, tmp_path: Path) -> None:
    source = put(root, "a.wav")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(CopyError, match=r"cannot create|is not a folder"):
        copy_recording(source, blocker)
    link = root / "link.wav"
    link.symlink_to(source)  # swapped in after locating: must not be followed
    with pytest.raises(CopyError, match="cannot read"):
        copy_recording(link, tmp_path / "out")


# ---------------------------------------------------------------- the recordings tree is hostile


def _swap_for_link(folder: Path, target: Path) -> Path:
    """Replace `folder` by a symlink to `target` (what the asterisk user can do at any time)."""
    moved = folder.with_name(folder.name + ".moved")
    folder.rename(moved)
    folder.symlink_to(target, target_is_directory=True)
    return moved


@pytest.mark.parametrize("swapped", ["2026/11/25", "2026"])
def test_folder_swapped_for_a_symlink_after_locating_is_not_copied_from(
    root: Path, tmp_path: Path, swapped: str
) -> None:
    put(root, "2026/11/25/a.wav", wav_bytes(0.5))
    outside = tmp_path / "secret"
    (outside / "11/25").mkdir(parents=True)
    (outside / "a.wav").write_bytes(b"SECRET" * 100)
    (outside / "11/25/a.wav").write_bytes(b"SECRET" * 100)
    dest = tmp_path / "out"
    with RecordingFinder(root) as finder:
        rec = finder("a.wav", CALLDATE)
        assert rec.status is RecStatus.PRESENT and rec.rel == "2026/11/25/a.wav"
        _swap_for_link(root / swapped, outside)
        assert rec.path is not None
        with pytest.raises(CopyError, match="cannot read"):
            copy_recording(rec.path, dest, finder.folder, rec.rel)
    assert not dest.exists() or not any(dest.iterdir())
    assert locate("a.wav", CALLDATE, root).status is RecStatus.REFUSED


def test_symlinks_inside_the_folder_are_still_followed(root: Path) -> None:
    put(root, "store/a.wav")
    (root / "2026/11").mkdir(parents=True)
    (root / "2026/11/25").symlink_to("../../store")
    (root / "b.wav").symlink_to(root / "store/a.wav")
    assert locate("a.wav", CALLDATE, root).rel == "store/a.wav"
    rec = locate("b.wav", None, root)
    assert (rec.status, rec.rel) == (RecStatus.PRESENT, "store/a.wav")
    loop = root / "loop.wav"
    loop.symlink_to("loop.wav")
    assert locate("loop.wav", None, root).status is RecStatus.UNREADABLE


def test_racing_folder_swaps_never_copy_a_file_from_outside(root: Path, tmp_path: Path) -> None:
    import threading
    import time

    put(root, "2026/11/25/a.wav", wav_bytes(0.1))
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "a.wav").write_bytes(b"SECRET" * 100)
    day, moved = root / "2026/11/25", root / "2026/11/25.moved"
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            day.rename(moved)
            day.symlink_to(outside, target_is_directory=True)
            time.sleep(0.0002)
            day.unlink()
            moved.rename(day)
            swaps += 1
            time.sleep(0.0002)

    thread = threading.Thread(target=swapper)
    thread.start()
    dest = tmp_path / "out"
    copied = 0
    deadline = time.monotonic() + 10
    try:
        while (copied < 20 or swaps < 100) and time.monotonic() < deadline:
            with RecordingFinder(root) as finder:
                rec = finder("a.wav", CALLDATE)
                if rec.status is RecStatus.PRESENT and rec.path is not None:
                    with contextlib.suppress(CopyError):
                        copy_recording(rec.path, dest, finder.folder, rec.rel)
                        copied += 1
    finally:
        stop.set()
        thread.join()
    assert copied and swaps, "the race never let a copy through: the test proves nothing"
    leaked = [c for c in dest.iterdir() if c.read_bytes().startswith(b"SECRET")]
    assert not leaked
