"""Evidence that the primary failed (capture/sip/evidence.py): unanswered retransmissions, withdrawn
by a late response, forgotten after 64*T1; records that survive a state file."""

from types import SimpleNamespace

from capture.sip.evidence import FORGET_NS, EvidenceItem, Transactions, icmp_evidence

NS = 1_000_000_000


def test_a_retransmission_without_response_is_evidence_until_a_response_comes():
    call = SimpleNamespace(evidence=[])
    t = Transactions()
    assert t.request(("c", 102, "BYE"), 5 * NS, "BYE", call) is None
    to, item = t.request(("c", 102, "BYE"), 5 * NS + NS // 2, "BYE", call)
    assert to is call
    assert item == EvidenceItem("bye_unanswered", 5 * NS, item.detail) and call.evidence == [item]
    assert t.request(("c", 102, "BYE"), 6 * NS, "BYE", call) is None  # said once
    t.response(("c", 102, "BYE"))
    assert call.evidence == []


def test_requests_outside_calls_are_no_evidence_and_old_ones_are_forgotten():
    t = Transactions()
    t.request(("x", 1, "OPTIONS"), 0, "OPTIONS", None)
    assert t.request(("x", 1, "OPTIONS"), NS, "OPTIONS", None) is None
    t.purge(FORGET_NS + 1)
    assert t.txns == {}


def test_an_invite_transaction_opened_before_its_call_belongs_to_it():
    call = SimpleNamespace(evidence=[])
    t = Transactions()
    t.request(("i", 101, "INVITE"), 0, "INVITE", None)
    t.belongs_to(("i", 101, "INVITE"), call)
    assert t.request(("i", 101, "INVITE"), NS // 2, "INVITE", call) == (call, call.evidence[0])
    assert call.evidence[0].kind == "sip_unanswered"


def test_items_round_trip_through_state():
    item = icmp_evidence("icmp_port_unreachable", 7, "198.18.0.2", 20000)
    assert EvidenceItem.from_state(item.to_state()) == item
    assert item.detail == "198.18.0.2 answered traffic to 20000 with icmp port unreachable"
