"""One recording dialog (RFC 3261, with RFC 6026's Accepted state) as the recorder's side sees
it: an Enum of states named as the RFCs name them and one transition function."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from capture.sip.sdp import Crypto

if TYPE_CHECKING:
    from capture.sip.calls import Call


class DialogState(Enum):
    """States of one recording dialog as the recorder's side of RFC 3261/6026 names them."""

    CALLING = "Calling"  # INVITE seen, nothing back yet
    PROCEEDING = "Proceeding"  # provisional response seen
    ACCEPTED = "Accepted"  # 2xx seen, ACK not yet (RFC 6026)
    CONFIRMED = "Confirmed"  # ACK seen: the dialog is confirmed
    TERMINATED = "Terminated"  # BYE, CANCEL, a failure response or a timeout


class DialogEvent(Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "3xx-6xx"
    ACK = "ACK"
    BYE = "BYE"
    CANCEL = "CANCEL"
    TIMEOUT = "timeout"


_TRANSITIONS = {
    (DialogState.CALLING, DialogEvent.PROVISIONAL): DialogState.PROCEEDING,
    (DialogState.CALLING, DialogEvent.SUCCESS): DialogState.ACCEPTED,
    (DialogState.PROCEEDING, DialogEvent.SUCCESS): DialogState.ACCEPTED,
    (DialogState.ACCEPTED, DialogEvent.ACK): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogEvent.SUCCESS): DialogState.CONFIRMED,  # re-INVITE / 2xx retransmission
    (DialogState.ACCEPTED, DialogEvent.SUCCESS): DialogState.ACCEPTED,
}


def dialog_transition(state: DialogState, event: DialogEvent) -> DialogState:
    """The one transition function of a dialog; events that do not apply leave it as it is."""
    if state is DialogState.TERMINATED:
        return state
    if event in (DialogEvent.BYE, DialogEvent.TIMEOUT):
        return DialogState.TERMINATED
    if event in (DialogEvent.FAILURE, DialogEvent.CANCEL) and state in (DialogState.CALLING, DialogState.PROCEEDING):
        return DialogState.TERMINATED
    return _TRANSITIONS.get((state, event), state)


@dataclass
class Dialog:
    """One of a BiB call's two dialogs, and what its SDP said of the media."""

    call_id: str
    role: str  # "near" | "far"
    call: Call
    invite_cseq: int
    state: DialogState = DialogState.CALLING
    key: int | None = None  # flow key of the recorder's RTP address
    recorder_media: str = ""
    phone_addr: str = ""
    codec: str = ""
    audio_pt: int = -1
    event_pt: int = -1
    secure: bool = False  # the media is SRTP (RTP/SAVP)
    crypto: Crypto | None = None  # the key the phone sends with (CUCM's SDP), if one we can use
    offered: tuple[Crypto, ...] = ()  # every a=crypto of CUCM's SDP (why none could be used)
    fmtp: str = ""  # the audio payload type's a=fmtp parameters (AMR: octet-align)
    hidden: str = ""  # no SDP seen (a dialog joined at its BYE): why its packets are taken as undecryptable SRTP
