"""The hot loop, pure Python: the twin of ext/engine.pyx (same class, same results).

``Engine.run`` walks indexed capture records. RTP for a known flow is handled here entirely:
sequence accounting (RFC 3550 extended sequence numbers, duplicates, reordering, loss,
SSRC changes), placement by RTP timestamp anchored to wall time, and G.711 decoding into
the call's stereo ring buffer. It returns to the caller only for what Python must see:
SIP ports, TCP on SIP ports, ICMP, IP fragments, malformed frames (status ``PYTHON``),
telephone-event packets and streams whose raw packets are kept (``EVENT``), or when the
capture clock passes the caller's deadline (``TICK``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from capture.errors import RtpError, Truncated, Unsupported
from capture.media import wav
from capture.media._g711_py import ALAW_ENCODE, ALAW_TABLE, ULAW_ENCODE, ULAW_TABLE
from capture.wire import _packet_py as packet
from capture.wire import rtp
from capture.wire.frame import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, flow_key

DONE, PYTHON, EVENT, TICK = 0, 1, 2, 3
EVENT_RAW, EVENT_TELEPHONE = 1, 2
CODEC_NONE, CODEC_ULAW, CODEC_ALAW = 0, 1, 2
WINDOW = 8192  # samples per call kept in memory (1.024 s, 32 KiB for both channels), a power of two
RESYNC = 2000  # re-anchor a stream when RTP time and wall time differ by 0.25 s
SEEN = 64  # sequence numbers remembered per stream for duplicate detection (a bitmap)
MAX_WATCHED = 16  # recorder addresses watched for orphan RTP
MASK = (1 << SEEN) - 1
RATE = wav.RATE
CHUNK_RINGS = 64  # the C engine's rings per 2 MiB chunk
AUDIO = True  # audio is placed and written (False only in a C benchmark floor build)


@dataclass(slots=True)
class _Stream:
    """One stream's state: the C twin's StreamC (ext/stream.pxi)."""

    slot: int = 0
    channel: int = 0
    codec: int = 0
    audio_pt: int = 0
    event_pt: int = 0
    raw: int = 0
    started: int = 0
    ssrc: int = 0
    first_ssrc: int = 0
    base_ext: int = 0
    max_ext: int = 0
    expected_acc: int = 0
    received: int = 0
    dup: int = 0
    reordered: int = 0
    late: int = 0
    too_far: int = 0
    malformed: int = 0
    ssrc_changes: int = 0
    resyncs: int = 0
    anchored: int = 0
    anchor_pos: int = 0
    anchor_ts: int = 0
    first_ns: int = 0
    last_ns: int = 0
    src_key: int | None = None
    events: int = 0
    other_pt: int = 0
    window: int = 0  # bit d: extended sequence number max_ext - d was seen


def _lost(s: _Stream) -> int:
    """Packets a stream is missing: expected (extended sequence span, over its SSRCs) less received."""
    expected = s.expected_acc + ((s.max_ext - s.base_ext + 1) if s.started else 0)
    return max(0, expected - s.received)


class _Call:
    __slots__ = ("start_ns", "flushed", "synced", "ring", "last_rtp_ns", "writing", "placed_end", "enc")

    def __init__(self, start_ns: int, ring: np.ndarray):
        self.start_ns = start_ns
        self.writing = False
        self.enc = wav.Encoding.PCM16  # how its file stores samples (set_writing)
        self.flushed = self.synced = 0
        self.ring = ring  # planar: near, far
        self.ring.fill(0)
        self.last_rtp_ns = 0
        self.placed_end = 0  # the end of the furthest audio placed (a frame index)


class _Watched:
    """The recorder addresses watched for orphans (the C twin keeps them in a small array)."""

    _watch: list[bytes]

    def watch(self, addr: bytes) -> bool:
        """UDP to IPv4 address ``addr`` (4 bytes) on a port with no stream goes to Python: RTP to
        the recorder from calls whose SIP was not seen (orphans). Up to MAX_WATCHED addresses."""
        if len(addr) != 4:
            return False
        if bytes(addr) in self._watch:
            return True
        if len(self._watch) == MAX_WATCHED:
            return False
        self._watch.append(bytes(addr))
        return True

    @property
    def watched(self) -> frozenset[bytes]:
        return frozenset(self._watch)


class Engine(_Watched):
    """Flow table, per-stream RTP state and per-call audio rings (see module doc)."""

    def __init__(self, sip_ports: Iterable[int] = (5060,)):
        self.sip_ports = frozenset(int(p) for p in sip_ports)
        self.flows: dict[int, int] = {}
        self.streams: list[_Stream | None] = []
        self.free_streams: list[int] = []
        self.calls: list[_Call | None] = []
        self.free_calls: list[int] = []
        self.rings: list[np.ndarray] = []  # slot -> its ring, kept when the slot is reused (as in C)
        self.counters = {"records": 0, "rtp": 0, "other": 0, "unsupported": 0, "python": 0, "tunneled": 0}
        self._watch: list[bytes] = []

    # calls -----------------------------------------------------------------------------
    def add_call(self, start_ns: int, flushed: int = 0, last_rtp_ns: int = 0) -> int:
        """A call whose sample 0 is ``start_ns``; a resumed one has ``flushed`` samples on disk."""
        slot = self.free_calls.pop() if self.free_calls else len(self.calls)
        if slot == len(self.calls):
            self.calls.append(None)
        self.reserve(slot + 1)
        c = self.calls[slot] = _Call(start_ns, self.rings[slot])
        c.flushed = c.synced = c.placed_end = flushed
        c.last_rtp_ns = last_rtp_ns
        return slot

    def reserve(self, calls: int) -> int:
        """Allocate the rings of call slots [0, calls) now (a service's start; see the C twin,
        whose rings come in 2 MiB chunks of 64). Returns the bytes of ring memory in all."""
        while len(self.rings) < calls:
            self.rings.append(np.zeros((2, WINDOW), dtype=np.int16))
        return -(-len(self.rings) // CHUNK_RINGS) * CHUNK_RINGS * 2 * WINDOW * 2

    def _call(self, slot: int) -> _Call:
        c = self.calls[slot]
        if c is None:
            raise ValueError(f"no call in slot {slot}")
        return c

    def _stream(self, sid: int) -> _Stream:
        s = self.streams[sid]
        if s is None:
            raise ValueError(f"no stream {sid}")
        return s

    def end_call(self, slot: int) -> None:
        self.calls[slot] = None
        self.free_calls.append(slot)

    def set_writing(self, slot: int, on: bool, encoding: int = 0) -> None:
        """Include call ``slot`` in ``flush_due`` (its recording file is open); its audio is
        handed out in ``encoding`` (``capture.media.wav.Encoding``) from now on."""
        c, enc = self._call(slot), wav.Encoding(encoding)
        c.writing, c.enc = bool(on), enc

    def flushed(self, slot: int) -> int:
        return self._call(slot).flushed

    def last_rtp_ns(self, slot: int) -> int:
        return self._call(slot).last_rtp_ns

    def placed_end(self, slot: int) -> int:
        """The end (a frame index) of the furthest audio placed in call ``slot``'s ring (a resumed
        call's starts where its file ends)."""
        return self._call(slot).placed_end

    def flush(self, slot: int, upto: int) -> bytes:
        """Hand out samples [flushed, upto), interleaved in the call's encoding, and forget them."""
        c = self._call(slot)
        out = []
        table = {wav.Encoding.ULAW: ULAW_ENCODE, wav.Encoding.ALAW: ALAW_ENCODE}.get(c.enc)
        while upto > c.flushed:
            a = c.flushed & (WINDOW - 1)
            k = min(upto - c.flushed, WINDOW - a)
            pcm = np.ascontiguousarray(c.ring[:, a : a + k].T)
            out.append(pcm.tobytes() if table is None else table[pcm.view(np.uint16)].tobytes())
            c.ring[:, a : a + k] = 0
            c.flushed += k
        return b"".join(out)

    def flush_due(self, now_ns: int, lag: int, out: Any, idle_ns: int = 0) -> tuple[int, np.ndarray]:
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
        view = memoryview(out).cast("B")
        pos = 0
        rows = []
        for slot, c in enumerate(self.calls):
            if c is not None and c.writing:
                fb = wav.frame_bytes(c.enc)
                room = (len(view) - pos) // fb
                if room == 0:
                    break
                upto = min(now_ns, max(c.last_rtp_ns, c.start_ns) + idle_ns) if idle_ns > 0 else now_ns
                due = ((upto - c.start_ns) * RATE) // 1_000_000_000 - lag
                if due > c.flushed:
                    n = min(due - c.flushed, room)
                    rows.append((slot, c.flushed, n))
                    view[pos : pos + fb * n] = self.flush(slot, c.flushed + n)
                    pos += fb * n
        return pos, np.array(rows, dtype=np.int64).reshape(-1, 3)

    def headers_due(self, out: Any) -> tuple[int, np.ndarray]:
        """WAV headers (44 bytes each) for writing calls whose header is behind their audio.

        The header of a call covers its ``flushed`` frames afterwards. Fills ``out`` as far as
        whole headers fit (call again until no slots come back); returns ``(nbytes, slots)``.
        """
        view = memoryview(out).cast("B")
        slots: list[int] = []
        for slot, c in enumerate(self.calls):
            if len(slots) == len(view) // wav.HEADER_BYTES:
                break
            if c is not None and c.writing and c.synced != c.flushed:
                k = wav.HEADER_BYTES * len(slots)
                view[k : k + wav.HEADER_BYTES] = wav.header(c.flushed * wav.frame_bytes(c.enc), c.enc)
                c.synced = c.flushed
                slots.append(slot)
        return wav.HEADER_BYTES * len(slots), np.array(slots, dtype=np.int64)

    def set_synced(self, slot: int, frames: int) -> None:
        """The WAV header of call ``slot`` was written by someone else and covers ``frames``."""
        self._call(slot).synced = frames

    # streams ---------------------------------------------------------------------------
    def set_stream(self, key: int, slot: int, channel: int, codec: int, audio_pt: int, event_pt: int, raw: bool) -> int:
        """Route RTP sent to ``key`` into channel ``channel`` of call ``slot``; returns its id.

        Calling it again for the same key updates the codec and payload types in place.
        """
        if not 0 <= slot < len(self.calls) or self.calls[slot] is None:
            raise ValueError(f"no call in slot {slot}")
        sid = self.flows.get(key)
        if sid is None:
            s = _Stream()
            if self.free_streams:
                sid = self.free_streams.pop()
                self.streams[sid] = s
            else:
                sid = len(self.streams)
                self.streams.append(s)
            self.flows[key] = sid
        s = self._stream(sid)
        s.slot, s.channel, s.codec = slot, channel, codec
        s.audio_pt, s.event_pt, s.raw = audio_pt, event_pt, 1 if raw else 0
        return sid

    def remove_stream(self, key: int) -> None:
        sid = self.flows.pop(key, None)
        if sid is not None:
            self.streams[sid] = None
            self.free_streams.append(sid)

    def stream_id(self, key: int) -> int | None:
        return self.flows.get(key)

    def anchor(self, sid: int) -> tuple[int, int, int] | None:
        """(SSRC, position, RTP timestamp) that place a stream's audio, once it has them."""
        s = self._stream(sid)
        return (s.ssrc, s.anchor_pos, s.anchor_ts) if s.anchored == 1 else None

    def set_anchor(self, sid: int, ssrc: int, pos: int, rtp_ts: int) -> None:
        """A stream resumed after a restart: if its first packet has this SSRC, its audio is placed
        on the old timing, not re-anchored where that packet happens to arrive."""
        s = self._stream(sid)
        if not s.started:
            s.ssrc, s.anchor_pos, s.anchor_ts, s.anchored = ssrc, pos, rtp_ts, 2

    def stream_stats(self, sid: int) -> dict[str, Any]:
        s = self._stream(sid)
        return {
            "ssrc": s.first_ssrc if s.started else None,
            "src_key": s.src_key,
            "first_ns": s.first_ns,
            "last_ns": s.last_ns,
            "packets": s.received,
            "lost": _lost(s),
            "duplicates": s.dup,
            "reordered": s.reordered,
            "late": s.late,
            "too_far": s.too_far,
            "malformed": s.malformed,
            "ssrc_changes": s.ssrc_changes,
            "resyncs": s.resyncs,
            "events": s.events,
            "other_pt": s.other_pt,
        }

    def lost_total(self) -> int:
        """Packets lost so far on all streams still routed (``stream_stats``' "lost", summed)."""
        return sum(_lost(s) for s in self.streams if s is not None)

    # the loop --------------------------------------------------------------------------
    def run(
        self, buf: Any, offs: Any, lens: Any, tss: Any, lts: Any, i: int, n: int, deadline: int
    ) -> tuple[int, int, int]:
        """Process records i..n-1; return (status, index, arg) as described in the module doc."""
        sip = self.sip_ports
        cnt = self.counters
        while i < n:
            ts = int(tss[i])
            if ts >= deadline:
                return TICK, i, 0
            off = int(offs[i])
            data = buf[off : off + int(lens[i])]
            cnt["records"] += 1
            try:
                f = packet.parse(data, int(lts[i]))
            except Unsupported:
                cnt["unsupported"] += 1
                i += 1
                continue
            except Truncated:
                cnt["python"] += 1
                return PYTHON, i, 0
            if f.inner_off:  # a remote mirror's tunnel carried it
                cnt["tunneled"] += 1
            if f.frag_id >= 0:
                cnt["python"] += 1
                return PYTHON, i, 0
            if f.proto == PROTO_UDP:
                sid = self.flows.get(flow_key(f.dst, f.dport))
                if sid is not None:
                    cnt["rtp"] += 1
                    st = self._rtp(sid, data, f.payload_off, f.payload_len, ts, flow_key(f.src, f.sport), False)
                    if st != DONE:
                        return EVENT, i, st
                    i += 1
                    continue
                if f.sport in sip or f.dport in sip:
                    cnt["python"] += 1
                    return PYTHON, i, 0
                if self._watch and f.ip_version == 4 and f.dst in self._watch:  # an orphan's?
                    cnt["python"] += 1
                    return PYTHON, i, 0
            elif f.proto == PROTO_TCP:
                if f.sport in sip or f.dport in sip:
                    cnt["python"] += 1
                    return PYTHON, i, 0
            elif f.proto in (PROTO_ICMP, PROTO_ICMPV6):
                cnt["python"] += 1
                return PYTHON, i, 0
            cnt["other"] += 1
            i += 1
        return DONE, n, 0

    def feed_rtp(self, key: int, data: Any, ts: int, src_key: int | None, force: bool) -> int:
        """Process one RTP payload sent to ``key`` (the Python path: fragments, raw streams).

        Returns 0, or EVENT_RAW / EVENT_TELEPHONE when Python must look at it.
        """
        sid = self.flows.get(key)
        if sid is None:
            return 0
        return self._rtp(sid, data, 0, len(data), ts, src_key, force)

    def _rtp(self, sid: int, data: Any, off: int, length: int, ts: int, src_key: int | None, force: bool) -> int:
        """One RTP packet of stream ``sid`` (see the C twin's ``_rtp``)."""
        s = self._stream(sid)
        if s.raw and not force:
            return EVENT_RAW
        try:
            h, plen = rtp.header_length(data, off, length)
        except RtpError:
            s.malformed += 1
            return 0
        pt = data[off + 1] & 0x7F
        ssrc = int.from_bytes(data[off + 8 : off + 12], "big")
        if not _sequence(s, (data[off + 2] << 8) | data[off + 3], ssrc, ts, src_key):
            return 0  # a duplicate
        c = self._call(s.slot)
        c.last_rtp_ns = ts
        if pt != s.audio_pt or s.codec == CODEC_NONE:
            if pt == s.event_pt:
                s.events += 1
                return EVENT_TELEPHONE
            s.other_pt += 1
            return 0
        _place(s, c, data[off + h : off + h + plen], int.from_bytes(data[off + 4 : off + 8], "big"), ts)
        return 0


def _sequence(s: _Stream, seq: int, ssrc: int, ts: int, src_key: int | None) -> bool:
    """Account one packet's sequence number; False for a duplicate (counted, to be dropped)."""
    if not s.started or ssrc != s.ssrc:
        if s.started:
            s.ssrc_changes += 1
            s.expected_acc += s.max_ext - s.base_ext + 1
        else:
            s.first_ssrc = ssrc
            s.first_ns = ts
            s.src_key = src_key
        # a stream resumed after a restart (set_anchor: anchored 2) keeps its timing if its SSRC goes on
        s.anchored = 1 if (s.anchored == 2 and not s.started and ssrc == s.ssrc) else 0
        s.started = 1
        s.ssrc = ssrc
        ext = seq + 0x10000
        s.base_ext = s.max_ext = ext
        s.window = 1  # bit d: extended sequence number max_ext - d was seen
    else:
        ud = (seq - s.max_ext) & 0xFFFF
        ext = s.max_ext + ud if ud < 0x8000 else s.max_ext - (0x10000 - ud)
        if ext > s.max_ext:
            d = ext - s.max_ext
            s.window = (((s.window << d) & MASK) if d < SEEN else 0) | 1
            s.max_ext = ext
        else:
            d = s.max_ext - ext
            if d < SEEN and (s.window >> d) & 1:
                s.dup += 1
                return False
            s.reordered += 1
            if ext < s.base_ext:
                s.base_ext = ext
            if d < SEEN:
                s.window |= 1 << d
    s.received += 1
    s.last_ns = ts
    return True


def _place(s: _Stream, c: _Call, codes: Any, rts: int, ts: int) -> None:
    """Decode G.711 ``codes`` into the stream's channel of its call's ring at the position its RTP
    timestamp gives, anchored to wall time (see the C twin's ``stream_place``)."""
    plen = len(codes)
    wall = ((ts - c.start_ns) * RATE) // 1_000_000_000
    if not s.anchored:
        s.anchored = 1
        s.anchor_pos, s.anchor_ts = wall, rts
    d = (rts - s.anchor_ts) & 0xFFFFFFFF
    if d >= 0x80000000:
        d -= 0x100000000
    pos = s.anchor_pos + d
    if abs(pos - wall) > RESYNC:
        s.resyncs += 1
        s.anchor_pos, s.anchor_ts = wall, rts
        pos = wall
    if pos < c.flushed:
        s.late += 1
        return
    if pos + plen > c.flushed + WINDOW:
        s.too_far += 1
        return
    table = ULAW_TABLE if s.codec == CODEC_ULAW else ALAW_TABLE
    samples = table[np.frombuffer(bytes(codes), dtype=np.uint8)]
    idx = np.arange(pos, pos + plen) & (WINDOW - 1)
    c.ring[s.channel, idx] = samples
    c.placed_end = max(c.placed_end, pos + plen)


def pwrite_batch(buf: Any, fds: Any, offsets: Any, lengths: Any, failed_at: Any = None) -> int:
    """Write consecutive pieces of ``buf`` to (fd, offset) in order.

    Returns the number of pieces that failed (short writes are retried to the end). A piece that
    fails (a full disk, an I/O error) leaves a hole of its length, which reads as silence in
    16-bit PCM, so a WAV header that counts it stays true; with ``failed_at`` (a byte per piece)
    each failed piece's byte is set to 1, so that the holes of G.711 recordings can be filled
    with silence later.
    """
    n = len(fds)
    if n and (len(lengths) != n or len(offsets) != n):
        raise ValueError("fds, offsets and lengths differ in length")
    if failed_at is not None and len(failed_at) < n:
        raise ValueError("failed_at has fewer bytes than there are pieces")
    if any(int(x) < 0 for x in lengths):
        raise ValueError("a negative length")
    total = sum(int(x) for x in lengths)
    if total > len(buf):
        raise ValueError(f"pieces of {total} bytes do not fit a buffer of {len(buf)}")
    view = memoryview(buf).cast("B")
    pos = failed = 0
    for i, (fd, off, ln) in enumerate(zip(fds, offsets, lengths)):
        fd, off, ln = int(fd), int(off), int(ln)
        done = 0
        while done < ln:
            try:
                w = os.pwrite(fd, view[pos + done : pos + ln], off + done)
            except OSError:
                w = 0
            if w <= 0:
                failed += 1
                if failed_at is not None:
                    failed_at[i] = 1
                hole(fd, off + ln)
                break
            done += w
        pos += ln
    return failed


def hole(fd: int, end: int) -> None:
    """Make the file at least ``end`` bytes long without writing: the rest reads as zeros (a
    sparse extension needs no free blocks, so it works on a full disk)."""
    try:
        if os.fstat(fd).st_size < end:
            os.ftruncate(fd, end)
    except OSError:
        pass
