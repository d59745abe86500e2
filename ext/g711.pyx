# cython: language_level=3, boundscheck=False, wraparound=False
"""G.711 (C): the twin of capture/_g711_py.py, same names and results."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int16_t

from capture._g711_py import encode_alaw, encode_ulaw  # encoders are for synth only

cnp.import_array()

cdef int16_t ULAW[256]
cdef int16_t ALAW[256]


cdef int _ulaw(int code) noexcept nogil:
    cdef int u = ~code & 0xFF
    cdef int t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


cdef int _alaw(int code) noexcept nogil:
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


cdef int _i
for _i in range(256):
    ULAW[_i] = <int16_t>_ulaw(_i)
    ALAW[_i] = <int16_t>_alaw(_i)

ULAW_TABLE = np.array([ULAW[i] for i in range(256)], dtype=np.int16)
ALAW_TABLE = np.array([ALAW[i] for i in range(256)], dtype=np.int16)


def ulaw_to_linear(int code):
    """Expand one µ-law byte to a 16-bit linear sample."""
    return _ulaw(code)


def alaw_to_linear(int code):
    """Expand one A-law byte to a 16-bit linear sample."""
    return _alaw(code)


cdef object _decode(data, const int16_t* table):
    cdef const unsigned char[:] src = data
    cdef Py_ssize_t n = src.shape[0], i
    out = np.empty(n, dtype=np.int16)
    cdef int16_t[:] dst = out
    with nogil:
        for i in range(n):
            dst[i] = table[src[i]]
    return out


def decode_ulaw(data):
    """Decode µ-law bytes to an int16 array."""
    return _decode(data, ULAW)


def decode_alaw(data):
    """Decode A-law bytes to an int16 array."""
    return _decode(data, ALAW)
