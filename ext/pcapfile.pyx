# cython: language_level=3, boundscheck=False, wraparound=False
"""Capture-file indexer (C): the twin of capture/wire/_pcapfile_py.py, same class and results."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from capture.errors import PcapError

cnp.import_array()

DEF MAX_CAPLEN = 262144
DEF PCAP_MAGIC_US = 0xA1B2C3D4
DEF PCAP_MAGIC_NS = 0xA1B23C4D
DEF PCAPNG_SHB = 0x0A0D0D0A
DEF PCAPNG_BOM = 0x1A2B3C4D
DEF MAX_IFACES = 256


cdef inline uint32_t rd32(const unsigned char* b, Py_ssize_t o, bint le) noexcept nogil:
    if le:
        return b[o] | (<uint32_t>b[o + 1] << 8) | (<uint32_t>b[o + 2] << 16) | (<uint32_t>b[o + 3] << 24)
    return (<uint32_t>b[o] << 24) | (<uint32_t>b[o + 1] << 16) | (<uint32_t>b[o + 2] << 8) | b[o + 3]


cdef inline int rd16(const unsigned char* b, Py_ssize_t o, bint le) noexcept nogil:
    return (b[o] | (b[o + 1] << 8)) if le else ((b[o] << 8) | b[o + 1])


cdef class Indexer:
    """Walk a capture file in ``buf`` (bytes, bytearray, mmap or memoryview)."""

    cdef const unsigned char[:] mv
    cdef readonly object buf
    cdef readonly Py_ssize_t size, pos
    cdef readonly object error
    cdef readonly Py_ssize_t records
    cdef readonly bint ng, le, nano
    cdef readonly int linktype
    cdef int n_if
    cdef int if_lt[MAX_IFACES]
    cdef uint32_t if_snap[MAX_IFACES]
    cdef int if_res[MAX_IFACES]
    cdef int64_t last_ts

    def __init__(self, buf):
        self.buf = buf
        self.mv = buf
        self.size = self.mv.shape[0]
        self.error = None
        self.records = 0
        self.n_if = 0
        self.last_ts = 0
        if self.size < 4:
            raise PcapError(f"file of {self.size} bytes is too short for a capture header")
        cdef const unsigned char* b = &self.mv[0]
        cdef uint32_t m_le = rd32(b, 0, True)
        self.ng = False
        self.le = True
        if m_le == PCAPNG_SHB:
            self.ng = True
            self.pos = 0
            return
        if m_le == PCAP_MAGIC_US or m_le == PCAP_MAGIC_NS:
            self.le = True
        elif rd32(b, 0, False) == PCAP_MAGIC_US or rd32(b, 0, False) == PCAP_MAGIC_NS:
            self.le = False
        else:
            raise PcapError(f"not a pcap or pcapng file (magic 0x{rd32(b, 0, False):08x})")
        if self.size < 24:
            raise PcapError(f"pcap global header needs 24 bytes, file has {self.size}")
        self.nano = rd32(b, 0, self.le) == PCAP_MAGIC_NS
        self.linktype = rd32(b, 20, self.le) & 0xFFFF
        self.pos = 24

    @property
    def ifaces(self):
        return [(self.if_lt[i], self.if_snap[i], self.if_res[i]) for i in range(self.n_if)]

    def next_batch(self, Py_ssize_t max_records=65536):
        """Return (offsets, lengths, timestamps_ns, linktypes) for up to ``max_records``."""
        offs = np.empty(max_records, dtype=np.int64)
        lens = np.empty(max_records, dtype=np.int32)
        tss = np.empty(max_records, dtype=np.int64)
        lts = np.empty(max_records, dtype=np.int32)
        cdef int64_t[:] o = offs
        cdef int32_t[:] l = lens
        cdef int64_t[:] t = tss
        cdef int32_t[:] k = lts
        cdef Py_ssize_t cnt = 0
        cdef int rc = 0
        if self.error is None and self.size > 0:
            if self.ng:
                rc = self._ng(o, l, t, k, max_records, &cnt)
            else:
                rc = self._pcap(o, l, t, k, max_records, &cnt)
        self.records += cnt
        return offs[:cnt], lens[:cnt], tss[:cnt], lts[:cnt]

    cdef int _pcap(self, int64_t[:] o, int32_t[:] l, int64_t[:] t, int32_t[:] k, Py_ssize_t maxn,
                   Py_ssize_t* cnt) except -1:
        cdef const unsigned char* b = &self.mv[0]
        cdef Py_ssize_t p = self.pos, size = self.size, c = 0
        cdef bint le = self.le
        cdef uint32_t sec, frac, incl
        cdef int lt = self.linktype
        cdef bint nano = self.nano
        while c < maxn and p < size:
            if size - p < 16:
                self.error = f"truncated record header at offset {p}: {size - p} bytes left"
                break
            sec = rd32(b, p, le)
            frac = rd32(b, p + 4, le)
            incl = rd32(b, p + 8, le)
            if incl > MAX_CAPLEN:
                self.error = f"corrupt record header at offset {p}: captured length {incl}"
                break
            if size - p - 16 < incl:
                self.error = f"truncated record at offset {p}: needs {incl} bytes, {size - p - 16} left"
                break
            o[c] = p + 16
            l[c] = incl
            t[c] = <int64_t>sec * 1000000000 + (frac if nano else <int64_t>frac * 1000)
            k[c] = lt
            c += 1
            p += 16 + incl
        self.pos = p
        cnt[0] = c
        return 0

    cdef int _ng(self, int64_t[:] o, int32_t[:] l, int64_t[:] t, int32_t[:] k, Py_ssize_t maxn,
                 Py_ssize_t* cnt) except -1:
        cdef const unsigned char* b = &self.mv[0]
        cdef Py_ssize_t p = self.pos, size = self.size, c = 0, body, bend, oo
        cdef uint32_t btype, blen, bom, cap, snap, iface, hi, lo
        cdef int code, olen, res, lt, kk
        cdef bint le
        cdef uint64_t ts64
        cdef int64_t ts
        while c < maxn and p < size:
            if size - p < 12:
                self.error = f"truncated block header at offset {p}: {size - p} bytes left"
                break
            if rd32(b, p, True) == PCAPNG_SHB:
                if size - p < 28:
                    self.error = f"truncated section header at offset {p}"
                    break
                if rd32(b, p + 8, True) == PCAPNG_BOM:
                    self.le = True
                elif rd32(b, p + 8, False) == PCAPNG_BOM:
                    self.le = False
                else:
                    self.error = f"bad byte-order magic in section header at offset {p}"
                    break
                self.n_if = 0
            le = self.le
            btype = rd32(b, p, le)
            blen = rd32(b, p + 4, le)
            if blen < 12 or blen % 4 or blen > size - p:
                if blen >= 12 and blen % 4 == 0:
                    self.error = f"truncated block at offset {p}: length {blen}, {size - p} bytes left"
                else:
                    self.error = f"corrupt block at offset {p}: length {blen}"
                break
            body = p + 8
            bend = p + blen - 4
            if btype == 1:
                if bend - body < 8:
                    self.error = f"short interface description block at offset {p}"
                    break
                res = 6
                oo = body + 8
                while bend - oo >= 4:
                    code = rd16(b, oo, le)
                    olen = rd16(b, oo + 2, le)
                    if code == 0 or bend - oo - 4 < olen:
                        break
                    if code == 9 and olen >= 1:
                        res = b[oo + 4]
                    oo += 4 + ((olen + 3) & ~3)
                if self.n_if >= MAX_IFACES:
                    self.error = f"more than {MAX_IFACES} interfaces at offset {p}"
                    break
                self.if_lt[self.n_if] = rd16(b, body, le)
                self.if_snap[self.n_if] = rd32(b, body + 4, le)
                self.if_res[self.n_if] = res
                self.n_if += 1
            elif btype == 6 or btype == 2:
                if bend - body < 20:
                    self.error = f"short packet block at offset {p}"
                    break
                iface = rd32(b, body, le) if btype == 6 else rd16(b, body, le)
                hi = rd32(b, body + 4, le)
                lo = rd32(b, body + 8, le)
                cap = rd32(b, body + 12, le)
                if iface >= <uint32_t>self.n_if:
                    self.error = f"packet block at offset {p} names interface {iface}, which is not described"
                    break
                if cap > MAX_CAPLEN or cap > bend - body - 20:
                    self.error = f"corrupt packet block at offset {p}: captured length {cap}"
                    break
                res = self.if_res[iface]
                ts64 = (<uint64_t>hi << 32) | lo
                if res & 0x80:
                    kk = res & 0x7F
                    if kk > 32:
                        self.error = f"timestamp resolution 2^-{kk} is not supported"
                        break
                    ts = <int64_t>((ts64 >> kk) * 1000000000 + (((ts64 & ((<uint64_t>1 << kk) - 1)) * 1000000000) >> kk))
                elif res > 9:
                    if res > 18:
                        self.error = f"timestamp resolution 10^-{res} is not supported"
                        break
                    ts = <int64_t>(ts64 // _pow10(res - 9))
                else:
                    ts = <int64_t>(ts64 * _pow10(9 - res))
                self.last_ts = ts
                o[c] = body + 20
                l[c] = cap
                t[c] = ts
                k[c] = self.if_lt[iface]
                c += 1
            elif btype == 3:
                if self.n_if == 0:
                    self.error = f"simple packet block at offset {p} before any interface"
                    break
                if bend - body < 4:
                    self.error = f"short simple packet block at offset {p}"
                    break
                cap = rd32(b, body, le)
                snap = self.if_snap[0]
                if snap and cap > snap:
                    cap = snap
                if cap > bend - body - 4:
                    cap = <uint32_t>(bend - body - 4)
                if cap > MAX_CAPLEN:
                    self.error = f"corrupt simple packet block at offset {p}: length {cap}"
                    break
                o[c] = body + 4
                l[c] = cap
                t[c] = self.last_ts
                k[c] = self.if_lt[0]
                c += 1
            p += blen
        self.pos = p
        cnt[0] = c
        return 0


cdef inline uint64_t _pow10(int e) noexcept nogil:
    cdef uint64_t r = 1
    while e > 0:
        r *= 10
        e -= 1
    return r
