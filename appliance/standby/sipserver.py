"""A SIP recording server (UAS) for CUCM's BiB dialogs: what shadowrec answers while it owns the VIP.

``Uas`` is the logic, without I/O: ``on_message(data, src, now)`` returns the datagrams to
send, ``on_timer(now)`` the retransmissions (RFC 3261 §17.2.1: a 2xx to INVITE is resent at
T1, doubling up to T2, until the ACK arrives or 64·T1 has passed). ``SipServer`` runs it on
UDP and TCP sockets bound to the VIP (IP_FREEBIND: it can start before the VIP is here) and
keeps one UDP socket open per offered RTP port, so the kernel never answers the phone's RTP
with ICMP port unreachable. The RTP itself is recorded by the capture engine, which also
listens on this interface: calls answered here are recorded by the same code as passive ones.

Delayed offer: CUCM's INVITE has no SDP; our 200 OK carries the offer (recvonly, PCMU, PCMA
and telephone-event on one port); CUCM's ACK carries the answer.
"""

from __future__ import annotations

import itertools
import logging
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from capture.errors import ParseError
from capture.faults import Faults
from capture.sip import message as sip

log = logging.getLogger("shadowrec.sip")
T1 = 0.5
T2 = 4.0
IP_FREEBIND = 15
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"


@dataclass
class _Dialog:
    call_id: str
    to_tag: str
    port: int
    invite_cseq: int
    response: bytes  # the 2xx, resent until ACKed
    peer: tuple
    next_resend: float
    interval: float
    give_up: float
    acked: bool = False
    ended: bool = False
    sdp_version: int = 1


@dataclass
class Uas:
    address: str  # the VIP
    port_range: tuple = (40000, 49998)
    user_agent: str = "shadowrec"
    dialogs: dict = field(default_factory=dict)
    answered: set = field(default_factory=set)  # Call-IDs answered here (for the recordings' metadata)
    counters: dict = field(
        default_factory=lambda: {
            "invites": 0,
            "acks": 0,
            "byes": 0,
            "cancels": 0,
            "options": 0,
            "retransmissions": 0,
            "bad_messages": 0,
        }
    )

    def __post_init__(self):
        self.faults = Faults()  # what ``on_message`` caught, by error class
        self._ports = itertools.cycle(range(self.port_range[0], self.port_range[1], 2))
        self.in_use: set = set()
        # ports the wire shows in use on this address (calls the primary answered, still running):
        # an offer must never send a second phone to a port another phone is streaming to
        self.busy = lambda port: False

    def _port(self) -> int:
        for _ in range((self.port_range[1] - self.port_range[0]) // 2 + 1):
            p = next(self._ports)
            if p not in self.in_use and not self.busy(p) and not self.busy(p + 1):
                self.in_use.add(p)
                return p
        raise RuntimeError("no free RTP port")

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

    def on_message(self, data: bytes, src: tuple, now: float) -> list:
        """A datagram (or a TCP-framed message) from ``src``: returns [(dst, bytes)] to send.
        One boundary per message: whatever goes wrong is counted by class, and nothing is sent."""
        try:
            return self._on_message(data, src, now)
        except Exception as e:
            self.faults.add(e, data, f"SIP message from {src}")
            return []

    def _on_message(self, data: bytes, src: tuple, now: float) -> list:
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
            if d is not None and num == d.invite_cseq:
                self.counters["retransmissions"] += 1
                return [(src, d.response)]  # an INVITE retransmission
            if d is not None:  # re-INVITE: same media, new version
                d.sdp_version += 1
                d.response = self._response(
                    msg, 200, "OK", d.to_tag, self._sdp(d), (f"Contact: <sip:{self.address}:5060>", f"Allow: {ALLOW}")
                )
                d.invite_cseq, d.acked, d.peer = num, False, src
                d.next_resend, d.interval, d.give_up = now + T1, T1, now + 64 * T1
                return [(src, d.response)]
            self.counters["invites"] += 1
            tag = f"sr{random.getrandbits(40):x}"
            d = _Dialog(cid, tag, self._port(), num, b"", src, now + T1, T1, now + 64 * T1)
            d.response = self._response(
                msg, 200, "OK", tag, self._sdp(d), (f"Contact: <sip:{self.address}:5060>", f"Allow: {ALLOW}")
            )
            self.dialogs[cid] = d
            self.answered.add(cid)
            return [(src, self._response(msg, 100, "Trying")), (src, d.response)]
        if m == "ACK":
            if d is not None:
                d.acked = True
                self.counters["acks"] += 1
            return []
        if m == "BYE":
            self.counters["byes"] += 1
            if d is None:
                return [(src, self._response(msg, 481, "Call/Transaction Does Not Exist"))]
            d.ended = True
            self.in_use.discard(d.port)
            del self.dialogs[cid]
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

    def on_timer(self, now: float) -> list:
        out = []
        for cid, d in list(self.dialogs.items()):
            if d.acked:
                continue
            if now >= d.give_up:
                log.info("no ACK for %s after 64*T1; giving up the dialog", cid)
                self.in_use.discard(d.port)
                del self.dialogs[cid]
                continue
            if now < d.next_resend:
                continue
            out.append((d.peer, d.response))
            self.counters["retransmissions"] += 1
            d.interval = min(d.interval * 2, T2)
            d.next_resend = now + d.interval
        return out

    def ports(self) -> set:
        return set(self.in_use)


class SipServer:
    """Runs a ``Uas`` on UDP and TCP port 5060 of ``address`` in a thread."""

    def __init__(self, address: str, port: int = 5060, clock=time.monotonic, bind: str | None = None):
        self.uas = Uas(address)
        self.clock = clock
        self.stop = False
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for s in (self.udp, self.tcp):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            s.bind((bind or address, port))
        self.tcp.listen(64)
        self.conns: dict = {}  # socket -> (peer, bytearray)
        self.rtp: dict = {}  # port -> socket
        self.thread = threading.Thread(target=self.run, name="shadowrec-sip", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _sync_rtp(self):
        want = self.uas.ports()
        for p in want - set(self.rtp):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # we only hold the port open
            s.bind((self.uas.address, p))
            self.rtp[p] = s
        for p in set(self.rtp) - want:
            self.rtp.pop(p).close()

    def _send(self, out, via_conn=None):
        for dst, data in out:
            if via_conn is not None:
                try:
                    via_conn.sendall(data)
                except OSError:
                    pass
            else:
                self.udp.sendto(data, dst)

    def run(self):
        while not self.stop:
            socks = [self.udp, self.tcp, *self.conns, *self.rtp.values()]
            r, _, _ = select.select(socks, [], [], 0.05)
            now = self.clock()
            for s in r:
                if s is self.udp:
                    data, src = s.recvfrom(65535)
                    self._send(self.uas.on_message(data, src, now))
                elif s is self.tcp:
                    c, peer = s.accept()
                    self.conns[c] = (peer, bytearray())
                elif s in self.conns:
                    peer, buf = self.conns[s]
                    chunk = s.recv(65536)
                    if not chunk:
                        del self.conns[s]
                        s.close()
                        continue
                    buf += chunk
                    while True:
                        while buf[:2] == b"\r\n":
                            del buf[:2]
                        try:
                            n = sip.frame_length(bytes(buf))
                        except ParseError:
                            buf.clear()
                            break
                        if not n:
                            break
                        self._send(self.uas.on_message(bytes(buf[:n]), peer, now), via_conn=s)
                        del buf[:n]
                else:
                    try:
                        s.recv(65535)  # RTP: drained; the capture engine records it
                    except OSError:
                        pass
            self._send(self.uas.on_timer(now))
            self._sync_rtp()
        for s in [self.udp, self.tcp, *self.conns, *self.rtp.values()]:
            s.close()

    def close(self):
        self.stop = True
        if self.thread.is_alive():
            self.thread.join(2)
