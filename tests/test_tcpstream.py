from capture.wire.tcpstream import SYN, TcpReassembler

MSG1 = b"INVITE sip:a@x SIP/2.0\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbody"
MSG2 = b"SIP/2.0 200 OK\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
K = ("a", 1, "b", 5060)


def test_split_coalesced_retransmitted_and_out_of_order():
    t = TcpReassembler()
    assert t.feed(K, 99, SYN, b"", 0) == []
    stream = MSG1 + MSG2 + MSG1
    a, b, c = stream[:30], stream[30 : len(MSG1) + 10], stream[len(MSG1) + 10 :]
    assert t.feed(K, 100 + len(a) + len(b), 0x18, c, 1) == []  # arrives early
    assert t.feed(K, 100, 0x18, a, 2) == []
    assert t.feed(K, 100, 0x18, a, 3) == []  # retransmitted
    out = t.feed(K, 100 + len(a), 0x18, b, 4)
    assert out == [MSG1, MSG2, MSG1]
    assert t.counters["tcp_retransmitted"] == 1 and t.counters["tcp_out_of_order"] == 1


def test_joining_mid_stream_resyncs_on_a_start_line():
    t = TcpReassembler()
    out = t.feed(K, 5000, 0x18, b"tail of an old body\r\n" + MSG2, 0)
    assert out == [MSG2]


def test_garbage_and_absurd_content_length_resync():
    t = TcpReassembler()
    t.feed(K, 1, SYN, b"", 0)
    bad = b"INVITE sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n"
    assert t.feed(K, 2, 0x18, bad + b"\x00junk" + MSG2, 1) == [MSG2]


def test_keepalives_are_skipped():
    t = TcpReassembler()
    t.feed(K, 1, SYN, b"", 0)
    assert t.feed(K, 2, 0x18, b"\r\n\r\n" + MSG2, 1) == [MSG2]
