# G.711 expansion in C, written once: included by ext/g711.pyx (the codec module) and
# ext/engine.pyx (the hot loop decodes through the tables). The pure-Python twin is
# capture/media/_g711_py.py; the tests check the two agree on all 256 codes of both laws.
from libc.stdint cimport int16_t


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
