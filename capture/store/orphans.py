"""Orphan streams: RTP to the recorder on a port no dialog seen so far has given, kept rather than
dropped, so that a call whose INVITE came before shadowrec started (or before the mirror worked,
or that was signalled where it cannot be read) is recorded from its first packet seen.

Each orphan stream (per recorder address and port) is spooled to a private pcap under
``DIR/orphans/`` as it arrives, with its phone's address, payload type and payload sizes. Its
call claims it in one of three ways (``LateJoins``); the sidecar says which (``joined_by``):

- **a re-INVITE** (a session refresh, hold, resume) maps a dialog's media to the orphan's port
  (both dialogs, or one and a second passed): the call starts at its orphans' first packet;
- **the BYE**, whose From (CUCM's) or To (the recorder's) carries the call's x-parameters but
  no media: two seconds later, the orphans to that recorder whose phone stopped sending nearest
  the BYE (its streams' last packet at most a second before it, silent for half a second since)
  are the call's, if that phone is nearer by 0.1 s than the next, and each phone's streams go
  to one BYE (else the join is ambiguous, counted, and the orphans go on to the next case).
  Which stream is near and which far is not in a BYE: the lower recorder port is taken as the
  near end's (CUCM offers its dialog first and recorders hand out ports in turn), and the
  sidecar says ``channels_guessed``;
- **no SIP at all** within the RTP timeout: SIP over TLS, or a mirror missing the signalling.
  The streams from one phone that began within two seconds of each other become one call of
  RTP alone (no parties; ``joined_by: rtp``), if each has at least ``MIN_PACKETS``. If the
  recorder's address was seen serving SIP over TLS (``tls_ports``), its streams are taken as SRTP whose
  keys cannot be seen: the sidecar says ``encrypted`` and why, and the WAV is silence, never
  ciphertext played as audio; the packets are in the call's pcap. Without TLS, a static
  payload type gives the codec (0 PCMU, 8 PCMA, 9 G.722, 18 G.729, 3 GSM) unless the G.711
  payloads' sizes carry an SRTP tag (not a multiple of 5 ms of samples): then it is SRTP too.

Packets to a port whose call ended less than ``GRACE_NS`` ago are that call's stragglers, not
an orphan (counted). At most ``limit`` orphans are kept at once.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from capture.media.codecs import CODECS as DECODED_AFTER
from capture.sip.calls import ByeUnseen, Call, EndReason, MediaMapped, adopt, end_late, packed_address, rtp_call
from capture.sip.sdp import STATIC_PT
from capture.store.outputs import CODECS as DECODED_LIVE
from capture.wire.frame import key_to_str, ntop
from capture.wire.pcapfile import PcapWriter

if TYPE_CHECKING:
    from capture.recorder import Recorder

NS = 1_000_000_000
SETTLE_NS = 2 * NS  # after a BYE of a dialog never seen: time for the phone to stop sending
STOPPED_NS = NS // 2  # a stream silent this long has stopped
GRACE_NS = 5 * NS  # packets to a port this long after its call ended are stragglers
MARGIN_NS = NS // 10  # a BYE's phone: the one whose streams stopped nearest it, by this much at least
SIBLING_NS = 2 * NS  # a phone's two forked streams begin within this of each other
MIN_PACKETS = 25  # a call of RTP alone needs streams of at least this many packets (0.5 s at 20 ms)
TLS_HIDDEN = "SIP over TLS with the recorder: the SDP's SRTP keys cannot be seen"
TAG_HIDDEN = "no SIP seen, and the payload sizes carry an SRTP authentication tag: keys not seen"


@dataclass
class Orphan:
    key: int  # the recorder's address and port
    first_ns: int
    last_ns: int
    path: str
    writer: PcapWriter | None
    src: bytes = b""  # the phone's address (the first packet's source)
    dst: bytes = b""  # the recorder's address
    pt: int = -1  # the first packet's payload type
    packets: int = 0
    tagged: int = 0  # packets whose payload is no whole number of 5 ms of G.711 (an SRTP tag?)


class Orphans:
    def __init__(self, out_dir: str, timeout_ns: int, limit: int = 1024):
        self.dir = os.path.join(out_dir, "orphans")
        self.timeout_ns = timeout_ns
        self.limit = limit
        self.streams: dict[int, Orphan] = {}
        self.recent: dict[int, int] = {}  # key -> when the call it was mapped to ended
        self.counters: Counter[str] = Counter()

    def packet(self, key: int, ts: int, frame: bytes, lt: int, payload: bytes, src: bytes, dst: bytes) -> None:
        """An RTP-looking datagram from ``src`` to the recorder (``dst``) on a port no dialog has: spooled."""
        if len(payload) < 12 or payload[0] >> 6 != 2 or 192 <= payload[1] <= 223:
            return  # not RTP (RTCP's packet types are 192-223: RFC 5761)
        ended = self.recent.get(key)
        if ended is not None and ts - ended < GRACE_NS:
            self.counters["rtp_after_end"] += 1
            return
        o = self.streams.get(key)
        if o is None:
            if len(self.streams) >= self.limit:
                self.counters["orphan_packets_dropped"] += 1
                return
            os.makedirs(self.dir, mode=0o750, exist_ok=True)
            name = key_to_str(key).replace(":", "_").replace("[", "").replace("]", "")
            path = os.path.join(self.dir, f"{name}-{ts}.pcap")
            try:
                o = Orphan(key, ts, ts, path, PcapWriter(path, lt, nanoseconds=True), src, dst, payload[1] & 0x7F)
            except OSError:  # a full disk: the orphan is not kept
                self.counters["orphan_packets_dropped"] += 1
                return
            os.chmod(path, 0o640)
            self.streams[key] = o
            self.counters["orphans"] += 1
        o.last_ns = max(o.last_ns, ts)
        o.packets += 1
        if not payload[0] & 0x30 and (len(payload) - 12 - 4 * (payload[0] & 0x0F)) % 40:
            o.tagged += 1  # no padding, no extension: the payload's own size
        try:
            if o.writer is not None and not o.writer.write(ts, frame, lt):
                self.counters["orphan_packets_dropped"] += 1
        except OSError:
            self.counters["orphan_packets_dropped"] += 1

    def ended(self, key: int, at_ns: int) -> None:
        """The call mapped to ``key`` ended: its stragglers are not an orphan for a while."""
        self.recent[key] = at_ns

    def claim(self, key: int) -> Orphan | None:
        """The orphan at ``key``, now a dialog's: its spool closed, to be replayed (then ``done``)."""
        o = self.streams.pop(key, None)
        if o is not None and o.writer is not None:
            o.writer.close()
            o.writer = None
        return o

    def replay(
        self,
        orphans: list[Orphan],
        frame: Callable[[bytes, int, int], None],
        flush: Callable[[int], None],
        until: int = 1 << 62,
    ) -> None:
        """Hand the spooled frames of ``orphans`` (a call's streams) up to ``until`` to
        ``frame(data, ts, linktype)`` in time order, ``flush(ts)`` every quarter second of their
        time (the engine keeps one second of a call), then drop the spools."""
        from capture.wire._pcapfile_py import Indexer

        frames = []
        for o in orphans:
            try:
                with open(o.path, "rb") as f:
                    buf = f.read()
                offs, lens, tss, lts = Indexer(buf).next_batch(1 << 30)
            except OSError:
                self.counters["orphan_spool_errors"] += 1
                continue
            frames += [
                (ts, buf[a : a + n], lt)
                for a, n, ts, lt in zip(offs.tolist(), lens.tolist(), tss.tolist(), lts.tolist())
                if ts <= until
            ]
        frames.sort(key=lambda x: x[0])
        next_flush = 0
        for ts, data, lt in frames:
            if ts >= next_flush:
                flush(ts)
                next_flush = ts + NS // 4
            frame(data, ts, lt)
        for o in orphans:
            self.done(o)

    def done(self, o: Orphan) -> None:
        try:
            os.unlink(o.path)
        except OSError:
            pass

    def expire(self, now: int) -> list[list[Orphan]]:
        """Orphans silent for the RTP timeout, which no SIP claimed, each with its siblings (the
        same phone's streams begun within ``SIBLING_NS``, silent or not): claimed, in groups."""
        out = []
        for key in [k for k, o in self.streams.items() if now - o.last_ns > self.timeout_ns]:
            o = self.streams.get(key)
            if o is None:
                continue  # a sibling of one before it
            group = [
                x.key for x in self.streams.values() if x.src == o.src and abs(x.first_ns - o.first_ns) <= SIBLING_NS
            ]
            out.append([c for c in map(self.claim, sorted(group)) if c is not None])
        for key in [k for k, t in self.recent.items() if now - t >= GRACE_NS]:
            del self.recent[key]
        return out


@dataclass
class ByeWait:
    """A call joined at its BYE, waiting for its phone to stop sending."""

    call: Call
    recorder: bytes
    at_ns: int
    roles: set[str] = field(default_factory=set)


def static_codec(pt: int) -> str:
    """The codec an RTP/AVP static payload type names (RFC 3551: the SDP's table), if one recorded
    here (G.711 live, the others after the call); else "" (its packets are kept, not decoded)."""
    name = STATIC_PT.get(pt, ("", 0))[0]
    return name if name in DECODED_LIVE or name in DECODED_AFTER else ""


def by_phone(orphans: list[Orphan]) -> dict[bytes, list[Orphan]]:
    out: dict[bytes, list[Orphan]] = defaultdict(list)
    for o in orphans:
        out[o.src].append(o)
    return out


class LateJoins:
    """Calls joined late (see the module doc): at a re-INVITE, at the BYE, or of RTP alone. A call
    joined at a re-INVITE waits (a second of capture time at most) for its second dialog, so
    that both streams are replayed together, in time order."""

    def __init__(self, rec: Recorder):
        self.rec = rec
        self.waiting: dict[str, tuple[int, list[MediaMapped]]] = {}  # call id -> (since, its mappings)
        self.byes: dict[str, ByeWait] = {}  # call id -> its BYE
        self.tls: dict[bytes, int] = {}  # address -> when SIP over TLS to or from it was last seen

    def watch(self, addr: bytes) -> None:
        if len(addr) == 4:
            self.rec.engine.watch(addr)

    def tls_seen(self, server: bytes, ts: int) -> None:
        """A TCP segment of SIP over TLS to or from ``server`` (the end on the TLS port: CUCM, or a
        recorder CUCM signals to). It is not watched for orphans by this alone: phones talk TLS to
        CUCM too, and CUCM may take RTP (an MTP); a recorder's address is configured, or SIP shows it."""
        self.tls[server] = ts

    def mapped(self, e: MediaMapped) -> None:
        """A dialog's media: the recorder's address is watched for orphans from now on."""
        rec = self.rec
        if e.key < 1 << 48:  # IPv4
            self.watch((e.key >> 16).to_bytes(4, "big"))
        waiting = self.waiting.get(e.call.id)
        if waiting is None and not (e.call.joined_late and e.key in rec.orphans.streams):
            early = rec.orphans.claim(e.key)  # a call seen from its INVITE: what came before is not its
            if early is not None:
                rec.orphans.done(early)
                rec.orphans.counters["orphans_superseded"] += 1
            rec.calls.mapped(e)
            return
        if waiting is None:
            waiting = self.waiting[e.call.id] = (rec.now, [])
        waiting[1].append(e)
        if len({x.role for x in waiting[1]}) == 2:
            self.release(e.call.id)

    def release(self, call_id: str) -> None:
        rec = self.rec
        _, effects = self.waiting.pop(call_id)
        orphans = [o for o in (rec.orphans.claim(e.key) for e in effects) if o is not None]
        rec.orphans.counters["orphans_joined"] += len(orphans)
        if orphans:
            rec.calls.start_at(call_id, min(o.first_ns for o in orphans))
        for e in effects:
            rec.calls.mapped(e)
        rec.orphans.replay(orphans, rec._frame, lambda ts: rec.calls.flush_audio(ts, rec.lag))

    def bye(self, e: ByeUnseen) -> None:
        """The BYE of a dialog never seen: its streams are looked for once its phone has stopped."""
        w = self.byes.get(e.call.id)
        if w is None:
            try:
                addr = packed_address(e.recorder)
            except ValueError:
                return
            self.watch(addr)
            w = self.byes[e.call.id] = ByeWait(e.call, addr, e.at_ns)
        w.roles.add(e.role)

    def ended(self, call: Call, at_ns: int) -> None:
        if call.id in self.waiting:
            self.release(call.id)
        for d in call.dialogs.values():
            if d.key is not None:
                self.rec.orphans.ended(d.key, at_ns)

    def join_at_byes(self, due: list[ByeWait], now: int) -> None:
        """The orphans to each BYE's recorder that stopped at that BYE: matched nearest first
        (each phone's streams to one call at most). A BYE whose nearest phone is not clearly
        nearer than the next (``MARGIN_NS``), or that has more than two streams, is ambiguous."""
        orphans = self.rec.orphans
        stopped = [o for o in orphans.streams.values() if o.last_ns <= now - STOPPED_NS]
        phones = by_phone(stopped)
        pairs = sorted(
            (abs(max(o.last_ns for o in group) - w.at_ns), i, phone)
            for i, w in enumerate(due)
            for phone, group in phones.items()
            if all(o.dst == w.recorder for o in group) and w.at_ns - NS <= max(o.last_ns for o in group)
        )
        joined: dict[int, bytes | None] = {}
        for dist, i, phone in pairs:
            if i in joined or phone in joined.values():
                continue
            rivals = [d for d, j, p in pairs if j == i and p != phone and p not in joined.values()]
            if len(phones[phone]) > 2 or (rivals and min(rivals) - dist < MARGIN_NS):
                joined[i] = None
                orphans.counters["bye_joins_ambiguous"] += 1
                continue
            joined[i] = phone
            claimed = [c for c in (orphans.claim(o.key) for o in phones[phone]) if c is not None]
            orphans.counters["orphans_joined"] += len(claimed)
            self.record(due[i].call, claimed, due[i].at_ns, EndReason.BYE, due[i].roles)
        for i, w in enumerate(due):
            if i not in joined:
                orphans.counters["bye_joins_without_rtp"] += 1
            if joined.get(i) is None:
                self.rec._apply(end_late(self.rec.table, w.call, w.at_ns, EndReason.BYE))

    def rtp_alone(self, group: list[Orphan], reason: EndReason = EndReason.RTP_TIMEOUT) -> None:
        """Orphans no SIP claimed (one phone's, begun together): a call of RTP alone, or dropped."""
        orphans = self.rec.orphans
        keep = [o for o in group if o.packets >= MIN_PACKETS]
        for o in group:
            if o not in keep:
                orphans.done(o)
                orphans.counters["orphans_expired"] += 1
        for i in range(0, len(keep), 2):
            pair = keep[i : i + 2]
            first = min(o.first_ns for o in pair)
            call, fx = rtp_call(self.rec.table, first, ntop(pair[0].dst), key_to_str(pair[0].key))
            self.rec._apply(fx)
            orphans.counters["rtp_calls"] += 1
            self.record(call, pair, max(o.last_ns for o in pair), reason, set())

    def record(self, call: Call, streams: list[Orphan], end_ns: int, reason: EndReason, roles: set[str]) -> None:
        """Give ``call`` the orphan ``streams`` (near first: the lower recorder port, unless one
        stream and one known role), replay them, and end it at ``end_ns``."""
        rec = self.rec
        streams = sorted(streams, key=lambda o: o.key)
        names = [next(iter(roles))] if len(streams) == 1 and len(roles) == 1 else ["near", "far"]
        if streams:
            rec.calls.start_at(call.id, min(x.first_ns for x in streams))
        for role, o in zip(names, streams):
            hidden = TLS_HIDDEN if o.dst in self.tls else ""
            if not hidden and o.pt in (0, 8) and o.tagged * 2 > o.packets:
                hidden = TAG_HIDDEN
            codec = static_codec(o.pt)
            fx = adopt(rec.table, call, role, o.key, codec, o.pt, hidden, len(streams) == 2 or len(roles) != 1)
            for e in fx:
                if isinstance(e, MediaMapped):
                    rec.calls.mapped(e)
                else:
                    rec._apply([e])  # a port an older dialog held (MediaUnmapped)
        rec.orphans.replay(streams, rec._frame, lambda ts: rec.calls.flush_audio(ts, rec.lag), until=end_ns)
        rec._apply(end_late(rec.table, call, end_ns, reason))

    def tick(self, now: int) -> None:
        for cid in [c for c, (t, _) in self.waiting.items() if now - t >= NS]:
            self.release(cid)  # the other dialog's SIP did not come within a second
        due = [self.byes.pop(c) for c, w in list(self.byes.items()) if now - w.at_ns >= SETTLE_NS]
        if due:
            self.join_at_byes(due, now)
        for group in self.rec.orphans.expire(now):
            self.rtp_alone(group)

    def close(self, reason: EndReason) -> None:
        """The end of the capture (``reason``): every BYE joined, every orphan left a call of RTP alone."""
        end = 1 << 62
        if self.byes:
            self.join_at_byes(list(self.byes.values()), end)
            self.byes.clear()
        for group in self.rec.orphans.expire(end):
            self.rtp_alone(group, reason)
