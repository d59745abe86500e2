"""The recorder: capture records in, one stereo WAV + sidecar + catalog row per call out.

One synchronous loop that follows the packet: the engine (``capture.media``) handles RTP of
known flows by itself and hands back what it does not: frames for the wire (``capture.wire``:
fragments, TCP streams, ICMP), SIP for the call table (``capture.sip``), telephone events and
raw-kept streams; on ``TICK`` the store (``capture.store``) writes what is due. Time is the
capture's own clock (packet timestamps), so a file and a live interface run the same code.
Every frame is handled inside one boundary (``feed``): whatever goes wrong with it is counted
under its class (``capture.faults``) and the loop goes on.
"""

from __future__ import annotations

import logging
import mmap
import queue
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from capture import speedups
from capture.errors import PcapError
from capture.faults import Faults
from capture.media import wav
from capture.options import Options
from capture.sip.calls import (
    ByeUnseen,
    Call,
    CallEnded,
    CallStarted,
    CallTable,
    Effect,
    EndReason,
    Evidence,
    MediaMapped,
    MediaUnmapped,
)
from capture.sip.message import SipMessage
from capture.store import resume
from capture.store.orphans import LateJoins, Orphans
from capture.store.outputs import Recordings
from capture.store.writer import SyncIO, Writer
from capture.wire import icmp, ipfrag, rtp
from capture.wire.frame import (
    LINKTYPE_RAW,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TZSP_PORT,
    VXLAN_PORT,
    flow_key,
    ntop,
)
from capture.wire.ipfrag import Defragmenter
from capture.wire.tcpstream import TcpReassembler

log = logging.getLogger("shadowrec")
NS = 1_000_000_000
BATCH_RECORDS = 65536


class Recorder:
    """Record every BiB call in one or more captures into ``opts.out_dir``."""

    def __init__(self, opts: Options, impl: speedups.Kernels | None = None, io: Writer | None = None):
        self.opts = opts
        self.impl = impl or speedups.default()
        self.io: Writer = io or SyncIO(self.impl.engine.pwrite_batch)
        self.engine = self.impl.Engine(tuple(opts.sip_ports) + tuple(opts.sip_tls_ports))
        self.engine.reserve(opts.reserve_calls)
        self.table = CallTable(opts.rtp_timeout_s)
        self.tcp = TcpReassembler()
        self.defrag = Defragmenter()
        self.sip_ports = frozenset(opts.sip_ports)
        self.tls_ports = frozenset(opts.sip_tls_ports)  # SIP over TLS: only who talks to whom is seen
        self.faults = Faults()
        self.errors: Counter[str] = self.faults.counts
        self.counters: Counter[str] = Counter()
        self.calls = Recordings(opts, self.engine, self.io, self.counters)
        self.orphans = Orphans(opts.out_dir, int(opts.rtp_timeout_s * NS))  # RTP no dialog of ours has yet
        self.late = LateJoins(self)  # calls up before the start, joined at a re-INVITE or BYE, or RTP alone
        # what other threads hand the capture thread (a standby's takeover): f(now) -> effects, at the next tick
        self.posted: queue.SimpleQueue[Callable[[int], list[Effect]]] = queue.SimpleQueue()
        for addr in opts.recorder_addrs:  # watched from the start: a call may be up already
            self.engine.watch(socket.inet_aton(addr))
        # told of each call as it starts (the standby learns CUCM from it), inside the packet's boundary
        self.on_call_started: Callable[[Call], None] = lambda call: None
        self.now = self.deadline = self.next_sync = self.next_durable = 0
        self.lag = int(opts.lag_s * wav.RATE)
        if opts.state_file:
            self.now = max(self.now, resume.restore(self, opts.state_file))

    # input --------------------------------------------------------------------------------
    def record_file(self, path: str) -> None:
        """Run one capture file through the recorder (errors in it are counted, not raised)."""
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
                batch = idx.next_batch(BATCH_RECORDS)
                if not len(batch[0]):
                    break
                self.feed(mm, *batch)
            if idx.error:
                self._error(PcapError(f"{path}: {idx.error}"))
            self.counters["records_read"] += idx.records
            del idx  # the C indexer holds a view of the mapping
            mm.close()

    def feed(self, buf: Any, offs: Any, lens: Any, tss: Any, lts: Any) -> None:
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
            frame = bytes(buf[off : off + int(lens[i])])
            try:
                if st == eng.PYTHON:
                    self._frame(frame, ts, int(lts[i]))
                else:
                    self._event(frame, ts, int(lts[i]), arg)
            except Exception as e:  # the one boundary: counted, logged (rate-limited), and on
                self.faults.add(e, frame, f"frame at {ts} ns, link type {int(lts[i])}")
            i += 1
        if n:
            self.now = max(self.now, int(tss[n - 1]))

    # the rare path: what the engine hands back --------------------------------------------
    def _frame(self, frame: bytes, ts: int, lt: int) -> None:
        f = self.impl.packet.parse(frame, lt)
        if f.frag_id >= 0:
            key = (f.ip_version, f.src, f.dst, f.proto, f.frag_id)
            dg = self.defrag.add(key, f.frag_off, f.frag_more, frame[f.l4_off : f.l4_off + f.l4_len], ts)
            if dg is not None:
                self._datagram(f.ip_version, f.src, f.dst, f.proto, dg, ts, lt)
            return
        payload = frame[f.payload_off : f.payload_off + f.payload_len]
        if f.proto == PROTO_UDP:
            self._udp(f.src, f.dst, f.sport, f.dport, payload, ts, frame, lt)
        elif f.proto == PROTO_TCP:
            self._tcp(f.src, f.dst, f.sport, f.dport, f.tcp_seq, f.tcp_flags, payload, ts, frame, lt)
        elif f.proto in (PROTO_ICMP, PROTO_ICMPV6):
            self._icmp(f.ip_version, f.src, frame[f.l4_off : f.l4_off + f.l4_len], ts)

    def _datagram(self, ver: int, src: bytes, dst: bytes, proto: int, dg: bytes, ts: int, lt: int) -> None:
        """A datagram reassembled from IP fragments (its frames are not kept). A remote mirror's
        tunnel packet is walked again, whole, to the frame it carries."""
        if proto == PROTO_GRE or (proto == PROTO_UDP and ipfrag.udp(dg).dport in (VXLAN_PORT, TZSP_PORT)):
            self.counters["tunnel_reassembled"] += 1
            self._frame(ipfrag.packet(ver, src, dst, proto, dg), ts, LINKTYPE_RAW)
        elif proto == PROTO_UDP:
            u = ipfrag.udp(dg)
            self._udp(src, dst, u.sport, u.dport, u.payload, ts, None, lt)
        elif proto == PROTO_TCP:
            t = ipfrag.tcp(dg)
            self._tcp(src, dst, t.sport, t.dport, t.seq, t.flags, t.payload, ts, None, lt)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            self._icmp(ver, src, dg, ts)

    def _udp(
        self, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ts: int, frame: bytes | None, lt: int
    ) -> None:
        key = flow_key(dst, dport)
        if self.engine.stream_id(key) is not None:
            self._rtp(key, payload, ts, flow_key(src, sport), frame, lt)
        elif sport in self.sip_ports or dport in self.sip_ports:
            self.counters["sip_udp"] += 1
            self._sip(self.impl.sip.parse(payload), ts, src, sport, dst, dport, "udp", frame, lt)
        elif frame is not None and dst in self.engine.watched:  # to the recorder: a call joined late?
            self.orphans.packet(key, ts, frame, lt, payload, src, dst)

    def _tcp(
        self, src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes, ts: int,
        frame: bytes | None, lt: int,
    ) -> None:  # fmt: skip
        if sport not in self.sip_ports and dport not in self.sip_ports:
            if dport in self.tls_ports or sport in self.tls_ports:
                self.late.tls_seen(dst if dport in self.tls_ports else src, ts)
            return
        for data in self.tcp.feed((src, sport, dst, dport), seq, flags, payload, ts):
            self.counters["sip_tcp"] += 1
            try:  # each message of a segment on its own: one bad message spoils none of the others
                self._sip(self.impl.sip.parse(data), ts, src, sport, dst, dport, "tcp", frame, lt)
                frame = None  # the segment is stored once, with the first message it carried
            except Exception as e:
                self.faults.add(e, data, f"SIP message on TCP at {ts} ns")

    def _sip(
        self,
        msg: SipMessage,
        ts: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        transport: str,
        frame: bytes | None,
        lt: int,
    ) -> None:
        self._apply(self.table.on_sip(msg, ts, (ntop(src), sport), (ntop(dst), dport), transport))
        d = self.table.dialogs.get(msg.call_id)
        if d is not None and frame is not None:
            self.calls.keep_sip_frame(d.call.id, ts, frame, lt)

    def _icmp(self, ver: int, reporter: bytes, data: bytes, ts: int) -> None:
        err = icmp.parse(ver, data)
        if err is None or err.quoted_proto not in (PROTO_UDP, PROTO_TCP):
            return
        self.counters["icmp_errors"] += 1
        self._apply(self.table.on_icmp(ts, err.kind, err.quoted_dst, err.quoted_dport, ntop(reporter)))

    def _event(self, frame: bytes, ts: int, lt: int, arg: int) -> None:
        f = self.impl.packet.parse(frame, lt)
        payload = frame[f.payload_off : f.payload_off + f.payload_len]
        key = flow_key(f.dst, f.dport)
        if arg == self.impl.engine.EVENT_RAW:
            self._rtp(key, payload, ts, flow_key(f.src, f.sport), frame, lt)
        else:
            self._telephone_event(key, payload, ts)

    def _rtp(self, key: int, payload: bytes, ts: int, src_key: int, frame: bytes | None, lt: int) -> None:
        """RTP the engine could not take alone: reassembled from fragments, of a raw-kept stream, or
        SRTP (decrypted here first; a replay or a failed tag is counted and goes no further)."""
        eng = self.impl.engine
        st = self.engine.feed_rtp(key, payload, ts, src_key, False)
        if st == eng.EVENT_RAW:
            d = self.table.media.get(key)
            rec = self.calls.active.get(d.call.id) if d is not None else None
            if rec is not None and frame is not None and (key not in self.calls.srtp.sessions or self.opts.keep_pcap):
                self.calls.pcap_for(rec, lt).write(ts, frame, lt)
            if (plain := self.calls.srtp.plain(key, payload)) is None:
                return
            st = self.engine.feed_rtp(key, payload := plain, ts, src_key, True)
        if st == eng.EVENT_TELEPHONE:
            self._telephone_event(key, payload, ts)

    def _telephone_event(self, key: int, payload: bytes, ts: int) -> None:
        d = self.table.media.get(key)
        if d is None or d.call.id not in self.calls.active:
            return
        h = rtp.parse(payload)
        ev = rtp.parse_event(payload[h.payload_offset : h.payload_offset + h.payload_length])
        self.calls.telephone_event(d.call.id, d.role, h.timestamp, ev.event, ev.duration, ev.end, ts)

    def _apply(self, fx: list[Effect]) -> None:
        """Carry out what the call table decided."""
        for e in fx:
            if isinstance(e, CallStarted):
                self.calls.started(e.call)
                self.on_call_started(e.call)
            elif isinstance(e, MediaMapped):
                self.late.mapped(e)
            elif isinstance(e, MediaUnmapped):
                self.calls.unmapped(e)
            elif isinstance(e, CallEnded):
                self.late.ended(e.call, e.at_ns)
                self.calls.ended(e)
            elif isinstance(e, ByeUnseen):
                self.late.bye(e)
            elif isinstance(e, Evidence):
                self.calls.evidence(e.call)

    # time ----------------------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Housekeeping at capture time ``now``: write due audio, timeouts, late metadata."""
        self.now = max(self.now, now)
        now = self.now
        self.deadline = now + int(self.opts.tick_s * NS)
        while not self.posted.empty():
            self._apply(self.posted.get_nowait()(now))
        self.calls.open_seen()
        self.calls.flush_audio(now, self.lag)
        if now >= self.next_sync:
            self._apply(self.table.tick(now, self._last_rtp))
            durable = self.opts.durable_s > 0 and now >= self.next_durable
            self.calls.sync(durable)  # headers patched after their audio
            self.calls.write_changed()
            if durable:
                self.next_durable = now + int(self.opts.durable_s * NS)
            self.calls.close_lingering(now)
            self.calls.commit_catalog()
            self.calls.check_space()
            self.tcp.expire(now)
            self.defrag.expire(now)
            self.late.tick(now)
            self.next_sync = now + int(self.opts.sync_s * NS)
        self.io.flush()  # live: this tick's sidecars, headers and closes to the writer, together

    def _last_rtp(self, call: Call) -> int:
        rec = self.calls.active.get(call.id)
        return self.engine.last_rtp_ns(rec.slot) if rec is not None else 0

    def finish(self, reason: EndReason = EndReason.CAPTURE_END) -> dict:
        """End every open call (at the last packet's time) and flush everything.

        With a ``state_file`` and reason SHUTDOWN, open calls are not ended: their audio is
        written up to now, they are saved, and the next start resumes them in the same files.
        """
        self._apply(self.table.tick(self.now, self._last_rtp))  # what timed out ends so, at its last packet
        self.late.close(reason)  # calls joined at a BYE, and orphans as calls of RTP alone
        if reason == EndReason.SHUTDOWN and self.opts.state_file:
            try:
                self.counters["calls_saved"] += resume.save(self, self.opts.state_file)
            except OSError as e:  # the floor (min_free_mb) keeps room for this; if even that is gone:
                log.error("open calls could not be saved to resume (%s): their sidecars stay 'recording'", e)
                self.counters["state_save_errors"] += 1
        else:
            self._apply(self.table.end_all(self.now, reason))
        self.calls.close()
        return self.summary()

    # counters ------------------------------------------------------------------------------
    def status(self) -> dict:
        """Counters kept in one place (printed on SIGUSR1, read by the status API)."""
        out = self.summary()
        out.update(
            {
                "active_calls": len(self.calls.active),
                "active_lost_packets": self.engine.lost_total(),
                "queue_bytes": self.io.depth_bytes,
                "write_dropped_bytes": self.io.dropped_bytes,
                "ring_bytes": self.engine.reserve(0),  # reserves nothing more: reports
                "write_errors": self.io.errors,
                "bytes_written": self.io.written_bytes,
            }
        )
        return out

    def summary(self) -> dict:
        return summary_of(self)

    def _error(self, e: Exception) -> None:
        self.faults.add(e)


def summary_of(rec: Recorder) -> dict:
    """The recorder's counters, its disk's state and its kernels."""
    out: dict[str, Any] = dict(rec.counters)
    out.update({f"engine_{k}": v for k, v in rec.engine.counters.items()})
    out.update(rec.table.counters)
    out.update(rec.tcp.counters)
    out.update(rec.defrag.counters)
    out.update(rec.orphans.counters)
    out["errors"] = dict(rec.errors + rec.table.errors)
    out["disk"] = rec.calls.space.status() | rec.io.holes.status()
    out["kernels"] = rec.impl.name
    return out
