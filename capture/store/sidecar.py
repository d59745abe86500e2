"""The sidecar: one typed record per call, the output contract users script against.

``DIR/calls/YYYY/MM/DD/ID.json`` is ``Sidecar.to_dict()`` as JSON; the catalog's row and its
indexed columns come from it (``catalog_row``); ``shadowrec calls --json`` prints it; the API's
schema is this record. Times are ISO 8601 UTC with milliseconds (``iso``). The records are plain (not frozen)
dataclasses: a frozen one costs 1.2 µs more to build, and a sidecar is built every time it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from capture.clock import utc
from capture.sip.calls import EndReason, Party
from capture.wire.frame import key_to_str

NS = 1_000_000_000


def iso(ns: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds (the output contract's times)."""
    if ns is None:
        return None
    return f"{utc(ns // NS, '%Y-%m-%dT%H:%M:%S')}.{(ns % NS) // 1_000_000:03d}Z"


@dataclass
class EvidenceRecord:
    """Why shadowrec believes the primary recorder failed (see ``capture.sip.evidence``)."""

    kind: str
    at: str | None
    detail: str


@dataclass
class Primary:
    address: str
    port: int
    failed_at: str | None = field(metadata={"description": "the earliest evidence; null if none"})
    evidence: list[EvidenceRecord]


@dataclass
class Stream:
    """One RTP stream of the call (a re-keyed voice has one per key). ``lost`` follows RFC 3550
    (expected - received); ``late`` counts packets that came after their audio was written."""

    role: str
    ssrc: int | None
    src: str | None
    dst: str
    packets: int
    lost: int
    duplicates: int
    reordered: int
    late: int
    malformed: int
    ssrc_changes: int
    resyncs: int
    first_at: str | None
    last_at: str | None

    @classmethod
    def from_stats(cls, role: str, key: int, s: dict[str, Any]) -> Stream:
        """From the engine's ``stream_stats`` of the stream keyed ``key``."""
        return cls(
            role,
            s["ssrc"],
            key_to_str(s["src_key"]) if s["src_key"] else None,
            key_to_str(key),
            s["packets"],
            s["lost"],
            s["duplicates"],
            s["reordered"],
            s["late"],
            s["malformed"],
            s["ssrc_changes"],
            s["resyncs"],
            iso(s["first_ns"] or None),
            iso(s["last_ns"] or None),
        )


@dataclass
class TelephoneEvent:
    """An RFC 4733 event (a DTMF digit): not audio. Its duration and end flag grow as it goes on."""

    role: str
    event: int
    digit: str | None
    at: str | None
    duration_ms: int = 0
    ended: bool = False


@dataclass
class Sidecar:
    """Everything known of one recorded call."""

    id: str
    kind: str
    state: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    end_reason: EndReason | None
    codec: str | None
    decoded: bool
    near: Party
    far: Party
    primary: Primary
    streams: list[Stream]
    events: list[TelephoneEvent]
    wav: str
    pcap: str | None
    previous: str | None
    transport: str
    sample_rate: int
    channels: list[str]
    answered_by: str
    sip_call_ids: dict[str, str]
    frames: int
    cluster: str = field(
        default="",
        metadata={"description": "CUCM's cluster id (x-nearendclusterid): with near.refci and far.refci, the "
                  "call's identity across appliances (the fleet catalog)"},
    )  # fmt: skip
    joined_late: bool = field(
        default=False,
        metadata={"description": "its INVITE was not seen (shadowrec started mid-call): joined at a re-INVITE, "
                  "at its BYE, or of RTP alone (joined_by), recorded from the first of its RTP packets seen"},
    )  # fmt: skip
    joined_by: str = field(
        default="",
        metadata={"description": "how a call joined late was found: reinvite, bye (its streams: those that "
                  "stopped at the BYE), or rtp (no SIP seen: SIP over TLS, a mirror without it; no parties)"},
    )  # fmt: skip
    channels_guessed: bool = field(
        default=False,
        metadata={"description": "which stream is near and which far was not in the SIP seen (joined at a BYE, "
                  "or RTP alone): the lower recorder port is taken as the near end's"},
    )  # fmt: skip
    encrypted: bool = field(
        default=False,
        metadata={"description": "SRTP whose audio could not be recovered (srtp says why): the WAV is silence there"},
    )
    srtp: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "description": "per SRTP stream (near, far): suite, decrypted, auth_failures, replays, and reason "
            "(why it could not be decrypted, else null)"
        },
    )
    decoder: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "a codec decoded after the call from its packets (FFmpeg): codecs, and per stream "
                  "packets, duplicates, comfort_noise, errors"},
    )  # fmt: skip
    encoding: str = field(
        default="pcm16",
        metadata={"description": "how the WAV stores samples: pcm16, or the call's G.711 law (ulaw, alaw)"},
    )
    disk_gap_s: float = field(
        default=0.0,
        metadata={"description": "audio not written because the disk was full: silence in the WAV"},
    )
    delivery: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "description": "per archive target (shadowrec archive): state (pending, confirmed), attempts, "
            "last_error, bytes, sha256, confirmed_at (Unix seconds)"
        },
    )

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)``, built directly: asdict deep-copies every value and cost
        0.2 s of a 1,000-call record run (tests/test_sidecar.py checks the two are equal)."""
        d = dict(self.__dict__)
        d["near"], d["far"] = dict(self.near.__dict__), dict(self.far.__dict__)
        d["primary"] = dict(self.primary.__dict__, evidence=[dict(e.__dict__) for e in self.primary.evidence])
        d["streams"] = [dict(x.__dict__) for x in self.streams]
        d["events"] = [dict(x.__dict__) for x in self.events]
        d["channels"] = list(self.channels)
        d["sip_call_ids"] = dict(self.sip_call_ids)
        d["delivery"] = {k: dict(v) for k, v in self.delivery.items()}
        d["srtp"] = {k: dict(v) for k, v in self.srtp.items()}
        d["decoder"] = dict(self.decoder)
        return d

    def catalog_row(self, text: str) -> tuple:
        """The catalog's row: its indexed columns, and ``text`` (this record as JSON)."""
        return row_of(self.to_dict(), text)


def row_of(d: dict[str, Any], text: str) -> tuple:
    """The catalog's row of a sidecar (as a dict): its indexed columns, and ``text`` (it as JSON)."""
    return (
        d["id"],
        d["started_at"],
        d["ended_at"],
        d["state"],
        d["end_reason"],
        d["near"]["dn"],
        d["far"]["dn"],
        d["near"]["device"].upper(),
        d["far"]["device"].upper(),
        1 if d["primary"]["failed_at"] else 0,
        text,
    )
