"""The hot loop: RTP accounting and placement, and C/Python agreement on whole captures and random RTP."""

import os
import struct

import numpy as np
import pytest
from conftest import PY, C
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.media import wav
from capture.media.wav import Encoding
from capture.testing import synth
from capture.wire.frame import flow_key

KEY = flow_key(bytes([198, 18, 0, 20]), 20000)
NS = 1_000_000_000


def rtp(seq, ts, ssrc=0x1234, pt=0, payload=b"\x55" * 160, marker=0):
    return struct.pack("!BBHII", 0x80, pt | marker, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def fresh(impl):
    e = impl.Engine((5060,))
    slot = e.add_call(0)
    e.set_stream(KEY, slot, 0, 1, 0, 101, False)
    return e, slot


def test_sequence_wrap_duplicates_reordering_loss(impl):
    e, slot = fresh(impl)
    seqs = [65533, 65534, 65535, 0, 0, 2, 1, 4]  # wrap, a duplicate, 1 reordered, 3 lost
    for k, s in enumerate(seqs):
        e.feed_rtp(KEY, rtp(s, (s - 65533) % 65536 * 160), k * 20_000_000, 7, False)
    st_ = e.stream_stats(e.stream_id(KEY))
    assert (st_["packets"], st_["duplicates"], st_["reordered"], st_["lost"]) == (7, 1, 1, 1)
    assert st_["src_key"] == 7 and st_["ssrc"] == 0x1234


def test_audio_lands_by_timestamp_and_is_flushed_once(impl):
    e, slot = fresh(impl)
    e.feed_rtp(KEY, rtp(10, 1000, payload=b"\x00" * 160), NS // 10, 1, False)  # at 100 ms
    e.feed_rtp(KEY, rtp(12, 1320, payload=b"\x80" * 160), NS // 10 + 40_000_000, 1, False)
    pcm = np.frombuffer(e.flush(slot, 2000), dtype=np.int16).reshape(-1, 2)
    assert (pcm[800:960, 0] == -32124).all() and (pcm[1120:1280, 0] == 32124).all()
    assert (pcm[960:1120, 0] == 0).all() and (pcm[:, 1] == 0).all()  # the lost packet is silence
    assert e.flush(slot, 2000) == b""
    e.feed_rtp(KEY, rtp(11, 1160), NS // 10 + 20_000_000, 1, False)  # too late now
    assert e.stream_stats(e.stream_id(KEY))["late"] == 1


def test_timestamp_jump_and_ssrc_change_reanchor_to_wall_time(impl):
    e, slot = fresh(impl)
    e.feed_rtp(KEY, rtp(1, 0), 0, 1, False)
    e.feed_rtp(KEY, rtp(2, 8000 * 3600), 20_000_000, 1, False)  # an hour's jump in 20 ms
    e.feed_rtp(KEY, rtp(500, 777, ssrc=99), 40_000_000, 1, False)  # a new source
    s = e.stream_stats(e.stream_id(KEY))
    assert s["resyncs"] == 1 and s["ssrc_changes"] == 1 and s["too_far"] == 0
    pcm = np.frombuffer(e.flush(slot, 480), dtype=np.int16).reshape(-1, 2)
    assert (pcm[:480, 0] != 0).all()


def test_telephone_event_and_raw_streams_go_to_python(impl):
    e, slot = fresh(impl)
    assert e.feed_rtp(KEY, rtp(1, 0, pt=101, payload=b"\x01\x0a\x00\xa0"), 0, 1, False) == impl.engine.EVENT_TELEPHONE
    e.set_stream(KEY, slot, 0, 0, 18, 101, True)
    assert e.feed_rtp(KEY, rtp(2, 160, pt=18, payload=b"\0" * 20), 1, 1, False) == impl.engine.EVENT_RAW
    assert e.feed_rtp(KEY, rtp(2, 160, pt=18, payload=b"\0" * 20), 1, 1, True) == 0


def _run_engine(impl, path):
    """Run the engine alone over a capture with the synth's flows mapped; return everything observable."""
    buf = open(path, "rb").read()
    idx = impl.Indexer(buf)
    offs, lens, tss, lts = idx.next_batch(1 << 20)
    e = impl.Engine((5060,))
    slot = e.add_call(int(tss[0]))
    for k in range(40):
        e.set_stream(flow_key(bytes([198, 18, 0, 20]), 20000 + 2 * k), slot, k % 2, 1, 0, 101, k % 7 == 3)
    out, i, pcm, deadline = [], 0, [], int(tss[0]) + NS // 5
    while True:
        st_, i, arg = e.run(buf, offs, lens, tss, lts, i, len(offs), deadline)
        out.append((st_, i, arg))
        if st_ == impl.engine.DONE:
            break
        if st_ == impl.engine.TICK:
            pcm.append(e.flush(slot, ((int(tss[i]) - int(tss[0])) * 8000) // NS - 2000))
            deadline = int(tss[i]) + NS // 5
            continue
        i += 1
    stats = [e.stream_stats(s) for s in sorted(set(e.flows.values()))]
    return out, stats, b"".join(pcm), e.counters


def test_c_and_python_engines_agree_on_a_noisy_capture(tmp_path):
    p = str(tmp_path / "n.pcap")
    synth.generate(
        p,
        synth.SynthSpec(
            calls=12,
            duration_s=2,
            loss=0.05,
            dup=0.05,
            reorder=0.05,
            jitter_ms=30,
            noise_flows=50,
            garbage=30,
            dtmf="1",
            fragment_sip=True,
            vlan=(7,),
        ),
    )
    a, b = _run_engine(C, p), _run_engine(PY, p)
    assert a[0] == b[0]
    assert a[1] == b[1]
    assert a[2] == b[2] and len(a[2]) > 0
    assert a[3] == b[3]


RTP_PACKETS = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.sampled_from([1, 2, 0x1234]),
        st.sampled_from([0, 8, 13, 101, 127]),
        st.integers(0, 10 * NS),
        st.one_of(st.binary(max_size=400), st.just(b"\x55" * 160)),
        st.integers(0, 0xFF),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(RTP_PACKETS, st.sampled_from([1, 2]), st.booleans())
def test_c_and_python_agree_on_random_rtp(packets, codec, raw_header):
    results = []
    for impl in (C, PY):
        e = impl.Engine((5060,))
        slot = e.add_call(0)
        e.set_stream(KEY, slot, 1, codec, 0 if codec == 1 else 8, 101, False)
        rets = []
        for seq, ts, ssrc, pt, arrival, payload, b0 in packets:
            pkt = rtp(seq, ts, ssrc, pt, payload)
            if raw_header:
                pkt = bytes([b0]) + pkt[1:]  # any version, padding, extension, CSRC count
            rets.append(e.feed_rtp(KEY, pkt, arrival, 5, False))
        stats = e.stream_stats(e.stream_id(KEY))
        assert e.lost_total() == stats["lost"]
        results.append((rets, stats, e.flush(slot, 20000), e.last_rtp_ns(slot)))
    assert results[0] == results[1]


def test_flush_due_writes_only_open_calls_up_to_their_due_sample(impl):
    e = impl.Engine((5060,))
    a, b, c = e.add_call(0), e.add_call(NS), e.add_call(0)  # b starts 1 s later; c is not open
    e.set_stream(KEY, a, 0, 1, 0, 101, False)
    e.feed_rtp(KEY, rtp(1, 0, payload=b"\x00" * 160), 0, 1, False)
    e.set_writing(a, True)
    e.set_writing(b, True)
    out = np.zeros(1 << 20, dtype=np.uint8)
    n, segs = e.flush_due(NS + NS // 2, 400, out)  # due: a 12000-400, b 4000-400
    assert segs.tolist() == [[a, 0, 11600], [b, 0, 3600]] and n == 4 * (11600 + 3600)
    near = out[: 4 * 11600].view(np.int16).reshape(-1, 2)[:, 0]
    assert (near[:160] == -32124).all() and (near[160:] == 0).all()
    assert e.flushed(a) == 11600 and e.flushed(b) == 3600 and e.flushed(c) == 0
    n, segs = e.flush_due(NS + NS // 2, 400, out)  # nothing new is due
    assert n == 0 and segs.shape == (0, 3)
    small = np.zeros(4 * 9000, dtype=np.uint8)  # room for 9000 frames at a time
    assert e.flush_due(3 * NS, 400, small)[1].tolist() == [[a, 11600, 9000]]
    assert e.flush_due(3 * NS, 400, small)[1].tolist() == [[a, 20600, 3000], [b, 3600, 6000]]
    assert e.flush_due(3 * NS, 400, small)[1].tolist() == [[b, 9600, 6000]]
    assert e.flush_due(3 * NS, 400, small)[1].tolist() == []


def test_headers_due_covers_what_was_flushed(impl):
    import io
    import wave

    e = impl.Engine((5060,))
    a, b = e.add_call(0), e.add_call(0, 500)  # b resumed with 500 frames on disk
    e.set_writing(a, True)
    e.set_writing(b, True)
    out = np.zeros(44 * 4, dtype=np.uint8)
    assert e.headers_due(out)[1].tolist() == []  # nothing behind yet
    e.flush_due(NS, 0, np.zeros(1 << 16, dtype=np.uint8))
    n, slots = e.headers_due(out)
    assert slots.tolist() == [a, b] and n == 88
    for k, frames in ((0, 8000), (1, 8000)):
        with wave.open(io.BytesIO(bytes(out[44 * k : 44 * k + 44]) + bytes(4 * frames))) as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (2, 8000, 2, frames)
    assert e.headers_due(out)[1].tolist() == []
    e.set_synced(a, 0)
    assert e.headers_due(np.zeros(44, dtype=np.uint8))[1].tolist() == [a]


@pytest.mark.parametrize("enc", [Encoding.ULAW, Encoding.ALAW])
def test_a_g711_call_is_handed_out_in_its_own_law(impl, enc):
    """The phones' bytes come back: decoding then encoding gives every code (µ-law's negative
    zero, 0x7F, as 0xFF), and silence is the law's silence code."""
    e = impl.Engine((5060,))
    a = e.add_call(0)
    codes = bytes(range(256)) * 2
    e.set_stream(KEY, a, 0, int(enc), 0, 101, False)
    for k in range(0, len(codes), 160):
        e.feed_rtp(KEY, rtp(k // 160, k, payload=codes[k : k + 160]), k * NS // 8000, 1, False)
    e.set_writing(a, True, enc)
    out = np.zeros(1 << 16, dtype=np.uint8)
    n, segs = e.flush_due(NS, 0, out)
    assert segs.tolist() == [[a, 0, 8000]] and n == 2 * 8000
    near, far = out[:n:2].tobytes(), out[1:n:2].tobytes()
    want = codes.replace(b"\x7f", b"\xff") if enc == Encoding.ULAW else codes
    assert near[: len(codes)] == want
    assert set(near[len(codes) :]) == set(far) == {wav.SILENCE[enc]}
    n, slots = e.headers_due(out)
    assert bytes(out[:44]) == wav.header(2 * 8000, enc) and wav.encoding(bytes(out[:44])) == enc
    with pytest.raises(ValueError):
        e.set_writing(a, True, 3)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-2 * NS, 3 * NS), st.integers(0, 20000), st.booleans(), st.sampled_from(list(Encoding))),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 0xFFFF), st.integers(0, 4 * NS)), max_size=30),
    st.lists(st.integers(-NS, 8 * NS), min_size=1, max_size=5),
    st.integers(0, 4000),
    st.sampled_from([0, 3, 4000, 40000, 2 << 20]),
)
def test_c_and_python_agree_on_flush_due(calls, packets, nows, lag, size):
    """In every encoding: the same pieces, bytes and headers from both twins."""
    results = []
    for impl in (C, PY):
        e = impl.Engine((5060,))
        slots = []
        for k, (start, flushed, writing, enc) in enumerate(calls):
            slot = e.add_call(start, flushed)
            e.set_writing(slot, writing, enc)
            e.set_stream(KEY + k + 1, slot, k % 2, 1 + k % 2, 0, 101, False)
            slots.append(slot)
        out = []
        for k, seq, at in packets:
            if k < len(calls):
                e.feed_rtp(KEY + k + 1, rtp(seq, seq * 160, payload=bytes(range(160))), at, 5, False)
        buf = np.zeros(size, dtype=np.uint8)
        hbuf = np.zeros(100, dtype=np.uint8)
        for now in sorted(nows):
            for _ in range(50):
                n, segs = e.flush_due(now, lag, buf)
                out.append((bytes(buf[:n]), segs.tolist()))
                fb = {s: wav.frame_bytes(calls[slots.index(s)][3]) for s in slots}
                assert n == sum(fb[int(s)] * int(f) for s, _, f in segs) <= size
                if not len(segs):
                    break
            while True:
                n, hs = e.headers_due(hbuf)
                out.append((bytes(hbuf[:n]), hs.tolist()))
                if not len(hs):
                    break
        results.append((out, [e.flushed(s) for s in slots]))
    assert results[0] == results[1]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5000), st.binary(max_size=300)), max_size=12))
def test_c_and_python_pwrite_batch_write_the_same_files(tmp_path_factory, pieces):
    contents = []
    for impl in (C, PY):
        d = tmp_path_factory.mktemp(impl.name)
        fds = [os.open(str(d / f"f{k}"), os.O_RDWR | os.O_CREAT, 0o644) for k in range(3)]
        buf = b"".join(p for _, _, p in pieces)
        failed = impl.engine.pwrite_batch(
            buf,
            np.array([fds[f] for f, _, _ in pieces], dtype=np.int64),
            np.array([o for _, o, _ in pieces], dtype=np.int64),
            np.array([len(p) for _, _, p in pieces], dtype=np.int64),
        )
        assert failed == 0
        contents.append([os.pread(fd, 1 << 20, 0) for fd in fds])
        for fd in fds:
            os.close(fd)
    assert contents[0] == contents[1]


def test_pwrite_batch_counts_failures_and_checks_its_arguments(impl, tmp_path):
    r, w = os.pipe()
    os.close(w)
    one = np.array([1], dtype=np.int64)
    assert impl.engine.pwrite_batch(b"x", np.array([r], dtype=np.int64), np.zeros(1, np.int64), one) == 1
    good = os.open(str(tmp_path / "g"), os.O_RDWR | os.O_CREAT, 0o640)
    marks = np.zeros(4, dtype=np.uint8)  # which pieces failed: the read end of a pipe takes no write
    fds = np.array([good, r, good, r], dtype=np.int64)
    assert impl.engine.pwrite_batch(b"abcd", fds, np.arange(4, dtype=np.int64), np.ones(4, np.int64), marks) == 2
    assert marks.tolist() == [0, 1, 0, 1] and os.pread(good, 8, 0) == b"a\0c"
    with pytest.raises(ValueError, match="fewer bytes"):
        impl.engine.pwrite_batch(b"abcd", fds, np.arange(4, dtype=np.int64), np.ones(4, np.int64), marks[:3])
    os.close(good)
    os.close(r)
    with pytest.raises(ValueError, match="do not fit"):
        impl.engine.pwrite_batch(b"", one, np.zeros(1, np.int64), one)
    with pytest.raises(ValueError, match="differ in length"):
        impl.engine.pwrite_batch(b"xx", np.array([1, 2], dtype=np.int64), np.zeros(1, np.int64), one)


def test_a_stream_needs_a_call(impl):
    e, slot = fresh(impl)
    for bad in (-1, slot + 1):
        with pytest.raises(ValueError, match=f"no call in slot {bad}"):
            e.set_stream(flow_key(bytes([198, 18, 0, 21]), 20000), bad, 0, 1, 0, 101, False)
    e.end_call(slot)
    with pytest.raises(ValueError, match=f"no call in slot {slot}"):
        e.set_stream(KEY, slot, 0, 1, 0, 101, False)


def test_lost_total_sums_the_streams_still_routed(impl):
    e, slot = fresh(impl)
    other = flow_key(bytes([198, 18, 0, 21]), 20002)
    e.set_stream(other, slot, 1, 1, 0, 101, False)
    for k, seq in enumerate([0, 3]):  # 2 lost
        e.feed_rtp(KEY, rtp(seq, seq * 160), k * 20_000_000, 7, False)
    for k, seq in enumerate([10, 11, 15]):  # 3 lost
        e.feed_rtp(other, rtp(seq, seq * 160, ssrc=9), k * 20_000_000, 8, False)
    assert e.lost_total() == 5
    e.remove_stream(other)
    assert e.lost_total() == 2


def test_reserve_allocates_rings_ahead_without_touching_calls(impl):
    """``reserve`` (a service's start) gives slots their rings in 2 MiB chunks of 64; a call
    already placed keeps its audio, and a reused slot's ring starts silent."""
    e = impl.Engine((5060,))
    assert e.reserve(0) == 0
    assert e.reserve(1) == 2 << 20
    slot = e.add_call(0)
    e.set_stream(KEY, slot, 0, 1, 0, 101, False)
    e.feed_rtp(KEY, rtp(1, 0, payload=b"\x00" * 160), 0, 1, False)
    assert e.reserve(65) == 4 << 20 and e.reserve(10) == 4 << 20  # grows only
    pcm = np.frombuffer(e.flush(slot, 160), dtype=np.int16).reshape(-1, 2)
    assert (pcm[:, 0] == -32124).all()
    e.feed_rtp(KEY, rtp(2, 160, payload=b"\x00" * 160), 20_000_000, 1, False)  # placed, never flushed
    e.remove_stream(KEY)
    e.end_call(slot)
    again = e.add_call(0)
    assert again == slot
    assert e.flush(again, 320) == bytes(4 * 320)


def test_the_built_engine_places_audio(impl):
    """A build with SHADOWREC_NO_AUDIO (bench/live_bench.py --floor) records silence: never test or ship one."""
    assert impl.engine.AUDIO is True
    e, slot = fresh(impl)
    e.feed_rtp(KEY, rtp(1, 0, payload=b"\x00" * 160), 0, 1, False)
    assert (np.frombuffer(e.flush(slot, 160), dtype=np.int16).reshape(-1, 2)[:, 0] == -32124).all()


def test_unknown_udp_to_a_watched_recorder_address_goes_to_python(impl):
    """Orphans: UDP to a watched address on a port with no stream is handed back (PYTHON); to any
    other address it is counted as other traffic. At most MAX_WATCHED addresses; IPv4 only."""
    import dpkt

    def frame(dst):
        u = dpkt.udp.UDP(sport=16384, dport=20000, data=rtp(1, 160))
        u.ulen = 8 + len(u.data)
        ip = dpkt.ip.IP(src=bytes([198, 18, 1, 1]), dst=dst, p=17, data=u)
        ip.len = 20 + u.ulen
        return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))

    rec, other = bytes([198, 18, 0, 20]), bytes([198, 18, 0, 99])
    buf = frame(other) + frame(rec)
    n = len(buf) // 2
    idx = (np.array([0, n], dtype=np.int64), np.array([n, n], dtype=np.int32), np.array([1, 2], dtype=np.int64),
           np.array([1, 1], dtype=np.int32))  # fmt: skip
    e = impl.Engine((5060,))
    assert e.run(buf, *idx, 0, 2, 1 << 62) == (impl.engine.DONE, 2, 0)  # nothing watched: both other
    assert e.watch(rec) and e.watch(rec) and not e.watch(b"\x00" * 16) and e.watched == {rec}
    assert e.run(buf, *idx, 0, 2, 1 << 62) == (impl.engine.PYTHON, 1, 0)  # the watched one, handed back
    assert e.counters["other"] == 3 and e.counters["python"] == 1
    for k in range(impl.engine.MAX_WATCHED - 1):
        assert e.watch(bytes([10, 0, 0, k]))
    assert not e.watch(bytes([10, 0, 1, 0])) and len(e.watched) == impl.engine.MAX_WATCHED
