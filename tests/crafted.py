"""Files whose headers lie about their length, built in the test run with ffmpeg and a patch.

- :func:`flac_with_lying_header`: hours of digital silence in FLAC (65535-sample frames, so
  eight hours at 8 kHz is about 58 KB), with STREAMINFO's 36-bit total-samples field set to
  claim a few seconds. mutagen, ffprobe and PyAV all report the claim.
- :func:`webm_with_lying_duration`: Opus in WebM whose Segment Info ``Duration`` element
  (ID 0x4489, an 8-byte float in milliseconds) is overwritten with a short claim.

Both are what a hostile user uploads to slip past a header-based duration limit.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from tests.speech import require_tool

FLAC_RATE = 8000
_DURATION_ID = b"\x44\x89"
_FLOAT64_SIZE = 0x88  # EBML size byte for 8 bytes


def _ffmpeg(*args: str) -> None:
    require_tool("ffmpeg")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True, capture_output=True
    )


def flac_with_lying_header(path: Path, *, seconds: float, claim_seconds: float) -> Path:
    """``seconds`` of silence whose STREAMINFO claims ``claim_seconds``."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"anullsrc=r={FLAC_RATE}:cl=mono", "-t", str(seconds),
        "-c:a", "flac", "-frame_size", "65535", str(path),
    )  # fmt: skip
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO is not the first block"
    # STREAMINFO starts at byte 8; its bytes 10-17 hold rate(20) channels(3) bps(5) total(36).
    (packed,) = struct.unpack(">Q", data[18:26])
    assert packed >> 44 == FLAC_RATE
    total_mask = (1 << 36) - 1
    packed = (packed & ~total_mask) | round(claim_seconds * FLAC_RATE)
    data[18:26] = struct.pack(">Q", packed)
    path.write_bytes(bytes(data))
    return path


def webm_with_lying_duration(path: Path, *, seconds: float, claim_seconds: float) -> Path:
    """``seconds`` of Opus silence in WebM whose Duration element claims ``claim_seconds``."""
    _ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", str(seconds),
        "-c:a", "libopus", "-b:a", "16k", str(path),
    )  # fmt: skip
    data = bytearray(path.read_bytes())
    at = data.find(_DURATION_ID)
    assert at > 0 and data[at + 2] == _FLOAT64_SIZE, "no 8-byte Duration element"
    (claimed_ms,) = struct.unpack(">d", data[at + 3 : at + 11])
    assert abs(claimed_ms / 1000 - seconds) < 1, claimed_ms  # the default timecode scale
    data[at + 3 : at + 11] = struct.pack(">d", claim_seconds * 1000)
    path.write_bytes(bytes(data))
    return path
