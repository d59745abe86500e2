"""AMR-NB's RTP payload format (RFC 4867), read back into the frames FFmpeg's decoder takes (the
storage format of RFC 4867 section 5: a ToC byte, then the frame's speech bits, octet-padded).

``parse(payload, octet_aligned) -> list[Frame]``: the payload's frames in order. Both modes:
octet-aligned (a CMR byte, one ToC byte per frame, each frame padded to octets) and
bandwidth-efficient (a 4-bit CMR, 6-bit ToC entries, frames' bits back to back). CRCs and
interleaving (``crc=1``, ``interleaving``) are not taken. Lengths are checked against the
payload; a short or inconsistent payload is an ``RtpError``.
"""

from __future__ import annotations

from typing import NamedTuple

from capture.errors import RtpError, Unsupported

# speech bits per frame type (FT): the eight modes 4.75 .. 12.2 kbit/s, then SID (comfort noise)
BITS = (95, 103, 118, 134, 148, 159, 204, 244, 39)
NO_DATA = 15
MAX_FRAMES = 32  # frames one payload may carry, as read here


class Frame(NamedTuple):
    ft: int  # frame type: 0-7 speech, 8 SID, 15 no data
    quality: bool
    storage: bytes  # the frame as FFmpeg's amrnb decoder takes it (ToC byte + speech bits)

    @property
    def speech(self) -> bool:
        return self.ft < 8


def _storage(ft: int, q: bool, bits: bytes) -> bytes:
    return bytes([(ft << 3) | (0x04 if q else 0)]) + bits


def _check_ft(ft: int) -> None:
    if 9 <= ft <= 14:
        raise Unsupported(f"AMR-NB frame type {ft} is not speech, SID or no data")


def parse(payload: bytes, octet_aligned: bool) -> list[Frame]:
    """The frames of one AMR-NB RTP payload."""
    return _octet(payload) if octet_aligned else _efficient(payload)


def _octet(p: bytes) -> list[Frame]:
    if len(p) < 2:
        raise RtpError(f"AMR octet-aligned payload of {len(p)} bytes: a CMR and a ToC need 2")
    tocs: list[tuple[int, bool]] = []
    pos = 1
    while True:
        if pos >= len(p):
            raise RtpError(f"AMR table of contents runs past the {len(p)}-byte payload")
        if len(tocs) == MAX_FRAMES:
            raise RtpError(f"AMR payload with more than {MAX_FRAMES} frames")
        toc = p[pos]
        pos += 1
        ft = (toc >> 3) & 0x0F
        _check_ft(ft)
        tocs.append((ft, bool(toc & 0x04)))
        if not toc & 0x80:
            break
    out = []
    for ft, q in tocs:
        n = 0 if ft == NO_DATA else (BITS[ft] + 7) // 8
        if pos + n > len(p):
            raise RtpError(f"AMR frame of type {ft} needs {n} bytes at {pos}, the payload has {len(p)}")
        out.append(Frame(ft, q, _storage(ft, q, p[pos : pos + n])))
        pos += n
    return out


class _Bits:
    """A payload read as one big number, field by field (a bit at a time in Python cost 45 µs a frame)."""

    def __init__(self, data: bytes):
        self.value, self.size, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0
        self.nbytes = len(data)

    def take(self, n: int) -> int:
        if self.pos + n > self.size:
            raise RtpError(f"AMR bandwidth-efficient payload of {self.nbytes} bytes ends within a field")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def octets(self, n: int) -> bytes:
        """``n`` bits as octets, MSB first, the last one zero-padded."""
        pad = -n % 8
        return (self.take(n) << pad).to_bytes((n + pad) // 8, "big")


def _efficient(p: bytes) -> list[Frame]:
    b = _Bits(p)
    b.take(4)  # CMR
    tocs: list[tuple[int, bool]] = []
    while True:
        if len(tocs) == MAX_FRAMES:
            raise RtpError(f"AMR payload with more than {MAX_FRAMES} frames")
        f, ft, q = b.take(1), b.take(4), b.take(1)
        _check_ft(ft)
        tocs.append((ft, bool(q)))
        if not f:
            break
    return [Frame(ft, q, _storage(ft, q, b.octets(0 if ft == NO_DATA else BITS[ft]))) for ft, q in tocs]


def pack(frames: list[tuple[int, bytes]], octet_aligned: bool) -> bytes:
    """An RTP payload of ``frames`` ((FT, speech bits as octets)), CMR 15: what a phone sends (the
    tests' packer, and the reading's inverse)."""
    if octet_aligned:
        tocs = bytes(((0x80 if i < len(frames) - 1 else 0) | (ft << 3) | 0x04) for i, (ft, _) in enumerate(frames))
        return bytes([0xF0]) + tocs + b"".join(bits for _, bits in frames)
    acc, n = 15, 4
    for i, (ft, _) in enumerate(frames):
        acc, n = (acc << 6) | ((1 if i < len(frames) - 1 else 0) << 5) | (ft << 1) | 1, n + 6
    for ft, bits in frames:
        k = 0 if ft == NO_DATA else BITS[ft]
        acc, n = (acc << k) | (int.from_bytes(bits, "big") >> (8 * len(bits) - k) if k else 0), n + k
    pad = -n % 8
    return (acc << pad).to_bytes((n + pad) // 8, "big")
