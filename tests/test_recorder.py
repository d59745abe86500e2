"""End to end: synthetic BiB captures through `Recorder`, WAVs compared sample for sample."""

import datetime as dt
import glob
import json
import os
import struct
import wave

import numpy as np
import pytest
from conftest import PY, C, data
from hypothesis import given
from hypothesis import strategies as st

from capture.media import wav
from capture.media._g711_py import ALAW_ENCODE, ALAW_TABLE, ULAW_ENCODE, ULAW_TABLE
from capture.options import Options
from capture.recorder import Recorder
from capture.store.catalog import Catalog
from capture.store.sidecar import iso
from capture.testing import synth, tunnels
from capture.wire._pcapfile_py import Indexer
from capture.wire.pcapfile import PcapWriter

NS = 10**9


@given(st.integers(min_value=-(10**18), max_value=253402300799 * NS + NS - 1))
def test_iso_is_iso_8601_utc_with_milliseconds(ns):
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    assert iso(ns) == t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    assert iso(None) is None


def run(impl, tmp_path, spec, name="cap.pcap", **opts):
    cap = str(tmp_path / name)
    calls = synth.generate(cap, spec)
    out = str(tmp_path / f"out-{impl.name}")
    rec = Recorder(Options(out_dir=out, **opts), impl)
    rec.record_file(cap)
    summary = rec.finish()
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    for m in metas.values():  # filed under the day (UTC) it started
        assert m["wav"] == "calls/{}/{}/{}/{}.wav".format(*m["started_at"][:10].split("-"), m["id"])
    return calls, metas, summary, out


def audio(out, meta):
    """A recording's samples, 16-bit, (frames, 2): decoded through the G.711 tables if it keeps
    the phones' bytes (``--local-format g711``)."""
    path = os.path.join(out, meta["wav"])
    head = open(path, "rb").read(wav.HEADER_BYTES)
    enc = wav.encoding(head)
    assert meta.get("encoding", "pcm16") == enc.name.lower()
    if enc != wav.Encoding.PCM16:
        data = open(path, "rb").read()[wav.HEADER_BYTES : wav.HEADER_BYTES + wav.data_bytes(head)]
        table = ULAW_TABLE if enc == wav.Encoding.ULAW else ALAW_TABLE
        return table[np.frombuffer(data, dtype=np.uint8)].reshape(-1, 2)
    with wave.open(path) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)


def assert_exact(out, call, meta, tolerance=0):
    """Each channel equals the known audio, at an offset of at most ``tolerance`` samples."""
    a = audio(out, meta)
    assert len(a) == call.frames
    for ch, exp in ((0, call.near), (1, call.far)):
        got = a[:, ch]
        ok = any(
            np.array_equal(got[max(0, s) : len(got) + min(0, s)], exp[max(0, -s) : len(exp) - max(0, s)])
            for s in range(-tolerance, tolerance + 1)
        )
        assert ok, f"channel {ch} of {meta['id']} differs from the audio sent"


@pytest.mark.parametrize(
    "kind, outer",
    [(k, "v4") for k in tunnels.KINDS] + [("erspan2", "v6"), ("vxlan", "v6"), ("erspan2", "fragmented")],
)
def test_a_remote_mirror_records_what_the_plain_span_records(impl, tmp_path, kind, outer):
    """The same calls mirrored through a tunnel (ERSPAN I/II/III, GRE TEB, VXLAN, TZSP; the
    tunnel over IPv6, or its outer packets fragmented by a small MTU): the same calls, the same
    streams and the same audio as from the plain SPAN. The tunnel's addresses are no call's."""
    spec = synth.SynthSpec(calls=3, duration_s=2, vlan=(100,), ipv6=(outer == "v6"), seed=8)
    calls, plain, _, _ = run(impl, tmp_path, spec)
    cap = str(tmp_path / "wrapped.pcap")
    tunnels.wrap_capture(
        str(tmp_path / "cap.pcap"), cap, kind, v6=(outer == "v6"), mtu=576 if outer == "fragmented" else None
    )
    out = str(tmp_path / "wrapped")
    rec = Recorder(Options(out_dir=out), impl)
    rec.record_file(cap)
    summary = rec.finish()
    assert summary["errors"] == {} and summary["calls_recorded"] == 3
    assert (summary.get("tunnel_reassembled", 0) > 0) == (outer == "fragmented")
    assert summary["engine_tunneled"] > 0.9 * summary["records_read"] - summary.get("tunnel_reassembled", 0) * 3
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    for c in calls:
        m, p = metas[c.near_dn], plain[c.near_dn]
        for k in ("id", "started_at", "ended_at", "end_reason", "near", "far", "primary", "frames"):
            assert m[k] == p[k], k
        assert [(s["packets"], s["lost"], s["src"], s["dst"]) for s in m["streams"]] == [
            (s["packets"], s["lost"], s["src"], s["dst"]) for s in p["streams"]
        ]
        assert "198.18.250." not in json.dumps(m) and "2001:db8:fa::" not in json.dumps(m)
        assert_exact(out, c, m)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G729"])
def test_local_g711_keeps_the_phones_bytes_in_half_the_disk(impl, tmp_path, codec):
    """``local_format="g711"``: a G.711 call's WAV holds its law's bytes (WAVE_FORMAT_MULAW/ALAW),
    the codes the phone sent, bit for bit, in half the bytes of 16-bit PCM; other codecs stay PCM."""
    spec = synth.SynthSpec(calls=3, duration_s=3, codec=codec)
    calls, metas, summary, out = run(impl, tmp_path, spec, local_format="g711")
    (tmp_path / "pcm").mkdir()
    pcm = run(impl, tmp_path / "pcm", spec)[1]
    enc = {"PCMU": wav.Encoding.ULAW, "PCMA": wav.Encoding.ALAW}.get(codec, wav.Encoding.PCM16)
    assert len(metas) == 3 and summary["errors"] == {}
    for c in calls:
        m = metas[c.near_dn]
        assert m["encoding"] == enc.name.lower() and m["frames"] == c.frames == pcm[c.near_dn]["frames"]
        path = os.path.join(out, m["wav"])
        assert os.path.getsize(path) == wav.HEADER_BYTES + wav.frame_bytes(enc) * c.frames
        if enc == wav.Encoding.PCM16:
            continue
        if enc == wav.Encoding.ULAW:  # (A-law has no zero: its silence, 0xD5, decodes to 8)
            assert_exact(out, c, m)
        table = ULAW_ENCODE if enc == wav.Encoding.ULAW else ALAW_ENCODE  # the phones' codes
        data = np.frombuffer(open(path, "rb").read()[wav.HEADER_BYTES :], dtype=np.uint8)
        assert np.array_equal(data[0::2], table[c.near.view(np.uint16)])
        assert np.array_equal(data[1::2], table[c.far.view(np.uint16)])


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"codec": "PCMA"},
        {"transport": "tcp", "tcp_split": True},
        {"vlan": (100, 200)},
        {"ipv6": True},
        {"pcapng": True},
        {"fragment_sip": True},
        {"fragment_sip": True, "ipv6": True},
    ],
)
def test_calls_recorded_bit_exactly(impl, tmp_path, variant):
    calls, metas, summary, out = run(impl, tmp_path, synth.SynthSpec(calls=3, duration_s=2, **variant))
    assert len(metas) == 3 and summary["errors"] == {}
    for c in calls:
        m = metas[c.near_dn]
        assert_exact(out, c, m)
        assert m["end_reason"] == "bye" and m["codec"] == ("PCMA" if variant.get("codec") else "PCMU")
        assert [s["role"] for s in m["streams"]] == ["near", "far"]
        assert all(s["lost"] == 0 and s["packets"] == c.packets[s["role"]]["sent"] for s in m["streams"])


def test_a_worker_records_a_call_shorter_than_its_tick(impl, tmp_path):
    """With several workers, a call's files are opened by the one that sees its RTP, checked at
    each tick; a call that ends before the next tick had its RTP here too, and is recorded."""
    calls, metas, summary, out = run(impl, tmp_path, synth.SynthSpec(calls=3, duration_s=0.2), own_by_rtp=True)
    assert len(metas) == 3 and summary["calls_recorded"] == 3
    for c in calls:
        assert_exact(out, c, metas[c.near_dn])


def test_loss_duplicates_reordering_and_jitter(impl, tmp_path):
    spec = synth.SynthSpec(calls=4, duration_s=4, loss=0.03, dup=0.03, reorder=0.03, jitter_ms=15, seed=3)
    calls, metas, summary, out = run(impl, tmp_path, spec)
    for c in calls:
        m = metas[c.near_dn]
        assert_exact(out, c, m)  # lost packets are silence, duplicates and reordering change nothing
        for s in m["streams"]:
            st = c.packets[s["role"]]
            assert s["lost"] == st["lost"] and s["duplicates"] == st["dup"]
            assert s["packets"] == st["sent"] - st["lost"]
    assert sum(s["reordered"] for m in metas.values() for s in m["streams"]) > 0


def test_output_contract(tmp_path):
    calls, metas, _, out = run(C, tmp_path, synth.SynthSpec(calls=2, duration_s=2, dtmf="5#"))
    c = calls[0]
    m = metas[c.near_dn]
    for k in (
        "id",
        "kind",
        "started_at",
        "ended_at",
        "duration_s",
        "end_reason",
        "codec",
        "near",
        "far",
        "primary",
        "streams",
        "wav",
    ):
        assert k in m
    assert m["kind"] == "bib" and m["state"] == "complete"
    assert m["started_at"] == "2026-09-21T14:13:20.000Z" and m["ended_at"] == "2026-09-21T14:13:22.000Z"
    assert m["duration_s"] == 2.0
    assert m["near"] == {"device": c.near_device, "dn": c.near_dn, "refci": c.refci}
    assert m["far"]["dn"] == c.far_dn and m["far"]["refci"] == str(int(c.refci) - 1)
    assert m["primary"] == {"address": "198.18.0.20", "port": 5060, "failed_at": None, "evidence": []}
    s = m["streams"][0]
    assert s["src"] == f"{c.phone}:16384" and s["dst"] == "198.18.0.20:20000" and isinstance(s["ssrc"], int)
    assert [(e["digit"], e["role"], e["ended"]) for e in m["events"]] == [("5", "near", True), ("#", "near", True)]
    assert m["events"][0]["duration_ms"] == 100
    assert os.path.exists(os.path.join(out, m["wav"]))
    cat = Catalog(os.path.join(out, "catalog.sqlite"))
    assert [r["id"] for r in cat.query(dn=c.far_dn)] == [m["id"]]
    assert [r["id"] for r in cat.query(device=c.near_device.lower())] == [m["id"]]
    assert len(cat.query(since="2026-09-21T14:13:20.100Z")) == 1
    assert cat.query(primary_failed=True) == []
    cat.close()


def test_primary_dies_mid_call_recording_goes_on_to_the_bye(impl, tmp_path):
    spec = synth.SynthSpec(calls=3, duration_s=6, fail_at_s=3.0, calls_after_fail=2, seed=5)
    calls, metas, summary, out = run(impl, tmp_path, spec)
    answered = [c for c in calls if c.answered]
    assert len(answered) == 3 and len(metas) == 3  # never-answered calls cannot be recorded passively
    for c in answered:
        m = metas[c.near_dn]
        assert_exact(out, c, m)  # audio to the real end, across the failure
        assert m["end_reason"] == "bye" and m["duration_s"] == 6.0
        kinds = {e["kind"] for e in m["primary"]["evidence"]}
        assert "bye_unanswered" in kinds and m["primary"]["failed_at"] is not None
    assert any("icmp_port_unreachable" in {e["kind"] for e in m["primary"]["evidence"]} for m in metas.values())
    first_icmp = min(
        e["at"] for m in metas.values() for e in m["primary"]["evidence"] if e["kind"] == "icmp_port_unreachable"
    )
    assert first_icmp >= "2026-09-21T14:13:23.000Z"


def test_rtp_timeout_and_capture_end(tmp_path):
    cap = str(tmp_path / "c.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=1, duration_s=3))
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(10**6)
    # drop the BYEs (and their answers): the call must end by RTP timeout, or at the end of the capture
    keep = [(o, n) for o, n in zip(offs, lens) if b"BYE" not in buf[o : o + n]]
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\0" * 28  # unrelated traffic 5 s after the call
    later = int(tss[-1]) + 5 * NS
    with open(cap, "wb") as f:
        f.write(buf[:24])
        for o, n in keep:
            f.write(buf[o - 16 : o + n])
        f.write(struct.pack("<IIII", later // NS, later % NS, len(arp), len(arp)) + arp)
    for timeout, reason in ((1.0, "rtp_timeout"), (60.0, "capture_end")):
        out = str(tmp_path / reason)
        rec = Recorder(Options(out_dir=out, rtp_timeout_s=timeout), C)
        rec.record_file(cap)
        rec.finish()
        (m,) = [json.load(open(p)) for p in glob.glob(out + "/calls/*/*/*/*.json")]
        assert m["end_reason"] == reason
        last = max(s["last_at"] for s in m["streams"])
        if reason == "rtp_timeout":
            assert m["ended_at"] == last  # ends at the last RTP packet
        else:
            assert m["ended_at"] == iso(later)  # ends with the capture
        a = audio(out, m)
        exp = calls[0].near
        n = min(len(a), len(exp))
        assert np.array_equal(a[:n, 0], exp[:n]) and len(a) >= len(exp) - 200


def test_g729_is_kept_as_pcap_and_decoded_from_it_after_the_call(impl, tmp_path):
    """The engine does not decode G.729: every packet goes to the call's pcap, and FFmpeg decodes
    them once the call has ended (tests/test_codecs.py checks the audio)."""
    calls, metas, summary, out = run(impl, tmp_path, synth.SynthSpec(calls=1, duration_s=2, codec="G729"))
    m = metas[calls[0].near_dn]
    assert m["codec"] == "G729" and m["decoded"] is True and m["pcap"] and summary["calls_decoded"] == 1
    assert m["decoder"]["codecs"] == ["G729"] and m["sample_rate"] == 8000
    import dpkt

    pk = list(dpkt.pcap.Reader(open(os.path.join(out, m["pcap"]), "rb")))
    rtp = sum(c.packets[r]["sent"] for c in calls for r in ("near", "far"))
    assert len(pk) >= rtp + 6  # every RTP packet and the call's SIP
    assert m["decoder"]["streams"]["near"]["packets"] == calls[0].packets["near"]["sent"]


def test_noise_garbage_and_many_unrelated_flows_harm_nothing(impl, tmp_path):
    spec = synth.SynthSpec(calls=2, duration_s=2, noise_flows=3000 if impl.name == "c" else 300, garbage=200)
    calls, metas, summary, out = run(impl, tmp_path, spec)
    for c in calls:
        assert_exact(out, c, metas[c.near_dn])
    assert summary["errors"].get("SipError", 0) > 0 and summary["engine_other"] > 0


def test_c_and_python_pipelines_write_identical_recordings(tmp_path):
    spec = synth.SynthSpec(
        calls=3,
        duration_s=3,
        loss=0.05,
        dup=0.05,
        reorder=0.05,
        jitter_ms=20,
        dtmf="9",
        fail_at_s=2.0,
        garbage=20,
        transport="tcp",
        tcp_split=True,
    )
    _, ma, _, oa = run(C, tmp_path, spec)
    _, mb, _, ob = run(PY, tmp_path, spec)
    assert ma.keys() == mb.keys()
    for k in ma:
        a = dict(ma[k])
        b = dict(mb[k])
        assert a == b
        assert open(os.path.join(oa, a["wav"]), "rb").read() == open(os.path.join(ob, b["wav"]), "rb").read()


def test_rerun_on_same_dir_neither_loses_nor_duplicates(tmp_path):
    cap = str(tmp_path / "r.pcap")
    synth.generate(cap, synth.SynthSpec(calls=3, duration_s=2))
    out = str(tmp_path / "out")
    for _ in range(2):
        rec = Recorder(Options(out_dir=out), C)
        rec.record_file(cap)
        rec.finish()
    cat = Catalog(os.path.join(out, "catalog.sqlite"))
    assert len(cat.query()) == 3 and len(glob.glob(out + "/calls/*/*/*/*.wav")) == 3
    cat.close()


@pytest.mark.parametrize(
    "name",
    [
        "heplify_rtp_rtcp_sip_ipv4_udp.pcap",
        "heplify_erspan_sip_ipv4_udp.pcapng",
        "sipp_dtmf_2833_1.pcap",
        "miarec_12a_g729_rtp_with_icmp_port_unreachable.pcap",
        "sipp_g711a.pcap",
    ],
)
def test_public_captures_without_bib_record_nothing_and_do_not_fail(impl, tmp_path, name):
    rec = Recorder(Options(out_dir=str(tmp_path)), impl)
    rec.record_file(data(name))
    s = rec.finish()
    assert s["records_read"] > 0 and s.get("calls_recorded", 0) == 0


@pytest.mark.parametrize("blob", [b"", b"\xd4\xc3\xb2\xa1", b"not a capture at all"])
def test_unreadable_files_are_reported_not_raised(tmp_path, blob):
    p = tmp_path / "bad.pcap"
    p.write_bytes(blob)
    rec = Recorder(Options(out_dir=str(tmp_path / "o")), C)
    rec.record_file(str(p))
    rec.record_file(str(tmp_path / "missing.pcap"))
    assert rec.finish()["errors"] == {"PcapError": 2}


def test_hostile_sip_is_counted_and_harms_no_call(impl, tmp_path):
    """The messages that stopped the recorder (CSeq "²", Content-Length "١٢", an SDP port in
    Arabic-Indic digits...) are SIP and SDP errors now; every call around them is exact."""
    calls, metas, summary, out = run(impl, tmp_path, synth.SynthSpec(calls=3, duration_s=2, hostile=80))
    for c in calls:
        assert_exact(out, c, metas[c.near_dn])
    assert summary["errors"]["SipError"] >= 30 and summary["errors"]["SdpError"] >= 5
    assert not [k for k in summary["errors"] if k.startswith("unhandled.")]


def test_a_fault_in_one_packet_is_counted_and_the_loop_goes_on(impl, tmp_path, caplog):
    """Whatever a packet's handling raises, not only parse errors, stays inside its boundary:
    counted under "unhandled.<class>", logged with the frame in hex, no other call touched."""
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=3, duration_s=2))
    rec = Recorder(Options(out_dir=str(tmp_path / "out")), impl)
    on_sip, victim = rec.table.on_sip, []

    def flaky(msg, *a, **k):  # every BYE of the first call to end: a fault of ours
        d = rec.table.dialogs.get(msg.call_id)
        if msg.method == "BYE" and d is not None and (not victim or victim[0] == d.call.id):
            victim[:] = [d.call.id]
            raise KeyError("a fault of ours")
        return on_sip(msg, *a, **k)

    rec.table.on_sip = flaky
    rec.record_file(cap)
    summary = rec.finish()
    assert summary["errors"] == {"unhandled.KeyError": 2}  # its two dialogs' BYEs
    assert "unhandled.KeyError: 'a fault of ours'" in caplog.text and "input (" in caplog.text
    metas = {m["id"]: m for m in (json.load(open(p)) for p in glob.glob(str(tmp_path / "out/calls/*/*/*/*.json")))}
    assert len(metas) == 3 and metas[victim[0]]["end_reason"] != "bye"  # ended at the capture's end
    for c in calls:
        m = next(m for m in metas.values() if m["near"]["dn"] == c.near_dn)
        if m["id"] != victim[0]:
            assert m["end_reason"] == "bye"
            assert_exact(str(tmp_path / "out"), c, m)


def test_the_last_packet_before_the_bye_is_written_whole(impl, tmp_path):
    """A stream's timing is anchored on its first packet; when that one came late, the last
    packet, sent just before the BYE, is placed past it. It is kept whole: the WAV runs on to
    its end (it used to be cut at the BYE, losing the last packet of every stream in the lab)."""
    spec = synth.SynthSpec(calls=3, duration_s=2, first_late_ms=10, tail_ms=0)
    calls, metas, summary, out = run(impl, tmp_path, spec)
    for c in calls:
        a = audio(out, metas[c.near_dn])
        for ch, role in enumerate(("near", "far")):
            sent = np.concatenate([getattr(c, role), c.past_end[role]])  # every packet sent, to the last one
            assert len(sent) >= c.frames  # which ends at the BYE; it was placed 10 ms (80 samples) later
            assert np.array_equal(a[80 : 80 + len(sent), ch], sent)
        assert len(a) > c.frames and metas[c.near_dn]["end_reason"] == "bye"


def test_a_jump_in_time_writes_no_days_of_silence(impl, tmp_path):
    """A call whose BYE is not in the capture, then one packet three days later (a gap in the
    capture, a clock step or a corrupt timestamp, as fuzzing found: 8 GB of memory and 4 GB of
    silence per call). The call times out at its last packet, and the WAV stops there."""
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=1, duration_s=3))
    buf = open(cap, "rb").read()
    idx = Indexer(buf)
    offs, lens, tss, lts = idx.next_batch(100000)
    cut = str(tmp_path / "cut.pcap")
    w = PcapWriter(cut, 1, nanoseconds=True)
    t_bye = calls[0].end_ns
    for o, n, t in zip(offs, lens, tss, strict=True):
        if int(t) < t_bye - 1_000_000_000:  # the last second and the BYE are not in the capture
            w.write(int(t), buf[int(o) : int(o) + int(n)])
    w.write(t_bye + 3 * 86400 * 1_000_000_000, buf[int(offs[0]) : int(offs[0]) + int(lens[0])])
    w.close()
    rec = Recorder(Options(out_dir=str(tmp_path / "out")), impl)
    rec.record_file(cut)
    rec.finish()
    (m,) = [json.load(open(p)) for p in glob.glob(str(tmp_path / "out/calls/*/*/*/*.json"))]
    assert m["end_reason"] == "rtp_timeout"
    assert 1.9 < m["duration_s"] < 2.1 and len(audio(str(tmp_path / "out"), m)) < 2.1 * 8000


@pytest.mark.parametrize("local_format", ["wav", "g711"])
def test_a_restart_keeps_each_streams_timing(impl, tmp_path, local_format):
    """Stopped (open calls saved) and started again 2 s later: the first packet after the restart
    comes with its own jitter, yet the audio goes on exactly where it belongs (it was placed a few
    ms off before: each stream re-anchored on that packet; found by the soak). A G.711 recording
    goes on in G.711 (resume reads the law from its header)."""
    from capture.sip.calls import EndReason

    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=2, duration_s=10, spacing_s=0.1, jitter_ms=8, seed=4))
    out, state = str(tmp_path / "out"), str(tmp_path / "out" / "state-0.json")
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    stop = int(tss[0]) + 5 * 1_000_000_000
    for part in (tss < stop, tss >= stop + 2 * 1_000_000_000):
        rec = Recorder(Options(out_dir=out, state_file=state, local_format=local_format), impl)
        rec.feed(buf, offs[part], lens[part], tss[part], lts[part])
        summary = rec.finish(EndReason.SHUTDOWN if part[0] else EndReason.CAPTURE_END)
    assert summary["calls_resumed"] == 2
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    for c in calls:
        a = audio(out, metas[c.near_dn])
        for ch, sent in ((0, c.near), (1, c.far)):
            assert np.array_equal(a[: 4 * 8000, ch], sent[: 4 * 8000])  # before the stop
            assert np.array_equal(a[7 * 8000 + 400 :, ch], sent[7 * 8000 + 400 : len(a)])  # after the start
