"""The WAV format of every recording, defined once: 8 kHz, two channels (near end, far end), a
44-byte RIFF header whose two sizes are patched as the file grows. The samples are 16-bit PCM
(``Encoding.PCM16``, the default), or the call's own G.711 bytes (``ULAW``/``ALAW``: a WAV with
WAVE_FORMAT_MULAW/ALAW, one byte a sample: half the size, and the phones' bytes).

The writer (``capture.store.wavfile``), both engines (``ext/engine.pyx`` and its twin, which
write headers in batches) and resume read these; nothing else knows the layout.
"""

from __future__ import annotations

import struct
from enum import IntEnum

RATE = 8000  # samples per second per channel
CHANNELS = 2  # near, far
SAMPLE_BYTES = 2  # 16-bit signed little-endian (PCM16)
FRAME_BYTES = CHANNELS * SAMPLE_BYTES  # PCM16; see frame_bytes()
HEADER_BYTES = 44
RIFF_SIZE_OFFSET = 4  # RIFF chunk size: HEADER_BYTES - 8 + data bytes
DATA_SIZE_OFFSET = 40  # data chunk size: the audio bytes the header vouches for
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


class Encoding(IntEnum):
    """How a recording's samples are stored (the values are the engine's codec numbers)."""

    PCM16 = 0
    ULAW = 1
    ALAW = 2


FORMAT_TAG = {Encoding.PCM16: 1, Encoding.ULAW: 7, Encoding.ALAW: 6}  # WAVE_FORMAT_PCM, _MULAW, _ALAW
SILENCE = {Encoding.ULAW: 0xFF, Encoding.ALAW: 0xD5}  # a byte that decodes to (near) zero


def frame_bytes(enc: Encoding = Encoding.PCM16) -> int:
    """Bytes per frame (one sample of each channel)."""
    return CHANNELS * (SAMPLE_BYTES if enc == Encoding.PCM16 else 1)


def max_data_bytes(enc: Encoding = Encoding.PCM16) -> int:
    """What a RIFF header can vouch for (about 37 hours of PCM16, 74 of G.711); a longer call's
    header says this much."""
    return (0xFFFFFFFF - (HEADER_BYTES - 8)) // frame_bytes(enc) * frame_bytes(enc)


MAX_DATA_BYTES = max_data_bytes()


def header(data_bytes: int, enc: Encoding = Encoding.PCM16) -> bytes:
    """The 44-byte header of a file holding ``data_bytes`` of audio (at most max_data_bytes)."""
    block = frame_bytes(enc)
    data_bytes = min(data_bytes, max_data_bytes(enc))
    return _HEADER.pack(
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        FORMAT_TAG[Encoding(enc)],
        CHANNELS,
        RATE,
        RATE * block,
        block,
        8 * block // CHANNELS,
        b"data",
        data_bytes,
    )


def data_bytes(head: bytes) -> int:
    """The audio bytes a header vouches for (0 for anything that is not one of ours)."""
    if len(head) < HEADER_BYTES or head[:4] != b"RIFF":
        return 0
    return int(struct.unpack_from("<I", head, DATA_SIZE_OFFSET)[0])


def encoding(head: bytes) -> Encoding:
    """The encoding one of our headers says (PCM16 for anything else: the files before G.711)."""
    if len(head) < HEADER_BYTES or head[:4] != b"RIFF":
        return Encoding.PCM16
    tag = struct.unpack_from("<H", head, 20)[0]
    return next((e for e, t in FORMAT_TAG.items() if t == tag), Encoding.PCM16)
