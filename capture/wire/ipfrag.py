"""IPv4 and IPv6 fragment reassembly (RFC 791 / RFC 8200), bounded in memory and time, and the
UDP or TCP header of a reassembled datagram."""

from __future__ import annotations

import struct
from typing import NamedTuple

from capture.errors import Truncated

MAX_DATAGRAM = 65535
MAX_PENDING = 4096
TIMEOUT_NS = 30 * 1_000_000_000


class _Pending:
    __slots__ = ("parts", "total", "first_ns", "size")

    def __init__(self, ts):
        self.parts = {}
        self.total = None
        self.first_ns = ts
        self.size = 0


class Defragmenter:
    def __init__(self):
        self.pending: dict = {}
        self.counters = {"fragments": 0, "reassembled": 0, "fragment_errors": 0, "fragments_expired": 0}

    def add(self, key, offset: int, more: bool, data: bytes, ts: int):
        """Add a fragment of datagram ``key``; return the whole transport datagram when complete."""
        self.counters["fragments"] += 1
        if offset + len(data) > MAX_DATAGRAM:
            self.counters["fragment_errors"] += 1
            return None
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) >= MAX_PENDING:
                oldest = min(self.pending, key=lambda k: self.pending[k].first_ns)
                del self.pending[oldest]
                self.counters["fragments_expired"] += 1
            p = self.pending[key] = _Pending(ts)
        if offset not in p.parts:
            p.parts[offset] = bytes(data)
            p.size += len(data)
        if not more:
            p.total = offset + len(data)
        if p.total is None or p.size < p.total:
            return None
        buf = bytearray(p.total)
        pos = 0
        for off in sorted(p.parts):
            chunk = p.parts[off]
            if off > pos:
                return None  # a hole: overlapping fragments filled size but not space
            end = min(off + len(chunk), p.total)
            if end > pos:
                buf[pos:end] = chunk[pos - off : end - off]
                pos = end
        if pos < p.total:
            return None
        del self.pending[key]
        self.counters["reassembled"] += 1
        return bytes(buf)

    def expire(self, now: int):
        for k in [k for k, p in self.pending.items() if now - p.first_ns > TIMEOUT_NS]:
            del self.pending[k]
            self.counters["fragments_expired"] += 1


class Udp(NamedTuple):
    sport: int
    dport: int
    payload: bytes


class Tcp(NamedTuple):
    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes


def udp(dg: bytes) -> Udp:
    """The UDP header and payload of a reassembled datagram (its length checked against the bytes)."""
    if len(dg) < 8:
        raise Truncated(f"reassembled UDP datagram of {len(dg)} bytes")
    ulen = (dg[4] << 8) | dg[5]
    if ulen < 8 or ulen > len(dg):
        raise Truncated(f"reassembled UDP length {ulen} does not fit {len(dg)} bytes")
    return Udp((dg[0] << 8) | dg[1], (dg[2] << 8) | dg[3], dg[8:ulen])


def tcp(dg: bytes) -> Tcp:
    """The TCP header fields shadowrec uses, and the payload, of a reassembled segment."""
    if len(dg) < 20 or (dg[12] >> 4) * 4 > len(dg) or (dg[12] >> 4) < 5:
        raise Truncated(f"reassembled TCP segment of {len(dg)} bytes")
    doff = (dg[12] >> 4) * 4
    return Tcp((dg[0] << 8) | dg[1], (dg[2] << 8) | dg[3], int.from_bytes(dg[4:8], "big"), dg[13], dg[doff:])


def packet(ver: int, src: bytes, dst: bytes, proto: int, dg: bytes) -> bytes:
    """A reassembled datagram as one unfragmented IP packet (a minimal header), for the frame walker
    to take through again: a remote mirror's tunnel whose outer packets were fragmented."""
    if ver == 4:
        if len(dg) > 65535 - 20:
            raise Truncated(f"reassembled datagram of {len(dg)} bytes does not fit IPv4")
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(dg), 0, 0, 64, proto, 0, src, dst) + dg
    if len(dg) > 65535:
        raise Truncated(f"reassembled datagram of {len(dg)} bytes does not fit IPv6")
    return struct.pack("!IHBB16s16s", 0x60000000, len(dg), proto, 64, src, dst) + dg
