"""Synthetic Cisco BiB traffic as a SPAN port would see it, with the exact audio expected.

``generate(path, SynthSpec(...))`` writes a pcap (or pcapng) of N recorded calls: two
delayed-offer dialogs per call (x-nearend, x-farend) from CUCM to the recorder over UDP
or TCP, the phone's two forked RTP streams, optional loss, duplicates, reordering, jitter,
DTMF, VLAN tags, IPv6, unrelated flows and garbage, and optionally the primary recorder
dying at a given time (no more SIP answers, BYEs retransmitted unanswered, ICMP port
unreachable for the RTP rate-limited to one a second as Linux does). It returns one
:class:`SynthCall` per call with the samples each WAV channel must contain.

The first RTP packet of each stream is never lost, delayed or reordered: it anchors the
stream in time, so the expected audio is exact. Jitter and reordering never delay a packet
past the call's BYE (the recorder rightly drops audio that arrives after the call ended).
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from capture.media._g711_py import ALAW_TABLE, ULAW_TABLE
from capture.wire.frame import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    LINKTYPE_ETHERNET,
    PROTO_FRAGMENT,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
)
from capture.wire.inet import checksum as _csum
from capture.wire.pcapfile import PcapWriter

NS = 1_000_000_000
MS = 1_000_000
RATE = 8000
CUCM = "198.18.0.10"
PRIMARY = "198.18.0.20"
CUCM6 = "2001:db8::10"  # documentation prefix, used only inside files and namespaces
PRIMARY6 = "2001:db8::20"
PT = {"PCMU": 0, "PCMA": 8, "G729": 18, "G722": 9, "GSM": 3, "OPUS": 111, "AMR": 96, "ILBC": 97}
RTP_CLOCK = {"OPUS": 48000}  # else 8000 (G.722's too: RFC 3551)
RTPMAP = {"OPUS": "opus/48000/2", "ILBC": "iLBC/8000"}
T0 = 1_790_000_000 * NS  # 2026-09-21, a fixed epoch so output is reproducible


@dataclass
class SynthSpec:
    calls: int = 4
    duration_s: float = 5.0
    spacing_s: float = 0.25  # between call starts
    codec: str = "PCMU"
    transport: str = "udp"  # udp | tcp
    tcp_split: bool = False  # TCP: split messages over segments and coalesce others
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    jitter_ms: float = 0.0
    first_late_ms: float = 0.0  # each stream's first packet arrives this late (its audio is placed later)
    tail_ms: float = 20.0  # the last packet's audio ends at least this long before the BYE
    ptime_ms: int = 20
    dtmf: str = ""  # digits sent on the near stream 1 s into each call
    vlan: tuple = ()  # 802.1Q tags, outermost first (QinQ when two)
    ipv6: bool = False
    fail_at_s: float | None = None  # the primary dies this long after the first call starts
    calls_after_fail: int = 0  # new calls offered after the failure (never answered)
    noise_flows: int = 0  # unrelated UDP flows
    garbage: int = 0  # junk datagrams to the SIP port and to RTP ports
    hostile: int = 0  # SIP messages built to break parsers (HOSTILE_SIP, in turn), to the SIP port
    fragment_sip: bool = False  # send SIP INVITEs over UDP as IP fragments
    seed: int = 1
    keep_audio: bool = True
    pcapng: bool = False
    start_offset_s: float = 0.0  # shift the whole capture in time (distinct ids across captures)
    srtp: str = ""  # an SRTP suite (RFC 4568 name): the phone's streams are SRTP, keys in the SDP;
    # "hidden": RTP/SAVP with no a=crypto (keys exchanged where a recorder cannot see them);
    # "mismatched": the SDP's key is not the one the phone encrypts with
    seq_start: int | None = None  # every stream's first sequence number (near 65535: a rollover)
    # a codec's packets: (call index, role, packets) -> each packet's payload, from an encoder;
    # None: random G.711 codes (PCMU/PCMA, whose audio the recording must hold) or G.729 noise
    payloads: Callable[[int, str, int], list[bytes]] | None = None
    reinvite_at_s: float | None = None  # CUCM re-INVITEs each dialog this long into the call (same media)
    fmtp: str = ""  # the audio payload type's a=fmtp parameters in both SDPs (AMR: "octet-align=1")


@dataclass
class SynthCall:
    index: int
    refci: str
    near_dn: str
    far_dn: str
    near_device: str
    far_device: str
    phone: str
    start_ns: int
    end_ns: int
    answered: bool
    primary_failed: bool
    dtmf: str = ""
    near: np.ndarray | None = None
    far: np.ndarray | None = None
    packets: dict = field(default_factory=dict)  # role -> dict(sent, lost, dup)
    past_end: dict = field(default_factory=dict)  # role -> audio of packets that run past the BYE

    @property
    def frames(self) -> int:
        return ((self.end_ns - self.start_ns) * RATE) // NS


class _Net:
    """Builds Ethernet/VLAN/IP/UDP/TCP frames."""

    def __init__(self, spec: SynthSpec):
        self.v6 = spec.ipv6
        self.vlan = b"".join(
            struct.pack("!HH", ETHERTYPE_QINQ if i == 0 and len(spec.vlan) > 1 else ETHERTYPE_VLAN, v)
            for i, v in enumerate(spec.vlan)
        )
        self.ipid = 0

    def eth(self, etype: int) -> bytes:
        return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + self.vlan + struct.pack("!H", etype)

    def ip(self, src: str, dst: str, proto: int, l4: bytes, frag: tuple | None = None) -> bytes:
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        if len(s) == 4:
            self.ipid = (self.ipid + 1) & 0xFFFF
            ident, ff = (frag[0], frag[1]) if frag else (self.ipid, 0x4000)
            h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, ff, 64, proto, 0, s, d)
            h = h[:10] + struct.pack("!H", _csum(h)) + h[12:]
            return self.eth(ETHERTYPE_IPV4) + h + l4
        if frag:
            ident, off, more = frag
            ext = struct.pack("!BBHI", proto, 0, off | more, ident)
            h = struct.pack("!IHBB16s16s", 6 << 28, len(l4) + 8, PROTO_FRAGMENT, 64, s, d)
            return self.eth(ETHERTYPE_IPV6) + h + ext + l4
        h = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, s, d)
        return self.eth(ETHERTYPE_IPV6) + h + l4

    def udp_l4(self, src, dst, sport, dport, payload: bytes) -> bytes:
        u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        if self.v6:
            ps = (
                ipaddress.ip_address(src).packed
                + ipaddress.ip_address(dst).packed
                + struct.pack("!IxxxB", len(u), PROTO_UDP)
            )
            c = _csum(ps + u) or 0xFFFF
            u = u[:6] + struct.pack("!H", c) + u[8:]
        return u

    def udp(self, src, dst, sport, dport, payload: bytes) -> bytes:
        return self.ip(src, dst, PROTO_UDP, self.udp_l4(src, dst, sport, dport, payload))

    def udp_fragments(self, src, dst, sport, dport, payload: bytes, size: int = 256) -> list:
        l4 = self.udp_l4(src, dst, sport, dport, payload)
        self.ipid = (self.ipid + 1) & 0xFFFF
        ident = self.ipid
        out = []
        for off in range(0, len(l4), size):
            more = 1 if off + size < len(l4) else 0
            if self.v6:
                out.append(self.ip(src, dst, PROTO_UDP, l4[off : off + size], (ident, off, more)))
            else:
                out.append(self.ip(src, dst, PROTO_UDP, l4[off : off + size], (ident, (off // 8) | (more << 13))))
        return out

    def tcp(self, src, dst, sport, dport, seq, ack, flags, payload: bytes) -> bytes:
        t = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, 0) + payload
        return self.ip(src, dst, PROTO_TCP, t)

    def icmp_unreach(self, src, dst, quoted: bytes) -> bytes:
        if self.v6:
            body = struct.pack("!BBHI", 1, 4, 0, 0) + quoted[:1232]
            ps = (
                ipaddress.ip_address(src).packed
                + ipaddress.ip_address(dst).packed
                + struct.pack("!IxxxB", len(body), PROTO_ICMPV6)
            )
            body = body[:2] + struct.pack("!H", _csum(ps + body)) + body[4:]
            return self.ip(src, dst, PROTO_ICMPV6, body)
        body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted[:548]
        body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
        return self.ip(src, dst, PROTO_ICMP, body)


def _sip(start: str, headers: list, body: str = "") -> bytes:
    b = body.replace("\n", "\r\n").encode()
    lines = [start] + headers + [f"Content-Length: {len(b)}", "", ""]
    return "\r\n".join(lines).encode() + b


# Messages that once stopped the recorder or that a parser must refuse cleanly: numbers in digits
# of other scripts (int() refuses "²"), out-of-range numbers, and bodies that lie about their size.
_HOSTILE_BIB = [
    "From: <sip:1000@198.18.0.10;x-nearend;x-refci=9;x-nearendaddr=1000;x-farendaddr=2000>;tag=h",
    "To: <sip:8675309@198.18.0.20>;tag=r",
    "Call-ID: h3",
]
HOSTILE_SIP = [
    _sip("INVITE sip:x@198.18.0.20 SIP/2.0", ["Call-ID: h1", "CSeq: \u00b2 INVITE"]),
    _sip("INVITE sip:x@198.18.0.20 SIP/2.0", ["Call-ID: h2", "CSeq: 1 INVITE"]).replace(
        b"Content-Length: 0", "Content-Length: \u0661\u0662".encode()
    ),
    # a BiB dialog whose SDP has numbers in other scripts: the offer's payload type, the answer's port
    _sip(
        "INVITE sip:8675309@198.18.0.20 SIP/2.0",
        [_HOSTILE_BIB[0], "To: <sip:8675309@198.18.0.20>", "Call-ID: h3", "CSeq: 1 INVITE"],
    ),
    _sip(
        "SIP/2.0 200 OK",
        [*_HOSTILE_BIB, "CSeq: 1 INVITE", "Content-Type: application/sdp"],
        "v=0\no=- 1 1 IN IP4 198.18.0.20\nc=IN IP4 198.18.0.20\nm=audio 4000 RTP/AVP 0 \u00b2\n",
    ),
    _sip(
        "ACK sip:198.18.0.20 SIP/2.0",
        [*_HOSTILE_BIB, "CSeq: 1 ACK", "Content-Type: application/sdp"],
        "v=0\nc=IN IP4 198.18.0.10\nm=audio \u0664\u0660\u0660\u0660 RTP/AVP 0\na=rtpmap:0 PCMU/\u0668\u0660\n",
    ),
    _sip("SIP/2.0 \u00b2\u00b2\u00b2 OK", ["Call-ID: h5", "CSeq: 99999999999999999999 INVITE"]),
    _sip("BYE sip:x SIP/2.0", ["Call-ID: h6", "CSeq: -1 BYE", "From: \u202e<sip:\x00@b>", "To: \ud7ff"]),
    b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
    b"INVITE sip:x SIP/2.0\r\nl: 1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
]

DEMO = SynthSpec(calls=6, duration_s=8, fail_at_s=5.0, dtmf="42", loss=0.01, dup=0.01, reorder=0.01, jitter_ms=5)


def demo(out_dir: str) -> str:
    """Write the embedded demo (six BiB calls whose primary dies 5 s in) into ``out_dir``; its path."""

    path = os.path.join(out_dir, "demo-bib.pcap")
    os.makedirs(out_dir, exist_ok=True)
    generate(path, DEMO)
    return path


def _rtpmap(codec: str) -> str:
    return RTPMAP.get(codec, f"{codec}/{RTP_CLOCK.get(codec, 8000)}")


def srtp_key(c: SynthCall, role: str, who: str = "phone") -> bytes:
    """The SRTP master key and salt ``who`` (the phone, or the recorder) uses for one dialog's
    stream: fixed by the call, so tests can make them again."""
    import hashlib

    return hashlib.sha512(f"{c.refci}/{role}/{who}".encode()).digest()


def _crypto_line(spec: SynthSpec, key: bytes) -> str:
    import base64

    from capture.sip.sdp import SUITES

    if not spec.srtp or spec.srtp == "hidden":
        return ""
    suite = "AES_CM_128_HMAC_SHA1_80" if spec.srtp == "mismatched" else spec.srtp
    return f"a=crypto:1 {suite} inline:{base64.b64encode(key[: SUITES[suite]]).decode()}\n"


def _bib_messages(
    spec: SynthSpec, c: SynthCall, r: int, role: str, cucm: str, primary: str, rport: int
) -> dict[str, bytes]:
    """One BiB dialog as CUCM and the recorder speak it: the INVITE (delayed offer), the recorder's
    200 OK with the offer (its RTP port ``rport``), CUCM's ACK with the answer, the BYE and its 200 OK."""
    k = c.index
    cluster = "lab-cluster"
    params = (
        f"x-refci={c.refci};x-nearendclusterid={cluster};x-nearenddevice={c.near_device.lower()};"
        f"x-nearendaddr={c.near_dn};x-farendrefci={int(c.refci) - 1};x-farendclusterid={cluster};"
        f"x-farenddevice={c.far_device.lower()};x-farendaddr={c.far_dn}"
    )
    host = f"[{cucm}]" if spec.ipv6 else cucm
    phost = f"[{primary}]" if spec.ipv6 else primary
    ipver = "IP6" if spec.ipv6 else "IP4"
    cid = f"{k:08x}-{r}-synth@{cucm}"
    frm = f"From: <sip:{c.near_dn}@{host};x-{role}end;{params}>;tag={k}{r}~synth"
    to = f"To: <sip:8675309@{phost}>"
    via = f"Via: SIP/2.0/{spec.transport.upper()} {host}:5060;branch=z9hG4bK{k:x}{r}"
    base = [via + "a", frm, to, f"Call-ID: {cid}", "User-Agent: Cisco-CUCM14.0", "Max-Forwards: 70"]
    tagged = [frm, to + f";tag=rec{k}{r}", f"Call-ID: {cid}"]
    proto = "RTP/SAVP" if spec.srtp else "RTP/AVP"
    offer = (
        f"v=0\no=shadowrec-synth 1 1 IN {ipver} {primary}\ns=-\nc=IN {ipver} {primary}\nt=0 0\n"
        f"m=audio {rport} {proto} {PT[spec.codec]} 101\na=rtpmap:{PT[spec.codec]} {_rtpmap(spec.codec)}\n"
        "a=rtpmap:101 telephone-event/8000\na=recvonly\n"
        + _crypto_line(spec, srtp_key(c, role, "recorder"))
        + (f"a=fmtp:{PT[spec.codec]} {spec.fmtp}\n" if spec.fmtp else "")
    )
    answer = (
        f"v=0\no=CiscoSystemsCCM-SIP 1 1 IN {ipver} {cucm}\ns=SIP Call\nc=IN {ipver} {c.phone}\n"
        f"t=0 0\nm=audio 4000 {proto} {PT[spec.codec]} 101\na=ptime:{spec.ptime_ms}\n"
        f"a=rtpmap:{PT[spec.codec]} {_rtpmap(spec.codec)}\na=sendonly\na=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-15\n"
        + _crypto_line(spec, srtp_key(c, role))
        + (f"a=fmtp:{PT[spec.codec]} {spec.fmtp}\n" if spec.fmtp else "")
    )
    return {
        "invite": _sip(
            f"INVITE sip:8675309@{phost}:5060 SIP/2.0",
            base + ["CSeq: 101 INVITE", f"Contact: <sip:{c.near_dn}@{host}:5060>;isFocus"],
        ),
        "ok": _sip(
            "SIP/2.0 200 OK",
            [via + "a", *tagged, "CSeq: 101 INVITE", f"Contact: <sip:{phost}:5060>", "Content-Type: application/sdp"],
            offer,
        ),
        "ack": _sip(
            f"ACK sip:{phost}:5060;transport={spec.transport.upper()} SIP/2.0",
            [via + "a", *tagged, "CSeq: 101 ACK", "Content-Type: application/sdp"],
            answer,
        ),
        "reinvite": _sip(
            f"INVITE sip:{phost}:5060 SIP/2.0",
            [
                via + "r",
                *tagged,
                "CSeq: 103 INVITE",
                f"Contact: <sip:{c.near_dn}@{host}:5060>;isFocus",
                "Content-Type: application/sdp",
            ],
            answer,
        ),
        "reinvite_ok": _sip(
            "SIP/2.0 200 OK",
            [via + "r", *tagged, "CSeq: 103 INVITE", f"Contact: <sip:{phost}:5060>", "Content-Type: application/sdp"],
            offer,
        ),
        "reinvite_ack": _sip(f"ACK sip:{phost}:5060 SIP/2.0", [via + "s", *tagged, "CSeq: 103 ACK"]),
        "bye": _sip(f"BYE sip:{phost}:5060 SIP/2.0", [via + "c", *tagged, "CSeq: 102 BYE", "Reason: Q.850;cause=16"]),
        "bye_ok": _sip("SIP/2.0 200 OK", [via + "c", *tagged, "CSeq: 102 BYE"]),
    }


def _srtp_sender(spec: SynthSpec, c: SynthCall, role: str):
    """What turns one of the phone's RTP packets into what it sends: itself, or SRTP (libsrtp)."""
    if not spec.srtp:
        return lambda packet: packet
    from pylibsrtp import Policy, Session

    from capture.media.srtp import PROFILES

    if spec.srtp in ("hidden", "mismatched"):  # keys nobody on the SPAN sees
        suite, key = "AES_CM_128_HMAC_SHA1_80", srtp_key(c, role, "elsewhere")[:30]
    else:
        from capture.sip.sdp import SUITES

        suite, key = spec.srtp, srtp_key(c, role)[: SUITES[spec.srtp]]
    session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILES[suite]))
    return session.protect


class _Capture:
    """The frames of one synthetic capture, in a heap by capture time, and how they are made."""

    def __init__(self, spec: SynthSpec):
        self.spec = spec
        self.t0 = T0 + int(spec.start_offset_s * NS)  # the capture's epoch
        self.rng = random.Random(spec.seed)
        self.nrng = np.random.default_rng(spec.seed)
        self.net = _Net(spec)
        self.cucm, self.primary = (CUCM6, PRIMARY6) if spec.ipv6 else (CUCM, PRIMARY)
        self.heap: list[tuple[int, int, bytes]] = []
        self.count = 0
        self.fail_ns = None if spec.fail_at_s is None else self.t0 + int(spec.fail_at_s * NS)
        self.spf = spec.ptime_ms * RATE // 1000  # samples per packet
        self.table = ALAW_TABLE if spec.codec == "PCMA" else ULAW_TABLE
        self.tcp_state = {"c2r": 1000, "r2c": 5000}
        self.tcp_pending: list[tuple[int, int, bool, bytes]] = []
        self.last_icmp = 0

    def emit(self, ts: int, frame: bytes) -> None:
        self.count += 1
        heapq.heappush(self.heap, (ts, self.count, frame))

    def send_sip(self, ts: int, msg: bytes, to_primary: bool, call_sport: int = 5060) -> None:
        cucm, primary, net = self.cucm, self.primary, self.net
        src, dst = (cucm, primary) if to_primary else (primary, cucm)
        sport, dport = (call_sport, 5060) if to_primary else (5060, call_sport)
        if self.spec.transport == "udp":
            if self.spec.fragment_sip and to_primary and msg.startswith(b"INVITE"):
                frags = net.udp_fragments(src, dst, sport, dport, msg)
                for k, fr in enumerate(frags):
                    self.emit(ts - (len(frags) - 1 - k) * 1000, fr)  # complete at its time
            else:
                self.emit(ts, net.udp(src, dst, sport, dport, msg))
            return
        self.tcp_pending.append((ts, len(self.tcp_pending), to_primary, msg))

    def flush_tcp(self) -> None:
        """TCP sequence numbers follow wire order, so segments are numbered once all are known."""
        spec, rng = self.spec, self.rng
        segments: list[list] = []
        for ts, _, to_primary, msg in sorted(self.tcp_pending):
            prev = next((x for x in reversed(segments) if x[1] == to_primary), None)
            # coalesce: an ACK or a 2xx held back (< 20 ms) travels with the next message
            if (
                spec.tcp_split
                and prev is not None
                and prev is segments[-1]
                and ts - prev[0] < 20 * MS
                and prev[3]
                and rng.random() < 0.7
            ):
                prev[0], prev[2] = ts, prev[2] + msg
                prev[3] = False
                continue
            holdable = msg.startswith(b"ACK") or (msg.startswith(b"SIP/2.0 200") and b"INVITE" in msg[:400])
            segments.append([ts, to_primary, msg, holdable])
        for ts, to_primary, msg, _ in segments:
            src, dst = (self.cucm, self.primary) if to_primary else (self.primary, self.cucm)
            d = "c2r" if to_primary else "r2c"
            sport, dport = (40000, 5060) if to_primary else (5060, 40000)
            if spec.tcp_split and rng.random() < 0.5:
                cut = rng.randrange(1, len(msg))
                parts = [msg[:cut], msg[cut:]]
            else:
                parts = [msg]
            for k, part in enumerate(parts):
                seg = self.net.tcp(src, dst, sport, dport, self.tcp_state[d], 0, 0x18, part)
                at = ts - (len(parts) - 1 - k) * 2000  # the message is complete at its time
                self.emit(at, seg)
                if spec.tcp_split and rng.random() < 0.2:
                    self.emit(at + 500, seg)  # a retransmitted segment
                self.tcp_state[d] += len(part)

    def tcp_handshake(self) -> None:
        self.emit(self.t0 - 10 * MS, self.net.tcp(self.cucm, self.primary, 40000, 5060, 999, 0, 0x02, b""))
        self.emit(self.t0 - 9 * MS, self.net.tcp(self.primary, self.cucm, 5060, 40000, 4999, 1000, 0x12, b""))

    def call(self, k: int) -> SynthCall:
        """Call ``k``'s plan: who, when, answered or not."""
        spec = self.spec
        after = k >= spec.calls
        start = self.t0 + int(k * spec.spacing_s * NS)
        if after:
            assert self.fail_ns is not None, "calls after a failure need fail_at_s"
            start = self.fail_ns + int((k - spec.calls + 1) * 0.3 * NS)
        end = start + int(spec.duration_s * NS)
        refci = str(38960000 + 2 * k)
        return SynthCall(
            k,
            refci,
            str(9110000 + k),
            str(9120000 + k),
            f"SEP0017{k:06X}",
            f"SEP0018{k:06X}",
            f"198.18.{1 + k // 200}.{10 + k % 200}" if not spec.ipv6 else f"2001:db8::1:{k + 1:x}",
            start,
            end,
            not after,
            False,
            spec.dtmf,
        )

    def dialogs(self, c: SynthCall, after: bool) -> dict[str, int]:
        """The call's two delayed-offer dialogs; returns the recorder's RTP port of each answered one."""
        ports: dict[str, int] = {}
        for r, role in enumerate(("near", "far")):
            t = c.start_ns + r * 30 * MS
            rport = (20000 if role == "near" else 20002) + 4 * c.index  # unique on the recorder: < 11,380 calls
            m = _bib_messages(self.spec, c, r, role, self.cucm, self.primary, rport)
            if after:
                for dt_ in (0, 500, 1500, 3500):
                    self.send_sip(t + dt_ * MS, m["invite"], True)
                continue
            self.send_sip(t, m["invite"], True)
            answered = self.fail_ns is None or t + 10 * MS < self.fail_ns
            if not answered:
                c.answered = False
                continue
            ports[role] = rport
            self.send_sip(t + 10 * MS, m["ok"], False)
            self.send_sip(t + 20 * MS, m["ack"], True)
            if self.spec.reinvite_at_s is not None:  # the same media again (a hold and resume, a refresh)
                rt = c.start_ns + int(self.spec.reinvite_at_s * NS) + r * 30 * MS
                self.send_sip(rt, m["reinvite"], True)
                self.send_sip(rt + 10 * MS, m["reinvite_ok"], False)
                self.send_sip(rt + 20 * MS, m["reinvite_ack"], True)
            bye_t = c.end_ns + r * 10 * MS
            if self.fail_ns is not None and bye_t >= self.fail_ns:
                for dt_ in (0, 500, 1500, 3500, 7500):
                    self.send_sip(bye_t + dt_ * MS, m["bye"], True)
            else:
                self.send_sip(bye_t, m["bye"], True)
                self.send_sip(bye_t + 5 * MS, m["bye_ok"], False)
        return ports

    def stream(self, c: SynthCall, r: int, role: str, port: int) -> None:
        """One of the phone's two forked RTP streams (with DTMF, loss, duplicates, reordering, jitter,
        and ICMP from a dead primary); the audio the recording must hold goes into ``c``."""
        spec, rng, net, spf, k = self.spec, self.rng, self.net, self.spf, c.index
        media_start = c.start_ns + 60 * MS
        npk = max(0, (c.end_ns - int(spec.tail_ms * MS) - media_start) // (spec.ptime_ms * MS))
        frames = c.frames
        dtmf_from = 1 * NS // (spec.ptime_ms * MS) if spec.dtmf else -1
        sport = 16384 + 2 * r + 4 * (k % 10000)  # phones differ by address; ports may repeat
        ssrc = rng.getrandbits(32)
        seq0 = rng.getrandbits(16)
        if spec.seq_start is not None:
            seq0 = spec.seq_start
        ts0 = rng.getrandbits(32)
        protect = _srtp_sender(spec, c, role)
        first_ns = media_start + r * 2 * MS
        g711 = spec.codec in ("PCMU", "PCMA") and spec.payloads is None
        codes = self.nrng.integers(0, 256, size=int(npk * spf), dtype=np.uint8) if g711 else None
        encoded = spec.payloads(k, role, npk) if spec.payloads is not None else None
        step = RTP_CLOCK.get(spec.codec, RATE) * spec.ptime_ms // 1000  # RTP timestamp per packet
        exp = np.zeros(frames + 2 * spf, dtype=np.int16) if spec.keep_audio else None  # + what runs past the BYE
        anchor = ((first_ns - c.start_ns) * RATE) // NS
        stats = {"sent": 0, "lost": 0, "dup": 0}
        dtmf_pk = set()
        if role == "near" and dtmf_from >= 0:
            for di, _digit in enumerate(spec.dtmf):
                for j in range(dtmf_from + di * 10, dtmf_from + di * 10 + 5):
                    dtmf_pk.add(j)
        for j in range(npk):
            nominal = first_ns + j * spec.ptime_ms * MS
            seq = (seq0 + j) & 0xFFFF
            rts = (ts0 + j * step) & 0xFFFFFFFF
            if j in dtmf_pk:
                di = (j - dtmf_from) // 10
                ev_start = dtmf_from + di * 10
                digit = "0123456789*#ABCD".index(spec.dtmf[di])
                endbit = 0x80 if j == ev_start + 4 else 0
                payload = struct.pack("!BBH", digit, endbit | 10, (j - ev_start + 1) * spf)
                hdr = struct.pack(
                    "!BBHII", 0x80, 101 | (0x80 if j == ev_start else 0), seq, (ts0 + ev_start * spf) & 0xFFFFFFFF, ssrc
                )
            else:
                if encoded is not None:
                    payload = encoded[j]
                elif codes is None:
                    payload = bytes(rng.getrandbits(8) for _ in range(20))
                else:
                    payload = codes[j * spf : (j + 1) * spf].tobytes()
                hdr = struct.pack("!BBHII", 0x80, PT[spec.codec], seq, rts, ssrc)
            stats["sent"] += 1
            wire = protect(hdr + payload)  # made in order, sent or lost, as a phone does
            if j > 0 and rng.random() < spec.loss:
                stats["lost"] += 1
                continue
            if exp is not None and j not in dtmf_pk and codes is not None and spec.srtp not in ("hidden", "mismatched"):
                pos = anchor + j * spf
                if pos + spf <= len(exp):
                    exp[pos : pos + spf] = self.table[codes[j * spf : (j + 1) * spf]]
            frame = net.udp(c.phone, self.primary, sport, port, wire)
            cap = nominal
            if j == 0:
                cap += int(spec.first_late_ms * MS)
            if j > 0 and spec.jitter_ms:
                cap += int(rng.uniform(0, spec.jitter_ms) * MS)
            if j > 0 and rng.random() < spec.reorder:
                cap += 2 * spec.ptime_ms * MS + 1000  # arrives after the next two packets
            cap = min(cap, c.end_ns - MS)  # nothing is delayed past the BYE
            self.emit(cap, frame)
            if j > 0 and rng.random() < spec.dup:
                stats["dup"] += 1
                self.emit(cap + 30_000, frame)
            if j in dtmf_pk and j == (dtmf_from + ((j - dtmf_from) // 10) * 10 + 4):
                for extra in (1, 2):  # RFC 4733: the end packet is sent three times
                    hdr2 = hdr[:2] + struct.pack("!H", (seq + extra) & 0xFFFF) + hdr[4:]
                    self.emit(cap + extra * 1000, net.udp(c.phone, self.primary, sport, port, protect(hdr2 + payload)))
                seq0 += 2
            if self.fail_ns is not None and nominal >= self.fail_ns:
                # Linux answers with ICMP port unreachable, about one a second per host
                if nominal - self.last_icmp >= NS:
                    self.last_icmp = nominal
                    self.emit(nominal + 50_000, net.icmp_unreach(self.primary, c.phone, frame[14 + len(net.vlan) :]))
        c.packets[role] = stats
        if exp is not None:
            exp, c.past_end[role] = exp[:frames], np.trim_zeros(exp[frames:], "b")
        if role == "near":
            c.near = exp
        else:
            c.far = exp

    def noise(self) -> None:
        """Unrelated traffic and garbage, spread over the capture."""
        spec, rng, net = self.spec, self.rng, self.net
        span = max(int((spec.calls * spec.spacing_s + spec.duration_s) * NS), NS)
        for f in range(spec.noise_flows):
            src = f"198.19.{(f >> 8) & 255}.{f & 255}"
            for _ in range(3):
                self.emit(
                    self.t0 + rng.randrange(span),
                    net.udp(
                        src,
                        "198.19.255.1",
                        10000 + f % 50000,
                        16384 + f % 16000,
                        bytes(rng.getrandbits(8) for _ in range(40)),
                    ),
                )
        for g in range(spec.garbage):
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
            if g % 3 == 0:
                junk = b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n" + junk
            elif g % 3 == 1:
                junk = b"\x80" + junk[:5]  # RTP-looking, too short
            port = 5060 if g % 3 != 1 else 20000
            self.emit(self.t0 + rng.randrange(span), net.udp("198.19.0.99", self.primary, 5060, port, junk))
        for h in range(spec.hostile):  # in order, spread over the capture
            msg = HOSTILE_SIP[h % len(HOSTILE_SIP)][:65000]  # a UDP datagram's payload, whatever it claims
            self.emit(self.t0 + h * span // spec.hostile, net.udp("198.18.0.10", self.primary, 5060, 5060, msg))

    def write(self, path: str) -> None:
        w = PcapWriter(path, LINKTYPE_ETHERNET, nanoseconds=True, pcapng=self.spec.pcapng)
        while self.heap:
            ts, _, frame = heapq.heappop(self.heap)
            w.write(ts, frame)
        w.close()


def generate(path: str, spec: SynthSpec) -> list[SynthCall]:
    """Write the capture to ``path``; return the calls with their expected audio."""
    cap = _Capture(spec)
    if spec.transport == "tcp":
        cap.tcp_handshake()
    total = spec.calls + spec.calls_after_fail
    if total > 11380:
        raise ValueError("synth numbers recorder RTP ports 20000 + 4k: at most 11,380 calls")
    calls = []
    for k in range(total):
        c = cap.call(k)
        calls.append(c)
        ports = cap.dialogs(c, after=k >= spec.calls)
        if not c.answered:
            continue
        c.primary_failed = cap.fail_ns is not None and cap.fail_ns < c.end_ns
        for r, role in enumerate(("near", "far")):  # media: both streams from the agent's phone
            if role in ports:
                cap.stream(c, r, role, ports[role])
    cap.flush_tcp()
    cap.noise()
    cap.write(path)
    return calls
