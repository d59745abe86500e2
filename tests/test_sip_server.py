"""The standby's SIP server on real sockets (loopback): it answers, and every attack that stopped or
froze the old server leaves OPTIONS answered within 100 ms (appliance/standby/sip/server.py)."""

import os
import resource
import socket
import struct
import time

import pytest
from conftest import sip_sample

from appliance.standby.sip.peers import Peers
from appliance.standby.sip.server import SipServer, SocketPorts
from appliance.standby.sip.uas import Uas
from capture.sip import message as sip
from capture.wire.inet import checksum

HOST = "127.0.0.1"


def invite(n: int | str = 0) -> bytes:
    return sip_sample("bib_01_cucm10.5_udp_INVITE_nearend_delayed_offer.txt").replace(
        b"abbb8e00-4291f775-204c", f"call-{n}".encode()
    )


def options(n=1, transport="UDP") -> bytes:
    return (
        f"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/{transport} {HOST};branch=z9hG4bK{n}\r\nFrom: <sip:a@b>;tag=1\r\n"
        f"To: <sip:x@y>\r\nCall-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def free_port() -> int:
    for _ in range(50):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 10000
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                u.bind((HOST, port))
                t.bind((HOST, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


@pytest.fixture
def server():
    made = []

    def make(peers=None, **kw):
        uas = Uas(HOST, SocketPorts(HOST, 40000, 49998), peers or Peers([HOST]))
        srv = SipServer(uas, port=free_port(), **kw).start()
        made.append(srv)
        return srv

    yield make
    for s in made:
        s.close()


def answer_time(srv, n=1, sock=None) -> float:
    """Seconds an OPTIONS over UDP waits for its 200 OK."""
    u = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.settimeout(2)
        t = time.perf_counter()
        u.sendto(options(n), (HOST, srv.port))
        while True:
            reply = sip.parse(u.recv(65535))
            if reply.call_id == f"opt-{n}":
                break
        assert reply.status == 200
        return time.perf_counter() - t
    finally:
        if sock is None:
            u.close()


def wait(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_udp_and_tcp_answers_and_an_rtp_socket_pair_held_per_dialog(server):
    srv = server()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.sendto(invite(1), (HOST, srv.port))
    assert [sip.parse(u.recv(65535)).status for _ in range(2)] == [100, 200]
    t = socket.create_connection((HOST, srv.port), timeout=2)
    inv = invite(2) + b"\r\n"  # the sample lacks the blank line
    t.sendall(options(1, "TCP") + inv[:100])
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
    ports = srv.uas.ports
    assert len(srv.uas.answered) == 2 and len(ports.socks) == 2
    for p, pair in ports.socks.items():  # RTP and RTCP, bound on the VIP
        assert [s.getsockname() for s in pair] == [(HOST, p), (HOST, p + 1)]
    st = srv.status()
    assert st["state"] == "answering" and st["dialogs"] == 2 and st["tcp_connections"] == 1
    t.close()
    u.close()


def test_others_get_no_answer_at_all(server):
    srv = server(peers=Peers(["127.0.0.1"]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.2", 0))  # not a peer
        u.settimeout(0.5)
        u.sendto(invite(1), (HOST, srv.port))
        with pytest.raises(TimeoutError):
            u.recv(65535)
    assert srv.uas.counters["not_peer"] == 1 and not srv.uas.dialogs and not srv.uas.ports.socks


def test_a_tcp_reset_is_counted_and_the_server_answers(server):
    srv = server()
    for i in range(20):
        t = socket.create_connection((HOST, srv.port))
        t.sendall(options(i, "TCP")[:30])
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()  # RST
    assert wait(lambda: not srv.conns)
    assert answer_time(srv) < 0.1
    assert srv.alive() is None


def udp_from_port_zero(dst_port: int, payload: bytes) -> None:
    """A UDP datagram whose source port is 0 (the old server's sendto failed with EINVAL and it died)."""
    udp = struct.pack("!HHHH", 0, dst_port, 8 + len(payload), 0) + payload
    src = dst = socket.inet_aton(HOST)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as r:
        r.sendto(ip + udp, (HOST, 0))


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw socket needs root")
def test_a_datagram_from_source_port_zero_is_counted_and_the_server_answers(server):
    srv = server()
    udp_from_port_zero(srv.port, options(7))
    assert wait(lambda: srv.counters["udp_messages"] >= 1)
    assert wait(lambda: sum(srv.socket_errors.values()) >= 1), srv.status()
    assert answer_time(srv) < 0.1 and srv.alive() is None
    assert list(srv.socket_errors) == ["udp.EINVAL"]


def test_a_client_that_sends_but_never_reads_is_cut_off_and_the_rest_answered(server):
    srv = server(tcp_stalled_s=1.0, max_pending_bytes=256 * 1024)
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    t.connect((HOST, srv.port))
    t.setblocking(False)
    burst = b"".join(options(i, "TCP") for i in range(1000))
    sent = 0
    end = time.monotonic() + 5
    while time.monotonic() < end:  # pipeline requests until the server stops reading them
        try:
            sent += t.send(burst)
        except BlockingIOError:
            time.sleep(0.05)
            if srv.counters["tcp_stalled"]:
                break
    assert srv.counters["tcp_stalled"] >= 1
    times = [answer_time(srv, n) for n in range(10)]  # meanwhile UDP is answered at once
    assert max(times) < 0.1, times
    assert wait(lambda: srv.counters["tcp_closed_stalled"] == 1, 4)
    assert not srv.conns and sent > 1_000_000
    t.close()


def test_thousands_of_dialogs_and_the_descriptor_limit_reached(server):
    """1,100 INVITEs (the old select() died at 1,017), then the descriptor limit: 503, not a crash."""
    srv = server()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    for i in range(1100):
        u.sendto(invite(i), (HOST, srv.port))
        if i % 50 == 49:
            time.sleep(0.02)
    assert wait(lambda: len(srv.uas.dialogs) == 1100, 10)
    assert len(srv.uas.ports.socks) == 1100
    assert answer_time(srv) < 0.1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    more = [invite(i) for i in range(1100, 1140)]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # made now: the limit leaves the test none
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 20, hard))
    try:
        for m in more:
            u.sendto(m, (HOST, srv.port))
        assert wait(lambda: srv.uas.counters["refused_full"] >= 1, 5)
        assert srv.uas.ports.refused["EMFILE"] >= 1
        assert answer_time(srv, 2, probe) < 0.1 and srv.alive() is None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    u.close()
    probe.close()


def test_connection_cap_and_idle_timeout(server):
    srv = server(max_connections=5, tcp_idle_s=0.5)
    conns = [socket.create_connection((HOST, srv.port)) for _ in range(7)]
    assert wait(lambda: srv.counters["tcp_refused"] == 2)
    assert len(srv.conns) == 5 and answer_time(srv) < 0.1
    assert wait(lambda: not srv.conns, 3) and srv.counters["tcp_closed_idle"] == 5
    for c in conns:
        c.close()


def test_a_dead_loop_is_reported_and_a_frozen_one_seen(server):
    srv = server()
    died = []
    srv.on_death = died.append
    srv.call(lambda: time.sleep(0.8))  # a callback that blocks the loop
    time.sleep(0.5)
    assert "frozen" in (srv.alive(max_beat_age_s=0.3) or "")
    assert wait(lambda: srv.alive(max_beat_age_s=0.3) is None)
    srv.call(srv.loop.stop)  # the loop ends under the server
    assert wait(lambda: bool(died))
    assert "stopped" in srv.alive() and srv.status()["state"] == "failed"
    assert not srv.uas.ports.socks  # whatever it held is given back


def test_the_port_pool_takes_at_most_its_share_of_descriptors():
    """Two thirds of the process's limit by default: the recorder's files, VRRP and the status files keep theirs
    (a 5,000-call SIPp run once took them all, and the standby's own status failed with EMFILE)."""
    ports = SocketPorts(HOST, 40000, 40100, max_sockets=6)
    got = [ports.acquire() for _ in range(4)]
    assert got[:3] == [40000, 40002, 40004] and got[3] is None and ports.refused == {"EMFILE": 1}
    ports.release(40002)
    assert ports.acquire() == 40008  # round-robin: the next port after the one refused
    ports.release_all()
    assert not ports.socks
    assert SocketPorts(HOST).max_sockets == resource.getrlimit(resource.RLIMIT_NOFILE)[0] * 2 // 3
    rtp_only = SocketPorts(HOST, 40000, 40100, max_sockets=3, rtcp=False)
    assert [rtp_only.acquire() for _ in range(4)][3] is None and len(rtp_only.socks) == 3
    assert [len(pair) for pair in rtp_only.socks.values()] == [1, 1, 1]
    rtp_only.release_all()
