"""Audio length from a WAV header, without trusting it.

Python's `wave` module only reads PCM and raises on anything odd; MixMonitor also writes GSM
(`wav49`) and μ-law WAVs, and a recording being written or cut off by a full NFS share has a
header that promises more than the file holds. We read the RIFF chunks ourselves and report
what the bytes on disk can actually play.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

_FORMATS = {
    0x0001: "PCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "μ-law",
    0x0031: "GSM 6.10",
    0x0011: "IMA ADPCM",
    0x0002: "MS ADPCM",
    0x0055: "MP3",
}
_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZE = (0, 0xFFFFFFFF)
MAX_CHUNKS = 64  # a real header has 2–5; stop walking garbage early


class WavError(Exception):
    """Not a readable WAV: says what is wrong with the header."""


@dataclass(frozen=True)
class WavInfo:
    codec: str
    channels: int
    sample_rate: int
    bits: int
    seconds: float | None
    problem: str | None = None

    @property
    def describe(self) -> str:
        mono = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        return f"{self.codec} {self.sample_rate} Hz {mono}"


def wav_info(handle: BinaryIO, size: int) -> WavInfo:
    """Parse the header of an open WAV file of `size` bytes."""
    if size == 0:
        raise WavError("empty file (0 bytes)")
    head = handle.read(12)
    if len(head) < 12:
        raise WavError(f"too short for a WAV header ({size} bytes)")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int, int] | None = None
    position = 12
    for _ in range(MAX_CHUNKS):
        header = handle.read(8)
        if len(header) < 8:
            break
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        position += 8
        if chunk_id == b"fmt ":
            body = handle.read(min(chunk_size, 40))
            if len(body) < 16:
                raise WavError("truncated in the format chunk")
            fmt = _parse_fmt(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("audio data before the format chunk")
            return _info(fmt, chunk_size, size - position)
        position += chunk_size + (chunk_size & 1)
        if position > size:
            break
        handle.seek(position)
    if fmt is None:
        raise WavError("no format chunk (truncated or not a WAV)")
    raise WavError("no audio data chunk (truncated header)")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int, int]:
    tag, channels, rate, byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the SubFormat GUID
    return tag, channels, rate, byte_rate, bits


def _info(fmt: tuple[int, int, int, int, int], declared: int, available: int) -> WavInfo:
    tag, channels, rate, byte_rate, bits = fmt
    codec = _FORMATS.get(tag, f"format 0x{tag:04x}")
    problem = None
    playable = declared
    if declared in _UNKNOWN_SIZE and available > 0:
        playable = available
        problem = "header has no audio length (recording still being written?)"
    elif declared > available:
        playable = max(available, 0)
        problem = f"truncated: header promises {declared} bytes of audio, file holds {playable}"
    seconds = playable / byte_rate if byte_rate > 0 else None
    return WavInfo(codec, channels, rate, bits, seconds, problem)
