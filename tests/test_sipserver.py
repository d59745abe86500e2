"""The recording UAS as CUCM meets it: delayed offer, retransmissions, BYE, CANCEL, OPTIONS."""

from conftest import sip_sample

from appliance.standby.sipserver import T1, Uas
from capture.sip import message as sip
from capture.sip import sdp

CUCM = ("198.18.0.10", 5060)


def invite():
    return sip_sample("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt")


def test_delayed_offer_invite_gets_trying_and_200_with_a_recvonly_offer():
    u = Uas("198.18.0.20")
    out = u.on_message(invite(), CUCM, 0.0)
    assert [sip.parse(d).status for _, d in out] == [100, 200]
    ok = sip.parse(out[1][1])
    assert ok.to.param("tag") and ok.cseq == (101, "INVITE") and ok.call_id.startswith("abbb8e00")
    assert ok.header_all("via") == sip.parse(invite()).header_all("via")
    m = sdp.parse(ok.body).audio()
    assert m.address == "198.18.0.20" and m.direction == "recvonly" and m.fmts == (0, 8, 101)
    assert m.port in u.ports() and m.port % 2 == 0
    assert ok.call_id in u.answered


def test_2xx_is_retransmitted_with_doubling_until_the_ack():
    u = Uas("198.18.0.20")
    ok = u.on_message(invite(), CUCM, 0.0)[1][1]
    sent = [t for t in (0.49, 0.5, 1.0, 1.5, 2.0, 3.5) if u.on_timer(t)]
    assert sent == [0.5, 1.5, 3.5]  # T1, then 2·T1, then 4·T1 later
    assert u.on_message(invite(), CUCM, 3.6) == [(CUCM, ok)]  # an INVITE retransmission: same answer
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
    assert not u.dialogs and 64 * T1 <= t < 64 * T1 + 0.2 and not u.ports()


def test_bye_cancel_options_and_unknown():
    u = Uas("198.18.0.20")
    u.on_message(invite(), CUCM, 0.0)
    bye = (
        invite()
        .replace(b"INVITE sip:8675309@10.48.32.170:5060", b"BYE sip:10.48.32.170:5060")
        .replace(b"101 INVITE", b"102 BYE")
    )
    assert sip.parse(u.on_message(bye, CUCM, 1.0)[0][1]).status == 200 and not u.ports()
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
    u = Uas("198.18.0.20")
    u.busy = lambda p: p in (40000, 40002, 40005)  # two calls of the primary's still streaming
    ok = sip.parse(u.on_message(invite(), CUCM, 0.0)[1][1])
    assert sdp.parse(ok.body).audio().port == 40006  # 40004 is out too: its RTCP port is busy


def test_server_over_udp_and_tcp_on_real_sockets():
    """SipServer on loopback: a UDP INVITE, and two messages in one TCP segment plus one split in two."""
    import socket
    import time

    from appliance.standby.sipserver import SipServer

    srv = SipServer("127.0.0.1", port=0 or 15060).start()
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(2)
        u.sendto(invite(), ("127.0.0.1", 15060))
        got = [sip.parse(u.recv(65535)).status for _ in range(2)]
        assert got == [100, 200]
        t = socket.create_connection(("127.0.0.1", 15060), timeout=2)
        opts = (
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:x@y>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        inv = invite().replace(b"abbb8e00-4291f775-204c", b"tcp-call") + b"\r\n"  # the sample lacks the blank line
        t.sendall(opts + inv[:100])
        time.sleep(0.1)
        t.sendall(inv[100:])
        buf = b""
        deadline = time.time() + 2
        while buf.count(b"SIP/2.0 ") < 3 and time.time() < deadline:
            buf += t.recv(65535)
        codes = []
        while buf:
            n = sip.frame_length(buf)
            codes.append(sip.parse(buf[:n]).status)
            buf = buf[n:]
        assert codes == [200, 100, 200]
        deadline = time.time() + 2
        while len(srv.rtp) < 2 and time.time() < deadline:  # opened right after the answer
            time.sleep(0.01)
        assert len(srv.uas.answered) == 2 and len(srv.rtp) == 2  # an RTP socket held per call
        t.close()
    finally:
        srv.close()


def test_hostile_messages_get_no_answer_and_are_counted():
    from capture.testing.synth import HOSTILE_SIP

    u = Uas("198.18.0.20")
    for raw in HOSTILE_SIP:
        u.on_message(raw, CUCM, 0.0)
    assert u.counters["bad_messages"] >= 5
    # the answer to a good INVITE is as before
    assert [sip.parse(d).status for _, d in u.on_message(invite(), CUCM, 1.0)] == [100, 200]


def test_a_fault_of_ours_is_counted_by_class_and_the_server_goes_on(monkeypatch):
    u = Uas("198.18.0.20")
    monkeypatch.setattr(u, "_sdp", lambda d: 1 / 0)
    assert u.on_message(invite(), CUCM, 0.0) == []
    assert u.faults.counts == {"unhandled.ZeroDivisionError": 1}
    monkeypatch.undo()
    assert u.on_message(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n", CUCM, 1.0)
