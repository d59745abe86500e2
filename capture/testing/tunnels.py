"""Remote mirrors for tests: a captured frame wrapped as a switch or a Linux tunnel sends it
(ERSPAN type I/II/III, GRE transparent Ethernet bridging, VXLAN, TZSP), over IPv4 or IPv6, and
a whole capture rewritten so. The walkers (ext/frame.pxd and its twin) must give back the
inner frame; nothing here is used by the recorder itself."""

from __future__ import annotations

import struct

from capture.wire.frame import GRE_ERSPAN2, GRE_ERSPAN3, GRE_TEB, LINKTYPE_ETHERNET, TZSP_PORT, VXLAN_PORT

OUTER_SRC4, OUTER_DST4 = bytes([198, 18, 250, 1]), bytes([198, 18, 250, 2])
OUTER_SRC6 = bytes.fromhex("20010db800fa00000000000000000001")
OUTER_DST6 = bytes.fromhex("20010db800fa00000000000000000002")
KINDS = ("erspan1", "erspan2", "erspan3", "erspan3-platform", "gretap", "vxlan", "tzsp")


def _ip(proto: int, payload: bytes, v6: bool = False) -> bytes:
    if v6:
        return struct.pack("!IHBB16s16s", 0x60000000, len(payload), proto, 64, OUTER_SRC6, OUTER_DST6) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, OUTER_SRC4, OUTER_DST4)
    return head + payload


def _eth(ip: bytes, v6: bool = False) -> bytes:
    return b"\x02\x00\x00\x00\xfa\x02" + b"\x02\x00\x00\x00\xfa\x01" + struct.pack("!H", 0x86DD if v6 else 0x0800) + ip


def _udp(dport: int, payload: bytes, sport: int = 49152) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def gre(ptype: int, payload: bytes, key: int | None = None, seq: int | None = None, csum: bool = False) -> bytes:
    """A GRE header (RFC 2784/2890) with the optional fields asked for, then ``payload``."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    head = struct.pack("!HH", flags, ptype)
    if csum:
        head += b"\0\0\0\0"
    if key is not None:
        head += struct.pack("!I", key)
    if seq is not None:
        head += struct.pack("!I", seq)
    return head + payload


def erspan2_header(session: int = 100, vlan: int = 0, index: int = 7) -> bytes:
    """ERSPAN type II: version 1, VLAN, COS/En/T, session ID, index."""
    return struct.pack("!HHI", (1 << 12) | vlan, session & 0x3FF, index & 0xFFFFF)


def erspan3_header(session: int = 100, timestamp: int = 0, ft: int = 0, platform: bool = False) -> bytes:
    """ERSPAN type III: version 2, session ID, timestamp, frame type; O: a platform subheader."""
    word3 = (ft & 0x1F) << 10 | (1 if platform else 0)  # SGT 0, P 0, FT, HW ID 0, D 0, Gra 0, O
    head = struct.pack("!HHIHH", 2 << 12, session & 0x3FF, timestamp & 0xFFFFFFFF, 0, word3)
    return head + (struct.pack("!II", 3 << 26, 0) if platform else b"")


def tzsp_header(tags: bytes = b"") -> bytes:
    """TZSP version 1, type 0 (received), encapsulation 1 (Ethernet), ``tags`` then END."""
    return struct.pack("!BBH", 1, 0, 1) + tags + b"\x01"


def fragments(outer: bytes, mtu: int, ident: int) -> list[bytes]:
    """An outer IPv4 Ethernet frame cut into IP fragments of at most ``mtu`` bytes of IP packet
    (a tunnel whose path has a smaller MTU than the mirrored frames need)."""
    ip = outer[14:]
    if len(ip) <= mtu:
        return [outer]
    payload, head, step = ip[20:], bytearray(ip[:20]), (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(payload), step):
        piece = payload[off : off + step]
        more = off + step < len(payload)
        struct.pack_into("!HHH", head, 2, 20 + len(piece), ident & 0xFFFF, (0x2000 if more else 0) | off // 8)
        out.append(outer[:14] + bytes(head) + piece)
    return out


def wrap(frame: bytes, kind: str, seq: int = 0, v6: bool = False) -> bytes:
    """``frame`` (Ethernet) as a remote mirror of ``kind`` sends it: an outer Ethernet frame."""
    if kind == "erspan1":
        inner = _ip(47, gre(GRE_ERSPAN2, frame), v6)
    elif kind == "erspan2":
        inner = _ip(47, gre(GRE_ERSPAN2, erspan2_header() + frame, seq=seq), v6)
    elif kind in ("erspan3", "erspan3-platform"):
        head = erspan3_header(timestamp=seq, platform=kind.endswith("platform"))
        inner = _ip(47, gre(GRE_ERSPAN3, head + frame, seq=seq), v6)
    elif kind == "gretap":
        inner = _ip(47, gre(GRE_TEB, frame, key=42), v6)
    elif kind == "vxlan":
        inner = _ip(17, _udp(VXLAN_PORT, struct.pack("!II", 0x08000000, 42 << 8) + frame), v6)
    elif kind == "tzsp":
        inner = _ip(17, _udp(TZSP_PORT, tzsp_header(b"\x00\x0a\x01\x05") + frame), v6)
    else:
        raise ValueError(f"no tunnel {kind!r}: one of {', '.join(KINDS)}")
    return _eth(inner, v6)


def wrap_capture(src: str, dst: str, kind: str, v6: bool = False, mtu: int | None = None) -> int:
    """Rewrite the Ethernet capture ``src`` as ``dst``, every frame wrapped (and with ``mtu``, its
    outer IPv4 packet fragmented to fit); returns the frames."""
    from capture.wire._pcapfile_py import Indexer
    from capture.wire.pcapfile import PcapWriter

    buf = open(src, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 30)
    w = PcapWriter(dst, LINKTYPE_ETHERNET, nanoseconds=True)
    for n, (o, ln, ts, lt) in enumerate(zip(offs.tolist(), lens.tolist(), tss.tolist(), lts.tolist())):
        if lt != LINKTYPE_ETHERNET:
            raise ValueError(f"{src}: link type {lt}, not Ethernet")
        outer = wrap(buf[o : o + ln], kind, seq=n, v6=v6)
        for piece in fragments(outer, mtu, n) if mtu and not v6 else [outer]:
            w.write(ts, piece, LINKTYPE_ETHERNET)
    w.close()
    return len(offs)
