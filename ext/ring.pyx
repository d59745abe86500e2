# cython: language_level=3, boundscheck=False, wraparound=False
"""TPACKET_V3 block walker (C): the twin of capture/live/_ring_py.py. Read that module's doc."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t

from capture.errors import Truncated

cnp.import_array()


cdef extern from *:
    void __builtin_prefetch(const void* addr, int rw, int locality) nogil

DEF PREFETCH_AHEAD = 1024


cdef inline uint32_t rd32(const unsigned char* b) noexcept nogil:
    return (<const uint32_t*>b)[0]


cdef inline uint16_t rd16(const unsigned char* b) noexcept nogil:
    return (<const uint16_t*>b)[0]


def index_block(ring, Py_ssize_t block_off, Py_ssize_t block_size):
    cdef const unsigned char[:] mv = ring
    cdef Py_ssize_t size = mv.shape[0]
    if block_size < 48 or block_off < 0 or block_off + block_size > size:
        raise Truncated(f"block at {block_off} of {block_size} bytes does not fit the ring of {size}")
    cdef const unsigned char* b = &mv[block_off]
    cdef uint32_t num = rd32(b + 12), first = rd32(b + 16), blen = rd32(b + 20)
    if blen > block_size:
        raise Truncated(f"block length {blen} exceeds the block size {block_size}")
    if num > (blen - 48) // 32 if blen > 48 else num > 0:
        raise Truncated(f"block claims {num} packets, more than {blen} bytes can hold")
    offs = np.empty(num, dtype=np.int64)
    lens = np.empty(num, dtype=np.int32)
    tss = np.empty(num, dtype=np.int64)
    lts = np.empty(num, dtype=np.int32)
    cdef int64_t[:] o = offs
    cdef int32_t[:] l = lens
    cdef int64_t[:] t = tss
    cdef int32_t[:] lt = lts
    cdef Py_ssize_t pos = first, n = 0, k, ahead = first
    cdef uint32_t nxt, snap
    cdef uint16_t mac
    for k in range(num):
        # The kernel wrote the block from another core: each header read would be a cache miss
        # waiting on the previous one (the walk is a linked list). Packets lie one after another,
        # so the lines ~1 KiB ahead are fetched meanwhile (a hint: nothing computed depends on it).
        while ahead < pos + PREFETCH_AHEAD and ahead < blen:
            __builtin_prefetch(b + ahead, 0, 3)
            ahead += 64
        if pos < 48 or pos + 32 > blen:
            raise Truncated(f"packet header at {pos} outside the block of {blen} bytes")
        nxt = rd32(b + pos)
        snap = rd32(b + pos + 12)
        mac = rd16(b + pos + 24)
        if pos + mac + snap > blen:
            raise Truncated(f"packet at {pos} ({mac}+{snap} bytes) overruns the block of {blen} bytes")
        o[n] = block_off + pos + mac
        l[n] = snap
        t[n] = <int64_t>rd32(b + pos + 4) * 1000000000 + rd32(b + pos + 8)
        lt[n] = 1                           # Ethernet (the ring's link type)
        n += 1
        if nxt == 0:
            break
        pos += nxt
    return offs[:n], lens[:n], tss[:n], lts[:n]
