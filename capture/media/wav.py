"""The WAV format of every recording, defined once: 16-bit PCM, 8 kHz, two channels (near end,
far end), a 44-byte RIFF header whose two sizes are patched as the file grows.

The writer (``capture.store.wavfile``), both engines (``ext/engine.pyx`` and its twin, which
write headers in batches) and resume read these; nothing else knows the layout.
"""

from __future__ import annotations

import struct

RATE = 8000  # samples per second per channel
CHANNELS = 2  # near, far
SAMPLE_BYTES = 2  # 16-bit signed little-endian
FRAME_BYTES = CHANNELS * SAMPLE_BYTES
HEADER_BYTES = 44
RIFF_SIZE_OFFSET = 4  # RIFF chunk size: HEADER_BYTES - 8 + data bytes
DATA_SIZE_OFFSET = 40  # data chunk size: the audio bytes the header vouches for
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
# what a RIFF header can vouch for: about 37 hours of audio; a longer call's header says this much
MAX_DATA_BYTES = (0xFFFFFFFF - (HEADER_BYTES - 8)) // FRAME_BYTES * FRAME_BYTES


def header(data_bytes: int, rate: int = RATE, channels: int = CHANNELS) -> bytes:
    """The 44-byte header of a file holding ``data_bytes`` of audio (at most MAX_DATA_BYTES)."""
    block = channels * SAMPLE_BYTES
    data_bytes = min(data_bytes, MAX_DATA_BYTES)
    return _HEADER.pack(
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * block,
        block,
        8 * SAMPLE_BYTES,
        b"data",
        data_bytes,
    )


def data_bytes(head: bytes) -> int:
    """The audio bytes a header vouches for (0 for anything that is not one of ours)."""
    if len(head) < HEADER_BYTES or head[:4] != b"RIFF":
        return 0
    return int(struct.unpack_from("<I", head, DATA_SIZE_OFFSET)[0])
