"""Capture-file indexer, pure Python: the twin of ext/pcapfile.pyx.

``Indexer(buf)`` walks a pcap or pcapng file held in memory (usually an mmap) and hands
out batches of record positions: offsets and lengths of each frame's bytes in ``buf``,
timestamps in integer nanoseconds and link types. It stops at the first corrupt or
truncated record and says why in ``error``; everything before that point is delivered.
"""

from __future__ import annotations

import numpy as np

from capture.errors import PcapError

MAX_CAPLEN = 262144
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D


def _rd32(b, o, le):
    if le:
        return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)
    return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def _rd16(b, o, le):
    return (b[o] | (b[o + 1] << 8)) if le else ((b[o] << 8) | b[o + 1])


def _tsres_to_ns(ts, res):
    """Convert a pcapng timestamp with if_tsresol byte ``res`` to nanoseconds."""
    m = (1 << 64) - 1
    if res & 0x80:
        k = res & 0x7F
        if k > 32:
            raise PcapError(f"timestamp resolution 2^-{k} is not supported")
        ns = (((ts >> k) * 1_000_000_000) + (((ts & ((1 << k) - 1)) * 1_000_000_000) >> k)) & m
    elif res > 9:
        if res > 18:
            raise PcapError(f"timestamp resolution 10^-{res} is not supported")
        ns = ts // (10 ** (res - 9))
    else:
        ns = (ts * (10 ** (9 - res))) & m
    return ns - (1 << 64) if ns >> 63 else ns  # 64-bit arithmetic, as the C twin does


class Indexer:
    """Walk a capture file in ``buf`` (bytes, bytearray, mmap or memoryview)."""

    def __init__(self, buf):
        self.buf = buf
        self.size = len(buf)
        self.error = None
        self.records = 0
        if self.size < 4:
            raise PcapError(f"file of {self.size} bytes is too short for a capture header")
        b = buf
        m_le = _rd32(b, 0, True)
        self.ng = False
        self.le = True
        self.ifaces = []  # pcapng: (linktype, snaplen, tsresol)
        if m_le == PCAPNG_SHB:
            self.ng = True
            self.pos = 0
            self.last_ts = 0
            return
        if m_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.le = True
        elif _rd32(b, 0, False) in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.le = False
        else:
            raise PcapError(f"not a pcap or pcapng file (magic 0x{_rd32(b, 0, False):08x})")
        if self.size < 24:
            raise PcapError(f"pcap global header needs 24 bytes, file has {self.size}")
        self.nano = _rd32(b, 0, self.le) == PCAP_MAGIC_NS
        self.linktype = _rd32(b, 20, self.le) & 0xFFFF
        self.pos = 24

    def next_batch(self, max_records: int = 65536):
        """Return (offsets, lengths, timestamps_ns, linktypes) for up to ``max_records``."""
        offs: list[int] = []
        lens: list[int] = []
        tss: list[int] = []
        lts: list[int] = []
        if self.error is None:
            step = self._ng_step if self.ng else self._pcap_step
            while len(offs) < max_records and self.pos < self.size:
                try:
                    rec = step()
                except PcapError as e:
                    self.error = str(e)
                    break
                if rec is not None:
                    offs.append(rec[0])
                    lens.append(rec[1])
                    tss.append(rec[2])
                    lts.append(rec[3])
        self.records += len(offs)
        return (
            np.array(offs, dtype=np.int64),
            np.array(lens, dtype=np.int32),
            np.array(tss, dtype=np.int64),
            np.array(lts, dtype=np.int32),
        )

    def _pcap_step(self):
        b, p, le = self.buf, self.pos, self.le
        if self.size - p < 16:
            raise PcapError(f"truncated record header at offset {p}: {self.size - p} bytes left")
        sec = _rd32(b, p, le)
        frac = _rd32(b, p + 4, le)
        incl = _rd32(b, p + 8, le)
        if incl > MAX_CAPLEN:
            raise PcapError(f"corrupt record header at offset {p}: captured length {incl}")
        if self.size - p - 16 < incl:
            raise PcapError(f"truncated record at offset {p}: needs {incl} bytes, {self.size - p - 16} left")
        self.pos = p + 16 + incl
        ts = sec * 1_000_000_000 + (frac if self.nano else frac * 1000)
        return p + 16, incl, ts, self.linktype

    def _ng_step(self):
        b, p = self.buf, self.pos
        if self.size - p < 12:
            raise PcapError(f"truncated block header at offset {p}: {self.size - p} bytes left")
        if _rd32(b, p, True) == PCAPNG_SHB:
            if self.size - p < 28:
                raise PcapError(f"truncated section header at offset {p}")
            bom = _rd32(b, p + 8, True)
            if bom == PCAPNG_BOM:
                self.le = True
            elif _rd32(b, p + 8, False) == PCAPNG_BOM:
                self.le = False
            else:
                raise PcapError(f"bad byte-order magic in section header at offset {p}")
            self.ifaces = []
        le = self.le
        btype = _rd32(b, p, le)
        blen = _rd32(b, p + 4, le)
        if blen < 12 or blen % 4 or blen > self.size - p:
            if blen >= 12 and blen % 4 == 0:
                raise PcapError(f"truncated block at offset {p}: length {blen}, {self.size - p} bytes left")
            raise PcapError(f"corrupt block at offset {p}: length {blen}")
        self.pos = p + blen
        body = p + 8
        bend = p + blen - 4
        if btype == 1:  # interface description
            if bend - body < 8:
                raise PcapError(f"short interface description block at offset {p}")
            lt = _rd16(b, body, le)
            snap = _rd32(b, body + 4, le)
            res = 6
            o = body + 8
            while bend - o >= 4:
                code = _rd16(b, o, le)
                olen = _rd16(b, o + 2, le)
                if code == 0 or bend - o - 4 < olen:
                    break
                if code == 9 and olen >= 1:
                    res = b[o + 4]
                o += 4 + ((olen + 3) & ~3)
            self.ifaces.append((lt, snap, res))
            return None
        if btype in (6, 2):  # enhanced packet, obsolete packet
            if bend - body < 20:
                raise PcapError(f"short packet block at offset {p}")
            if btype == 6:
                iface = _rd32(b, body, le)
            else:
                iface = _rd16(b, body, le)
            hi = _rd32(b, body + 4, le)
            lo = _rd32(b, body + 8, le)
            cap = _rd32(b, body + 12, le)
            if iface >= len(self.ifaces):
                raise PcapError(f"packet block at offset {p} names interface {iface}, which is not described")
            if cap > MAX_CAPLEN or cap > bend - body - 20:
                raise PcapError(f"corrupt packet block at offset {p}: captured length {cap}")
            lt, _snap, res = self.ifaces[iface]
            ts = _tsres_to_ns((hi << 32) | lo, res)
            self.last_ts = ts
            return body + 20, cap, ts, lt
        if btype == 3:  # simple packet: no timestamp, interface 0
            if not self.ifaces:
                raise PcapError(f"simple packet block at offset {p} before any interface")
            if bend - body < 4:
                raise PcapError(f"short simple packet block at offset {p}")
            lt, snap, _res = self.ifaces[0]
            cap = _rd32(b, body, le)
            room = bend - body - 4
            if snap and cap > snap:
                cap = snap
            if cap > room:
                cap = room
            if cap > MAX_CAPLEN:
                raise PcapError(f"corrupt simple packet block at offset {p}: length {cap}")
            return body + 4, cap, self.last_ts, lt
        return None
