"""RTP (RFC 3550) headers and RFC 4733 telephone-event payloads: ``parse(data) -> RtpHeader``
and ``parse_event(payload) -> TelephoneEventPayload``, with explicit length checks.

The hot path's copy of the header walk is C (``ext/rtp.pxd``, used by the engine) with its
Python twin in ``capture.media._engine_py``, which calls ``header_length`` below; the tests
check all of them agree on random and malformed packets.
"""

from __future__ import annotations

from dataclasses import dataclass

from capture.errors import RtpError

VERSION = 2
FIXED_HEADER = 12  # bytes before the CSRC list
EVENT_BYTES = 4  # an RFC 4733 event: event, E/R/volume, duration


def header_length(data: bytes | bytearray | memoryview, off: int = 0, length: int | None = None) -> tuple[int, int]:
    """(header bytes, payload bytes without padding) of the RTP packet at ``data[off:off+length]``;
    raises RtpError for anything that is not an RTP version 2 packet as long as it says."""
    n = len(data) - off if length is None else length
    if n < FIXED_HEADER or (data[off] >> 6) != VERSION:
        raise RtpError(f"not an RTP v2 header ({n} bytes)")
    b0 = data[off]
    h = FIXED_HEADER + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if h + 4 > n:
            raise RtpError(f"RTP extension header at {h} does not fit {n} bytes")
        h += 4 + 4 * ((data[off + h + 2] << 8) | data[off + h + 3])
    if h > n:
        raise RtpError(f"RTP header of {h} bytes does not fit {n} bytes")
    plen = n - h
    if b0 & 0x20:
        pad = data[off + n - 1]
        if pad == 0 or pad > plen:
            raise RtpError(f"RTP padding of {pad} bytes does not fit a payload of {plen}")
        plen -= pad
    return h, plen


@dataclass(frozen=True)
class RtpHeader:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int  # where the payload starts (after CSRCs and an extension)
    payload_length: int  # payload bytes, padding excluded


def parse(data: bytes | bytearray | memoryview) -> RtpHeader:
    """Parse one RTP packet's header."""
    h, plen = header_length(data)
    return RtpHeader(
        bool(data[1] & 0x80),
        data[1] & 0x7F,
        (data[2] << 8) | data[3],
        int.from_bytes(data[4:8], "big"),
        int.from_bytes(data[8:12], "big"),
        h,
        plen,
    )


@dataclass(frozen=True)
class TelephoneEventPayload:
    """One RFC 4733 event report: the event code (0-15: DTMF digits), whether it has ended, its
    volume and its duration so far in RTP timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int


def parse_event(payload: bytes | bytearray | memoryview) -> TelephoneEventPayload:
    """Parse a telephone-event payload (its first event report; redundant ones follow it)."""
    if len(payload) < EVENT_BYTES:
        raise RtpError(f"telephone-event needs {EVENT_BYTES} bytes, payload has {len(payload)}")
    return TelephoneEventPayload(payload[0], bool(payload[1] & 0x80), payload[1] & 0x3F, (payload[2] << 8) | payload[3])
