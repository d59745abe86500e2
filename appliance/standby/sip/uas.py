"""The recording UAS for CUCM's BiB dialogs, as logic without I/O.

``on_message(data, src, now, conn)`` returns the messages to send (``Send``), ``on_timer(now)``
the 2xx retransmissions (RFC 3261 §13.3.1.4 / §17.2.1: resent at T1, doubling up to T2, until
the ACK arrives or 64·T1 has passed) and clears what expired. ``conn`` is the server's handle of
the TCP connection a message came on (None: UDP); answers and retransmissions go back on it.

Delayed offer: CUCM's INVITE has no SDP; our 200 OK carries the offer (recvonly, PCMU, PCMA and
telephone-event on one port from the ``PortPool``); CUCM's ACK carries the answer.

What a dialog holds (an RTP port pair, a socket each) is given back:
- on BYE; on no ACK after 64·T1;
- after ``max_call_s`` whatever happens (a BYE lost, CUCM gone);
- after a VIP release (``release``), as soon as the recorder no longer tracks its call as live
  (``live(call_id)``: the BYE went to the primary, or the RTP stopped), checked once a second.
A new INVITE gets 503 (Retry-After) when ``max_dialogs`` are open or no port is free: CUCM then
tries its next recorder. Only ``Peers`` are answered; anyone else gets nothing.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

from appliance.standby.sip.peers import Peers
from appliance.standby.sip.ports import PortPool
from capture.errors import ParseError
from capture.faults import Faults
from capture.sip import message as sip

log = logging.getLogger("shadowrec.sip")
T1 = 0.5
T2 = 4.0
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
RELEASED_CHECK_S = 1.0


class Send(NamedTuple):
    dst: tuple  # (ip, port)
    data: bytes
    conn: Hashable | None = None  # the TCP connection to send on; None: UDP


@dataclass
class _Dialog:
    call_id: str
    to_tag: str
    port: int
    invite_cseq: int
    response: bytes  # the 2xx, resent until ACKed
    peer: tuple
    conn: Hashable | None
    next_resend: float
    interval: float
    give_up: float
    expires: float
    acked: bool = False
    sdp_version: int = 1


@dataclass
class Uas:
    address: str  # the VIP
    ports: PortPool = field(default_factory=PortPool)
    peers: Peers = field(default_factory=Peers.anyone)
    max_call_s: float = 4 * 3600.0
    max_dialogs: int = 20000
    user_agent: str = "shadowrec"
    # is the recorder still tracking this SIP Call-ID as a live call? (after a VIP release)
    live: Callable[[str], bool] = lambda call_id: False
    # the live calls the wire shows on this VIP that no dialog here has, as (Call-ID, RTP port): the
    # primary's, or (an appliance pair) a fellow's that died; taken up when the VIP comes here
    taken_over: Callable[[], list[tuple[str, int]]] = list
    adopted: dict = field(default_factory=dict)  # Call-ID -> RTP port held for a call taken up
    dialogs: dict = field(default_factory=dict)
    answered: set = field(default_factory=set)  # Call-IDs answered here (for the recordings' metadata)
    counters: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.faults = Faults()  # what ``on_message`` caught, by error class
        self.unacked: dict[str, _Dialog] = {}  # dialogs whose 2xx is being retransmitted
        self.expiry: list[tuple[float, str, str]] = []  # heap of (expires, call_id, to_tag)
        self.master = True  # False after a VIP release, until the next claim
        self.next_released_check = self.next_adopted_check = 0.0

    # answers ------------------------------------------------------------------------------
    def _sdp(self, d: _Dialog) -> bytes:
        return (
            f"v=0\r\no=shadowrec {d.port} {d.sdp_version} IN IP4 {self.address}\r\ns=shadowrec\r\n"
            f"c=IN IP4 {self.address}\r\nt=0 0\r\nm=audio {d.port} RTP/AVP 0 8 101\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\na=recvonly\r\n"
        ).encode()

    def _response(
        self, msg, code: int, reason: str, to_tag: str | None = None, body: bytes = b"", extra: tuple = ()
    ) -> bytes:
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v}" for v in msg.header_all("via")]
        lines.append(f"From: {msg.header('from')}")
        to = msg.header("to") or ""
        if to_tag and ";tag=" not in to.lower():
            to += f";tag={to_tag}"
        lines += [
            f"To: {to}",
            f"Call-ID: {msg.call_id}",
            f"CSeq: {msg.header('cseq')}",
            f"Server: {self.user_agent}",
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def _ok_with_offer(self, msg, d: _Dialog) -> bytes:
        return self._response(
            msg, 200, "OK", d.to_tag, self._sdp(d), (f"Contact: <sip:{self.address}:5060>", f"Allow: {ALLOW}")
        )

    # messages -----------------------------------------------------------------------------
    def on_message(self, data: bytes, src: tuple, now: float, conn: Hashable | None = None) -> list[Send]:
        """A datagram (or a TCP-framed message) from ``src``: the messages to send.
        One boundary per message: whatever goes wrong is counted by class, and nothing is sent."""
        if not self.peers.allows(src[0]):
            self.counters["not_peer"] += 1  # no answer at all
            return []
        try:
            return [Send(dst, out, conn) for dst, out in self._on_message(data, src, now, conn)]
        except Exception as e:
            self.faults.add(e, data, f"SIP message from {src}")
            return []

    def _on_message(self, data: bytes, src: tuple, now: float, conn: Hashable | None) -> list:
        try:
            msg = sip.parse(data)
            if not msg.is_request:
                return []  # we send no requests; stray responses are ignored
            cid = msg.call_id
            num, method = msg.cseq
        except ParseError:
            self.counters["bad_messages"] += 1
            return []
        d = self.dialogs.get(cid)
        m = msg.method
        if m == "INVITE":
            return self._invite(msg, d, num, src, now, conn)
        if m == "ACK":
            if d is not None and not d.acked:
                d.acked = True
                self.unacked.pop(cid, None)
                self.counters["acks"] += 1
            return []
        if m == "BYE":
            self.counters["byes"] += 1
            if d is None and cid in self.adopted:  # a call taken up with the VIP: it ends here
                self.counters["byes_taken_over"] += 1
                self.ports.release(self.adopted.pop(cid))
                return [(src, self._response(msg, 200, "OK"))]
            if d is None:
                return [(src, self._response(msg, 481, "Call/Transaction Does Not Exist"))]
            self._clear(d)
            return [(src, self._response(msg, 200, "OK", d.to_tag))]
        if m == "CANCEL":
            self.counters["cancels"] += 1
            return [(src, self._response(msg, 200, "OK"))]  # the INVITE was answered at once already
        if m == "OPTIONS":
            self.counters["options"] += 1
            return [(src, self._response(msg, 200, "OK", None, b"", (f"Allow: {ALLOW}",)))]
        if m in ("UPDATE", "INFO"):
            return [(src, self._response(msg, 200, "OK", d.to_tag if d else None))]
        return [(src, self._response(msg, 501, "Not Implemented"))]

    def _invite(self, msg, d: _Dialog | None, num: int, src: tuple, now: float, conn) -> list:
        if d is not None and num == d.invite_cseq:
            self.counters["retransmissions"] += 1
            return [(src, d.response)]  # an INVITE retransmission: the same answer
        if d is not None:  # re-INVITE: same media, new version
            d.sdp_version += 1
            d.response = self._ok_with_offer(msg, d)
            d.invite_cseq, d.acked, d.peer, d.conn = num, False, src, conn
            d.next_resend, d.interval, d.give_up = now + T1, T1, now + 64 * T1
            self.unacked[d.call_id] = d
            return [(src, d.response)]
        if msg.to.param("tag") is not None:
            return [(src, self._response(msg, 481, "Call/Transaction Does Not Exist"))]
        port = self.ports.acquire() if len(self.dialogs) < self.max_dialogs else None
        if port is None:
            self.counters["refused_full"] += 1
            return [(src, self._response(msg, 503, "Service Unavailable", None, b"", ("Retry-After: 5",)))]
        self.counters["invites"] += 1
        tag = f"sr{random.getrandbits(40):x}"
        d = _Dialog(msg.call_id, tag, port, num, b"", src, conn, now + T1, T1, now + 64 * T1, now + self.max_call_s)
        d.response = self._ok_with_offer(msg, d)
        self.dialogs[d.call_id] = d
        self.unacked[d.call_id] = d
        heapq.heappush(self.expiry, (d.expires, d.call_id, d.to_tag))
        self.answered.add(d.call_id)
        return [(src, self._response(msg, 100, "Trying")), (src, d.response)]

    # time ---------------------------------------------------------------------------------
    def on_timer(self, now: float) -> list[Send]:
        out = []
        for cid, d in list(self.unacked.items()):
            if now >= d.give_up:
                log.info("no ACK for %s after 64*T1; giving up the dialog", cid)
                self.counters["no_ack"] += 1
                self._clear(d)
                continue
            if now < d.next_resend:
                continue
            out.append(Send(d.peer, d.response, d.conn))
            self.counters["retransmissions"] += 1
            d.interval = min(d.interval * 2, T2)
            d.next_resend = now + d.interval
        while self.expiry and self.expiry[0][0] <= now:
            _, cid, tag = heapq.heappop(self.expiry)
            old = self.dialogs.get(cid)
            if old is not None and old.to_tag == tag:
                log.warning("dialog %s reached the maximum call length (%.0f s): cleared", cid, self.max_call_s)
                self.counters["expired"] += 1
                self._clear(old)
        if not self.master and self.dialogs and now >= self.next_released_check:
            self.next_released_check = now + RELEASED_CHECK_S
            for d in [d for cid, d in self.dialogs.items() if not self.live(cid)]:
                self.counters["ended_after_release"] += 1
                self._clear(d)
        if self.adopted and now >= self.next_adopted_check:  # calls taken up that ended (RTP gone, BYE elsewhere)
            self.next_adopted_check = now + RELEASED_CHECK_S
            for cid in [c for c in self.adopted if not self.live(c)]:
                self.ports.release(self.adopted.pop(cid))
        return out

    def _clear(self, d: _Dialog) -> None:
        self.dialogs.pop(d.call_id, None)
        self.unacked.pop(d.call_id, None)
        self.ports.release(d.port)

    # the VIP ------------------------------------------------------------------------------
    def claim(self) -> None:
        """The VIP is here: the calls in progress on it that no dialog here has (the primary's, or a
        dead fellow's) are taken up: their RTP ports held (no ICMP to their phones) and their BYEs
        answered."""
        self.master = True
        for cid, port in self.taken_over():
            if cid not in self.dialogs and cid not in self.adopted and self.ports.hold(port):
                self.adopted[cid] = port
                self.counters["calls_taken_over"] += 1

    def release(self, now: float) -> None:
        """The VIP went away: BYEs go to the primary now; dialogs are cleared as their calls end."""
        self.master = False
        self.next_released_check = now

    def forget_connection(self, conn: Hashable) -> None:
        """A TCP connection closed: its dialogs' 2xx retransmissions have nowhere to go (CUCM sends
        its ACK, or its INVITE again, on a new connection); they wait for the ACK until 64·T1."""
        for d in self.unacked.values():
            if d.conn is conn:
                d.next_resend = d.give_up

    def status(self) -> dict:
        return {
            "dialogs": len(self.dialogs),
            "unacked": len(self.unacked),
            "rtp_ports": len(self.ports.in_use),
            "taken_over": len(self.adopted),
            "rtp_ports_free": self.ports.size - len(self.ports.in_use),
            "master": self.master,
            **dict(self.counters),  # dict() copies in one step: read from other threads
            "port_refused": dict(self.ports.refused),
            "errors": dict(self.faults.counts),
            "peers": self.peers.status(),
        }
