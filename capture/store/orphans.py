"""Orphan streams: RTP to the recorder on a port no dialog seen so far has given, kept rather than
dropped, so that a call whose INVITE came before shadowrec started (or before the mirror worked)
is recorded from its first packet seen once its SIP shows up (a re-INVITE).

Each orphan stream (per recorder address and port) is spooled to a private pcap under
``DIR/orphans/`` as it arrives. When a late call's dialogs have their media mapped to such ports
(both of them, or one and then a second passed), the recorder starts the call at its orphans'
first packet and replays their spools, merged in time order, through its usual path, so the
recording holds everything seen since; the sidecar says ``joined_late``. An orphan that no SIP
claims within the RTP timeout is dropped with its spool, and counted (without SIP it belongs to
no known call). At most ``limit`` orphans are kept at once.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capture.wire.frame import key_to_str
from capture.wire.pcapfile import PcapWriter

if TYPE_CHECKING:
    from capture.recorder import Recorder
    from capture.sip.calls import MediaMapped

NS = 1_000_000_000


@dataclass
class Orphan:
    key: int  # the recorder's address and port
    first_ns: int
    last_ns: int
    path: str
    writer: PcapWriter | None
    packets: int = 0


class Orphans:
    def __init__(self, out_dir: str, timeout_ns: int, limit: int = 1024):
        self.dir = os.path.join(out_dir, "orphans")
        self.timeout_ns = timeout_ns
        self.limit = limit
        self.streams: dict[int, Orphan] = {}
        self.counters: Counter[str] = Counter()

    def packet(self, key: int, ts: int, frame: bytes, lt: int, payload: bytes) -> None:
        """An RTP-looking datagram to the recorder on a port no dialog has: spooled."""
        if len(payload) < 12 or payload[0] >> 6 != 2 or 192 <= payload[1] <= 223:
            return  # not RTP (RTCP's packet types are 192-223: RFC 5761)
        o = self.streams.get(key)
        if o is None:
            if len(self.streams) >= self.limit:
                self.counters["orphan_packets_dropped"] += 1
                return
            os.makedirs(self.dir, mode=0o750, exist_ok=True)
            name = key_to_str(key).replace(":", "_").replace("[", "").replace("]", "")
            path = os.path.join(self.dir, f"{name}-{ts}.pcap")
            try:
                o = Orphan(key, ts, ts, path, PcapWriter(path, lt, nanoseconds=True))
            except OSError:  # a full disk: the orphan is not kept
                self.counters["orphan_packets_dropped"] += 1
                return
            os.chmod(path, 0o640)
            self.streams[key] = o
            self.counters["orphans"] += 1
        o.last_ns = max(o.last_ns, ts)
        o.packets += 1
        try:
            if o.writer is not None and not o.writer.write(ts, frame, lt):
                self.counters["orphan_packets_dropped"] += 1
        except OSError:
            self.counters["orphan_packets_dropped"] += 1

    def claim(self, key: int) -> Orphan | None:
        """The orphan at ``key``, now a dialog's: its spool closed, to be replayed (then ``done``)."""
        o = self.streams.pop(key, None)
        if o is not None and o.writer is not None:
            o.writer.close()
            o.writer = None
        return o

    def replay(
        self, orphans: list[Orphan], frame: Callable[[bytes, int, int], None], flush: Callable[[int], None]
    ) -> None:
        """Hand the spooled frames of ``orphans`` (a call's streams) to ``frame(data, ts, linktype)``
        in time order, ``flush(ts)`` every quarter second of their time (the engine keeps one
        second of a call), then drop the spools."""
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

    def expire(self, now: int) -> None:
        """Orphans silent for the RTP timeout, which no SIP claimed: dropped with their spool."""
        for key in [k for k, o in self.streams.items() if now - o.last_ns > self.timeout_ns]:
            o = self.streams.pop(key)
            if o.writer is not None:
                o.writer.close()
            self.done(o)
            self.counters["orphans_expired"] += 1

    def close(self) -> None:
        self.expire(1 << 62)


class LateJoins:
    """Calls joined late: the orphans of a call whose re-INVITEs map its dialogs are claimed, the
    call is started at their first packet, and their spools are replayed through the recorder.
    A call waits (a second of capture time at most) for its second dialog, so that both streams
    are replayed together, in time order."""

    def __init__(self, rec: Recorder):
        self.rec = rec
        self.waiting: dict[str, tuple[int, list[MediaMapped]]] = {}  # call id -> (since, its mappings)

    def mapped(self, e: MediaMapped) -> None:
        """A dialog's media: the recorder's address is watched for orphans from now on."""
        rec = self.rec
        if e.key < 1 << 48:
            rec.engine.watch((e.key >> 16).to_bytes(4, "big"))
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

    def ended(self, call_id: str) -> None:
        if call_id in self.waiting:
            self.release(call_id)

    def tick(self, now: int) -> None:
        for cid in [c for c, (t, _) in self.waiting.items() if now - t >= NS]:
            self.release(cid)  # the other dialog's SIP did not come within a second
        self.rec.orphans.expire(now)
