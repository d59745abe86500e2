# cython: language_level=3, boundscheck=False, wraparound=False
"""G.711 (C): the twin of capture/media/_g711_py.py, same names and results (the expansion itself
is ext/g711.pxi, shared with the engine)."""
import numpy as np
cimport numpy as cnp

from capture.media._g711_py import encode_alaw, encode_ulaw  # encoders are for synth only

cnp.import_array()

include "g711.pxi"

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
    cdef Py_ssize_t n = src.shape[0]
    out = np.empty(n, dtype=np.int16)
    cdef int16_t[:] dst = out
    if n:
        with nogil:
            decode_into(table, &src[0], &dst[0], n)
    return out


def decode_ulaw(data):
    """Decode µ-law bytes to an int16 array."""
    return _decode(data, ULAW)


def decode_alaw(data):
    """Decode A-law bytes to an int16 array."""
    return _decode(data, ALAW)
