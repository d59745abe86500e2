"""Capture-file indexer: both kernels against dpkt's readers, truncation, corruption, agreement."""

import struct

import dpkt
import numpy as np
import pytest
from conftest import PY, C, data
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.errors import PcapError
from capture.testing import synth
from capture.wire.pcapfile import PcapWriter


def index_all(impl, buf):
    idx = impl.Indexer(buf)
    parts = []
    while True:
        b = idx.next_batch(7)  # small batches exercise the batch boundary
        if not len(b[0]):
            break
        parts.append(b)
    cat = [np.concatenate([p[k] for p in parts]) if parts else np.array([]) for k in range(4)]
    return cat, idx.error


def dpkt_records(path):
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.endswith("ng") else dpkt.pcap.Reader(f)
        return [(int(round(ts * 1e6)), bytes(buf)) for ts, buf in reader]


@pytest.mark.parametrize(
    "name",
    [
        "heplify_rtp_rtcp_sip_ipv4_udp.pcap",
        "heplify_erspan_sip_ipv4_udp.pcapng",
        "sipp_dtmf_2833_1.pcap",
        "miarec_12a_g729_rtp_with_icmp_port_unreachable.pcap",
    ],
)
def test_sample_files_match_dpkt(impl, name):
    path = data(name)
    buf = open(path, "rb").read()
    (offs, lens, tss, lts), err = index_all(impl, buf)
    ref = dpkt_records(path)
    assert err is None
    assert len(offs) == len(ref)
    for o, n, t, (rts, rbuf) in zip(offs, lens, tss, ref):
        assert buf[o : o + n] == rbuf
        assert abs(int(t) // 1000 - rts) <= 1


def test_synth_pcap_and_pcapng_agree(impl, tmp_path):
    a, b = str(tmp_path / "a.pcap"), str(tmp_path / "b.pcapng")
    synth.generate(a, synth.SynthSpec(calls=2, duration_s=1))
    synth.generate(b, synth.SynthSpec(calls=2, duration_s=1, pcapng=True))
    ba, bb = open(a, "rb").read(), open(b, "rb").read()
    (oa, la, ta, _), _ = index_all(impl, ba)
    (ob, lb, tb, ltb), _ = index_all(impl, bb)
    assert list(ta) == list(tb) and len(oa) > 100  # nanosecond timestamps in both
    assert all(ba[o : o + n] == bb[p : p + m] for o, n, p, m in zip(oa, la, ob, lb))
    assert set(ltb) == {1}


def test_big_endian_pcap(impl):
    hdr = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    rec = struct.pack(">IIII", 10, 500, 4, 4) + b"abcd"
    (offs, lens, tss, lts), err = index_all(impl, hdr + rec)
    assert list(tss) == [10_000_500_000] and list(lts) == [101] and err is None


def test_truncated_file_keeps_everything_before(impl, tmp_path):
    p = str(tmp_path / "t.pcap")
    synth.generate(p, synth.SynthSpec(calls=1, duration_s=1))
    buf = open(p, "rb").read()
    (full, *_), _ = index_all(impl, buf)
    cut = buf[: int(full[-5]) + 3]  # inside the fifth-last record
    (offs, *_), err = index_all(impl, cut)
    assert len(offs) == len(full) - 5
    assert err.startswith("truncated record at offset")


def test_corrupt_record_header_stops_with_message(impl):
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    good = struct.pack("<IIII", 1, 0, 2, 2) + b"ab"
    bad = struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 2)
    (offs, *_), err = index_all(impl, hdr + good + bad + good)
    assert len(offs) == 1 and err.startswith("corrupt record header at offset 42")


@pytest.mark.parametrize(
    "blob,msg",
    [
        (b"", "too short"),
        (b"GIF89a" + b"\0" * 30, "not a pcap"),
        (struct.pack("<I", 0xA1B2C3D4) + b"\0" * 4, "global header"),
    ],
)
def test_not_a_capture(impl, blob, msg):
    with pytest.raises(PcapError, match=msg):
        impl.Indexer(blob)


def _run(impl, buf):
    try:
        (o, n, t, k), err = index_all(impl, buf)
        return [list(map(int, x)) for x in (o, n, t, k)], err
    except PcapError as e:
        return "PcapError", str(e)


def _valid(ng):
    import os
    import tempfile

    fd, p = tempfile.mkstemp()
    os.close(fd)
    w = PcapWriter(p, 1, nanoseconds=True, pcapng=ng)
    for i in range(4):
        w.write(synth.T0 + i * 1000, b"\x02" * 20 + bytes([i]) * i)
    w.close()
    b = open(p, "rb").read()
    os.unlink(p)
    return b


VALID = [_valid(False), _valid(True)]


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_c_and_python_agree_on_mutated_files(d):
    buf = bytearray(d.draw(st.sampled_from(VALID)))
    for _ in range(d.draw(st.integers(0, 6))):
        i = d.draw(st.integers(0, len(buf) - 1))
        buf[i] = d.draw(st.integers(0, 255))
    buf = bytes(buf[: d.draw(st.integers(0, len(buf)))])
    assert _run(C, buf) == _run(PY, buf)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_c_and_python_agree_on_random_bytes(blob):
    assert _run(C, blob) == _run(PY, blob)
