"""The recording UAS as CUCM meets it: delayed offer, retransmissions, BYE, CANCEL, OPTIONS, expiry,
peers, a full port pool (logic only: appliance/standby/sip/uas.py)."""

from conftest import sip_sample

from appliance.standby.sip.peers import Peers
from appliance.standby.sip.ports import PortPool
from appliance.standby.sip.uas import T1, Uas
from capture.sip import message as sip
from capture.sip import sdp

CUCM = ("198.18.0.10", 5060)


def invite():
    return sip_sample("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt")


def test_delayed_offer_invite_gets_trying_and_200_with_a_recvonly_offer():
    u = Uas("198.18.0.20")
    out = u.on_message(invite(), CUCM, 0.0)
    assert [sip.parse(d).status for _, d, _ in out] == [100, 200]
    ok = sip.parse(out[1][1])
    assert ok.to.param("tag") and ok.cseq == (101, "INVITE") and ok.call_id.startswith("abbb8e00")
    assert ok.header_all("via") == sip.parse(invite()).header_all("via")
    m = sdp.parse(ok.body).audio()
    assert m.address == "198.18.0.20" and m.direction == "recvonly" and m.fmts == (0, 8, 101)
    assert m.port in u.ports.in_use and m.port % 2 == 0
    assert ok.call_id in u.answered


def test_2xx_is_retransmitted_with_doubling_until_the_ack():
    u = Uas("198.18.0.20")
    ok = u.on_message(invite(), CUCM, 0.0)[1][1]
    sent = [t for t in (0.49, 0.5, 1.0, 1.5, 2.0, 3.5) if u.on_timer(t)]
    assert sent == [0.5, 1.5, 3.5]  # T1, then 2·T1, then 4·T1 later
    assert u.on_message(invite(), CUCM, 3.6) == [(CUCM, ok, None)]  # an INVITE retransmission: same answer
    ack = sip_sample("bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt")
    assert u.on_message(ack, CUCM, 3.7) == []
    assert u.on_timer(100.0) == []


def test_no_ack_gives_up_after_64_t1():
    u = Uas("198.18.0.20")
    u.on_message(invite(), CUCM, 0.0)
    t = 0.0
    while u.dialogs and t < 40:
        t += 0.1
        u.on_timer(t)
    assert not u.dialogs and 64 * T1 <= t < 64 * T1 + 0.2 and not u.ports.in_use


def test_bye_cancel_options_and_unknown():
    u = Uas("198.18.0.20")
    u.on_message(invite(), CUCM, 0.0)
    bye = (
        invite()
        .replace(b"INVITE sip:8675309@10.48.32.170:5060", b"BYE sip:10.48.32.170:5060")
        .replace(b"101 INVITE", b"102 BYE")
    )
    assert sip.parse(u.on_message(bye, CUCM, 1.0)[0][1]).status == 200 and not u.ports.in_use
    assert sip.parse(u.on_message(bye, CUCM, 1.1)[0][1]).status == 481
    opts = bye.replace(b"BYE sip:", b"OPTIONS sip:").replace(b"102 BYE", b"1 OPTIONS")
    r = sip.parse(u.on_message(opts, CUCM, 2.0)[0][1])
    assert r.status == 200 and "INVITE" in r.header("allow")
    cancel = bye.replace(b"BYE sip:", b"CANCEL sip:").replace(b"102 BYE", b"101 CANCEL")
    assert sip.parse(u.on_message(cancel, CUCM, 2.0)[0][1]).status == 200
    sub = bye.replace(b"BYE sip:", b"SUBSCRIBE sip:").replace(b"102 BYE", b"5 SUBSCRIBE")
    assert sip.parse(u.on_message(sub, CUCM, 2.0)[0][1]).status == 501
    assert u.on_message(b"garbage", CUCM, 3.0) == [] and u.counters["bad_messages"] == 1


def test_ports_in_use_on_the_wire_are_never_offered():
    busy = (40000, 40002, 40005)  # two calls of the primary's still streaming
    u = Uas("198.18.0.20", PortPool(40000, 49998, busy=lambda p: p in busy))
    ok = sip.parse(u.on_message(invite(), CUCM, 0.0)[1][1])
    assert sdp.parse(ok.body).audio().port == 40006  # 40004 is out too: its RTCP port is busy


def test_hostile_messages_get_no_answer_and_are_counted():
    from capture.testing.synth import HOSTILE_SIP

    u = Uas("198.18.0.20")
    for raw in HOSTILE_SIP:
        u.on_message(raw, CUCM, 0.0)
    assert u.counters["bad_messages"] >= 5
    # the answer to a good INVITE is as before
    assert [sip.parse(d).status for _, d, _ in u.on_message(invite(), CUCM, 1.0)] == [100, 200]


def test_a_fault_of_ours_is_counted_by_class_and_the_server_goes_on(monkeypatch):
    u = Uas("198.18.0.20")
    monkeypatch.setattr(u, "_sdp", lambda d: 1 / 0)
    assert u.on_message(invite(), CUCM, 0.0) == []
    assert u.faults.counts == {"unhandled.ZeroDivisionError": 1}
    monkeypatch.undo()
    assert u.on_message(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n", CUCM, 1.0)


def call(n: int) -> bytes:
    return invite().replace(b"abbb8e00-4291f775-204c", f"call-{n}".encode())


def test_only_peers_are_answered_and_others_get_nothing():
    u = Uas("198.18.0.20", peers=Peers(["198.18.0.10", "198.18.5.0/24"]))
    assert u.on_message(invite(), ("203.0.113.66", 5060), 0.0) == []  # no answer at all, no port taken
    assert u.on_message(invite(), ("198.18.0.11", 5060), 0.0) == []
    assert not u.dialogs and not u.ports.in_use and u.counters["not_peer"] == 2
    assert len(u.on_message(invite(), CUCM, 0.0)) == 2
    assert len(u.on_message(call(1), ("198.18.5.7", 5060), 0.0)) == 2  # a network


def test_with_no_peers_configured_only_learned_addresses_are_answered():
    p = Peers()
    u = Uas("198.18.0.20", peers=p)
    assert u.on_message(invite(), CUCM, 0.0) == [] and p.status()["mode"] == "learned from the SPAN port"
    assert p.learn("198.18.0.10") and not p.learn("198.18.0.10")
    assert len(u.on_message(invite(), CUCM, 1.0)) == 2
    assert not Peers(["198.18.0.10"]).learn("198.18.0.99")  # configured peers are never added to


def test_a_full_pool_or_dialog_cap_answers_503_and_takes_nothing():
    u = Uas("198.18.0.20", PortPool(40000, 40004))  # three ports
    codes = [sip.parse(u.on_message(call(i), CUCM, 0.0)[-1][1]).status for i in range(4)]
    assert codes == [200, 200, 200, 503] and u.counters["refused_full"] == 1 and len(u.dialogs) == 3
    u2 = Uas("198.18.0.20", max_dialogs=2)
    assert [sip.parse(u2.on_message(call(i), CUCM, 0.0)[-1][1]).status for i in range(3)] == [200, 200, 503]


def test_dialogs_expire_after_the_maximum_call_length():
    u = Uas("198.18.0.20", max_call_s=60.0)
    u.on_message(invite(), CUCM, 0.0)
    u.on_message(sip_sample("bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt"), CUCM, 0.1)
    u.on_timer(59.9)
    assert len(u.dialogs) == 1
    u.on_timer(60.0)
    assert not u.dialogs and not u.ports.in_use and u.counters["expired"] == 1


def test_after_a_vip_release_dialogs_are_cleared_as_their_calls_end():
    live = {"call-1-5a20300e@10.48.32.90", "call-2-5a20300e@10.48.32.90"}
    u = Uas("198.18.0.20", live=lambda cid: cid in live)
    for i in (1, 2):
        u.on_message(call(i), CUCM, 0.0)
        ack = sip_sample("bib_03_cucm10.5_udp_ACK_sdp_answer_sendonly_nearend.txt")
        u.on_message(ack.replace(b"abbb8e00-4291f775-204c", f"call-{i}".encode()), CUCM, 0.1)
    assert len(u.ports.in_use) == 2 and not u.unacked
    u.on_timer(5.0)
    assert len(u.dialogs) == 2  # while master: only BYE, no ACK or the maximum length clear them
    u.release(10.0)
    u.on_timer(10.0)
    assert len(u.dialogs) == 2  # both still running (the recorder sees their RTP on the SPAN)
    live.discard("call-1-5a20300e@10.48.32.90")  # its BYE went to the primary; the recorder saw it on the SPAN
    u.on_timer(10.5)
    assert len(u.dialogs) == 2  # looked at once a second
    u.on_timer(11.0)
    assert set(u.dialogs) == {"call-2-5a20300e@10.48.32.90"} and len(u.ports.in_use) == 1
    live.clear()
    u.on_timer(12.0)
    assert not u.dialogs and not u.ports.in_use and u.counters["ended_after_release"] == 2


def test_a_closed_tcp_connection_gets_no_retransmissions_and_the_dialog_waits_for_its_ack():
    u = Uas("198.18.0.20")
    conn = object()
    out = u.on_message(invite(), CUCM, 0.0, conn)
    assert all(s.conn is conn for s in out)
    assert [s.conn for s in u.on_timer(0.5)] == [conn]
    u.forget_connection(conn)
    assert u.on_timer(1.5) == [] and u.on_timer(20.0) == [] and u.dialogs
    u.on_timer(64 * T1)
    assert not u.dialogs


def test_calls_in_progress_on_the_vip_are_taken_up_when_it_comes_here():
    """The primary's (or a dead fellow's) calls on the VIP: when the VIP is claimed their RTP ports
    are held, their BYEs answered 200 (not 481), and a call that ends elsewhere lets its port go."""
    live = {"c-primary", "c-fellow"}
    u = Uas("198.18.0.20", ports=PortPool(16384, 16400))
    u.live = lambda cid: cid in live
    u.taken_over = lambda: [("c-primary", 40000), ("c-fellow", 16390)]
    u.release(0.0)
    assert u.adopted == {}  # nothing is taken up while the VIP is elsewhere
    u.claim()
    assert u.adopted == {"c-primary": 40000, "c-fellow": 16390} and u.ports.in_use == {40000, 16390}
    assert u.counters["calls_taken_over"] == 2 and u.status()["taken_over"] == 2
    assert u.ports.acquire() not in (16390, 40000)  # never offered to a new call meanwhile
    bye = (
        invite()
        .replace(b"INVITE sip:8675309@10.48.32.170:5060", b"BYE sip:10.48.32.170:5060")
        .replace(b"101 INVITE", b"102 BYE")
        .replace(b"abbb8e00-4291f775-204c-5a20300e@10.48.32.90", b"c-primary")
    )
    (out,) = u.on_message(bye, CUCM, 1.0)
    assert sip.parse(out[1]).status == 200 and "c-primary" not in u.adopted and 40000 not in u.ports.in_use
    live.discard("c-fellow")  # its BYE went elsewhere, or its RTP stopped: the recorder ended it
    u.on_timer(2.0)
    assert u.adopted == {} and u.counters["byes_taken_over"] == 1
