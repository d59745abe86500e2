"""Cisco BiB recording calls: dialogs, pairing and media mapping. Pure logic, no I/O.

Feed it SIP messages (``on_sip``), ICMP errors (``on_icmp``) and the passing of time
(``tick``); it answers with *effects* (CallStarted, MediaMapped, CallEnded, Evidence) that
the pipeline carries out. Time is always the packet's capture time, passed in.

A BiB call is two dialogs from CUCM to the recorder, one per voice. The From URI of each
INVITE starts with ``x-nearend`` or ``x-farend`` and carries the same x-refci /
x-farendrefci / cluster parameters, which pair them. Delayed offer: the recorder's 2xx
carries the SDP offer (its address and port: where the phone will send RTP, hence the
flow key), CUCM's ACK the answer (the phone's address and the codec).
"""
from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import socket
from dataclasses import dataclass, field
from enum import Enum

from capture.sip import sdp as sdp_mod
from capture.clock import utc
from capture.errors import ParseError
from capture.wire.frame import flow_key

NS = 1_000_000_000
TIMER_B_NS = 32 * NS            # RFC 3261 Timer B: an INVITE left unanswered this long is dead
TXN_FORGET_NS = 64 * NS


class DialogState(Enum):
    """States of one recording dialog as the recorder's side of RFC 3261/6026 names them."""

    CALLING = "Calling"          # INVITE seen, nothing back yet
    PROCEEDING = "Proceeding"    # provisional response seen
    ACCEPTED = "Accepted"        # 2xx seen, ACK not yet (RFC 6026)
    CONFIRMED = "Confirmed"      # ACK seen: the dialog is confirmed
    TERMINATED = "Terminated"    # BYE, CANCEL, a failure response or a timeout


class DialogEvent(Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "3xx-6xx"
    ACK = "ACK"
    BYE = "BYE"
    CANCEL = "CANCEL"
    TIMEOUT = "timeout"


_DIALOG_TRANSITIONS = {
    (DialogState.CALLING, DialogEvent.PROVISIONAL): DialogState.PROCEEDING,
    (DialogState.CALLING, DialogEvent.SUCCESS): DialogState.ACCEPTED,
    (DialogState.PROCEEDING, DialogEvent.SUCCESS): DialogState.ACCEPTED,
    (DialogState.ACCEPTED, DialogEvent.ACK): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogEvent.SUCCESS): DialogState.CONFIRMED,   # re-INVITE / 2xx retransmission
    (DialogState.ACCEPTED, DialogEvent.SUCCESS): DialogState.ACCEPTED,
}


def dialog_transition(state: DialogState, event: DialogEvent) -> DialogState:
    """The one transition function of a dialog; events that do not apply leave it as it is."""
    if state is DialogState.TERMINATED:
        return state
    if event in (DialogEvent.BYE, DialogEvent.TIMEOUT):
        return DialogState.TERMINATED
    if event in (DialogEvent.FAILURE, DialogEvent.CANCEL) and state in (
            DialogState.CALLING, DialogState.PROCEEDING):
        return DialogState.TERMINATED
    return _DIALOG_TRANSITIONS.get((state, event), state)


class CallState(Enum):
    SETUP = "setup"          # at least one INVITE, no media mapped yet
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


@dataclass
class Party:
    device: str = ""
    dn: str = ""
    refci: str = ""


@dataclass
class Dialog:
    call_id: str
    role: str                      # "near" | "far"
    call: "Call"
    invite_cseq: int
    state: DialogState = DialogState.CALLING
    key: int | None = None         # flow key of the recorder's RTP address
    recorder_media: str = ""
    phone_addr: str = ""
    codec: str = ""
    audio_pt: int = -1
    event_pt: int = -1


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
    state: CallState = CallState.SETUP
    dialogs: dict = field(default_factory=dict)      # role -> Dialog
    ended_ns: int | None = None
    end_reason: str | None = None
    evidence: list = field(default_factory=list)     # dicts: kind, at_ns, detail

    @property
    def failed_ns(self):
        return min((e["at_ns"] for e in self.evidence), default=None)

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


@dataclass(frozen=True)
class MediaUnmapped:
    call: Call
    role: str
    key: int


@dataclass(frozen=True)
class CallEnded:
    call: Call
    reason: str        # bye | rtp_timeout | capture_end | shutdown | rejected
    at_ns: int


@dataclass(frozen=True)
class Evidence:
    call: Call
    kind: str
    at_ns: int
    detail: str


@dataclass
class _Txn:
    first_ns: int
    method: str
    call: Call | None
    sends: int = 1
    answered: bool = False
    evidence: dict | None = None


def bib_info(msg):
    """(role, pair key, near Party, far Party) from a BiB INVITE's From URI, or None."""
    fr = msg.from_
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
    key = (p.get("x-nearendclusterid", "").lower(), near.refci, far.refci,
           near.device if not near.refci else "")
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
        self.calls: dict[str, Call] = {}          # calls not ended
        self.txns: dict[tuple, _Txn] = {}
        self.timers: list = []                    # heap of (due_ns, seq, call): see ``tick``
        self._seq = itertools.count()
        self.next_purge = 0
        self.counters = {"sip_messages": 0, "non_bib_invites": 0, "stray_messages": 0,
                         "rejected_calls": 0}

    # SIP --------------------------------------------------------------------------------
    def on_sip(self, msg, ts: int, src: tuple, dst: tuple, transport: str) -> list:
        """Apply one parsed SIP message seen going from ``src`` to ``dst`` (ip, port)."""
        self.counters["sip_messages"] += 1
        cid = msg.call_id
        num, method = msg.cseq
        fx: list = []
        d = self.dialogs.get(cid)
        if msg.is_request:
            if msg.method != "ACK":
                self._txn_request(fx, (cid, num, method), ts, msg.method, d.call if d else None)
            if msg.method == "INVITE" and d is None and msg.to.param("tag") is None:
                self._new_dialog(fx, msg, ts, dst, transport)
                d = self.dialogs.get(cid)
                if d is not None and msg.body:
                    self._cucm_sdp(fx, d, msg.body)
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
                self._end(fx, d.call, "bye", ts)
            elif msg.method == "CANCEL":
                d.state = dialog_transition(d.state, DialogEvent.CANCEL)
                self._dialog_gone(fx, d, ts)
            elif msg.method in ("INVITE", "UPDATE") and msg.body:
                self._cucm_sdp(fx, d, msg.body)
            return fx
        # responses
        txn = self.txns.get((cid, num, method))
        if txn is not None and not txn.answered:
            txn.answered = True
            if txn.evidence is not None and txn.call is not None:
                # the primary was slow, not dead: the retransmission proved nothing
                if txn.evidence in txn.call.evidence:
                    txn.call.evidence.remove(txn.evidence)
        if d is None:
            self.counters["stray_messages"] += 1
            return fx
        if method in ("INVITE", "UPDATE"):
            code = msg.status
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

    def _new_dialog(self, fx, msg, ts, dst, transport):
        info = bib_info(msg)
        if info is None:
            self.counters["non_bib_invites"] += 1
            return
        role, pkey, near, far = info
        call = self.pending.get(pkey)
        if call is None or role in call.dialogs or call.state is CallState.ENDED:
            cid = make_call_id(ts, near.refci or far.refci, msg.call_id)
            call = Call(cid, pkey, ts, near, far, dst[0], dst[1], transport,
                        previous=self.last_of_pair.get(pkey))
            self.pending[pkey] = call
            self.last_of_pair[pkey] = cid
            self.calls[cid] = call
            self.schedule(call, ts + min(TIMER_B_NS, self.rtp_timeout_ns) + 1)
            fx.append(CallStarted(call))
        else:
            self.pending.pop(pkey, None)
        # the INVITE's transaction was opened before its call existed
        txn = self.txns.get((msg.call_id, msg.cseq[0], "INVITE"))
        if txn is not None:
            txn.call = call
        d = Dialog(msg.call_id, role, call, msg.cseq[0])
        call.dialogs[role] = d
        self.dialogs[msg.call_id] = d

    def _recorder_sdp(self, fx, d: Dialog, body: bytes):
        try:
            m = sdp_mod.parse(body).audio()
        except ParseError:
            return
        if m is None or m.address is None:
            return
        try:
            addr = packed_address(m.address)
        except ValueError:
            return
        key = flow_key(addr, m.port)
        if d.codec == "" and m.fmts:
            # until the ACK's answer arrives, take the offer's first audio codec
            first = next((p for p in m.fmts if m.encoding(p)[0] not in ("TELEPHONE-EVENT", "CN")), m.fmts[0])
            d.codec, d.audio_pt = m.encoding(first)[0], first
            ev = m.pt_of("telephone-event")
            d.event_pt = -1 if ev is None else ev
        d.recorder_media = f"{m.address}:{m.port}"
        self._map(fx, d, key)

    def _cucm_sdp(self, fx, d: Dialog, body: bytes):
        try:
            m = sdp_mod.parse(body).audio()
        except ParseError:
            return
        if m is None:
            return
        d.phone_addr = m.address or d.phone_addr
        audio = [p for p in m.fmts if m.encoding(p)[0] not in ("TELEPHONE-EVENT", "CN")]
        if audio:
            d.audio_pt = audio[0]
            d.codec = m.encoding(audio[0])[0]
        ev = m.pt_of("telephone-event")
        d.event_pt = -1 if ev is None else ev
        if d.key is not None:
            self._map(fx, d, d.key)

    def _map(self, fx, d: Dialog, key: int):
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
        fx.append(MediaMapped(d.call, d.role, key, old if old != key else None,
                              d.codec, d.audio_pt, d.event_pt))

    def _dialog_gone(self, fx, d: Dialog, ts: int):
        call = d.call
        if call.state is CallState.ENDED:
            return
        live = [x for x in call.dialogs.values() if x.state is not DialogState.TERMINATED]
        if not live:
            if call.state is CallState.SETUP:
                self.counters["rejected_calls"] += 1
                self._end(fx, call, "rejected", ts)
            else:
                self._end(fx, call, "bye", ts)

    def _end(self, fx, call: Call, reason: str, ts: int):
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
    def _txn_request(self, fx, tkey, ts, method, call):
        txn = self.txns.get(tkey)
        if txn is None:
            self.txns[tkey] = _Txn(ts, method, call)
            return
        txn.sends += 1
        if txn.answered or txn.evidence is not None or txn.call is None:
            return
        kind = "bye_unanswered" if method == "BYE" else "sip_unanswered"
        ev = {"kind": kind, "at_ns": txn.first_ns,
              "detail": f"{method} sent to the primary was retransmitted with no response"}
        txn.evidence = ev
        txn.call.evidence.append(ev)
        fx.append(Evidence(txn.call, kind, txn.first_ns, ev["detail"]))

    def on_icmp(self, ts: int, kind: str, quoted_dst: bytes, quoted_port: int, reporter: str) -> list:
        """An ICMP error quoting a datagram sent to ``quoted_dst:quoted_port``."""
        fx: list = []
        d = self.media.get(flow_key(quoted_dst, quoted_port))
        calls = []
        if d is not None:
            calls = [d.call]
        else:
            try:
                addr = str(ipaddress.ip_address(quoted_dst))
            except ValueError:
                return fx
            calls = [c for c in self.calls.values()
                     if c.primary_address == addr and c.primary_port == quoted_port]
        for call in calls:
            if any(e["kind"] == kind for e in call.evidence):
                continue
            ev = {"kind": kind, "at_ns": ts,
                  "detail": f"{reporter} answered traffic to {quoted_port} with {kind.replace('_', ' ')}"}
            call.evidence.append(ev)
            fx.append(Evidence(call, kind, ts, ev["detail"]))
        return fx

    # time ---------------------------------------------------------------------------------
    def schedule(self, call: Call, due_ns: int) -> None:
        """Look at ``call`` again at the first tick at or after ``due_ns`` (see ``tick``)."""
        heapq.heappush(self.timers, (due_ns, next(self._seq), call))

    def tick(self, now: int, last_rtp) -> list:
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
        fx: list = []
        due = []
        while self.timers and self.timers[0][0] <= now:
            call = heapq.heappop(self.timers)[2]
            if self.calls.get(call.id) is call:             # not ended meanwhile
                due.append(call)
        due.sort(key=lambda c: (c.started_ns, c.id))        # the same order whatever the heap did
        for call in due:
            if call.state is CallState.SETUP:
                if now - call.started_ns > TIMER_B_NS:
                    for d in call.dialogs.values():
                        d.state = dialog_transition(d.state, DialogEvent.TIMEOUT)
                    self.counters["rejected_calls"] += 1
                    self._end(fx, call, "rejected", now)
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
                self._end(fx, call, "rtp_timeout", last)
            else:
                self.schedule(call, last + self.rtp_timeout_ns + 1)
        if now >= self.next_purge:
            self.next_purge = now + TXN_FORGET_NS // 4
            for k in [k for k, t in self.txns.items() if now - t.first_ns > TXN_FORGET_NS]:
                del self.txns[k]
            for k in [k for k, d in self.dialogs.items()
                      if d.call.state is CallState.ENDED and now - (d.call.ended_ns or now) > TXN_FORGET_NS]:
                del self.dialogs[k]
        return fx

    def end_all(self, now: int, reason: str) -> list:
        """End every call still open (end of capture, shutdown)."""
        fx: list = []
        for call in list(self.calls.values()):
            if call.state is CallState.SETUP:
                self._end(fx, call, "rejected", now)
            else:
                self._end(fx, call, reason, now)
        return fx


# restart: the table's open calls as plain data --------------------------------------------
def call_to_dict(call: Call) -> dict:
    return {
        "id": call.id, "pair_key": list(call.pair_key), "started_ns": call.started_ns,
        "near": vars(call.near), "far": vars(call.far), "primary_address": call.primary_address,
        "primary_port": call.primary_port, "transport": call.transport, "previous": call.previous,
        "state": call.state.value, "evidence": call.evidence,
        "dialogs": {r: {"call_id": d.call_id, "invite_cseq": d.invite_cseq, "state": d.state.value,
                        "key": d.key, "recorder_media": d.recorder_media, "phone_addr": d.phone_addr,
                        "codec": d.codec, "audio_pt": d.audio_pt, "event_pt": d.event_pt}
                    for r, d in call.dialogs.items()},
    }


def restore_calls(table: CallTable, items: list) -> list:
    """Put calls saved by ``call_to_dict`` back into ``table``; returns them."""
    out = []
    for c in items:
        call = Call(c["id"], tuple(c["pair_key"]), c["started_ns"], Party(**c["near"]), Party(**c["far"]),
                    c["primary_address"], c["primary_port"], c["transport"], c["previous"],
                    CallState(c["state"]), evidence=list(c["evidence"]))
        for role, d in c["dialogs"].items():
            dl = Dialog(d["call_id"], role, call, d["invite_cseq"], DialogState(d["state"]), d["key"],
                        d["recorder_media"], d["phone_addr"], d["codec"], d["audio_pt"], d["event_pt"])
            call.dialogs[role] = dl
            table.dialogs[dl.call_id] = dl
            if dl.key is not None:
                table.media[dl.key] = dl
        table.calls[call.id] = call
        table.schedule(call, 0)              # looked at by the next tick
        table.last_of_pair[call.pair_key] = call.id
        if len(call.dialogs) < 2 and call.state is not CallState.ENDED:
            table.pending[call.pair_key] = call
        out.append(call)
    return out
