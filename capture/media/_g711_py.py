"""G.711 µ-law and A-law (ITU-T G.711), pure Python: the twin of ext/g711.pyx.

Decoding follows the reference expansion of ITU-T G.711 (the same as the classic Sun
``g711.c``), so results are bit-exact 16-bit linear PCM.
"""

from __future__ import annotations

import numpy as np


def ulaw_to_linear(code: int) -> int:
    """Expand one µ-law byte to a 16-bit linear sample."""
    u = ~code & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def alaw_to_linear(code: int) -> int:
    """Expand one A-law byte to a 16-bit linear sample."""
    a = (code & 0xFF) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


ULAW_TABLE = np.array([ulaw_to_linear(i) for i in range(256)], dtype=np.int16)
ALAW_TABLE = np.array([alaw_to_linear(i) for i in range(256)], dtype=np.int16)


def decode_ulaw(data: bytes) -> np.ndarray:
    """Decode µ-law bytes to an int16 array."""
    return np.array([ulaw_to_linear(b) for b in data], dtype=np.int16)


def decode_alaw(data: bytes) -> np.ndarray:
    """Decode A-law bytes to an int16 array."""
    return np.array([alaw_to_linear(b) for b in data], dtype=np.int16)


def _encoder(table: np.ndarray):
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)

    def encode(samples: np.ndarray) -> bytes:
        """Quantise int16 samples to the nearest code (used by synth)."""
        x = np.asarray(samples, dtype=np.int32)
        idx = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
        left = values[idx - 1]
        right = values[idx]
        pick = np.where(np.abs(x - left) <= np.abs(right - x), idx - 1, idx)
        return order[pick].astype(np.uint8).tobytes()

    return encode


encode_ulaw = _encoder(ULAW_TABLE)
encode_alaw = _encoder(ALAW_TABLE)


def _encode_table(encode, silence: int) -> np.ndarray:
    """Every 16-bit sample (indexed by its two's-complement bits) -> its nearest code; zero ->
    the law's silence code. Encoding a decoded code gives that code back (µ-law's two zeros
    both give 0xFF)."""
    samples = np.arange(65536, dtype=np.int64)
    table = np.frombuffer(encode(np.where(samples < 32768, samples, samples - 65536)), dtype=np.uint8).copy()
    table[0] = silence
    return table


ULAW_ENCODE = _encode_table(encode_ulaw, 0xFF)  # uint16(sample) -> µ-law code
ALAW_ENCODE = _encode_table(encode_alaw, 0xD5)  # uint16(sample) -> A-law code
