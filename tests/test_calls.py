"""Call logic from real CUCM messages: pairing, media mapping, endings, evidence. No I/O."""

import pytest
from conftest import sip_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.sip import message as sip
from capture.sip.calls import (
    TIMER_B_NS,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    CallTable,
    DialogEvent,
    DialogState,
    Evidence,
    MediaMapped,
    call_transition,
    dialog_transition,
    make_call_id,
)
from capture.wire.frame import flow_key

CUCM = ("10.48.32.90", 5060)
REC = ("10.48.32.170", 5060)
NS = 10**9


def msg(name, **replace):
    raw = sip_sample(name)
    for a, b in replace.items():
        raw = raw.replace(a.encode(), b.encode())
    return sip.parse(raw)


def near_setup(t, table, t0=0):
    fx = table.on_sip(msg("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt"), t0, CUCM, REC, "udp")
    fx += table.on_sip(msg("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt"), t0 + NS // 100, REC, CUCM, "udp")
    fx += table.on_sip(msg("bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt"), t0 + NS // 50, CUCM, REC, "udp")
    return fx


def test_dialog_and_call_transition_functions():
    s = DialogState.CALLING
    for ev, want in [
        (DialogEvent.PROVISIONAL, DialogState.PROCEEDING),
        (DialogEvent.SUCCESS, DialogState.ACCEPTED),
        (DialogEvent.ACK, DialogState.CONFIRMED),
        (DialogEvent.CANCEL, DialogState.CONFIRMED),
        (DialogEvent.BYE, DialogState.TERMINATED),
        (DialogEvent.SUCCESS, DialogState.TERMINATED),
    ]:
        s = dialog_transition(s, ev)
        assert s is want
    assert dialog_transition(DialogState.PROCEEDING, DialogEvent.FAILURE) is DialogState.TERMINATED
    assert call_transition(CallState.SETUP, CallEvent.MEDIA) is CallState.RECORDING
    assert call_transition(CallState.ENDED, CallEvent.MEDIA) is CallState.ENDED


def test_pairs_near_and_far_dialogs_from_real_cucm_messages():
    table = CallTable()
    fx = near_setup(None, table)
    started = [e for e in fx if isinstance(e, CallStarted)]
    mapped = [e for e in fx if isinstance(e, MediaMapped)]
    assert len(started) == 1
    call = started[0].call
    assert (call.near.device, call.near.dn, call.near.refci) == ("SEP001795BDD16B", "9110001", "38960750")
    assert (call.far.device, call.far.dn, call.far.refci) == ("SEP0018195AA209", "9110006", "38960749")
    assert call.primary_address == "10.48.32.170"
    # the key is the recorder's address and port from the 200 OK, never the ACK's placeholder 4000
    assert mapped[-1].key == flow_key(bytes([10, 48, 32, 170]), 6000) and mapped[-1].codec == "PCMU"
    assert mapped[-1].event_pt == 101
    assert call.dialogs["near"].state is DialogState.CONFIRMED and call.dialogs["near"].phone_addr == "10.48.32.33"
    # far-end INVITE, device name in another case: same call
    far = msg("bib_04_cucm10.5_udp_INVITE_farend_delayed_offer.txt", sep0018195aa209="SEP0018195AA209")
    fx = table.on_sip(far, NS // 10, CUCM, REC, "udp")
    assert not [e for e in fx if isinstance(e, CallStarted)]
    assert call.dialogs["far"].call_id.startswith("abbb8e00-4291f775-204d")


def test_first_bye_ends_the_call_and_a_new_pair_links_back():
    table = CallTable()
    call = near_setup(None, table)[0].call
    bye = sip.parse(
        sip_sample("bib_05_cucm10.5_udp_BYE_farend_reason_q850_cause47.txt").replace(
            b"ef7acf80-43d153e4-51-5a20300e", b"abbb8e00-4291f775-204c-5a20300e"
        )
    )
    fx = table.on_sip(bye, 5 * NS, CUCM, REC, "udp")
    ended = [e for e in fx if isinstance(e, CallEnded)]
    assert ended and ended[0].reason == "bye" and ended[0].at_ns == 5 * NS and call.state is CallState.ENDED
    # resume after hold: CUCM opens a new pair with the same refci -> a new call, linked
    fx = table.on_sip(
        msg("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt", **{"abbb8e00-4291f775-204c": "new-dialog-1"}),
        9 * NS,
        CUCM,
        REC,
        "udp",
    )
    new = [e for e in fx if isinstance(e, CallStarted)][0].call
    assert new.id != call.id and new.previous == call.id


def test_reinvite_moves_media_to_a_new_port():
    table = CallTable()
    near_setup(None, table)
    ok = msg(
        "bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt",
        **{"CSeq: 101 INVITE": "CSeq: 102 INVITE", "m=audio 6000": "m=audio 6002"},
    )
    fx = table.on_sip(ok, 3 * NS, REC, CUCM, "udp")
    m = [e for e in fx if isinstance(e, MediaMapped)][0]
    assert m.key == flow_key(bytes([10, 48, 32, 170]), 6002) and m.old_key == flow_key(bytes([10, 48, 32, 170]), 6000)


def test_rejected_invite_records_nothing():
    table = CallTable()
    table.on_sip(msg("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt"), 0, CUCM, REC, "udp")
    busy = msg("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt", **{"200 OK": "486 Busy Here"})
    fx = table.on_sip(busy, 1, REC, CUCM, "udp")
    assert [e.reason for e in fx if isinstance(e, CallEnded)] == ["rejected"]


def test_unanswered_retransmission_is_evidence_until_answered():
    table = CallTable()
    call = near_setup(None, table)[0].call
    bye = msg(
        "bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt",
        **{"INVITE sip:8675309@10.48.32.170:5060": "BYE sip:10.48.32.170:5060", "101 INVITE": "102 BYE"},
    )
    table.on_sip(bye, 10 * NS, CUCM, REC, "udp")
    fx = table.on_sip(bye, 10 * NS + NS // 2, CUCM, REC, "udp")
    ev = [e for e in fx if isinstance(e, Evidence)]
    assert ev and ev[0].kind == "bye_unanswered" and call.failed_ns == 10 * NS


def test_icmp_for_a_calls_rtp_port_marks_that_call():
    table = CallTable()
    call = near_setup(None, table)[0].call
    fx = table.on_icmp(7 * NS, "icmp_port_unreachable", bytes([10, 48, 32, 170]), 6000, "10.48.32.170")
    assert [e.kind for e in fx] == ["icmp_port_unreachable"] and call.failed_ns == 7 * NS
    assert table.on_icmp(8 * NS, "icmp_port_unreachable", bytes([10, 48, 32, 170]), 6000, "x") == []


def test_rtp_timeout_and_setup_timeout():
    table = CallTable(rtp_timeout_s=5)
    call = near_setup(None, table)[0].call
    fx = table.tick(20 * NS, lambda c: 3 * NS)
    assert [(e.reason, e.at_ns) for e in fx if isinstance(e, CallEnded)] == [("rtp_timeout", 3 * NS)]
    assert call.state is CallState.ENDED and call.end_reason == "rtp_timeout"
    table.on_sip(
        msg("bib_04_cucm10.5_udp_INVITE_farend_delayed_offer.txt", **{"38960750": "111"}), 30 * NS, CUCM, REC, "udp"
    )
    fx = table.tick(70 * NS, lambda c: 0)
    assert [e.reason for e in fx if isinstance(e, CallEnded)] == ["rejected"]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(
        st.tuples(
            st.integers(0, 60), st.one_of(st.none(), st.integers(0, 40)), st.lists(st.integers(0, 240), max_size=6)
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(0, 200), min_size=1, max_size=30),
)
def test_tick_deadlines_end_calls_when_looking_at_every_call_would(timeout_s, specs, tick_s):
    """``tick`` looks only at calls whose deadline has come. The calls it ends, how and at which
    tick must be what checking every call at every tick gives (the rule in its doc)."""
    table = CallTable(rtp_timeout_s=timeout_s)
    T = timeout_s * NS
    calls = []
    events = []  # (time, order, what): SIP before a tick at the same time
    for i, (start_s, answer_s, rtp) in enumerate(specs):  # answer_s: the 200 OK's delay (None: never)
        start = start_s * NS + i
        answered = None if answer_s is None else start + answer_s * NS + NS // 100
        ids = {
            "38960750": f"7{i:07d}",
            "abbb8e00-4291f775": f"c{i:07d}-4291f775",
            "audio 6000": f"audio {6000 + 2 * i}",
        }
        events.append((start, 0, ("invite", i, ids)))
        if answered is not None:
            events.append((answered, 0, ("ok", i, ids)))
            events.append((answered + NS // 100, 0, ("ack", i, ids)))
        calls.append({"start": start, "answered": answered, "rtp": sorted(start + r * NS // 2 for r in rtp)})
    for k, t in enumerate(sorted(set(tick_s))):
        events.append((t * NS, 1, ("tick", k)))
    by_id = {}

    def last_rtp(call):
        spec = calls[by_id[call.id]]
        return max((r for r in spec["rtp"] if r <= now), default=0)

    got = {}
    for now, _, ev in sorted(events, key=lambda e: (e[0], e[1])):
        if ev[0] == "tick":
            for e in table.tick(now, last_rtp):
                if isinstance(e, CallEnded):
                    got[by_id[e.call.id]] = (e.reason, e.at_ns, now)
            continue
        name = {
            "invite": "bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt",
            "ok": "bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt",
            "ack": "bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt",
        }[ev[0]]
        src, dst = (REC, CUCM) if ev[0] == "ok" else (CUCM, REC)
        for e in table.on_sip(msg(name, **ev[2]), now, src, dst, "udp"):
            if isinstance(e, CallStarted):
                by_id[e.call.id] = ev[1]
    # the rule, checked at every tick for every call still open
    want = {}
    for i, spec in enumerate(calls):
        for now in sorted({t * NS for t in tick_s}):
            if now < spec["start"]:
                continue
            if spec["answered"] is None or now < spec["answered"]:  # still in set-up
                if now - spec["start"] > TIMER_B_NS:
                    want[i] = ("rejected", now, now)
                    break
                continue
            last = max((r for r in spec["rtp"] if r <= now), default=0) or spec["start"]
            if now - last > T:
                want[i] = ("rtp_timeout", last, now)
                break
    assert got == want


def test_non_bib_invites_are_counted_not_recorded():
    table = CallTable()
    fx = table.on_sip(
        msg("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt", **{"x-nearend;": ""}), 0, CUCM, REC, "udp"
    )
    assert fx == [] and table.counters["non_bib_invites"] == 1


@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(max_size=45),
        st.sampled_from(["fe80::1%eth0", "010.1.2.3", " 1.2.3.4", "::ffff:1.2.3.4", "1.2.3"]),
    )
)
def test_packed_address_is_ipaddress_packed(text):
    import ipaddress

    from capture.sip.calls import packed_address

    try:
        want = ipaddress.ip_address(text).packed
    except ValueError:
        with pytest.raises(ValueError):
            packed_address(text)
    else:
        assert packed_address(text) == want


@given(st.integers(min_value=0, max_value=2**63 - 1), st.text(max_size=30), st.text(min_size=1, max_size=40))
def test_call_id_is_the_start_time_refci_and_a_call_id_hash(ns, refci, call_id):
    import datetime as dt
    import hashlib

    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    safe = "".join(ch for ch in refci if ch.isalnum())[:20] or "x"
    assert make_call_id(ns, refci, call_id) == (
        f"{t:%Y%m%dT%H%M%S}{(ns // 10**6) % 1000:03d}Z-{safe}-{hashlib.sha1(call_id.encode()).hexdigest()[:6]}"
    )


def test_sdp_that_will_not_parse_is_counted_under_its_class():
    table = CallTable()
    table.on_sip(msg("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt"), 0, CUCM, REC, "udp")
    bad = msg("bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt", **{"v=0": "v=9"})
    fx = table.on_sip(bad, NS // 100, REC, CUCM, "udp")
    assert not [e for e in fx if isinstance(e, MediaMapped)] and table.errors == {"SdpError": 1}
    nowhere = msg(
        "bib_02_recorder_200OK_sdp_offer_to_nearend_INVITE.txt", **{"IN IP4 10.48.32.170": "IN IP4 10.48.32.xyz"}
    )
    table.on_sip(nowhere, NS // 50, REC, CUCM, "udp")
    assert table.errors == {"SdpError": 2}


def test_a_standby_taking_the_vip_over_marks_the_calls_in_progress_there_once():
    """The standby holds a dead primary's VIP now: its calls in progress lost their recorder (the
    evidence that sets primary.failed_at), once each; a call the standby answered itself is not
    marked, nor a call elsewhere."""
    from capture.sip.calls import Evidence, taken_over

    table = CallTable()
    call = [e for e in near_setup(None, table) if isinstance(e, CallStarted)][0].call
    vip = bytes([10, 48, 32, 170])
    assert taken_over(table, bytes([10, 48, 32, 171]), 5 * NS, "elsewhere", set()) == []
    assert taken_over(table, vip, 5 * NS, "x", {call.dialogs["near"].call_id}) == []  # answered here
    (fx,) = taken_over(table, vip, 5 * NS, "rec-a: its VIP taken over here", set())
    assert isinstance(fx, Evidence) and fx.call is call and call.failed_ns == 5 * NS
    assert fx.kind == "standby_takeover" and taken_over(table, vip, 6 * NS, "again", set()) == []
