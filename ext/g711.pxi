# G.711 expansion in C, written once: included by ext/g711.pyx (the codec module) and
# ext/engine.pyx (the hot loop decodes through the tables). The pure-Python twin is
# capture/media/_g711_py.py; the tests check the two agree on all 256 codes of both laws.
import sys

from libc.stdint cimport int16_t, uint16_t, uint64_t
from libc.string cimport memcpy


cdef inline int _ulaw(int code) noexcept nogil:
    """ITU-T G.711 µ-law expansion (the classic Sun g711.c)."""
    cdef int u = ~code & 0xFF
    cdef int t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


cdef inline int _alaw(int code) noexcept nogil:
    """ITU-T G.711 A-law expansion."""
    cdef int a = (code & 0xFF) ^ 0x55
    cdef int t = (a & 0x0F) << 4
    cdef int seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


cdef int16_t ULAW[256]          # code -> 16-bit linear sample
cdef int16_t ALAW[256]
cdef int _code
for _code in range(256):
    ULAW[_code] = <int16_t>_ulaw(_code)
    ALAW[_code] = <int16_t>_alaw(_code)


cdef bint LITTLE = sys.byteorder == "little"


cdef inline uint64_t _four(const int16_t* table, uint64_t v) noexcept nogil:
    """The samples of the low four code bytes of ``v``, packed as four little-endian int16s."""
    return (<uint64_t><uint16_t>table[v & 0xFF] | (<uint64_t><uint16_t>table[(v >> 8) & 0xFF]) << 16
            | (<uint64_t><uint16_t>table[(v >> 16) & 0xFF]) << 32 | (<uint64_t><uint16_t>table[(v >> 24) & 0xFF]) << 48)


cdef inline void decode_into(const int16_t* table, const unsigned char* p, int16_t* dst, Py_ssize_t n) noexcept nogil:
    """``dst[k] = table[p[k]]`` for k < n: G.711 codes to samples. Eight codes are read and
    eight samples written at a time (unaligned 8-byte moves; the byte-by-byte loop spent most of
    its time loading and storing, not looking up)."""
    cdef Py_ssize_t k = 0
    cdef uint64_t v, lo, hi
    if LITTLE:
        while k + 8 <= n:
            memcpy(&v, p + k, 8)
            lo = _four(table, v)
            hi = _four(table, v >> 32)
            memcpy(dst + k, &lo, 8)
            memcpy(dst + k + 4, &hi, 8)
            k += 8
    while k < n:
        dst[k] = table[p[k]]
        k += 1
