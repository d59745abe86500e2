"""The recording pipeline: capture records in, one stereo WAV + sidecar + catalog row per call out.

One synchronous loop; time is the capture's own clock (packet timestamps), so a file and a
live interface run the same code. The hot part is ``Engine.run`` (C or its twin); this
module handles what the engine hands back: SIP (UDP, TCP), ICMP, fragments, DTMF, raw
packets, and the periodic work (flushing audio to disk, timeouts) on ``TICK``.
"""
from __future__ import annotations

import functools
import logging
import mmap
import os
import socket
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from capture import speedups as _impl
from capture.wire import icmp as health
from capture.sip.calls import CallEnded, CallStarted, CallTable, Evidence, MediaMapped, MediaUnmapped
from capture.store.catalog import Catalog
from capture.clock import utc
from capture.errors import ParseError, PcapError
from capture.wire.frame import flow_key, key_to_str
from capture.wire.ipfrag import Defragmenter
from capture.wire.tcpstream import TcpReassembler
from capture.store.files import to_json, write_json_atomic
from capture.store.wavfile import WavWriter
from capture.store.writer import SyncIO
from capture.wire.pcapfile import PcapWriter

log = logging.getLogger("shadowrec")
NS = 1_000_000_000
RATE = 8000
CODECS = {"PCMU": 1, "PCMA": 2}
DTMF = "0123456789*#ABCD"
MAX_LOGGED_ERRORS = 20


@functools.lru_cache(maxsize=4096)
def _ntop(addr: bytes) -> str:
    """A packed address as text (the SIP endpoints: a few addresses, each seen many times)."""
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def iso(ns: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds (the output contract's times)."""
    if ns is None:
        return None
    return f"{utc(ns // NS, '%Y-%m-%dT%H:%M:%S')}.{(ns % NS) // 1_000_000:03d}Z"


@dataclass
class Options:
    out_dir: str
    sip_ports: tuple = (5060,)
    rtp_timeout_s: float = 30.0
    keep_pcap: bool = False          # a raw pcap for every call (always for undecoded codecs)
    tick_s: float = 0.25             # housekeeping period, capture time
    lag_s: float = 0.25              # audio is written this long after it is due (reordering)
    # The engine keeps 1.024 s per call (WINDOW); a packet is placed at most 0.25 s ahead of wall
    # time (RESYNC). tick + lag + RESYNC + a packet must stay below WINDOW.
    sync_s: float = 1.0              # WAV headers cover everything written this often
    durable_s: float = 0.0           # fdatasync recordings this often and at call end (0: never;
                                     # a killed process still leaves valid files, a power loss may not)
    linger_s: float = 5.0            # keep an ended call's metadata open for late evidence
    own_by_rtp: bool = False         # several workers: open a call's files only once its RTP is seen here
    queue_mb: int = 64               # live: bound of the writer queue; audio beyond it is dropped and counted
    state_file: str | None = None    # live: where open calls are saved on shutdown and resumed from
    reserve_calls: int = 0           # audio rings allocated at start (32 KiB a call), not when a burst comes


@dataclass
class _Rec:
    call: object
    slot: int
    wav: WavWriter | None = None
    wav_rel: str = ""
    meta_path: str = ""
    pcap: PcapWriter | None = None
    pcap_rel: str | None = None
    keys: dict = field(default_factory=dict)          # role -> flow key
    finished_streams: list = field(default_factory=list)
    events: dict = field(default_factory=dict)        # (role, rtp ts) -> event dict
    sip_frames: list = field(default_factory=list)    # (ts, linktype, frame) until a pcap opens
    dirty: bool = False
    end_frames: int | None = None
    decoded: bool = False         # all mapped streams are G.711: no raw pcap will be needed


class Recorder:
    """Record every BiB call in one or more captures into ``opts.out_dir``."""

    def __init__(self, opts: Options, impl=None, io=None):
        self.opts = opts
        self.impl = impl or _impl.default()
        self.io = io or SyncIO(self.impl.engine.pwrite_batch)
        self.engine = self.impl.Engine(opts.sip_ports)
        self.engine.reserve(opts.reserve_calls)
        self.table = CallTable(opts.rtp_timeout_s)
        self.tcp = TcpReassembler()
        self.defrag = Defragmenter()
        os.makedirs(opts.out_dir, exist_ok=True)
        self.catalog = Catalog(os.path.join(opts.out_dir, "catalog.sqlite"))
        self.sip_ports = frozenset(opts.sip_ports)
        self.active: dict = {}
        self.unopened: dict = {}         # own_by_rtp: calls whose files wait for their RTP here
        self.fd_of = np.full(64, -1, dtype=np.int64)     # engine slot -> its WAV's fd
        self.closing: list = []          # (deadline_ns, _Rec)
        self.errors: Counter = Counter()
        self.counters: Counter = Counter()
        self.now = 0
        self.deadline = 0
        self.next_sync = 0
        self.next_durable = 0
        self.lag = int(opts.lag_s * RATE)
        self.dirs: set = set()
        self.answered_here: set = set()      # SIP Call-IDs that shadowrec's own UAS answered
        if opts.state_file and os.path.exists(opts.state_file):
            self._restore(opts.state_file)

    # input --------------------------------------------------------------------------------
    def record_file(self, path: str) -> None:
        """Run one capture file through the pipeline (errors in it are counted, not raised)."""
        try:
            f = open(path, "rb")
        except OSError as e:
            self._error(PcapError(f"{path}: {e.strerror}"))
            return
        with f:
            try:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:
                self._error(PcapError(f"{path}: empty file"))
                return
            try:
                idx = self.impl.Indexer(mm)
            except PcapError as e:
                self._error(PcapError(f"{path}: {e}"))
                mm.close()
                return
            while True:
                batch = idx.next_batch(65536)
                if not len(batch[0]):
                    break
                self.feed(mm, *batch)
            if idx.error:
                self._error(PcapError(f"{path}: {idx.error}"))
            self.counters["records_read"] += idx.records
            del idx            # the C indexer holds a view of the mapping
            mm.close()

    def feed(self, buf, offs, lens, tss, lts) -> None:
        """Process a batch of indexed records (offsets into ``buf``)."""
        eng = self.impl.engine
        n = len(offs)
        i = 0
        if self.deadline == 0 and n:
            self.deadline = int(tss[0])
        while i < n:
            st, i, arg = self.engine.run(buf, offs, lens, tss, lts, i, n, self.deadline)
            if st == eng.DONE:
                break
            ts = int(tss[i])
            if st == eng.TICK:
                self.tick(ts)
                continue
            if ts > self.now:
                self.now = ts
            off = int(offs[i])
            frame = bytes(buf[off:off + int(lens[i])])
            if st == eng.PYTHON:
                self._frame(frame, ts, int(lts[i]))
            else:
                self._event(frame, ts, int(lts[i]), arg)
            i += 1
        if n:
            self.now = max(self.now, int(tss[n - 1]))

    # the rare path --------------------------------------------------------------------------
    def _frame(self, frame: bytes, ts: int, lt: int) -> None:
        try:
            f = self.impl.packet.parse(frame, lt)
            if f.frag_id >= 0:
                key = (f.ip_version, f.src, f.dst, f.proto, f.frag_id)
                dg = self.defrag.add(key, f.frag_off, f.frag_more,
                                     frame[f.l4_off:f.l4_off + f.l4_len], ts)
                if dg is not None:
                    self._datagram(f.ip_version, f.src, f.dst, f.proto, dg, ts, frame, lt)
                return
            if f.proto in (17, 6):
                payload = frame[f.payload_off:f.payload_off + f.payload_len]
                if f.proto == 17:
                    self._udp(f.src, f.dst, f.sport, f.dport, payload, ts, frame, lt)
                else:
                    self._tcp(f.src, f.dst, f.sport, f.dport, f.tcp_seq, f.tcp_flags, payload, ts, frame, lt)
            elif f.proto in (1, 58):
                self._icmp(f.ip_version, f.src, frame[f.l4_off:f.l4_off + f.l4_len], ts)
        except ParseError as e:
            self._error(e)

    def _datagram(self, ver, src, dst, proto, dg, ts, frame, lt):
        from capture.errors import Truncated
        if proto == 17:
            if len(dg) < 8:
                raise Truncated(f"reassembled UDP datagram of {len(dg)} bytes")
            ulen = (dg[4] << 8) | dg[5]
            if ulen < 8 or ulen > len(dg):
                raise Truncated(f"reassembled UDP length {ulen} does not fit {len(dg)} bytes")
            self._udp(src, dst, (dg[0] << 8) | dg[1], (dg[2] << 8) | dg[3], dg[8:ulen], ts, None, lt)
        elif proto == 6:
            if len(dg) < 20 or (dg[12] >> 4) * 4 > len(dg) or (dg[12] >> 4) < 5:
                raise Truncated(f"reassembled TCP segment of {len(dg)} bytes")
            doff = (dg[12] >> 4) * 4
            self._tcp(src, dst, (dg[0] << 8) | dg[1], (dg[2] << 8) | dg[3],
                      int.from_bytes(dg[4:8], "big"), dg[13], dg[doff:], ts, None, lt)
        elif proto in (1, 58):
            self._icmp(ver, src, dg, ts)

    def _udp(self, src, dst, sport, dport, payload, ts, frame, lt):
        key = flow_key(dst, dport)
        if self.engine.stream_id(key) is not None:
            self._rtp(key, payload, ts, flow_key(src, sport), frame, lt, force=False)
        elif sport in self.sip_ports or dport in self.sip_ports:
            self.counters["sip_udp"] += 1
            self._sip(self.impl.sip.parse(payload), ts, src, sport, dst, dport, "udp", frame, lt)

    def _tcp(self, src, dst, sport, dport, seq, flags, payload, ts, frame, lt):
        if sport not in self.sip_ports and dport not in self.sip_ports:
            return
        for data in self.tcp.feed((src, sport, dst, dport), seq, flags, payload, ts):
            self.counters["sip_tcp"] += 1
            try:
                msg = self.impl.sip.parse(data)
            except ParseError as e:
                self._error(e)
                continue
            self._sip(msg, ts, src, sport, dst, dport, "tcp", frame, lt)
            frame = None    # the segment is stored once, with the first message it carried

    def _sip(self, msg, ts, src, sport, dst, dport, transport, frame, lt):
        fx = self.table.on_sip(msg, ts, (_ntop(src), sport), (_ntop(dst), dport), transport)
        self._apply(fx)
        d = self.table.dialogs.get(msg.call_id)
        if d is not None and frame is not None:
            rec = self.active.get(d.call.id)
            if rec is not None:
                if rec.pcap is not None:
                    rec.pcap.write(ts, frame, lt)
                elif len(rec.sip_frames) < 64 and (self.opts.keep_pcap or not rec.decoded):
                    rec.sip_frames.append((ts, lt, frame))   # for the raw pcap, should one be needed

    def _icmp(self, ver, reporter, data, ts):
        err = health.parse(ver, data)
        if err is None or err.quoted_proto != 17 and err.quoted_proto != 6:
            return
        self.counters["icmp_errors"] += 1
        self._apply(self.table.on_icmp(ts, err.kind, err.quoted_dst, err.quoted_dport,
                                       _ntop(reporter)))

    def _event(self, frame, ts, lt, arg):
        f = self.impl.packet.parse(frame, lt)
        payload = frame[f.payload_off:f.payload_off + f.payload_len]
        key = flow_key(f.dst, f.dport)
        if arg == self.impl.engine.EVENT_RAW:
            self._rtp(key, payload, ts, flow_key(f.src, f.sport), frame, lt, force=False)
        else:
            self._telephone_event(key, payload, ts)

    def _rtp(self, key, payload, ts, src_key, frame, lt, force):
        eng = self.impl.engine
        st = self.engine.feed_rtp(key, payload, ts, src_key, force)
        if st == eng.EVENT_RAW:
            d = self.table.media.get(key)
            rec = self.active.get(d.call.id) if d is not None else None
            if rec is not None and frame is not None:
                self._pcap_for(rec, lt).write(ts, frame, lt)
            st = self.engine.feed_rtp(key, payload, ts, src_key, True)
        if st == eng.EVENT_TELEPHONE:
            self._telephone_event(key, payload, ts)

    def _telephone_event(self, key, payload, ts):
        """RFC 4733: one event per RTP timestamp; the end bit and duration update it."""
        d = self.table.media.get(key)
        rec = self.active.get(d.call.id) if d is not None else None
        if rec is None or len(payload) < 12:
            return
        h = 12 + 4 * (payload[0] & 0x0F)
        if payload[0] & 0x10 and len(payload) >= h + 4:
            h += 4 + 4 * ((payload[h + 2] << 8) | payload[h + 3])
        if len(payload) < h + 4:
            self.errors["TelephoneEventTruncated"] += 1
            return
        code = payload[h]
        dur = (payload[h + 2] << 8) | payload[h + 3]
        rts = int.from_bytes(payload[4:8], "big")
        ev = rec.events.get((d.role, rts))
        if ev is None:
            ev = rec.events[(d.role, rts)] = {
                "role": d.role, "event": code, "digit": DTMF[code] if code < 16 else None,
                "at": iso(ts), "duration_ms": 0, "ended": False}
            rec.dirty = True
        ev["duration_ms"] = max(ev["duration_ms"], dur // 8)
        if payload[h + 1] & 0x80:
            ev["ended"] = True

    # effects --------------------------------------------------------------------------------
    def _apply(self, fx) -> None:
        for e in fx:
            if isinstance(e, CallStarted):
                rec = self.active[e.call.id] = _Rec(e.call, self.engine.add_call(e.call.started_ns))
                if self.opts.own_by_rtp:
                    self.unopened[e.call.id] = rec
            elif isinstance(e, MediaMapped):
                rec = self.active.get(e.call.id)
                if rec is None:
                    continue
                if rec.wav is None and not self.opts.own_by_rtp:
                    self._open_outputs(rec)
                if e.old_key is not None:
                    self._drop_stream(rec, e.role, e.old_key)
                codec = CODECS.get(e.codec, 0)
                raw = self.opts.keep_pcap or codec == 0
                rec.decoded = codec != 0 and all(
                    d.codec in CODECS for d in e.call.dialogs.values() if d.key is not None)
                if rec.decoded and not self.opts.keep_pcap:
                    rec.sip_frames = []
                self.engine.set_stream(e.key, rec.slot, 0 if e.role == "near" else 1, codec,
                                       e.audio_pt, e.event_pt, raw)
                rec.keys[e.role] = e.key
            elif isinstance(e, MediaUnmapped):
                rec = self.active.get(e.call.id)
                if rec is not None and rec.keys.get(e.role) == e.key:
                    self._drop_stream(rec, e.role, e.key)
                    rec.dirty = True
            elif isinstance(e, CallEnded):
                self._end(e)
            elif isinstance(e, Evidence):
                rec = self.active.get(e.call.id) or next(
                    (r for _, r in self.closing if r.call is e.call), None)
                if rec is not None:
                    rec.dirty = True

    def _open_outputs(self, rec: _Rec) -> None:
        c = rec.call
        rel_dir = utc(c.started_ns // NS, "calls/%Y/%m/%d")
        if rel_dir not in self.dirs:
            os.makedirs(os.path.join(self.opts.out_dir, rel_dir), exist_ok=True)
            self.dirs.add(rel_dir)
        rec.wav_rel = os.path.join(rel_dir, c.id + ".wav")
        rec.wav = WavWriter(os.path.join(self.opts.out_dir, rec.wav_rel), self.io)
        self._writing(rec)
        rec.meta_path = os.path.join(self.opts.out_dir, rel_dir, c.id + ".json")
        self._write_meta(rec)
        self.counters["calls_recorded"] += 1

    def _writing(self, rec: _Rec) -> None:
        """The engine flushes this call's audio into its WAV from now on (see ``tick``)."""
        self.unopened.pop(rec.call.id, None)
        if rec.slot >= len(self.fd_of):
            grown = np.full(max(rec.slot + 1, 2 * len(self.fd_of)), -1, dtype=np.int64)
            grown[:len(self.fd_of)] = self.fd_of
            self.fd_of = grown
        self.fd_of[rec.slot] = rec.wav.fd
        self.engine.set_writing(rec.slot, True)

    def _frames(self, rec: _Rec) -> int:
        """Frames in an open call's WAV (the engine's batch writes included)."""
        rec.wav.advance(self.engine.flushed(rec.slot))
        return rec.wav.frames

    def _pcap_for(self, rec: _Rec, lt: int) -> PcapWriter:
        if rec.pcap is None:
            rec.pcap_rel = rec.wav_rel[:-4] + ".pcap"
            rec.pcap = PcapWriter(os.path.join(self.opts.out_dir, rec.pcap_rel), lt)
            for ts, flt, fr in rec.sip_frames:
                rec.pcap.write(ts, fr, flt)
            rec.sip_frames = []
            rec.dirty = True
        return rec.pcap

    def _drop_stream(self, rec: _Rec, role: str, key: int) -> None:
        sid = self.engine.stream_id(key)
        if sid is not None:
            rec.finished_streams.append(self._stream_meta(role, key, self.engine.stream_stats(sid)))
            self.engine.remove_stream(key)
        if rec.keys.get(role) == key:
            del rec.keys[role]

    @staticmethod
    def _stream_meta(role, key, s):
        return {"role": role, "ssrc": s["ssrc"], "src": key_to_str(s["src_key"]) if s["src_key"] else None,
                "dst": key_to_str(key), "packets": s["packets"], "lost": s["lost"],
                "duplicates": s["duplicates"], "reordered": s["reordered"], "late": s["late"],
                "malformed": s["malformed"], "ssrc_changes": s["ssrc_changes"],
                "resyncs": s["resyncs"], "first_at": iso(s["first_ns"] or None),
                "last_at": iso(s["last_ns"] or None)}

    def _end(self, e: CallEnded) -> None:
        rec = self.active.pop(e.call.id, None)
        if rec is None:
            return
        if self.unopened.pop(e.call.id, None) is not None and self.engine.last_rtp_ns(rec.slot):
            self._open_outputs(rec)     # its RTP came here, but it ended before the tick that opens files
        if rec.wav is None:     # never answered, or (several workers) another worker's: nothing recorded here
            for key in rec.keys.values():
                if self.engine.stream_id(key) is not None:
                    self.engine.remove_stream(key)
            self.engine.end_call(rec.slot)
            return
        for role, key in list(rec.keys.items()):
            self._drop_stream(rec, role, key)
        end = ((e.at_ns - e.call.started_ns) * RATE) // NS
        if e.reason == "rtp_timeout":
            end += RATE // 50           # the last packet's 20 ms
        end = max(end, 0)
        flushed = self._frames(rec)
        if end > flushed:
            rec.wav.append(self.engine.flush(rec.slot, end))
        elif end < flushed:
            rec.wav.truncate(end)
        self.engine.end_call(rec.slot)
        self.fd_of[rec.slot] = -1
        rec.wav.close(durable=self.opts.durable_s > 0)
        if rec.pcap is not None:
            rec.pcap.close()
        rec.end_frames = end
        self._write_meta(rec, durable=self.opts.durable_s > 0)
        self.closing.append((e.at_ns + int(self.opts.linger_s * NS), rec))

    def meta(self, rec: _Rec) -> dict:
        c = rec.call
        streams = list(rec.finished_streams)
        for role, key in rec.keys.items():
            sid = self.engine.stream_id(key)
            if sid is not None:
                streams.append(self._stream_meta(role, key, self.engine.stream_stats(sid)))
        streams.sort(key=lambda s: (s["role"] != "near", s["first_at"] or ""))
        ended = c.ended_ns
        failed = c.failed_ns
        return {
            "id": c.id, "kind": "bib", "state": "complete" if ended is not None else "recording",
            "started_at": iso(c.started_ns), "ended_at": iso(ended),
            "duration_s": round((ended - c.started_ns) / NS, 3) if ended is not None else None,
            "end_reason": c.end_reason, "codec": c.codec or None,
            "decoded": c.codec in CODECS,
            "near": {"device": c.near.device, "dn": c.near.dn, "refci": c.near.refci},
            "far": {"device": c.far.device, "dn": c.far.dn, "refci": c.far.refci},
            "primary": {"address": c.primary_address, "port": c.primary_port,
                        "failed_at": iso(failed),
                        "evidence": [{"kind": ev["kind"], "at": iso(ev["at_ns"]), "detail": ev["detail"]}
                                     for ev in sorted(c.evidence, key=lambda x: x["at_ns"])]},
            "streams": streams,
            "events": sorted(rec.events.values(), key=lambda x: x["at"]),
            "wav": rec.wav_rel, "pcap": rec.pcap_rel, "previous": c.previous,
            "transport": c.transport, "sample_rate": RATE, "channels": ["near", "far"],
            "answered_by": "shadowrec" if any(d.call_id in self.answered_here for d in c.dialogs.values())
            else "primary",
            "sip_call_ids": {r: d.call_id for r, d in c.dialogs.items()},
            "frames": rec.end_frames if rec.end_frames is not None else (self._frames(rec) if rec.wav else 0),
        }

    def _write_meta(self, rec: _Rec, durable: bool = False) -> None:
        m = self.meta(rec)
        text = to_json(m)           # encoded once, for the sidecar and the catalog
        self.io.write_file(rec.meta_path, (text + "\n").encode(), durable)     # live: on the writer thread
        self.catalog.upsert(m, text)
        rec.dirty = False

    # time ----------------------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Housekeeping at capture time ``now``: write due audio, timeouts, late metadata."""
        self.now = max(self.now, now)
        now = self.now
        self.deadline = now + int(self.opts.tick_s * NS)
        for rec in list(self.unopened.values()):
            if self.engine.last_rtp_ns(rec.slot):
                self._open_outputs(rec)        # this worker sees the call's RTP: it is ours
        # every open call's due audio: interleaved in C, written in batches
        self._write_batches(lambda buf: self.engine.flush_due(now, self.lag, buf)[1],
                            lambda segs: (self.fd_of[segs[:, 0]], 44 + 4 * segs[:, 1], 4 * segs[:, 2]))
        if now >= self.next_sync:
            self._apply(self.table.tick(now, self._last_rtp))
            durable = self.opts.durable_s > 0 and now >= self.next_durable
            if durable:
                for rec in self.active.values():
                    if rec.wav is not None:
                        frames = self._frames(rec)
                        rec.wav.sync(True)
                        self.engine.set_synced(rec.slot, frames)
            else:               # headers patched after their audio, in the same order of writes
                self._write_batches(lambda buf: self.engine.headers_due(buf)[1],
                                    lambda slots: (self.fd_of[slots], np.zeros(len(slots), dtype=np.int64),
                                                   np.full(len(slots), 44, dtype=np.int64)),
                                    droppable=False)
            for rec in self.active.values():
                if rec.dirty and rec.wav is not None:
                    self._write_meta(rec)
            if durable:
                self.next_durable = now + int(self.opts.durable_s * NS)
            self._close_lingering(now)
            self._commit_catalog()
            self.tcp.expire(now)
            self.defrag.expire(now)
            self.next_sync = now + int(self.opts.sync_s * NS)
        self.io.flush()         # live: this tick's sidecars, headers and closes to the writer, together

    def _write_batches(self, fill, pieces, droppable: bool = True) -> None:
        """Fill pooled buffers with ``fill(buf) -> rows`` until no rows come back; write each
        buffer to ``pieces(rows) -> (fds, offsets, lengths)``."""
        while True:
            buf = self.io.buffer()
            rows = fill(buf)
            if not len(rows):
                self.io.release(buf)
                return
            self.io.write_batch(buf, *pieces(rows), droppable=droppable)

    def _last_rtp(self, call) -> int:
        rec = self.active.get(call.id)
        return self.engine.last_rtp_ns(rec.slot) if rec is not None else 0

    def _close_lingering(self, now: int) -> None:
        keep = []
        for deadline, rec in self.closing:
            if now >= deadline:
                if rec.dirty:
                    self._write_meta(rec)
            else:
                keep.append((deadline, rec))
        self.closing = keep

    def finish(self, reason: str = "capture_end") -> dict:
        """End every open call (at the last packet's time) and flush everything.

        With a ``state_file`` and reason "shutdown", open calls are not ended: their audio is
        written up to now, they are saved, and the next start resumes them in the same files.
        """
        if reason == "shutdown" and self.opts.state_file:
            self._save(self.opts.state_file)
        else:
            self._apply(self.table.end_all(self.now, reason))
        self._close_lingering(1 << 62)
        self._commit_catalog()
        self.io.stop()
        self.catalog.close()
        return self.summary()

    def _commit_catalog(self) -> None:
        """The catalog rows queued since the last sync, written in order with the files (live:
        on the writer thread, so neither SQLite nor the disk ever holds up capture)."""
        rows = self.catalog.take()
        if rows:
            self.io.call(lambda: self.catalog.write(rows))

    # restart --------------------------------------------------------------------------------
    def _save(self, path: str) -> None:
        from capture.sip.calls import call_to_dict
        items = []
        for rec in self.active.values():
            if rec.wav is not None:
                due = ((self.now - rec.call.started_ns) * RATE) // NS
                rec.wav.append(self.engine.flush(rec.slot, max(due, self._frames(rec))))
                rec.wav.close(durable=True)
            for role, key in list(rec.keys.items()):
                self._drop_stream(rec, role, key)
            items.append({"call": call_to_dict(rec.call), "wav": rec.wav_rel or None,
                          "streams": rec.finished_streams, "events": list(rec.events.values()),
                          "last_rtp_ns": self.engine.last_rtp_ns(rec.slot), "saved_ns": self.now})
            if rec.wav is not None:
                self._write_meta(rec)
        write_json_atomic(path, {"version": 1, "calls": items}, durable=True)
        self.counters["calls_saved"] += len(items)

    def _restore(self, path: str) -> None:
        import json
        from capture.sip.calls import MediaMapped, restore_calls
        with open(path) as f:
            items = json.load(f)["calls"]
        calls = restore_calls(self.table, [it["call"] for it in items])
        for call, it in zip(calls, items):
            flushed = 0
            rec = _Rec(call, 0)
            if it["wav"]:
                rec.wav_rel = it["wav"]
                rec.wav = WavWriter(os.path.join(self.opts.out_dir, rec.wav_rel), self.io, resume=True)
                rec.meta_path = os.path.join(self.opts.out_dir, rec.wav_rel[:-4] + ".json")
                flushed = rec.wav.frames
            rec.slot = self.engine.add_call(call.started_ns, flushed, it["last_rtp_ns"])
            if rec.wav is not None:
                self._writing(rec)
            elif self.opts.own_by_rtp:
                self.unopened[call.id] = rec
            rec.finished_streams = it["streams"]
            rec.events = {(e["role"], i): e for i, e in enumerate(it["events"])}
            self.active[call.id] = rec
            self.now = max(self.now, it["saved_ns"])
            for role, d in call.dialogs.items():
                if d.key is not None:
                    self._apply([MediaMapped(call, role, d.key, None, d.codec, d.audio_pt, d.event_pt)])
        os.replace(path, path + ".restored")
        self.counters["calls_resumed"] += len(calls)

    def status(self) -> dict:
        """Counters kept in one place (printed on SIGUSR1, read by the status API)."""
        out = self.summary()
        out.update({"active_calls": len(self.active), "active_lost_packets": self.engine.lost_total(),
                    "queue_bytes": self.io.depth_bytes, "write_dropped_bytes": self.io.dropped_bytes,
                    "ring_bytes": self.engine.reserve(0),      # reserves nothing more: reports
                    "write_errors": self.io.errors,
                    "bytes_written": self.io.written_bytes})
        return out

    def summary(self) -> dict:
        out = dict(self.counters)
        out.update({f"engine_{k}": v for k, v in self.engine.counters.items()})
        out.update(self.table.counters)
        out.update(self.tcp.counters)
        out.update(self.defrag.counters)
        out["errors"] = dict(self.errors)
        out["kernels"] = self.impl.name
        return out

    def _error(self, e: Exception) -> None:
        name = type(e).__name__
        self.errors[name] += 1
        if sum(self.errors.values()) <= MAX_LOGGED_ERRORS:
            log.warning("%s: %s", name, e)
