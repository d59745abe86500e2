# One RTP stream's state, included by ext/engine.pyx: sequence accounting (RFC 3550 extended
# sequence numbers, duplicates in a 64-packet window, reordering, SSRC changes) and placement of
# its audio in its call's ring by RTP timestamp, anchored to wall time. The Python twin is the
# _Stream class and its functions in capture/media/_engine_py.py.


cdef struct StreamC:
    # what every packet reads and writes, packed into the first 64-byte cache line
    uint8_t channel, codec, raw, started, anchored, in_use
    int16_t audio_pt, event_pt
    int32_t slot
    uint32_t ssrc, anchor_ts
    int64_t max_ext, anchor_pos, received, last_ns
    uint64_t window                 # bit d: extended sequence number max_ext - d was seen
    # the rest: where the call's ring is (read only to prefetch it), counters, the first packet's facts
    int16_t* ring                   # this channel's half of the call's ring, as set_stream found it
    uint32_t first_ssrc
    int16_t src_alen                # the first packet's source (src_alen 0: unknown)
    uint16_t src_port
    unsigned char src_addr[16]
    int64_t base_ext, expected_acc, dup, reordered, late, too_far, malformed
    int64_t ssrc_changes, resyncs, events, other_pt, first_ns


assert sizeof(StreamC) % 64 == 0, "StreamC must fill whole cache lines"


cdef inline int64_t _lost(const StreamC* s) noexcept nogil:
    """Packets a stream is missing: expected (extended sequence span, over its SSRCs) less received."""
    cdef int64_t expected = s.expected_acc + ((s.max_ext - s.base_ext + 1) if s.started else 0)
    return expected - s.received if expected > s.received else 0


cdef inline bint stream_sequence(StreamC* s, int seq, uint32_t ssrc, int64_t ts, const unsigned char* saddr,
                                 int alen, int sport) noexcept nogil:
    """Account one packet's sequence number; False for a duplicate (counted, to be dropped)."""
    cdef int ud
    cdef int64_t ext, dd
    if not s.started or ssrc != s.ssrc:
        if s.started:
            s.ssrc_changes += 1
            s.expected_acc += s.max_ext - s.base_ext + 1
        else:
            s.first_ssrc = ssrc
            s.first_ns = ts
            if saddr != NULL:
                memcpy(s.src_addr, saddr, alen)
                s.src_alen = alen
                s.src_port = sport
        # a stream resumed after a restart (set_anchor: anchored 2) keeps its timing if its SSRC goes on
        s.anchored = 1 if (s.anchored == 2 and not s.started and ssrc == s.ssrc) else 0
        s.started = 1
        s.ssrc = ssrc
        ext = seq + 0x10000
        s.base_ext = ext
        s.max_ext = ext
        s.window = 1
    else:
        ud = (seq - s.max_ext) & 0xFFFF
        ext = s.max_ext + ud if ud < 0x8000 else s.max_ext - (0x10000 - ud)
        if ext > s.max_ext:
            dd = ext - s.max_ext
            s.window = ((s.window << dd) if dd < 64 else 0) | 1
            s.max_ext = ext
        else:
            dd = s.max_ext - ext
            if dd < 64 and (s.window >> dd) & 1:
                s.dup += 1
                return False
            s.reordered += 1
            if ext < s.base_ext:
                s.base_ext = ext
            if dd < 64:
                s.window |= (<uint64_t>1) << dd
    s.received += 1
    s.last_ns = ts
    return True


cdef inline void stream_place(StreamC* s, CallC* c, const unsigned char* p, Py_ssize_t plen, uint32_t rts,
                              int64_t ts) noexcept nogil:
    """Decode ``plen`` G.711 codes at ``p`` into the stream's channel of its call's ring, at the
    position its RTP timestamp gives (re-anchored to wall time when the two disagree by more than
    RESYNC); audio already written (late) or beyond the ring (too far) is counted and dropped."""
    cdef int64_t wall, pos, dd
    cdef Py_ssize_t start, first
    cdef const int16_t* table
    cdef int16_t* ring
    wall = ((ts - c.start_ns) * C_RATE) // 1000000000
    if (ts - c.start_ns) < 0 and ((ts - c.start_ns) * C_RATE) % 1000000000:
        wall -= 1      # floor division, as Python does
    if not s.anchored:
        s.anchored = 1
        s.anchor_pos = wall
        s.anchor_ts = rts
    dd = <int32_t>(rts - s.anchor_ts)
    pos = s.anchor_pos + dd
    if pos - wall > C_RESYNC or wall - pos > C_RESYNC:
        s.resyncs += 1
        s.anchor_pos = wall
        s.anchor_ts = rts
        pos = wall
    if pos < c.flushed:
        s.late += 1
        return
    if pos + plen > c.flushed + C_WINDOW:
        s.too_far += 1
        return
    if pos + plen > c.placed_end:
        c.placed_end = pos + plen
    table = &ULAW[0] if s.codec == 1 else &ALAW[0]
    ring = c.ring + (C_WINDOW if s.channel else 0)
    start = pos & (C_WINDOW - 1)
    first = plen if plen <= C_WINDOW - start else C_WINDOW - start
    if SR_AUDIO:
        decode_into(table, p, ring + start, first)        # contiguous up to the ring's end, then from its start
        decode_into(table, p + first, ring, plen - first)
