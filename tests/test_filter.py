"""The capture workers' kernel filters (capture/live/filter.py), run by libpcap's own BPF
interpreter over a capture file: what each of n workers is handed."""

import struct

import pcapy
import pytest

from capture.live.filter import worker_filter
from capture.testing import tunnels
from capture.wire.frame import LINKTYPE_ETHERNET
from capture.wire.pcapfile import PcapWriter

PHONES = [bytes([198, 18, 1, k]) for k in range(1, 9)]
REC = bytes([198, 18, 0, 20])


def udp(src, dst, sport, dport, payload):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 0, 0, 64, 17, 0, src, dst) + u
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def vlan(frame, vid=10):
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


RTP = [udp(p, REC, 20000, 30000 + k, b"\x80\x00" + b"\0" * 170) for k, p in enumerate(PHONES)]
SIP = udp(PHONES[0], REC, 5060, 5060, b"INVITE sip:x SIP/2.0\r\n\r\n")
TUNNELED = [tunnels.wrap(f, kind) for f in RTP[:2] + [SIP] for kind in tunnels.KINDS]


def handed(tmp_path, frames, k, n):
    path = str(tmp_path / "f.pcap")
    w = PcapWriter(path, LINKTYPE_ETHERNET)
    for i, f in enumerate(frames):
        w.write(i * 1000, f, LINKTYPE_ETHERNET)
    w.close()
    r = pcapy.open_offline(path)
    r.setfilter(worker_filter(k, n))
    got = []
    while True:
        h, data = r.next()
        if h is None:
            break
        got.append(bytes(data))
    return got


@pytest.mark.parametrize("tagged", [False, True])
def test_every_worker_sees_sip_and_one_worker_each_phone(tmp_path, tagged):
    frames = [vlan(f) if tagged else f for f in RTP + [SIP]]
    seen = [handed(tmp_path, frames, k, 3) for k in range(3)]
    assert all(frames[-1] in s for s in seen)
    for f in frames[:-1]:
        assert sum(f in s for s in seen) == 1


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_remote_mirrors_go_to_worker_0_alone(tmp_path, tagged, n):
    frames = [vlan(f) if tagged else f for f in TUNNELED]
    seen = [handed(tmp_path, frames, k, n) for k in range(n)]
    assert seen[0] == frames
    assert all(s == [] for s in seen[1:])


def test_a_fragmented_tunnel_goes_to_worker_0_alone(tmp_path):
    outer = tunnels.wrap(RTP[0] + b"\0" * 1200, "erspan2")
    pieces = tunnels.fragments(outer, 576, 7)
    assert len(pieces) == 3
    seen = [handed(tmp_path, pieces, k, 2) for k in range(2)]
    assert seen == [pieces, []]
