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


# the empty WAV header of each encoding (capture/media/wav.py); its two sizes are patched per call
DEF C_WAV_HEADER_BYTES = 44
DEF C_ENCODINGS = 3           # wav.Encoding: PCM16, ULAW, ALAW
assert wav.HEADER_BYTES == C_WAV_HEADER_BYTES and len(wav.Encoding) == C_ENCODINGS
cdef unsigned char WAV_HEADER[C_ENCODINGS][C_WAV_HEADER_BYTES]
cdef int64_t WAV_MAX_DATA[C_ENCODINGS]
cdef int64_t FRAME_BYTES[C_ENCODINGS]
cdef Py_ssize_t WAV_RIFF_SIZE_AT = wav.RIFF_SIZE_OFFSET, WAV_DATA_SIZE_AT = wav.DATA_SIZE_OFFSET
cdef int _k, _e
for _e in range(C_ENCODINGS):
    _h = wav.header(0, wav.Encoding(_e))
    for _k in range(C_WAV_HEADER_BYTES):
        WAV_HEADER[_e][_k] = _h[_k]
    WAV_MAX_DATA[_e] = wav.max_data_bytes(wav.Encoding(_e))
    FRAME_BYTES[_e] = wav.frame_bytes(wav.Encoding(_e))

# G.711 compression, for recordings kept in the call's own law: uint16(sample) -> code (the
# tables are built once, in capture/media/_g711_py.py)
from capture.media._g711_py import ALAW_ENCODE, ULAW_ENCODE
cdef uint8_t ENCODE[C_ENCODINGS][65536]
cdef const uint8_t[::1] _table
for _e, _tab in ((1, ULAW_ENCODE), (2, ALAW_ENCODE)):
    _table = _tab
    assert _table.shape[0] == 65536
    memcpy(ENCODE[_e], &_table[0], 65536)   # one copy each (a Python loop over them cost every start)


cdef inline void _le32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef void _drain(CallC* c, int64_t upto, unsigned char* out) noexcept nogil:
    """Interleave samples [flushed, upto) of a call into ``out``, in the call's encoding, and
    clear them in the ring."""
    cdef int16_t* near = c.ring
    cdef int16_t* far = c.ring + C_WINDOW
    cdef int16_t* o = <int16_t*>out
    cdef const uint8_t* table = ENCODE[c.enc]
    cdef int64_t j = c.flushed, a, k, m
    if not SR_AUDIO:
        memset(out, 0, (upto - j) * FRAME_BYTES[c.enc])
        c.flushed = upto
        return
    while j < upto:
        a = j & (C_WINDOW - 1)
        m = min(upto - j, C_WINDOW - a)
        if c.enc == 0:
            for k in range(m):
                o[2 * k] = near[a + k]
                o[2 * k + 1] = far[a + k]
            o += 2 * m
        else:
            for k in range(m):
                out[2 * k] = table[<uint16_t>near[a + k]]
                out[2 * k + 1] = table[<uint16_t>far[a + k]]
            out += 2 * m
        memset(near + a, 0, m * sizeof(int16_t))
        memset(far + a, 0, m * sizeof(int16_t))
        j += m
    c.flushed = upto


def pwrite_batch(const unsigned char[:] buf, const int64_t[:] fds, const int64_t[:] offsets,
                 const int64_t[:] lengths, uint8_t[::1] failed_at=None):
    """Write consecutive pieces of ``buf`` to (fd, offset) in order, without the GIL.

    Returns the number of pieces that failed (short writes are retried to the end). A piece that
    fails (a full disk, an I/O error) leaves a hole of its length, which reads as silence in
    16-bit PCM, so a WAV header that counts it stays true (as the twin's ``hole``); with
    ``failed_at`` (a byte per piece) each failed piece's byte is set to 1, so that the holes of
    G.711 recordings can be filled with silence later.
    """
    cdef Py_ssize_t i, n = fds.shape[0]
    cdef int64_t pos = 0, done
    cdef ssize_t w
    cdef int failed = 0
    cdef struct_stat st
    cdef const unsigned char* b = &buf[0] if buf.shape[0] else NULL
    if n and (lengths.shape[0] != n or offsets.shape[0] != n):
        raise ValueError("fds, offsets and lengths differ in length")
    if failed_at is not None and failed_at.shape[0] < n:
        raise ValueError("failed_at has fewer bytes than there are pieces")
    cdef uint8_t* marks = &failed_at[0] if failed_at is not None and n else NULL
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
                    if marks != NULL:
                        marks[i] = 1
                    if fstat(<int>fds[i], &st) == 0 and st.st_size < offsets[i] + lengths[i]:
                        ftruncate(<int>fds[i], <off_t>(offsets[i] + lengths[i]))
                    break
                done += w
            pos += lengths[i]
    return failed
