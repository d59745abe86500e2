# Batch writing, included by ext/engine.pyx: each writing call's due audio is interleaved
# (near, far) into a pooled batch buffer and cleared from its ring; WAV headers (the format is
# capture/media/wav.py) are laid out the same way; pwrite_batch writes a buffer's pieces to their
# files without the GIL. The Python twins are Engine.flush/flush_due/headers_due and
# pwrite_batch in capture/media/_engine_py.py.


cdef inline int64_t _due(int64_t now_ns, int64_t start_ns, int64_t lag) noexcept nogil:
    """``(now - start) * RATE // 1e9 - lag`` with Python's floor division, without overflow."""
    cdef int64_t d = now_ns - start_ns
    cdef int64_t q = d // 1000000000, r = d % 1000000000
    if r < 0:
        q -= 1
        r += 1000000000
    return q * C_RATE + (r * C_RATE) // 1000000000 - lag


# the empty WAV header (capture/media/wav.py); its two sizes are patched per call
DEF C_WAV_HEADER_BYTES = 44
assert wav.HEADER_BYTES == C_WAV_HEADER_BYTES
cdef unsigned char WAV_HEADER[C_WAV_HEADER_BYTES]
cdef Py_ssize_t WAV_RIFF_SIZE_AT = wav.RIFF_SIZE_OFFSET, WAV_DATA_SIZE_AT = wav.DATA_SIZE_OFFSET
cdef int64_t WAV_MAX_DATA = wav.MAX_DATA_BYTES
cdef int _k
_h = wav.header(0)
for _k in range(C_WAV_HEADER_BYTES):
    WAV_HEADER[_k] = _h[_k]


cdef inline void _le32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef void _drain(CallC* c, int64_t upto, int16_t* o) noexcept nogil:
    """Interleave samples [flushed, upto) of a call into ``o`` and clear them in the ring."""
    cdef int16_t* near = c.ring
    cdef int16_t* far = c.ring + C_WINDOW
    cdef int64_t j = c.flushed, a, k, m
    if not SR_AUDIO:
        memset(o, 0, (upto - j) * 2 * sizeof(int16_t))
        c.flushed = upto
        return
    while j < upto:
        a = j & (C_WINDOW - 1)
        m = min(upto - j, C_WINDOW - a)
        for k in range(m):
            o[2 * k] = near[a + k]
            o[2 * k + 1] = far[a + k]
        memset(near + a, 0, m * sizeof(int16_t))
        memset(far + a, 0, m * sizeof(int16_t))
        o += 2 * m
        j += m
    c.flushed = upto


def pwrite_batch(const unsigned char[:] buf, const int64_t[:] fds, const int64_t[:] offsets,
                 const int64_t[:] lengths):
    """Write consecutive pieces of ``buf`` to (fd, offset) in order, without the GIL.

    Returns the number of pieces that failed (short writes are retried to the end). A piece that
    fails (a full disk, an I/O error) leaves a hole of its length, which reads as silence, so a
    WAV header that counts it stays true (as the twin's ``hole``).
    """
    cdef Py_ssize_t i, n = fds.shape[0]
    cdef int64_t pos = 0, done
    cdef ssize_t w
    cdef int failed = 0
    cdef struct_stat st
    cdef const unsigned char* b = &buf[0] if buf.shape[0] else NULL
    if n and (lengths.shape[0] != n or offsets.shape[0] != n):
        raise ValueError("fds, offsets and lengths differ in length")
    cdef int64_t total = 0
    for i in range(n):
        if lengths[i] < 0:
            raise ValueError("a negative length")
        total += lengths[i]
    if total > buf.shape[0]:
        raise ValueError(f"pieces of {total} bytes do not fit a buffer of {buf.shape[0]}")
    with nogil:
        for i in range(n):
            done = 0
            while done < lengths[i]:
                w = pwrite(<int>fds[i], b + pos + done, <size_t>(lengths[i] - done), <off_t>(offsets[i] + done))
                if w <= 0:
                    failed += 1
                    if fstat(<int>fds[i], &st) == 0 and st.st_size < offsets[i] + lengths[i]:
                        ftruncate(<int>fds[i], <off_t>(offsets[i] + lengths[i]))
                    break
                done += w
            pos += lengths[i]
    return failed
