"""Per-call outputs: each recorded call's WAV, raw pcap, sidecar and catalog row, kept in step
with the engine that holds its audio.

``Recordings`` carries out what the call table decided (a call started, its media was mapped or
unmapped, it ended, evidence came) and, on each tick, writes every open call's due audio and
WAV headers in batches, the sidecars that changed and the catalog rows. It never parses and
never decides: the recorder (``capture.recorder``) feeds it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from capture.clock import utc
from capture.media import wav
from capture.media.srtp import SrtpStreams
from capture.options import Options
from capture.sip.calls import Call, CallEnded, MediaMapped, MediaUnmapped
from capture.speedups import EngineLike
from capture.store.catalog import Catalog
from capture.store.files import to_json
from capture.store.postdecode import PostDecoder, decode_spool, job_for
from capture.store.sidecar import EvidenceRecord, Primary, Sidecar, Stream, TelephoneEvent, iso, row_of
from capture.store.space import Space, free_bytes
from capture.store.wavfile import WavWriter
from capture.store.writer import Writer
from capture.wire.pcapfile import PcapWriter

log = logging.getLogger("shadowrec")

NS = 1_000_000_000
CODECS = {"PCMU": 1, "PCMA": 2}  # codec name -> the engine's decoder (0: not decoded)
MAX_HELD_SIP_FRAMES = 64  # a call's SIP frames held until its raw pcap opens, if ever
DTMF = "0123456789*#ABCD"  # RFC 4733 events 0-15


@dataclass
class CallRecording:
    """One open (or lingering) call's outputs and what the sidecar needs that the engine lacks."""

    call: Call
    slot: int  # the engine's call slot
    wav: WavWriter | None = None
    wav_rel: str = ""
    meta_path: str = ""
    pcap: PcapWriter | None = None
    pcap_rel: str | None = None
    keys: dict[str, int] = field(default_factory=dict)  # role -> flow key
    finished_streams: list[Stream] = field(default_factory=list)
    events: dict[tuple, TelephoneEvent] = field(default_factory=dict)  # (role, rtp ts) -> event
    sip_frames: list[tuple[int, int, bytes]] = field(default_factory=list)  # (ts, linktype, frame)
    dirty: bool = False
    end_frames: int | None = None
    gap_frames: int = 0  # audio not written because the disk was full (a hole: silence)
    decoded: bool = False  # all mapped streams are G.711: no raw pcap will be needed
    decode: dict[str, Any] | None = None  # what decoding its other codec after the end gave (postdecode)

    def telephone_event(self, role: str, rtp_ts: int, code: int, duration: int, end: bool, ts: int) -> None:
        ev = self.events.get((role, rtp_ts))
        if ev is None:
            ev = self.events[(role, rtp_ts)] = TelephoneEvent(role, code, DTMF[code] if code < 16 else None, iso(ts))
            self.dirty = True
        ev.duration_ms = max(ev.duration_ms, duration // 8)
        if end:
            ev.ended = True


class Recordings:
    """The calls being recorded and their files (see the module doc)."""

    def __init__(self, opts: Options, engine: EngineLike, io: Writer, counters: Counter[str]):
        self.opts = opts
        self.srtp = SrtpStreams()
        self.post = PostDecoder(spool=decode_spool(opts))  # calls in other codecs, decoded after their end
        self.engine = engine
        self.io = io
        self.counters = counters
        os.makedirs(opts.out_dir, exist_ok=True)
        self.catalog = Catalog(os.path.join(opts.out_dir, "catalog.sqlite"))
        self.active: dict[str, CallRecording] = {}
        self.unopened: dict[str, CallRecording] = {}  # own_by_rtp: calls whose files wait for their RTP here
        self.fd_of = np.full(64, -1, dtype=np.int64)  # engine slot -> its WAV's fd
        self.fb_of = np.full(64, wav.FRAME_BYTES, dtype=np.int64)  # engine slot -> its WAV's bytes per frame
        self.closing: list[tuple[int, CallRecording]] = []  # (deadline_ns, recording)
        self.dirs: set[str] = set()
        self.answered_here: set[str] = set()  # SIP Call-IDs that shadowrec's own UAS answered
        # a call's audio is written at most this far past its last RTP packet: the call table ends
        # it (rtp_timeout) within a sync of that, so a jump in time never writes days of silence
        self.idle_ns = int((opts.rtp_timeout_s + 2 * opts.sync_s + 1) * NS) if opts.rtp_timeout_s > 0 else 0
        self.space = Space(opts.min_free_mb << 20)
        self.unconfirmed: list[CallRecording] = []  # ended calls whose last sidecar may not be on disk yet
        self.unsaved: list[CallRecording] = []  # ended calls whose last sidecar a failed write may have lost
        if resumed := self.post.resume():  # calls a killed run left waiting for their decoding
            counters["decodes_resumed"] += resumed

    # effects ---------------------------------------------------------------------------------
    def started(self, call: Call) -> None:
        rec = self.active[call.id] = CallRecording(call, self.engine.add_call(call.started_ns))
        if self.opts.own_by_rtp:
            self.unopened[call.id] = rec

    def mapped(self, e: MediaMapped) -> None:
        rec = self.active.get(e.call.id)
        if rec is None:
            return
        if rec.wav is None and not self.opts.own_by_rtp:
            self.open(rec)
        elif rec.wav is not None and self.frames(rec) == 0 and rec.wav.enc != encoding_of(self.opts, e.call):
            rec.wav.reencode(encoding_of(self.opts, e.call))  # the answer chose another codec than the offer's
            self.writing(rec)
        if e.old_key is not None:
            self.drop_stream(rec, e.role, e.old_key)
        decrypt = self.srtp.map(e.call.id, e.role, e.key, e.secure, e.crypto, e.offered, e.hidden)
        # SRTP that cannot be decrypted is never decoded: its audio is silence, not noise
        codec = CODECS.get(e.codec, 0) if decrypt or not e.secure else 0
        raw = self.opts.keep_pcap or codec == 0 or decrypt  # SRTP: every packet through Python
        rec.decoded = codec != 0 and all(
            d.codec in CODECS and (not d.secure or d.crypto is not None)
            for d in e.call.dialogs.values()
            if d.key is not None
        )
        if rec.decoded and not self.opts.keep_pcap:
            rec.sip_frames = []
        self.engine.set_stream(e.key, rec.slot, 0 if e.role == "near" else 1, codec, e.audio_pt, e.event_pt, raw)
        rec.keys[e.role] = e.key

    def start_at(self, call_id: str, first_ns: int) -> None:
        """A call joined late: its audio begins at ``first_ns`` (its orphan's first packet), if
        nothing of it is on disk yet."""
        rec = self.active.get(call_id)
        if rec is not None and rec.wav is None and first_ns < rec.call.started_ns:
            self.engine.end_call(rec.slot)
            rec.slot, rec.call.started_ns = self.engine.add_call(first_ns), first_ns

    def unmapped(self, e: MediaUnmapped) -> None:
        rec = self.active.get(e.call.id)
        if rec is not None and rec.keys.get(e.role) == e.key:
            self.drop_stream(rec, e.role, e.key)
            rec.dirty = True

    def evidence(self, call: Call) -> None:
        rec = self.active.get(call.id) or next((r for _, r in self.closing if r.call is call), None)
        if rec is not None:
            rec.dirty = True

    def ended(self, e: CallEnded) -> None:
        rec = self.active.pop(e.call.id, None)
        if rec is None:
            return
        if self.unopened.pop(e.call.id, None) is not None and self.engine.last_rtp_ns(rec.slot):
            self.open(rec)  # its RTP came here, but it ended before the tick that opens files
        if rec.wav is None:  # never answered, or (several workers) another worker's: nothing recorded here
            for key in rec.keys.values():
                if self.engine.stream_id(key) is not None:
                    self.engine.remove_stream(key)
            self.engine.end_call(rec.slot)
            return
        for role, key in list(rec.keys.items()):
            self.drop_stream(rec, role, key)
        # every packet that arrived before the end is kept whole: the last one before a BYE, sent
        # 20 ms before it, runs a few samples past it (and the WAV with it; see the README)
        end = max(((e.at_ns - e.call.started_ns) * wav.RATE) // NS, self.engine.placed_end(rec.slot), 0)
        flushed = self.frames(rec)
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
        self.write_meta(rec, durable=self.opts.durable_s > 0)
        self.unconfirmed.append(rec)
        self.closing.append((e.at_ns + int(self.opts.linger_s * NS), rec))
        if (job := job_for(self, rec)) is not None:
            self.post.submit(job)

    # files -----------------------------------------------------------------------------------
    def open(self, rec: CallRecording) -> None:
        """Create the call's WAV and sidecar under ``calls/YYYY/MM/DD/``."""
        c = rec.call
        rel_dir = utc(c.started_ns // NS, "calls/%Y/%m/%d")
        try:
            if rel_dir not in self.dirs:
                os.makedirs(os.path.join(self.opts.out_dir, rel_dir), mode=0o750, exist_ok=True)
                self.dirs.add(rel_dir)
            rec.wav_rel = os.path.join(rel_dir, c.id + ".wav")
            rec.wav = WavWriter(os.path.join(self.opts.out_dir, rec.wav_rel), self.io, enc=encoding_of(self.opts, c))
        except OSError as e:  # a full disk: counted; the next tick tries again (open_seen)
            self.io.failed(f"creating {c.id}'s files", e)
            self.unopened[c.id] = rec
            return
        self.writing(rec)
        rec.meta_path = os.path.join(self.opts.out_dir, rel_dir, c.id + ".json")
        self.write_meta(rec)
        self.counters["calls_recorded"] += 1

    def writing(self, rec: CallRecording) -> None:
        """The engine flushes this call's audio into its WAV from now on (see ``flush_audio``)."""
        assert rec.wav is not None
        self.unopened.pop(rec.call.id, None)
        if rec.slot >= len(self.fd_of):
            size = max(rec.slot + 1, 2 * len(self.fd_of))
            self.fd_of = np.concatenate([self.fd_of, np.full(size - len(self.fd_of), -1, dtype=np.int64)])
            self.fb_of = np.concatenate([self.fb_of, np.zeros(size - len(self.fb_of), dtype=np.int64)])
        self.fd_of[rec.slot] = rec.wav.fd
        self.fb_of[rec.slot] = rec.wav.frame_bytes
        self.engine.set_writing(rec.slot, True, rec.wav.enc)

    def frames(self, rec: CallRecording) -> int:
        """Frames in an open call's WAV (the engine's batch writes included)."""
        assert rec.wav is not None
        rec.wav.advance(self.engine.flushed(rec.slot))
        return rec.wav.frames

    def keep_sip_frame(self, call_id: str, ts: int, frame: bytes, lt: int) -> None:
        """A SIP frame of the call: into its raw pcap, or held in case one opens."""
        rec = self.active.get(call_id)
        if rec is None:
            return
        if rec.pcap is not None:
            rec.pcap.write(ts, frame, lt)
        elif len(rec.sip_frames) < MAX_HELD_SIP_FRAMES and (self.opts.keep_pcap or not rec.decoded):
            rec.sip_frames.append((ts, lt, frame))

    def pcap_for(self, rec: CallRecording, lt: int) -> PcapWriter:
        """The call's raw pcap, opened (with the SIP frames held so far) on first use."""
        if rec.pcap is None:
            rec.pcap_rel = rec.wav_rel[:-4] + ".pcap"
            rec.pcap = PcapWriter(os.path.join(self.opts.out_dir, rec.pcap_rel), lt)
            for ts, flt, fr in rec.sip_frames:
                rec.pcap.write(ts, fr, flt)
            rec.sip_frames = []
            rec.dirty = True
        return rec.pcap

    def drop_stream(self, rec: CallRecording, role: str, key: int) -> None:
        self.srtp.unmap(key)
        sid = self.engine.stream_id(key)
        if sid is not None:
            rec.finished_streams.append(Stream.from_stats(role, key, self.engine.stream_stats(sid)))
            self.engine.remove_stream(key)
        if rec.keys.get(role) == key:
            del rec.keys[role]

    def telephone_event(
        self, call_id: str, role: str, rtp_ts: int, code: int, duration: int, end: bool, ts: int
    ) -> None:
        """RFC 4733: one event per RTP timestamp; the end bit and duration update it."""
        rec = self.active.get(call_id)
        if rec is not None:
            rec.telephone_event(role, rtp_ts, code, duration, end, ts)

    # the sidecar -----------------------------------------------------------------------------
    def sidecar(self, rec: CallRecording) -> Sidecar:
        frames = self.frames(rec) if rec.end_frames is None and rec.wav else 0
        srtp = {role: st.to_dict() for role, st in self.srtp.stats.get(rec.call.id, {}).items()}
        return sidecar_of(rec, self.engine, frames, self.answered_here, srtp)

    def write_meta(self, rec: CallRecording, durable: bool = False) -> None:
        d = self.sidecar(rec).to_dict()
        text = to_json(d)  # encoded once, for the sidecar and the catalog
        self.io.write_file(rec.meta_path, (text + "\n").encode(), durable)  # live: on the writer thread
        self.catalog.upsert(row_of(d, text))
        rec.dirty = False

    # time ------------------------------------------------------------------------------------
    def open_seen(self) -> None:
        """Several workers: open the files of the calls whose RTP this worker has seen."""
        for rec in list(self.unopened.values()):
            if self.engine.last_rtp_ns(rec.slot):
                self.open(rec)

    def flush_audio(self, now: int, lag: int) -> None:
        """Every open call's due audio: interleaved by the engine, written in batches (while the
        disk is full: left as holes, and counted per call as a gap)."""
        write_batches(
            self,
            lambda buf: self.engine.flush_due(now, lag, buf, self.idle_ns)[1],
            lambda segs: (
                self.fd_of[segs[:, 0]],
                wav.HEADER_BYTES + self.fb_of[segs[:, 0]] * segs[:, 1],
                self.fb_of[segs[:, 0]] * segs[:, 2],
            ),
            gaps=True,
        )

    # the disk --------------------------------------------------------------------------------
    def check_space(self) -> None:
        """The disk's state, at each sync (see ``check_space``)."""
        check_space(self)

    def sync(self, durable: bool) -> None:
        """Make every open WAV's header cover its audio: fdatasync'd one by one when ``durable``,
        else the engine's batch of headers, written after their audio."""
        if durable:
            for rec in self.active.values():
                if rec.wav is not None:
                    frames = self.frames(rec)
                    rec.wav.sync(True)
                    self.engine.set_synced(rec.slot, frames)
            return
        write_batches(
            self,
            lambda buf: self.engine.headers_due(buf)[1],
            lambda slots: (
                self.fd_of[slots],
                np.zeros(len(slots), dtype=np.int64),
                np.full(len(slots), wav.HEADER_BYTES, dtype=np.int64),
            ),
            droppable=False,
        )

    def write_changed(self) -> None:
        for rec in self.active.values():
            if rec.dirty and rec.wav is not None:
                self.write_meta(rec)

    def close_lingering(self, now: int) -> None:
        """Ended calls stay open for late evidence for ``linger_s``; then their sidecar is final."""
        self.post.apply(self)
        keep = []
        for deadline, rec in self.closing:
            if now >= deadline:
                if rec.dirty:
                    self.write_meta(rec)
                    self.unconfirmed.append(rec)
                self.srtp.forget(rec.call.id)
            else:
                keep.append((deadline, rec))
        self.closing = keep

    def commit_catalog(self) -> None:
        """The catalog rows queued since the last sync, written in order with the files (live:
        on the writer thread, so neither SQLite nor the disk ever holds up capture)."""
        rows = self.catalog.take()
        if rows:
            self.io.call(lambda: self.catalog.write(rows))

    def close(self) -> None:
        self.post.join()
        self.close_lingering(1 << 62)
        self.post.stop()
        self.commit_catalog()
        self.io.stop()
        self.catalog.close()


def write_batches(
    rs: Recordings,
    fill: Callable[[Any], Any],
    pieces: Callable[[Any], tuple[Any, Any, Any]],
    droppable: bool = True,
    gaps: bool = False,
) -> None:
    """Fill pooled buffers with ``fill(buf) -> rows`` until no rows come back; write each
    buffer to ``pieces(rows) -> (fds, offsets, lengths)``. With ``gaps`` (audio) while the
    disk is full, each piece is a hole instead, counted against its call."""
    while True:
        buf = rs.io.buffer()
        rows = fill(buf)
        if not len(rows):
            rs.io.release(buf)
            return
        fds, offsets, lengths = pieces(rows)
        if gaps and rs.space.full:
            rs.io.release(buf)
            for slot, fd, off, ln in zip(rows[:, 0], fds, offsets, lengths, strict=True):
                rs.io.extend(int(fd), int(off) + int(ln))
                _gap(rs, int(slot), int(ln) // int(rs.fb_of[slot]))
        else:
            rs.io.write_batch(buf, fds, offsets, lengths, droppable=droppable)


def _gap(rs: Recordings, slot: int, frames: int) -> None:
    rs.space.gap_frames += frames
    rec = next((r for r in rs.active.values() if r.slot == slot), None)  # rare (a full disk): a scan
    if rec is not None:
        rec.gap_frames, rec.dirty = rec.gap_frames + frames, True


def encoding_of(opts: Options, call: Call) -> wav.Encoding:
    """How the call's WAV stores samples: 16-bit PCM, or (``local_format`` g711) its G.711 law."""
    if opts.local_format != "g711":
        return wav.Encoding.PCM16
    return {"PCMU": wav.Encoding.ULAW, "PCMA": wav.Encoding.ALAW}.get(call.codec, wav.Encoding.PCM16)


def sidecar_of(
    rec: CallRecording,
    engine: EngineLike,
    frames: int,
    answered_here: set[str],
    srtp: dict[str, dict[str, Any]] | None = None,
) -> Sidecar:
    """The call's sidecar record; ``frames`` is its WAV's length while it is still open;
    ``answered_here`` the SIP Call-IDs shadowrec's own UAS answered; ``srtp`` its SRTP streams'
    figures (``capture.media.srtp``)."""
    encrypted = any(d["reason"] is not None for d in (srtp or {}).values())
    c = rec.call
    streams = list(rec.finished_streams)
    for role, key in rec.keys.items():
        sid = engine.stream_id(key)
        if sid is not None:
            streams.append(Stream.from_stats(role, key, engine.stream_stats(sid)))
    streams.sort(key=lambda s: (s.role != "near", s.first_at or ""))
    ended = c.ended_ns
    sc = Sidecar(
        id=c.id,
        kind="rtp" if c.joined_by == "rtp" else "bib",
        state="complete" if ended is not None else "recording",
        started_at=iso(c.started_ns),
        ended_at=iso(ended),
        duration_s=round((ended - c.started_ns) / NS, 3) if ended is not None else None,
        end_reason=c.end_reason,
        codec=c.codec or None,
        decoded=c.codec in CODECS and not encrypted,
        near=c.near,
        far=c.far,
        primary=Primary(
            c.primary_address,
            c.primary_port,
            iso(c.failed_ns),
            [EvidenceRecord(ev.kind, iso(ev.at_ns), ev.detail) for ev in sorted(c.evidence, key=lambda x: x.at_ns)],
        ),
        streams=streams,
        events=sorted(rec.events.values(), key=lambda x: x.at or ""),
        wav=rec.wav_rel,
        pcap=rec.pcap_rel,
        previous=c.previous,
        transport=c.transport,
        sample_rate=wav.RATE,
        channels=["near", "far"],
        answered_by="shadowrec" if any(d.call_id in answered_here for d in c.dialogs.values()) else "primary",
        sip_call_ids={r: d.call_id for r, d in c.dialogs.items()},
        frames=rec.end_frames if rec.end_frames is not None else frames,
        cluster=str(c.pair_key[0]) if c.joined_by != "rtp" else "",
        joined_late=c.joined_late,
        joined_by=c.joined_by,
        channels_guessed=c.channels_guessed,
        encoding=rec.wav.enc.name.lower() if rec.wav is not None else "pcm16",
        encrypted=encrypted,
        srtp=srtp or {},
        disk_gap_s=round(rec.gap_frames / wav.RATE, 3),
    )
    for name, value in (rec.decode or {}).items():  # decoded after the end: rate, frames, decoder
        setattr(sc, name, value)
    return sc


def check_space(rs: Recordings) -> None:
    """The disk's state (``capture.store.space``), at each sync. Ended calls whose sidecar or
    catalog row a failed write may have lost are written again once the disk is back."""
    try:
        free = free_bytes(rs.opts.out_dir)
    except OSError:
        free = -1
    confirmed, rs.unconfirmed = rs.unconfirmed, []
    failures = rs.io.errors
    # in order with the writes (live: on the writer thread): did any fail since?
    rs.io.call(lambda: (rs.unsaved if rs.io.errors > failures else []).extend(confirmed))
    times_full = rs.space.times_full
    if not rs.space.full:
        rs.io.refill()  # G.711 recordings' holes, if any: silence now that the disk takes it
    if rs.space.check(rs.io.errors, free, rs.io.last_error):
        log.warning("the disk has room again: recording audio again")
        for rec in rs.active.values():
            rec.dirty = True
        again, rs.unsaved = rs.unsaved, []
        for rec in again:
            rs.write_meta(rec)
    elif rs.space.times_full > times_full:
        log.error("the disk is full (%s): calls are tracked, their audio waits as a counted gap", rs.space.error)
