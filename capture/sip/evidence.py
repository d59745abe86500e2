"""Evidence that the primary recorder failed during a call, as the wire shows it.

Two sources: an ICMP destination-unreachable error quoting the call's RTP or the primary's SIP
port (``capture.wire.icmp``), and a request to the primary retransmitted with no response
(``Transactions``: it is withdrawn if a response comes after all). Each item is a record; the
call's ``failed_at`` is its earliest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000
FORGET_NS = 64 * NS  # RFC 3261 64*T1: a transaction is over by then


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence: its kind (``icmp_port_unreachable``, ``sip_unanswered``, ...), when
    (capture time, ns) and a sentence for people."""

    kind: str
    at_ns: int
    detail: str

    def to_state(self) -> dict[str, Any]:
        """As saved in a state file (see ``capture.store.resume``)."""
        return {"kind": self.kind, "at_ns": self.at_ns, "detail": self.detail}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> EvidenceItem:
        return cls(str(d["kind"]), int(d["at_ns"]), str(d["detail"]))


def icmp_evidence(kind: str, at_ns: int, reporter: str, port: int) -> EvidenceItem:
    return EvidenceItem(kind, at_ns, f"{reporter} answered traffic to {port} with {kind.replace('_', ' ')}")


@dataclass
class _Txn:
    first_ns: int
    method: str
    call: Any  # the Call the request belongs to, None for requests outside calls
    sends: int = 1
    answered: bool = False
    evidence: EvidenceItem | None = None


class Transactions:
    """Requests seen on the wire, by (Call-ID, CSeq number, method): a retransmission of one that
    got no response is evidence; a response that comes after all withdraws it."""

    def __init__(self) -> None:
        self.txns: dict[tuple, _Txn] = {}

    def request(self, key: tuple, ts: int, method: str, call: Any) -> tuple[Any, EvidenceItem] | None:
        """A request was seen; returns (its call, the new evidence against the call's primary), if any.
        The call is the transaction's: it may have been given later (``belongs_to``)."""
        txn = self.txns.get(key)
        if txn is None:
            self.txns[key] = _Txn(ts, method, call)
            return None
        txn.sends += 1
        if txn.answered or txn.evidence is not None or txn.call is None:
            return None
        kind = "bye_unanswered" if method == "BYE" else "sip_unanswered"
        txn.evidence = EvidenceItem(
            kind, txn.first_ns, f"{method} sent to the primary was retransmitted with no response"
        )
        txn.call.evidence.append(txn.evidence)
        return txn.call, txn.evidence

    def belongs_to(self, key: tuple, call: Any) -> None:
        """The request ``key`` was opened before its call existed (the INVITE that created it)."""
        txn = self.txns.get(key)
        if txn is not None:
            txn.call = call

    def response(self, key: tuple) -> None:
        """A response to ``key``: the primary was slow, not dead; its evidence is withdrawn."""
        txn = self.txns.get(key)
        if txn is None or txn.answered:
            return
        txn.answered = True
        if txn.evidence is not None and txn.call is not None and txn.evidence in txn.call.evidence:
            txn.call.evidence.remove(txn.evidence)

    def purge(self, now: int) -> None:
        """Forget transactions older than 64*T1."""
        for k in [k for k, t in self.txns.items() if now - t.first_ns > FORGET_NS]:
            del self.txns[k]
