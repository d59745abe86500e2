# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hot loop (C): the twin of capture/media/_engine_py.py. Read that module's doc first.

Per record: frame parse (frame.pxd), flow lookup (flowtable.pxi), RTP header walk (rtp.pxi),
sequence accounting and placement (stream.pxi), G.711 decoding into the call's ring (g711.pxi);
everything else goes back to Python. Due audio and WAV headers are laid out in batch buffers and
written without the GIL (batch.pxi). The pieces are included here, so their inline functions
cost the loop nothing.

``Engine.run`` works ahead of itself, each stage reading only what an earlier stage prefetched:
a frame's first 256 bytes are prefetched 4 x LOOKAHEAD records early; frames are parsed
2 x LOOKAHEAD early (the flow table slot of an IPv4 UDP frame is prefetched then); the flow is
looked up 1.5 x LOOKAHEAD early (the stream's state is prefetched then); and LOOKAHEAD early the
call and the ring lines the packet will land in are prefetched. Each packet's ~4 cache misses
(flow slot, stream state, call, ring) then overlap instead of adding up. The prefetches are only
hints: what is computed is exactly what the loop alone computes (the flow table does not change
during a run).
"""
import sys

import numpy as np
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memset
from posix.types cimport off_t
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport ftruncate
from posix.mman cimport MADV_HUGEPAGE, madvise
from posix.stdlib cimport posix_memalign
from posix.unistd cimport pwrite

from frame cimport *

cdef extern from *:
    void __builtin_prefetch(const void* addr, int rw, int locality) nogil

cdef extern from *:
    """
    /* A benchmark floor, never a product: built with CFLAGS=-DSHADOWREC_NO_AUDIO the engine
       keeps every count and timer but neither places audio in the rings nor reads it back
       (the recordings are silence). bench/live_bench.py --floor measures what is left. */
    #ifdef SHADOWREC_NO_AUDIO
    #define SR_AUDIO 0
    #else
    #define SR_AUDIO 1
    #endif
    """
    const int SR_AUDIO

AUDIO = bool(SR_AUDIO)       # False only in a benchmark floor build (capture/speedups.py warns)

from capture.media import wav

cnp.import_array()

cdef enum:
    C_DONE = 0
    C_PYTHON = 1
    C_EVENT = 2
    C_TICK = 3
    C_EVENT_RAW = 1
    C_EVENT_TELEPHONE = 2

DONE, PYTHON, EVENT, TICK = C_DONE, C_PYTHON, C_EVENT, C_TICK
EVENT_RAW, EVENT_TELEPHONE = C_EVENT_RAW, C_EVENT_TELEPHONE
CODEC_NONE, CODEC_ULAW, CODEC_ALAW = 0, 1, 2
WINDOW = 8192
MAX_WATCHED = 16
RESYNC = 2000
SEEN = 64
RATE = 8000
DEF C_WINDOW = 8192
DEF C_RESYNC = 2000
DEF C_RATE = 8000
DEF C_MAX_WATCHED = 16       # recorder addresses watched for orphan RTP
DEF C_LOOKAHEAD = 8          # records; a power of two
DEF C_CHUNK_BYTES = 2097152  # a huge page
DEF C_CHUNK_RINGS = 64       # 2 MiB / (2 channels x 8192 samples x 2 bytes)

include "g711.pxi"


cdef struct CallC:
    int in_use, writing
    int enc                 # how its file stores samples: capture.media.wav.Encoding
    int64_t start_ns, flushed, synced, last_rtp_ns
    int64_t placed_end      # the end of the furthest audio placed (a frame index)
    int16_t* ring


include "rtp.pxi"           # the RTP header walk
include "stream.pxi"        # one stream's state: sequence accounting, placement by timestamp
include "flowtable.pxi"     # (IPv4 address, port) -> stream, without Python objects
include "batch.pxi"         # a call's due audio interleaved into a batch buffer; WAV headers; pwrite_batch
include "rings.pxi"         # the calls: their audio rings, flushed into batches (the base of Engine)


cdef class Engine(_CallRings):
    """Flow table, per-stream RTP state and the hot loop, on the calls' rings (see the module doc)."""

    cdef StreamC* st
    cdef Py_ssize_t n_st, cap_st
    cdef list free_streams
    cdef _V4Table v4
    cdef readonly dict flows
    cdef readonly frozenset sip_ports
    cdef unsigned char sip[65536]
    cdef int64_t c_records, c_rtp, c_other, c_unsupported, c_python, c_tunneled
    cdef uint32_t watch4[C_MAX_WATCHED]   # recorder addresses whose unknown UDP goes to Python (orphans)
    cdef int n_watch4

    def __cinit__(self, sip_ports=(5060,)):
        self.st = NULL
        self.n_st = self.cap_st = 0
        self.free_streams = []
        self.flows = {}
        self.v4 = _V4Table()
        self.sip_ports = frozenset(int(p) for p in sip_ports)
        memset(self.sip, 0, sizeof(self.sip))
        for p in self.sip_ports:
            self.sip[p & 0xFFFF] = 1
        self.c_records = self.c_rtp = self.c_other = self.c_unsupported = self.c_python = self.c_tunneled = 0
        self.n_watch4 = 0

    def __dealloc__(self):
        free(self.st)

    @property
    def counters(self):
        return {"records": self.c_records, "rtp": self.c_rtp, "other": self.c_other,
                "unsupported": self.c_unsupported, "python": self.c_python, "tunneled": self.c_tunneled}

    # orphans ---------------------------------------------------------------------------
    def watch(self, addr):
        """UDP to IPv4 address ``addr`` (4 bytes) on a port with no stream goes to Python: RTP to
        the recorder from calls whose SIP was not seen (orphans). Up to MAX_WATCHED addresses."""
        cdef uint32_t a
        cdef int k
        if len(addr) != 4:
            return False
        a = <uint32_t>int.from_bytes(bytes(addr), "big")
        for k in range(self.n_watch4):
            if self.watch4[k] == a:
                return True
        if self.n_watch4 == C_MAX_WATCHED:
            return False
        self.watch4[self.n_watch4] = a
        self.n_watch4 += 1
        return True

    @property
    def watched(self):
        return frozenset(int(self.watch4[k]).to_bytes(4, "big") for k in range(self.n_watch4))

    cdef inline bint _watched4(self, uint32_t a) noexcept nogil:
        cdef int k
        for k in range(self.n_watch4):
            if self.watch4[k] == a:
                return True
        return False

    # streams ---------------------------------------------------------------------------
    def set_stream(self, key, int slot, int channel, int codec, int audio_pt, int event_pt, raw):
        cdef Py_ssize_t sid
        cdef StreamC* p
        if slot < 0 or slot >= self.n_cl or not self.cl[slot].in_use:
            raise ValueError(f"no call in slot {slot}")
        cdef object found = self.flows.get(key)
        if found is None:
            if self.free_streams:
                sid = self.free_streams.pop()
            else:
                if self.n_st == self.cap_st:       # grown cache-line aligned (see StreamC)
                    self.cap_st = max(64, self.cap_st * 2)
                    if posix_memalign(<void**>&p, 64, self.cap_st * sizeof(StreamC)) != 0:
                        raise MemoryError()
                    if self.st != NULL:
                        memcpy(p, self.st, self.n_st * sizeof(StreamC))
                        free(self.st)
                    self.st = p
                sid = self.n_st
                self.n_st += 1
            memset(&self.st[sid], 0, sizeof(StreamC))
            self.st[sid].in_use = 1
            self.flows[key] = sid
            if key < (1 << 48):
                self.v4.put(key, <int32_t>sid)
        else:
            sid = found
        cdef StreamC* s = &self.st[sid]
        s.slot, s.channel, s.codec = slot, channel, codec
        s.ring = self.cl[slot].ring + (C_WINDOW if channel else 0) if self.cl[slot].ring != NULL else NULL
        s.audio_pt, s.event_pt, s.raw = audio_pt, event_pt, 1 if raw else 0
        return sid

    def remove_stream(self, key):
        sid = self.flows.pop(key, None)
        if sid is not None:
            if key < (1 << 48):
                self.v4.delete(key)
            self.st[<Py_ssize_t>sid].in_use = 0
            self.free_streams.append(sid)

    def stream_id(self, key):
        return self.flows.get(key)

    def anchor(self, Py_ssize_t sid):
        """(SSRC, position, RTP timestamp) that place a stream's audio, once it has them."""
        cdef StreamC* s = &self.st[sid]
        return (s.ssrc, s.anchor_pos, s.anchor_ts) if s.anchored == 1 else None

    def set_anchor(self, Py_ssize_t sid, uint32_t ssrc, int64_t pos, uint32_t rtp_ts):
        """A stream resumed after a restart: if its first packet has this SSRC, its audio is placed
        on the old timing, not re-anchored where that packet happens to arrive."""
        cdef StreamC* s = &self.st[sid]
        if not s.started:
            s.ssrc, s.anchor_pos, s.anchor_ts, s.anchored = ssrc, pos, rtp_ts, 2

    def stream_stats(self, Py_ssize_t sid):
        cdef StreamC* s = &self.st[sid]
        return {
            "ssrc": s.first_ssrc if s.started else None,
            "src_key": key_of(s.src_addr, s.src_alen, s.src_port) if s.src_alen else None,
            "first_ns": s.first_ns, "last_ns": s.last_ns,
            "packets": s.received, "lost": _lost(s),
            "duplicates": s.dup, "reordered": s.reordered, "late": s.late,
            "too_far": s.too_far, "malformed": s.malformed, "ssrc_changes": s.ssrc_changes,
            "resyncs": s.resyncs, "events": s.events, "other_pt": s.other_pt,
        }

    def lost_total(self):
        """Packets lost so far on all streams still routed (``stream_stats``' "lost", summed)."""
        cdef Py_ssize_t k
        cdef int64_t total = 0
        for k in range(self.n_st):
            if self.st[k].in_use:
                total += _lost(&self.st[k])
        return total

    # the loop --------------------------------------------------------------------------
    def run(self, const unsigned char[:] buf, const int64_t[:] offs, const int32_t[:] lens,
            const int64_t[:] tss, const int32_t[:] lts, Py_ssize_t i, Py_ssize_t n, int64_t deadline):
        """Process records i..n-1; return (status, index, arg) as in capture/media/_engine_py.py.
        Without the GIL (taken back only to look up an IPv6 flow), working ahead (module doc)."""
        cdef FrameC* f
        cdef FrameC la_f[2 * C_LOOKAHEAD]
        cdef int la_rc[2 * C_LOOKAHEAD]
        cdef Py_ssize_t la_sid[2 * C_LOOKAHEAD]     # -2: an IPv4 UDP flow to look up; -1: none
        cdef uint64_t la_key[2 * C_LOOKAHEAD]
        cdef Py_ssize_t filled = i, looked = i, staged = i, j, m
        cdef const unsigned char* base = &buf[0] if buf.shape[0] else NULL
        cdef const unsigned char* d
        cdef int64_t ts
        cdef PyObject* hit
        cdef Py_ssize_t sid
        cdef int rc, status = C_DONE, arg = 0
        cdef StreamC* s2
        cdef int64_t pos2
        cdef _V4Table v4 = self.v4
        if n > offs.shape[0] or n > lens.shape[0] or n > tss.shape[0] or n > lts.shape[0]:
            raise ValueError("n exceeds the index arrays")
        with nogil:
            while i < n:
                # stage A: parse ahead and prefetch the flow table slot (and the frame that
                # stage A will parse next time round)
                while filled < n and filled < i + 2 * C_LOOKAHEAD:
                    if filled + 2 * C_LOOKAHEAD < n:
                        d = base + offs[filled + 2 * C_LOOKAHEAD]
                        for m in range(0, 256, 64):
                            __builtin_prefetch(d + m, 0, 3)
                    j = filled & (2 * C_LOOKAHEAD - 1)
                    d = base + offs[filled]
                    la_rc[j] = parse_frame(d, lens[filled], lts[filled], &la_f[j])
                    la_sid[j] = -1
                    if (la_rc[j] == OK and la_f[j].frag_id < 0 and la_f[j].proto == PROTO_UDP
                            and la_f[j].ip_version == 4):
                        la_key[j] = (<uint64_t>u32(d, la_f[j].dst_off) << 16) | la_f[j].dport
                        la_sid[j] = -2
                        __builtin_prefetch(v4.slot_of(la_key[j]), 0, 3)
                    filled += 1
                # stage A2: look the flow up, prefetch the stream's state (both lines stage B reads)
                while looked < filled and looked <= i + C_LOOKAHEAD + C_LOOKAHEAD // 2:
                    j = looked & (2 * C_LOOKAHEAD - 1)
                    if la_sid[j] == -2:
                        la_sid[j] = v4.find(la_key[j])
                        if la_sid[j] >= 0:
                            __builtin_prefetch(&self.st[la_sid[j]], 1, 3)
                            __builtin_prefetch(<char*>&self.st[la_sid[j]] + 64, 0, 3)
                    looked += 1
                # stage B: prefetch the call and the ring lines the packet will land in
                while staged < looked and staged <= i + C_LOOKAHEAD:
                    j = staged & (2 * C_LOOKAHEAD - 1)
                    if la_sid[j] >= 0:
                        s2 = &self.st[la_sid[j]]
                        __builtin_prefetch(&self.cl[s2.slot], 1, 3)
                        if SR_AUDIO and s2.anchored and la_f[j].payload_len >= 12 and s2.ring != NULL:
                            d = base + offs[staged] + la_f[j].payload_off
                            pos2 = s2.anchor_pos + <int32_t>(u32(d, 4) - s2.anchor_ts)
                            for m in range(0, la_f[j].payload_len + 32, 32):
                                __builtin_prefetch(s2.ring + ((pos2 + m) & (C_WINDOW - 1)), 1, 3)
                    staged += 1
                # the record itself
                ts = tss[i]
                if ts >= deadline:
                    status = C_TICK
                    break
                d = base + offs[i]
                j = i & (2 * C_LOOKAHEAD - 1)
                f = &la_f[j]
                self.c_records += 1
                if la_rc[j] != OK:
                    if is_unsupported(f.err):
                        self.c_unsupported += 1
                        i += 1
                        continue
                    status = C_PYTHON
                    break
                if f.inner_off:         # a remote mirror's tunnel carried it
                    self.c_tunneled += 1
                if f.frag_id >= 0:
                    status = C_PYTHON
                    break
                if f.proto == PROTO_UDP:
                    if f.ip_version == 4:
                        sid = la_sid[j]
                    else:
                        with gil:
                            hit = PyDict_GetItem(self.flows, key_of(d + f.dst_off, 16, f.dport))
                            sid = -1 if hit == NULL else <Py_ssize_t><object>hit
                    if sid >= 0:
                        self.c_rtp += 1
                        rc = self._rtp(sid, d + f.payload_off, f.payload_len, ts,
                                       d + f.src_off, 4 if f.ip_version == 4 else 16, f.sport, 0)
                        if rc != 0:
                            status = C_EVENT
                            arg = rc
                            break
                        i += 1
                        continue
                    if self.sip[f.sport] or self.sip[f.dport]:
                        status = C_PYTHON
                        break
                    if self.n_watch4 and f.ip_version == 4 and self._watched4(u32(d, f.dst_off)):
                        status = C_PYTHON        # to the recorder, no stream: an orphan's?
                        break
                elif f.proto == PROTO_TCP:
                    if self.sip[f.sport] or self.sip[f.dport]:
                        status = C_PYTHON
                        break
                elif f.proto == PROTO_ICMP or f.proto == PROTO_ICMPV6:
                    status = C_PYTHON
                    break
                self.c_other += 1
                i += 1
        if status == C_PYTHON:
            self.c_python += 1
        elif status == C_DONE:
            i = n
        return status, i, arg

    def feed_rtp(self, key, data, int64_t ts, src_key, bint force):
        """Process one RTP payload sent to ``key`` (the Python path: fragments, raw streams)."""
        sid = self.flows.get(key)
        if sid is None:
            return 0
        cdef const unsigned char[:] mv = data
        cdef Py_ssize_t n = mv.shape[0]
        cdef bytes addr = b""
        cdef int alen = 0, port = 0
        if src_key is not None:
            alen = 4 if src_key < (1 << 48) else 16
            addr = ((src_key >> 16) & ((1 << (8 * alen)) - 1)).to_bytes(alen, "big")
            port = src_key & 0xFFFF
        return self._rtp(sid, &mv[0] if n else <const unsigned char*>b"", n, ts,
                         <const unsigned char*>addr if alen else NULL, alen, port, force)

    cdef int _rtp(self, Py_ssize_t sid, const unsigned char* p, Py_ssize_t length, int64_t ts,
                  const unsigned char* saddr, int alen, int sport, bint force) noexcept nogil:
        """One RTP packet of stream ``sid``: its header walked, its sequence accounted, its audio
        placed in its call's ring (``rtp.pxi``, ``stream.pxi``). Returns 0, or what Python must see."""
        cdef StreamC* s = &self.st[sid]
        cdef CallC* c
        cdef Py_ssize_t h, plen
        cdef int pt
        if s.raw and not force:
            return C_EVENT_RAW
        if not rtp_walk(p, length, &h, &plen):
            s.malformed += 1
            return 0
        pt = p[1] & 0x7F
        if not stream_sequence(s, (p[2] << 8) | p[3], u32(p, 8), ts, saddr, alen, sport):
            return 0                # a duplicate
        c = &self.cl[s.slot]
        c.last_rtp_ns = ts
        if pt != s.audio_pt or s.codec == 0:
            if pt == s.event_pt:
                s.events += 1
                return C_EVENT_TELEPHONE
            s.other_pt += 1
            return 0
        stream_place(s, c, p + h, plen, u32(p, 4), ts)
        return 0
