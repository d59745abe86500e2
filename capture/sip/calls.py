"""Cisco BiB recording calls: pairing, media mapping, endings. Pure logic, no I/O.

Feed it SIP messages (``on_sip``), ICMP errors (``on_icmp``) and the passing of time
(``tick``); it answers with *effects* (CallStarted, MediaMapped, MediaUnmapped, CallEnded,
Evidence) that the recorder carries out. Time is always the packet's capture time, passed in.

A BiB call is two dialogs from CUCM to the recorder, one per voice (``capture.sip.dialog``).
The From URI of each INVITE starts with ``x-nearend`` or ``x-farend`` and carries the same
x-refci / x-farendrefci / cluster parameters, which pair them. Delayed offer: the recorder's 2xx
carries the SDP offer (its address and port: where the phone will send RTP, hence the flow
key), CUCM's ACK the answer (the phone's address and the codec).
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from capture.clock import utc
from capture.errors import ParseError
from capture.sip import sdp
from capture.sip.dialog import Dialog, DialogEvent, DialogState, dialog_transition
from capture.sip.evidence import FORGET_NS, EvidenceItem, Transactions, icmp_evidence
from capture.sip.message import SipMessage
from capture.sip.sdp import Crypto, Media
from capture.wire.frame import flow_key

NS = 1_000_000_000
JOINED_BY_REINVITE = "reinvite"  # a re-INVITE (a session refresh, hold, resume) gave the dialog and its media
JOINED_BY_BYE = "bye"  # only the BYE was seen: its streams are found among the orphans by when they stopped
JOINED_BY_RTP = "rtp"  # no SIP seen at all (SIP over TLS, a mirror without it): streams to the recorder alone
TIMER_B_NS = 32 * NS  # RFC 3261 Timer B: an INVITE left unanswered this long is dead

__all__ = [
    "JOINED_BY_BYE",
    "JOINED_BY_REINVITE",
    "JOINED_BY_RTP",
    "TIMER_B_NS",
    "ByeUnseen",
    "Call",
    "CallEnded",
    "CallEvent",
    "CallStarted",
    "CallState",
    "CallTable",
    "adopt",
    "end_late",
    "rtp_call",
    "taken_over",
    "Dialog",
    "DialogEvent",
    "DialogState",
    "EndReason",
    "Evidence",
    "MediaMapped",
    "MediaUnmapped",
    "Party",
    "bib_info",
    "call_transition",
    "dialog_transition",
    "make_call_id",
    "packed_address",
]


class EndReason(StrEnum):
    """Why a call ended: the sidecar's ``end_reason``."""

    BYE = "bye"  # the first BYE on either dialog (or both dialogs gone after answer)
    RTP_TIMEOUT = "rtp_timeout"  # no RTP for rtp_timeout seconds (the end is its last packet)
    CAPTURE_END = "capture_end"  # the capture file ended with the call open
    SHUTDOWN = "shutdown"  # the recorder stopped with nowhere to save open calls
    REJECTED = "rejected"  # never answered (a failure response, CANCEL, Timer B): nothing recorded
    INTERRUPTED = "interrupted"  # the recorder was killed (SIGKILL, power loss): the end is its last audio on disk


class CallState(Enum):
    SETUP = "setup"  # at least one INVITE, no media mapped yet
    RECORDING = "recording"  # media mapped for at least one voice
    ENDED = "ended"


class CallEvent(Enum):
    MEDIA = "media"
    END = "end"


def call_transition(state: CallState, event: CallEvent) -> CallState:
    """The one transition function of a call."""
    if state is CallState.ENDED:
        return state
    if event is CallEvent.END:
        return CallState.ENDED
    if event is CallEvent.MEDIA:
        return CallState.RECORDING
    return state


@dataclass(frozen=True)
class Party:
    """One side of the recorded call, from the x-nearend*/x-farend* parameters (device names
    upper-cased); the sidecar's ``near`` and ``far``."""

    device: str = ""
    dn: str = ""
    refci: str = ""


@dataclass
class Call:
    id: str
    pair_key: tuple
    started_ns: int
    near: Party
    far: Party
    primary_address: str
    primary_port: int
    transport: str
    previous: str | None = None
    signalled_from: str = ""  # who sent the first INVITE (CUCM's node)
    state: CallState = CallState.SETUP
    dialogs: dict[str, Dialog] = field(default_factory=dict)  # role -> Dialog
    ended_ns: int | None = None
    end_reason: EndReason | None = None
    evidence: list[EvidenceItem] = field(default_factory=list)
    joined_late: bool = False  # its INVITE was not seen: joined at a re-INVITE or BYE (its RTP may be older)
    joined_by: str = ""  # "" (its INVITE seen), JOINED_BY_REINVITE, JOINED_BY_BYE or JOINED_BY_RTP
    channels_guessed: bool = False  # which stream is near and which far was not in SIP seen (``adopt``)

    @property
    def failed_ns(self) -> int | None:
        return min((e.at_ns for e in self.evidence), default=None)

    @property
    def codec(self) -> str:
        for role in ("near", "far"):
            d = self.dialogs.get(role)
            if d is not None and d.codec:
                return d.codec
        return ""


# effects ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallStarted:
    call: Call


@dataclass(frozen=True)
class MediaMapped:
    call: Call
    role: str
    key: int
    old_key: int | None
    codec: str
    audio_pt: int
    event_pt: int
    secure: bool = False  # SRTP
    crypto: Crypto | None = None  # the phone's key, if seen and usable
    offered: tuple[Crypto, ...] = ()  # CUCM's a=crypto lines
    hidden: str = ""  # why the stream is taken as SRTP whose keys were not seen, when no SDP said so


@dataclass(frozen=True)
class ByeUnseen:
    """The BYE of a dialog whose INVITE and re-INVITEs were never seen: its call is known (the
    From's x-parameters), its media is not. The recorder looks for it among the orphan streams
    to ``recorder`` (``adopt``), then ends the call (``end_late``)."""

    call: Call
    role: str
    recorder: str
    at_ns: int


@dataclass(frozen=True)
class MediaUnmapped:
    call: Call
    role: str
    key: int


@dataclass(frozen=True)
class CallEnded:
    call: Call
    reason: EndReason
    at_ns: int


@dataclass(frozen=True)
class Evidence:
    call: Call
    item: EvidenceItem

    @property
    def kind(self) -> str:
        return self.item.kind


Effect = CallStarted | MediaMapped | MediaUnmapped | CallEnded | Evidence | ByeUnseen


def bib_info(msg: SipMessage, side: str = "from") -> tuple[str, tuple, Party, Party] | None:
    """(role, pair key, near Party, far Party) from a BiB INVITE's From URI (``side`` "to": the
    To URI, as in a BYE the recorder sends), or None."""
    fr = msg.from_ if side == "from" else msg.to
    names = [k for k, _ in fr.uri_params]
    if "x-nearend" in names:
        role = "near"
    elif "x-farend" in names:
        role = "far"
    else:
        return None
    p = {k: (v or "") for k, v in fr.uri_params}
    near = Party(p.get("x-nearenddevice", "").upper(), p.get("x-nearendaddr", ""), p.get("x-refci", ""))
    far = Party(p.get("x-farenddevice", "").upper(), p.get("x-farendaddr", ""), p.get("x-farendrefci", ""))
    key = (p.get("x-nearendclusterid", "").lower(), near.refci, far.refci, near.device if not near.refci else "")
    return role, key, near, far


def packed_address(text: str) -> bytes:
    """An SDP address as bytes (ValueError if it is not an IP address): inet_pton, 10x faster
    than ipaddress, which stays for what it alone takes (an IPv6 scope, "fe80::1%eth0")."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return ipaddress.ip_address(text).packed


def make_call_id(started_ns: int, refci: str, sip_call_id: str) -> str:
    """A stable id: the same capture always gives the same ids (re-runs update, never duplicate)."""
    ms = (started_ns % NS) // 1_000_000
    h = hashlib.sha1(sip_call_id.encode()).hexdigest()[:6]
    safe = "".join(ch for ch in refci if ch.isalnum())[:20] or "x"
    return f"{utc(started_ns // NS, '%Y%m%dT%H%M%S')}{ms:03d}Z-{safe}-{h}"


class CallTable:
    """Every BiB call seen on the wire (see the module doc)."""

    def __init__(self, rtp_timeout_s: float = 30.0):
        self.rtp_timeout_ns = int(rtp_timeout_s * NS)
        self.dialogs: dict[str, Dialog] = {}
        self.pending: dict[tuple, Call] = {}
        self.last_of_pair: dict[tuple, str] = {}
        self.media: dict[int, Dialog] = {}
        self.calls: dict[str, Call] = {}  # calls not ended
        self.txns = Transactions()
        self.timers: list[tuple[int, int, Call]] = []  # heap of (due_ns, seq, call): see ``tick``
        self._seq = itertools.count()
        self.next_purge = 0
        self.counters = {
            "sip_messages": 0,
            "non_bib_invites": 0,
            "stray_messages": 0,
            "rejected_calls": 0,
            "dialogs_joined_late": 0,
            "dialogs_joined_at_bye": 0,
        }
        self.errors: Counter[str] = Counter()  # bodies that would not parse, by error class

    # SIP --------------------------------------------------------------------------------
    def on_sip(
        self, msg: SipMessage, ts: int, src: tuple[str, int], dst: tuple[str, int], transport: str
    ) -> list[Effect]:
        """Apply one parsed SIP message seen going from ``src`` to ``dst`` (ip, port)."""
        self.counters["sip_messages"] += 1
        cid = msg.call_id
        num, method = msg.cseq
        fx: list[Effect] = []
        d = self.dialogs.get(cid)
        if msg.is_request:
            if msg.method != "ACK":
                found = self.txns.request((cid, num, method), ts, msg.method or "", d.call if d else None)
                if found is not None:
                    fx.append(Evidence(*found))
            if msg.method == "INVITE" and d is None:
                # a To tag: a re-INVITE of a dialog whose INVITE was not seen (a start mid-call)
                late = msg.to.param("tag") is not None
                self._new_dialog(fx, msg, ts, src, dst, transport)
                d = self.dialogs.get(cid)
                if d is not None:
                    if late:
                        d.call.joined_late, d.call.joined_by = True, JOINED_BY_REINVITE
                        self.counters["dialogs_joined_late"] += 1
                    if msg.body:
                        self._cucm_sdp(fx, d, msg.body)
                return fx
            if msg.method == "BYE" and bye_unseen(self, fx, msg, d, ts, src, dst, transport):
                return fx
            if d is None:
                self.counters["stray_messages"] += 1
                return fx
            if msg.method == "ACK":
                if d.state is DialogState.ACCEPTED or msg.body:
                    d.state = dialog_transition(d.state, DialogEvent.ACK)
                if msg.body:
                    self._cucm_sdp(fx, d, msg.body)
            elif msg.method == "BYE":
                d.state = dialog_transition(d.state, DialogEvent.BYE)
                self._end(fx, d.call, EndReason.BYE, ts)
            elif msg.method == "CANCEL":
                d.state = dialog_transition(d.state, DialogEvent.CANCEL)
                self._dialog_gone(fx, d, ts)
            elif msg.method in ("INVITE", "UPDATE") and msg.body:
                self._cucm_sdp(fx, d, msg.body)
            return fx
        # responses
        self.txns.response((cid, num, method))
        if d is None:
            self.counters["stray_messages"] += 1
            return fx
        if method in ("INVITE", "UPDATE"):
            code = msg.status or 0
            if code < 200:
                d.state = dialog_transition(d.state, DialogEvent.PROVISIONAL)
            elif code < 300:
                d.state = dialog_transition(d.state, DialogEvent.SUCCESS)
                if msg.body:
                    self._recorder_sdp(fx, d, msg.body)
            elif method == "INVITE" and num == d.invite_cseq:
                d.state = dialog_transition(d.state, DialogEvent.FAILURE)
                self._dialog_gone(fx, d, ts)
        return fx

    def _new_dialog(
        self,
        fx: list[Effect],
        msg: SipMessage,
        ts: int,
        src: tuple[str, int],
        dst: tuple[str, int],
        transport: str,
        info: tuple[str, tuple, Party, Party] | None = None,
    ) -> None:
        info = info or bib_info(msg)
        if info is None:
            self.counters["non_bib_invites"] += 1
            return
        role, pkey, near, far = info
        call = self.pending.get(pkey)
        if call is None or role in call.dialogs or call.state is CallState.ENDED:
            cid = make_call_id(ts, near.refci or far.refci, msg.call_id)
            call = Call(cid, pkey, ts, near, far, dst[0], dst[1], transport, self.last_of_pair.get(pkey), src[0])
            self.pending[pkey] = call
            self.last_of_pair[pkey] = cid
            self.calls[cid] = call
            self.schedule(call, ts + min(TIMER_B_NS, self.rtp_timeout_ns) + 1)
            fx.append(CallStarted(call))
        else:
            self.pending.pop(pkey, None)
        # the INVITE's transaction was opened before its call existed
        self.txns.belongs_to((msg.call_id, msg.cseq[0], "INVITE"), call)
        d = Dialog(msg.call_id, role, call, msg.cseq[0])
        call.dialogs[role] = d
        self.dialogs[msg.call_id] = d

    def _audio(self, body: bytes) -> Media | None:
        """The first audio stream of an SDP body; None (the error counted) if it will not parse."""
        try:
            return sdp.parse(body).audio()
        except ParseError as e:
            self.errors[type(e).__name__] += 1
            return None

    def _recorder_sdp(self, fx: list[Effect], d: Dialog, body: bytes) -> None:
        m = self._audio(body)
        if m is None or m.address is None:
            return
        try:
            addr = packed_address(m.address)
        except ValueError:
            self.errors["SdpError"] += 1  # a c= line that is no IP address
            return
        key = flow_key(addr, m.port)
        if d.codec == "" and m.fmts:
            # until the ACK's answer arrives, take the offer's first audio codec
            first = next((p for p in m.fmts if m.encoding(p)[0] not in ("TELEPHONE-EVENT", "CN")), m.fmts[0])
            d.codec, d.audio_pt = m.encoding(first)[0], first
            ev = m.pt_of("telephone-event")
            d.event_pt = -1 if ev is None else ev
        d.recorder_media = f"{m.address}:{m.port}"
        if d.crypto is None:  # until CUCM's SDP says which key the phone sends with
            d.secure = m.secure
        self._map(fx, d, key)

    def _cucm_sdp(self, fx: list[Effect], d: Dialog, body: bytes) -> None:
        m = self._audio(body)
        if m is None:
            return
        d.phone_addr = m.address or d.phone_addr
        audio = [p for p in m.fmts if m.encoding(p)[0] not in ("TELEPHONE-EVENT", "CN")]
        if audio:
            d.audio_pt = audio[0]
            d.codec = m.encoding(audio[0])[0]
            d.fmtp = next((f for p, f in m.fmtp if p == audio[0]), "")
        ev = m.pt_of("telephone-event")
        d.event_pt = -1 if ev is None else ev
        # SDES (RFC 4568): the key in CUCM's SDP is the one the phone encrypts what it sends with
        d.secure, d.offered = m.secure, m.crypto
        d.crypto = next((c for c in m.crypto if c.key and not c.mki), None) if m.secure else None
        if d.key is not None:
            self._map(fx, d, d.key)

    def _map(self, fx: list[Effect], d: Dialog, key: int) -> None:
        old = d.key
        if old is not None and old != key:
            self.media.pop(old, None)
        other = self.media.get(key)
        if other is not None and other is not d:
            # the recorder reused a port that an older dialog still held: the newer one wins
            other.key = None
            fx.append(MediaUnmapped(other.call, other.role, key))
        d.key = key
        self.media[key] = d
        d.call.state = call_transition(d.call.state, CallEvent.MEDIA)
        fx.append(
            MediaMapped(
                d.call, d.role, key, old if old != key else None, d.codec, d.audio_pt, d.event_pt,
                d.secure, d.crypto, d.offered, d.hidden,
            )
        )  # fmt: skip

    def _dialog_gone(self, fx: list[Effect], d: Dialog, ts: int) -> None:
        call = d.call
        if call.state is CallState.ENDED:
            return
        live = [x for x in call.dialogs.values() if x.state is not DialogState.TERMINATED]
        if not live:
            if call.state is CallState.SETUP:
                self.counters["rejected_calls"] += 1
                self._end(fx, call, EndReason.REJECTED, ts)
            else:
                self._end(fx, call, EndReason.BYE, ts)

    def _end(self, fx: list[Effect], call: Call, reason: EndReason, ts: int) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = call_transition(call.state, CallEvent.END)
        call.ended_ns = ts
        call.end_reason = reason
        for d in call.dialogs.values():
            if d.key is not None and self.media.get(d.key) is d:
                del self.media[d.key]
        if self.pending.get(call.pair_key) is call:
            del self.pending[call.pair_key]
        self.calls.pop(call.id, None)
        fx.append(CallEnded(call, reason, ts))

    # primary health -------------------------------------------------------------------------
    def on_icmp(self, ts: int, kind: str, quoted_dst: bytes, quoted_port: int, reporter: str) -> list[Effect]:
        """An ICMP error quoting a datagram sent to ``quoted_dst:quoted_port``."""
        fx: list[Effect] = []
        d = self.media.get(flow_key(quoted_dst, quoted_port))
        calls = []
        if d is not None:
            calls = [d.call]
        else:
            try:
                addr = str(ipaddress.ip_address(quoted_dst))
            except ValueError:
                return fx
            calls = [c for c in self.calls.values() if c.primary_address == addr and c.primary_port == quoted_port]
        for call in calls:
            if any(e.kind == kind for e in call.evidence):
                continue
            item = icmp_evidence(kind, ts, reporter, quoted_port)
            call.evidence.append(item)
            fx.append(Evidence(call, item))
        return fx

    # time ---------------------------------------------------------------------------------
    def schedule(self, call: Call, due_ns: int) -> None:
        """Look at ``call`` again at the first tick at or after ``due_ns`` (see ``tick``)."""
        heapq.heappush(self.timers, (due_ns, next(self._seq), call))

    def tick(self, now: int, last_rtp: Callable[[Call], int]) -> list[Effect]:
        """Let time pass: RTP timeouts, INVITEs never answered, old transactions.

        ``last_rtp(call)`` returns the capture time of the call's last RTP packet or 0.

        A call in set-up ends ("rejected") once ``now - started > Timer B``; a call with media
        ends ("rtp_timeout", at its last packet) once ``now - last > rtp_timeout``, where
        ``last`` is its last RTP packet or else its start. Each open call has one deadline in
        ``timers``, the earliest time that can become true: set when the call starts, and when
        it is looked at and goes on, moved to ``last + rtp_timeout`` (a later packet only moves
        it further). So a tick looks only at the calls that are due, not at every call (1,000
        calls: 3 ms of Python a second, with the packets evicting their objects from the cache).
        """
        fx: list[Effect] = []
        due: list[Call] = []
        while self.timers and self.timers[0][0] <= now:
            call = heapq.heappop(self.timers)[2]
            if self.calls.get(call.id) is call:  # not ended meanwhile
                due.append(call)
        due.sort(key=lambda c: (c.started_ns, c.id))  # the same order whatever the heap did
        for call in due:
            if call.state is CallState.SETUP:
                if now - call.started_ns > TIMER_B_NS:
                    for d in call.dialogs.values():
                        d.state = dialog_transition(d.state, DialogEvent.TIMEOUT)
                    self.counters["rejected_calls"] += 1
                    self._end(fx, call, EndReason.REJECTED, now)
                else:
                    # answered later with no RTP, it would time out from its start: until then
                    # (or Timer B), it is looked at every tick once that time has passed
                    first = call.started_ns + min(TIMER_B_NS, self.rtp_timeout_ns) + 1
                    self.schedule(call, first if first > now else now + 1)
                continue
            last = last_rtp(call) or call.started_ns
            if now - last > self.rtp_timeout_ns:
                for d in call.dialogs.values():
                    d.state = dialog_transition(d.state, DialogEvent.TIMEOUT)
                self._end(fx, call, EndReason.RTP_TIMEOUT, last)
            else:
                self.schedule(call, last + self.rtp_timeout_ns + 1)
        if now >= self.next_purge:
            self.next_purge = now + FORGET_NS // 4
            self.txns.purge(now)
            for k in [
                k
                for k, d in self.dialogs.items()
                if d.call.state is CallState.ENDED and now - (d.call.ended_ns or now) > FORGET_NS
            ]:
                del self.dialogs[k]
        return fx

    def end_all(self, now: int, reason: EndReason) -> list[Effect]:
        """End every call still open (end of capture, shutdown)."""
        fx: list[Effect] = []
        for call in list(self.calls.values()):
            if call.state is CallState.SETUP:
                self._end(fx, call, EndReason.REJECTED, now)
            else:
                self._end(fx, call, reason, now)
        return fx


# calls joined late (capture.store.orphans) ------------------------------------------------
def bye_unseen(
    table: CallTable,
    fx: list[Effect],
    msg: SipMessage,
    d: Dialog | None,
    ts: int,
    src: tuple[str, int],
    dst: tuple[str, int],
    transport: str,
) -> bool:
    """A BYE of a dialog never seen: CUCM's (the x-parameters in its From) or the recorder's
    (in its To). Its call is started (or found: the other dialog's BYE) and handed on. True if
    the BYE was such (or a retransmission of one: nothing more), False for a known dialog's."""
    if d is not None:
        return d.call.joined_by == JOINED_BY_BYE and d.call.state is CallState.SETUP
    info, recorder, cucm = bib_info(msg), dst, src
    if info is None:
        info, recorder, cucm = bib_info(msg, "to"), src, dst
    if info is None:
        return False  # no BiB call's: a stray message
    table._new_dialog(fx, msg, ts, cucm, recorder, transport, info)
    d = table.dialogs[msg.call_id]
    d.state = dialog_transition(d.state, DialogEvent.BYE)
    d.call.joined_late, d.call.joined_by = True, d.call.joined_by or JOINED_BY_BYE
    table.counters["dialogs_joined_at_bye"] += 1
    fx.append(ByeUnseen(d.call, d.role, recorder[0], ts))
    return True


def adopt(
    table: CallTable, call: Call, role: str, key: int, codec: str, pt: int, hidden: str, guessed: bool
) -> list[Effect]:
    """Give ``call``'s ``role`` the orphan stream at ``key``, seen with payload type ``pt``
    (``codec``, "" if no static type says it): a dialog joined at its BYE, or a call of
    RTP alone. ``hidden``: why its packets are taken as SRTP that cannot be decrypted."""
    fx: list[Effect] = []
    d = call.dialogs.get(role)
    if d is None:
        d = call.dialogs[role] = Dialog(f"{call.id}-{role}", role, call, 0, DialogState.CONFIRMED)
    d.codec, d.audio_pt, d.secure, d.hidden = codec, pt, bool(hidden), hidden
    call.channels_guessed = call.channels_guessed or guessed
    table._map(fx, d, key)
    return fx


def rtp_call(table: CallTable, first_ns: int, recorder: str, what: str) -> tuple[Call, list[Effect]]:
    """A call of orphan streams that no SIP ever claimed (SIP over TLS, a mirror without its
    SIP): no parties, its streams to ``recorder`` given by ``adopt``."""
    cid = make_call_id(first_ns, "rtp", what)
    call = Call(cid, ("rtp", what), first_ns, Party(), Party(), recorder, 0, "", joined_late=True)
    call.joined_by = JOINED_BY_RTP
    table.calls[cid] = call
    return call, [CallStarted(call)]


def end_late(table: CallTable, call: Call, at_ns: int, reason: EndReason) -> list[Effect]:
    """End a call joined at its BYE (or of RTP alone) once its streams are placed."""
    fx: list[Effect] = []
    for d in call.dialogs.values():
        d.state = dialog_transition(d.state, DialogEvent.BYE)
    table._end(fx, call, reason, at_ns)
    return fx


# a standby taking the primary's address over ---------------------------------------------------
TAKEOVER = "standby_takeover"


def taken_over(table: CallTable, addr: bytes, ts: int, detail: str, answered: set) -> list[Effect]:
    """A standby took over the recorder address ``addr`` (the primary's VIP) at ``ts``: each call
    still up with its media there, which that standby did not answer itself (its SIP Call-IDs in
    ``answered``), lost its recorder then. Evidence, once per call (``primary.failed_at``)."""
    fx: list[Effect] = []
    base = flow_key(addr, 0)
    for key, d in list(table.media.items()):
        call = d.call
        if not 0 <= key - base < 65536 or call.state is CallState.ENDED:
            continue
        if any(x.call_id in answered for x in call.dialogs.values()) or any(e.kind == TAKEOVER for e in call.evidence):
            continue
        item = EvidenceItem(TAKEOVER, ts, detail)
        call.evidence.append(item)
        fx.append(Evidence(call, item))
    return fx
