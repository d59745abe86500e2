"""Frame parser: both kernels against dpkt-built frames, and against each other on any input."""

import struct

import dpkt
import pytest
from conftest import PY, C
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import ParseError, Truncated, Unsupported
from capture.testing import tunnels

SRC4, DST4 = bytes([198, 18, 1, 10]), bytes([198, 18, 0, 20])
SRC6 = bytes.fromhex("20010db8000000000000000000010001")
DST6 = bytes.fromhex("20010db8000000000000000000000020")


def udp4(payload=b"hello", sport=30000, dport=20000):
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    u.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=SRC4, dst=DST4, p=17, data=u)
    ip.len = 20 + u.ulen
    return ip


def eth(ip, etype=0x0800, tags=()):
    e = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=etype, data=b""))[:12]
    for tpid, vid in tags:
        e += struct.pack("!HH", tpid, vid)
    return e + struct.pack("!H", etype) + bytes(ip)


def test_ethernet_ipv4_udp(impl):
    f = impl.packet.parse(eth(udp4()), 1)
    assert (f.ip_version, f.src, f.dst, f.proto, f.sport, f.dport) == (4, SRC4, DST4, 17, 30000, 20000)
    assert f.payload_len == 5 and f.frag_id == -1
    frame = eth(udp4())
    assert frame[f.payload_off : f.payload_off + f.payload_len] == b"hello"


@pytest.mark.parametrize("tags", [[(0x8100, 100)], [(0x88A8, 10), (0x8100, 20)], [(0x9100, 1), (0x8100, 2)]])
def test_vlan_and_qinq(impl, tags):
    f = impl.packet.parse(eth(udp4(), tags=tags), 1)
    assert f.ip_off == 14 + 4 * len(tags) and f.dport == 20000


def test_too_many_vlan_tags_is_unsupported(impl):
    with pytest.raises(Unsupported, match="VLAN"):
        impl.packet.parse(eth(udp4(), tags=[(0x8100, i) for i in range(5)]), 1)


def test_linux_sll_and_sll2_and_raw_and_null(impl):
    ip = bytes(udp4())
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + ip
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 8) + ip
    for data, lt in (
        (sll, 113),
        (sll2, 276),
        (ip, 101),
        (ip, 12),
        (ip, 228),
        (struct.pack("<I", 2) + ip, 0),
        (struct.pack(">I", 2) + ip, 0),
    ):
        f = impl.packet.parse(data, lt)
        assert (f.src, f.dport, f.payload_len) == (SRC4, 20000, 5), lt


def test_ipv6_with_extension_headers(impl):
    u = dpkt.udp.UDP(sport=5060, dport=5060, data=b"x" * 10)
    u.ulen = 18
    hop = bytes([17, 0]) + b"\0" * 6  # hop-by-hop options, next header UDP
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, 8 + 18, 0, 64, SRC6, DST6) + hop + bytes(u)
    f = impl.packet.parse(eth(ip6, 0x86DD), 1)
    assert (f.ip_version, f.proto, f.src, f.dst, f.sport, f.payload_len) == (6, 17, SRC6, DST6, 5060, 10)


def test_ipv4_and_ipv6_fragments(impl):
    ip = udp4(b"y" * 100)
    ip.mf, ip.offset = 1, 0
    f = impl.packet.parse(eth(ip), 1)
    assert f.frag_id == ip.id and f.frag_more and f.frag_off == 0
    ip.mf, ip.offset = 0, 5  # last fragment, 5 x 8 = 40 bytes in (dpkt counts 8-byte units)
    f = impl.packet.parse(eth(ip), 1)
    assert f.frag_off == 40 and not f.frag_more and f.sport == 0
    frag = struct.pack("!BBHI", 17, 0, 16 | 1, 0xDEADBEEF)
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, 8 + 16, 44, 64, SRC6, DST6) + frag + b"z" * 16
    f = impl.packet.parse(eth(ip6, 0x86DD), 1)
    assert (f.frag_id, f.frag_off, f.frag_more, f.l4_len) == (0xDEADBEEF, 16, True, 16)


def test_tcp_header(impl):
    t = dpkt.tcp.TCP(sport=40000, dport=5060, seq=123456, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=b"SIP")
    ip = dpkt.ip.IP(src=SRC4, dst=DST4, p=6, data=t)
    ip.len = 20 + len(bytes(t))
    f = impl.packet.parse(eth(ip), 1)
    assert (f.proto, f.tcp_seq, f.tcp_flags, f.payload_len) == (6, 123456, 0x18, 3)


@pytest.mark.parametrize("cut", [0, 5, 13, 20, 33, 40])
def test_truncated_frames_raise_truncated(impl, cut):
    with pytest.raises(Truncated):
        impl.packet.parse(eth(udp4())[:cut], 1)


def test_non_ip_is_unsupported(impl):
    with pytest.raises(Unsupported, match="ethertype 0x0806"):
        impl.packet.parse(eth(b"\0" * 28, 0x0806), 1)
    with pytest.raises(Unsupported, match="link type 147"):
        impl.packet.parse(b"\0" * 40, 147)


def _outcome(mod, data, lt):
    try:
        return mod.packet.parse(data, lt)
    except ParseError as e:
        return type(e), str(e)


LINKTYPES = st.sampled_from([0, 1, 12, 101, 113, 228, 229, 276, 147])


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120), LINKTYPES)
def test_c_and_python_agree_on_random_bytes(data, lt):
    assert _outcome(C, data, lt) == _outcome(PY, data, lt)


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_c_and_python_agree_on_mutated_frames(d):
    base = d.draw(st.sampled_from([eth(udp4()), eth(udp4(), tags=[(0x8100, 5)]), bytes(udp4())]))
    lt = 1 if base[:1] != b"\x45" else 101
    data = bytearray(base)
    for _ in range(d.draw(st.integers(1, 4))):
        i = d.draw(st.integers(0, len(data) - 1))
        data[i] = d.draw(st.integers(0, 255))
    data = bytes(data[: d.draw(st.integers(0, len(data)))])
    assert _outcome(C, data, lt) == _outcome(PY, data, lt)


@given(st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)), st.integers(0, 65535))
def test_a_flow_key_renders_as_its_address_and_port(addr, port):
    import ipaddress

    from capture.wire.frame import flow_key, key_to_str

    a = ipaddress.ip_address(addr)
    assert key_to_str(flow_key(addr, port)) == (f"{a}:{port}" if len(addr) == 4 else f"[{a}]:{port}")


def test_the_c_walker_uses_the_wire_numbers_of_capture_wire_frame():
    """ext/frame.pxd's enum and capture/wire/frame.py name the same numbers."""
    from capture.wire import _packet_c
    from capture.wire import frame as wire

    assert _packet_c.CONSTANTS == {k: getattr(wire, k) for k in _packet_c.CONSTANTS}
    assert len(_packet_c.CONSTANTS) == 30


# remote mirrors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", tunnels.KINDS)
@pytest.mark.parametrize("outer_v6", [False, True])
@pytest.mark.parametrize(
    "inner",
    [
        eth(udp4()),
        eth(udp4(), tags=[(0x8100, 30)]),
        eth(udp4(), tags=[(0x88A8, 10), (0x8100, 20)]),
        None,  # IPv6 inside
    ],
)
def test_a_remote_mirror_is_walked_to_the_frame_it_carries(impl, kind, outer_v6, inner):
    """The inner frame's addresses, ports and payload; never the tunnel's."""
    if inner is None:
        u = dpkt.udp.UDP(sport=30000, dport=20000, data=b"hello")
        u.ulen = 13
        inner = eth(dpkt.ip6.IP6(src=SRC6, dst=DST6, nxt=17, hlim=64, data=u, plen=13), etype=0x86DD)
    plain = impl.packet.parse(inner, 1)
    wrapped = tunnels.wrap(inner, kind, seq=9, v6=outer_v6)
    f = impl.packet.parse(wrapped, 1)
    off = len(wrapped) - len(inner)
    assert f.inner_off == off and wrapped[off:] == inner
    assert (f.ip_version, f.src, f.dst, f.sport, f.dport) == (
        plain.ip_version,
        plain.src,
        plain.dst,
        plain.sport,
        plain.dport,
    )
    assert (f.ip_off, f.l4_off, f.payload_off) == (plain.ip_off + off, plain.l4_off + off, plain.payload_off + off)
    assert wrapped[f.payload_off : f.payload_off + f.payload_len] == b"hello"


def test_erspan3_can_carry_ip_without_ethernet(impl):
    ip = bytes(udp4())
    head = tunnels.erspan3_header(ft=2)
    f = impl.packet.parse(tunnels._eth(tunnels._ip(47, tunnels.gre(0x22EB, head + ip, seq=1))), 1)
    assert (f.src, f.dst, f.dport) == (SRC4, DST4, 20000)
    with pytest.raises(Unsupported, match="frame type 5"):
        bad = tunnels.erspan3_header(ft=5)
        impl.packet.parse(tunnels._eth(tunnels._ip(47, tunnels.gre(0x22EB, bad + ip, seq=1))), 1)


def test_gre_that_is_no_mirror_is_left_as_it_is(impl):
    """PPTP's GRE (version 1) or GRE carrying other protocols: the outer frame, proto 47."""
    for payload in (struct.pack("!HH", 0x3001, 0x880B) + b"\0" * 12, tunnels.gre(0x0806, b"\0" * 28)):
        f = impl.packet.parse(tunnels._eth(tunnels._ip(47, payload)), 1)
        assert f.proto == 47 and f.inner_off == 0 and f.src == tunnels.OUTER_SRC4


def test_udp_to_the_vxlan_port_without_its_flag_is_plain_udp(impl):
    f = impl.packet.parse(eth(udp4(payload=b"\x80" + b"\0" * 20, dport=4789)), 1)
    assert f.inner_off == 0 and f.dport == 4789 and f.payload_len == 21


@pytest.mark.parametrize(
    "frame, error, match",
    [
        (tunnels._eth(tunnels._ip(47, b"\0\0")), Truncated, "GRE header of 4 bytes, 2 left"),
        (tunnels._eth(tunnels._ip(47, struct.pack("!HH", 0x3000, 0x88BE) + b"\0")), Truncated, "GRE header of 12"),
        (tunnels._eth(tunnels._ip(47, tunnels.gre(0x88BE, b"\x10\0", seq=1))), Truncated, "ERSPAN header of 8"),
        (tunnels._eth(tunnels._ip(47, tunnels.gre(0x88BE, b"\x20" + b"\0" * 30, seq=1))), Unsupported, "version 2"),
        (tunnels._eth(tunnels._ip(47, tunnels.gre(0x22EB, b"\x20" + b"\0" * 5, seq=1))), Truncated, "ERSPAN header"),
        (tunnels._eth(tunnels._ip(17, tunnels._udp(37008, b"\x01\x00\x00\x01\x05\x09"))), Truncated, "TZSP"),
        (tunnels._eth(tunnels._ip(17, tunnels._udp(37008, b"\x01\x00\x00\x12\x01"))), Unsupported, "TZSP enc"),
        (tunnels.wrap(tunnels.wrap(tunnels.wrap(eth(udp4()), "vxlan"), "gretap"), "erspan2"), Unsupported, "nested"),
    ],
)
def test_broken_tunnels_are_exact_errors(impl, frame, error, match):
    with pytest.raises(error, match=match):
        impl.packet.parse(frame, 1)


def test_two_tunnels_deep_is_walked(impl):
    inner = eth(udp4())
    f = impl.packet.parse(tunnels.wrap(tunnels.wrap(inner, "vxlan"), "erspan3"), 1)
    assert f.src == SRC4 and f.dport == 20000


TUNNELED = st.sampled_from(tunnels.KINDS).flatmap(
    lambda k: st.sampled_from([tunnels.wrap(eth(udp4()), k), tunnels.wrap(eth(udp4(), tags=[(0x8100, 3)]), k, v6=True)])
)


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_c_and_python_agree_on_mutated_tunnels(d):
    """Every tunnel, its headers and the frame inside mutated and cut anywhere: the same frame or
    the same error from both walkers."""
    data = bytearray(d.draw(TUNNELED))
    for _ in range(d.draw(st.integers(1, 6))):
        i = d.draw(st.integers(0, len(data) - 1))
        data[i] = d.draw(st.integers(0, 255))
    data = bytes(data[: d.draw(st.integers(0, len(data)))])
    assert _outcome(C, data, 1) == _outcome(PY, data, 1)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(tunnels.KINDS), st.binary(max_size=80))
def test_c_and_python_agree_on_random_bytes_inside_a_tunnel(kind, inner):
    assert _outcome(C, tunnels.wrap(inner, kind), 1) == _outcome(PY, tunnels.wrap(inner, kind), 1)


def test_the_real_remote_mirror_capture(impl):
    """tests/data/heplify_erspan_sip_ipv4_udp.pcapng (GRE transparent Ethernet bridging with a
    key, from a remote SPAN): every frame's SIP, with the phones' addresses, not the tunnel's."""
    from conftest import data

    from capture.wire._pcapfile_py import Indexer

    buf = open(data("heplify_erspan_sip_ipv4_udp.pcapng"), "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    seen = set()
    for o, n in zip(offs.tolist(), lens.tolist()):
        frame = buf[o : o + n]
        f = impl.packet.parse(frame, 1)
        outer = dpkt.ethernet.Ethernet(frame).data
        assert f.inner_off == 42 and outer.p == 47 and f.src != outer.src and {5060, 5260} & {f.sport, f.dport}
        payload = frame[f.payload_off : f.payload_off + f.payload_len]
        assert impl.sip.parse(payload).call_id  # a whole SIP message
        seen.add(f.src)
    assert len(offs) > 5 and len(seen) >= 2
