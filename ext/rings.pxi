# The calls' audio rings, included by ext/engine.pyx: the base class of Engine, which adds the
# streams and the hot loop. Each call has a ring of 2 x 8192 samples (near, far) carved from 2 MiB
# huge-page chunks; its due audio is flushed, interleaved, into batch buffers (batch.pxi). The
# Python twin is the call half of Engine in capture/media/_engine_py.py.


cdef class _CallRings:
    """Per-call audio rings and what has been flushed of them to their files."""

    cdef CallC* cl
    cdef Py_ssize_t n_cl, cap_cl
    cdef list free_calls
    cdef int16_t** chunks           # call rings, CHUNK_RINGS per 2 MiB huge-page-backed chunk
    cdef Py_ssize_t n_chunks

    def __cinit__(self, *args, **kwargs):
        self.cl = NULL
        self.n_cl = self.cap_cl = 0
        self.free_calls = []
        self.chunks = NULL
        self.n_chunks = 0

    def __dealloc__(self):
        cdef Py_ssize_t k
        free(self.cl)
        for k in range(self.n_chunks):
            free(self.chunks[k])
        free(self.chunks)

    cdef int16_t* _ring(self, Py_ssize_t slot) except NULL:
        """Call ``slot``'s ring (planar: near then far), carved from 2 MiB chunks.

        The rings of thousands of calls are written in turn, a few lines each: with 4 KiB pages
        nearly every packet would also miss the TLB. The chunks are 2 MiB aligned and advised
        as huge pages, so 64 calls share one TLB entry. A slot keeps its ring when it is reused.
        """
        cdef Py_ssize_t k = slot // C_CHUNK_RINGS
        cdef void* mem
        cdef int16_t** grown
        while k >= self.n_chunks:
            grown = <int16_t**>realloc(self.chunks, (self.n_chunks + 1) * sizeof(int16_t*))
            if grown == NULL:
                raise MemoryError()
            self.chunks = grown
            if posix_memalign(&mem, C_CHUNK_BYTES, C_CHUNK_BYTES) != 0:
                raise MemoryError()
            madvise(mem, C_CHUNK_BYTES, MADV_HUGEPAGE)       # a hint: fine if the kernel says no
            self.chunks[self.n_chunks] = <int16_t*>mem
            self.n_chunks += 1
        return self.chunks[k] + (slot % C_CHUNK_RINGS) * 2 * C_WINDOW

    def reserve(self, Py_ssize_t calls):
        """Allocate the rings of call slots [0, calls) now and fault their memory in.

        For a service's start: the first touch of a 2 MiB chunk makes the kernel zero a huge
        page, and a burst of new calls would pay for it in the capture loop (4.7% of the
        capture process's samples with 2,000 calls starting at once). Chunks that exist are
        left as they are (they may hold calls). Returns the bytes of ring memory in all.
        """
        cdef Py_ssize_t k, before = self.n_chunks
        if calls > 0:
            self._ring(calls - 1)
        for k in range(before, self.n_chunks):
            memset(self.chunks[k], 0, C_CHUNK_BYTES)
        return self.n_chunks * C_CHUNK_BYTES

    def add_call(self, int64_t start_ns, int64_t flushed=0, int64_t last_rtp_ns=0):
        """A call whose sample 0 is ``start_ns``; a resumed one has ``flushed`` samples on disk."""
        cdef Py_ssize_t slot
        cdef CallC* p
        if self.free_calls:
            slot = self.free_calls.pop()
        else:
            if self.n_cl == self.cap_cl:
                self.cap_cl = max(64, self.cap_cl * 2)
                p = <CallC*>realloc(self.cl, self.cap_cl * sizeof(CallC))
                if p == NULL:
                    raise MemoryError()
                self.cl = p
            slot = self.n_cl
            self.n_cl += 1
        cdef int16_t* ring = self._ring(slot)
        memset(ring, 0, 2 * C_WINDOW * sizeof(int16_t))
        self.cl[slot].in_use = 1
        self.cl[slot].writing = 0
        self.cl[slot].enc = 0
        self.cl[slot].start_ns = start_ns
        self.cl[slot].flushed = flushed
        self.cl[slot].synced = flushed
        self.cl[slot].last_rtp_ns = last_rtp_ns
        self.cl[slot].placed_end = flushed
        self.cl[slot].ring = ring
        return slot

    def end_call(self, Py_ssize_t slot):
        self.cl[slot].in_use = 0
        self.cl[slot].ring = NULL
        self.free_calls.append(slot)

    def set_writing(self, Py_ssize_t slot, bint on, int encoding=0):
        """Include call ``slot`` in ``flush_due`` (its recording file is open); its audio is
        handed out in ``encoding`` (``capture.media.wav.Encoding``) from now on."""
        if not 0 <= encoding < C_ENCODINGS:
            raise ValueError(f"{encoding} is not a wav.Encoding")
        self.cl[slot].writing = 1 if on else 0
        self.cl[slot].enc = encoding

    def flushed(self, Py_ssize_t slot):
        return self.cl[slot].flushed

    def last_rtp_ns(self, Py_ssize_t slot):
        return self.cl[slot].last_rtp_ns

    def placed_end(self, Py_ssize_t slot):
        """The end (a frame index) of the furthest audio placed in call ``slot``'s ring (a resumed
        call's starts where its file ends)."""
        return self.cl[slot].placed_end

    def flush(self, Py_ssize_t slot, int64_t upto):
        """Hand out samples [flushed, upto), interleaved in the call's encoding, and forget them."""
        cdef CallC* c = &self.cl[slot]
        if upto <= c.flushed:
            return b""
        out = PyBytes_FromStringAndSize(NULL, (upto - c.flushed) * FRAME_BYTES[c.enc])
        _drain(c, upto, <unsigned char*>PyBytes_AS_STRING(out))
        return out

    def flush_due(self, int64_t now_ns, int64_t lag, unsigned char[::1] out, int64_t idle_ns=0):
        """Flush writing calls towards their due sample ``(now - start) * RATE // 1e9 - lag``.

        With ``idle_ns`` > 0, a call is due at most ``idle_ns`` past its last RTP packet (or its
        start): time that jumps ahead (a gap in a capture, a clock step, a corrupt timestamp)
        writes no more silence than that before the call times out.

        Calls are taken in slot order and their interleaved audio (in each call's encoding) is
        written one after another into ``out``; when ``out`` is full, the last call is flushed only as far as fits and
        the rest waits for the next call (so call again until no rows come back). Returns
        ``(nbytes, segs)``: the bytes used in ``out`` and an int64 array of rows
        ``(slot, first frame, frames)`` in buffer order.
        """
        cdef Py_ssize_t slot, k = 0
        cdef int64_t pos = 0, room, due, n, upto, fb
        cdef unsigned char* o = &out[0] if out.shape[0] else NULL
        cdef CallC* c
        segs = np.empty((self.n_cl, 3), dtype=np.int64)    # rows written in place: no tuple per call
        cdef int64_t[:, ::1] r = segs
        for slot in range(self.n_cl):
            c = &self.cl[slot]
            if c.in_use and c.writing:
                fb = FRAME_BYTES[c.enc]
                room = (out.shape[0] - pos) // fb
                if room == 0:
                    break
                upto = now_ns
                if idle_ns > 0:
                    upto = min(now_ns, max(c.last_rtp_ns, c.start_ns) + idle_ns)
                due = _due(upto, c.start_ns, lag)
                if due > c.flushed:
                    n = min(due - c.flushed, room)
                    r[k, 0], r[k, 1], r[k, 2] = slot, c.flushed, n
                    k += 1
                    _drain(c, c.flushed + n, o + pos)
                    pos += fb * n
        return pos, segs[:k]

    def headers_due(self, unsigned char[::1] out):
        """WAV headers (44 bytes each) for writing calls whose header is behind their audio.

        The header of a call covers its ``flushed`` frames afterwards. Fills ``out`` as far as
        whole headers fit (call again until no slots come back); returns ``(nbytes, slots)``.
        """
        cdef Py_ssize_t slot, k = 0, cap = out.shape[0] // C_WAV_HEADER_BYTES
        cdef CallC* c
        cdef unsigned char* h
        cdef uint32_t data
        slots = np.empty(min(self.n_cl, cap), dtype=np.int64)     # filled in place, as flush_due's rows
        cdef int64_t[::1] sl = slots
        for slot in range(self.n_cl):
            if k == cap:
                break
            c = &self.cl[slot]
            if c.in_use and c.writing and c.synced != c.flushed:
                data = <uint32_t>min(c.flushed * FRAME_BYTES[c.enc], WAV_MAX_DATA[c.enc])
                h = &out[C_WAV_HEADER_BYTES * k]
                memcpy(h, WAV_HEADER[c.enc], C_WAV_HEADER_BYTES)
                _le32(h + WAV_RIFF_SIZE_AT, C_WAV_HEADER_BYTES - 8 + data)
                _le32(h + WAV_DATA_SIZE_AT, data)
                c.synced = c.flushed
                sl[k] = slot
                k += 1
        return C_WAV_HEADER_BYTES * k, slots[:k]

    def set_synced(self, Py_ssize_t slot, int64_t frames):
        """The WAV header of call ``slot`` was written by someone else and covers ``frames``."""
        self.cl[slot].synced = frames

