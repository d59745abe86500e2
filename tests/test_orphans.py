"""Calls joined late (capture/store/orphans.py): shadowrec starts while calls are up, their RTP
to the recorder is kept as orphan streams, and each call is recorded from its first packet seen
once its SIP shows up (a re-INVITE, or the BYE); orphans no SIP claims become calls of RTP alone
(encrypted when SIP over TLS was seen with the recorder, or their sizes carry an SRTP tag)."""

import glob
import json
import os

import numpy as np
import pytest
from conftest import PY, C
from test_recorder import audio

from capture.options import Options
from capture.recorder import Recorder
from capture.testing import synth
from capture.wire._pcapfile_py import Indexer

NS = 1_000_000_000


def run_from(tmp_path, impl, spec, start_after_s, **opts):
    """Record the capture as if shadowrec had started ``start_after_s`` into it."""
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, spec)
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    seen = tss >= int(tss[0]) + int(start_after_s * NS)
    out = str(tmp_path / f"out-{impl.name}")
    rec = Recorder(Options(out_dir=out, **opts), impl)
    rec.feed(buf, offs[seen], lens[seen], tss[seen], lts[seen])
    summary = rec.finish()
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    return calls, metas, summary, out, int(tss[seen][0])


@pytest.mark.parametrize("impl", [C, PY], ids=["c", "python"])
def test_a_call_up_before_the_start_is_recorded_from_its_first_packet_seen(tmp_path, impl):
    spec = synth.SynthSpec(calls=3, duration_s=8, spacing_s=0.2, reinvite_at_s=5.0, loss=0.01, seed=41)
    calls, metas, summary, out, t0 = run_from(tmp_path, impl, spec, 2.0, recorder_addrs=(synth.PRIMARY,))
    assert summary["errors"] == {} and summary["calls_recorded"] == 3
    assert summary["orphans"] == summary["orphans_joined"] == 6 and summary["dialogs_joined_late"] == 6
    for c in calls:
        m = metas[c.near_dn]
        assert m["joined_late"] is True and m["end_reason"] == "bye"
        a = audio(out, m)
        skip = (_ns(m["started_at"]) - c.start_ns) * 8000 // NS  # where the WAV begins in the call
        assert 0 < skip < 3 * 8000
        for ch, sent in ((0, c.near), (1, c.far)):
            # from the first packet after the start on (the far stream's first one is 2 ms later:
            # the end of the packet before it, sent before the start, is rightly not there)
            n = min(len(a), len(sent) - skip)
            assert n > 4 * 8000 and np.array_equal(a[160:n, ch], sent[skip + 160 : skip + n])
            assert not a[:16, 1].any()
    assert os.listdir(os.path.join(out, "orphans")) == []  # the spools are gone once replayed


def _ns(iso: str) -> int:
    import datetime

    t = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(t.timestamp()) * NS + t.microsecond * 1000


def _metas(out):
    return [json.load(open(p)) for p in sorted(glob.glob(out + "/calls/*/*/*/*.json"))]


def _aligned(out, m, c, start_ns=None):
    """The recording's audio next to what each stream sent, from where the WAV begins."""
    a = audio(out, m)
    skip = ((start_ns or _ns(m["started_at"])) - c.start_ns) * 8000 // NS
    assert 0 <= skip < 3 * 8000
    return a, skip


@pytest.mark.parametrize("impl", [C, PY], ids=["c", "python"])
def test_a_call_up_before_the_start_is_joined_at_its_bye(tmp_path, impl):
    """No re-INVITE: the BYEs alone name the calls; their streams are the orphans that stopped at
    each BYE (0.2 s apart here), near and far by the recorder's port order, audio sample-exact."""
    spec = synth.SynthSpec(calls=3, duration_s=6, spacing_s=0.2, seed=42)
    calls, metas, summary, out, _ = run_from(tmp_path, impl, spec, 2.0, recorder_addrs=(synth.PRIMARY,))
    assert summary["errors"] == {} and summary["calls_recorded"] == 3
    assert summary["orphans"] == summary["orphans_joined"] == 6 and summary["dialogs_joined_at_bye"] == 6
    assert "rtp_calls" not in summary and "bye_joins_ambiguous" not in summary
    for c in calls:
        m = metas[c.near_dn]
        assert (m["joined_late"], m["joined_by"], m["channels_guessed"], m["kind"]) == (True, "bye", True, "bib")
        assert m["near"]["device"] == c.near_device and m["far"]["dn"] == c.far_dn
        assert m["end_reason"] == "bye" and _ns(m["ended_at"]) == c.end_ns  # the first BYE
        a, skip = _aligned(out, m, c)
        for ch, sent in ((0, c.near), (1, c.far)):
            n = min(len(a), len(sent) - skip)
            assert n > 3 * 8000 and np.array_equal(a[160:n, ch], sent[skip + 160 : skip + n])
    assert os.listdir(os.path.join(out, "orphans")) == []


def test_byes_too_close_together_are_not_guessed_and_their_streams_become_calls_of_rtp(tmp_path):
    """Two calls ending 30 ms apart: which phone stopped at which BYE is not clear by 0.1 s, so
    neither is joined; their streams are kept as calls of RTP alone instead."""
    spec = synth.SynthSpec(calls=2, duration_s=6, spacing_s=0.03, seed=44)
    calls, _, summary, out, _ = run_from(tmp_path, C, spec, 2.0, recorder_addrs=(synth.PRIMARY,))
    assert summary["bye_joins_ambiguous"] == 2 and summary["rtp_calls"] == 2 and summary["calls_recorded"] == 2
    ms = _metas(out)
    assert [m["joined_by"] for m in ms] == ["rtp", "rtp"] and all(m["near"]["dn"] == "" for m in ms)


def test_stragglers_after_a_calls_end_are_not_an_orphan(tmp_path):
    """The phone goes on sending for a second after the BYE: those packets are counted, not kept
    as an orphan (nor made a call of RTP alone)."""
    from capture.wire.pcapfile import PcapWriter

    spec = synth.SynthSpec(calls=2, duration_s=4, spacing_s=0.2, seed=45)
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, spec)
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    frames = [(t, buf[o : o + n]) for o, n, t in zip(offs.tolist(), lens.tolist(), tss.tolist())]
    net = synth._Net(spec)
    for c in calls:
        for r, port in enumerate((20000 + 4 * c.index, 20002 + 4 * c.index)):
            for j in range(50):  # 20 ms apart, from 30 ms after the second BYE
                rtp = bytes([0x80, 0]) + (1000 + j).to_bytes(2, "big") + bytes(8) + bytes(160)
                frames.append(
                    (c.end_ns + (40 + 20 * j) * 1_000_000, net.udp(c.phone, synth.PRIMARY, 16384 + 2 * r, port, rtp))
                )
    path = str(tmp_path / "stragglers.pcap")
    w = PcapWriter(path, 1, nanoseconds=True)
    for t, f in sorted(frames, key=lambda x: x[0]):
        w.write(t, f, 1)
    w.close()
    summary, ms = record(path, str(tmp_path / "out"))
    assert summary["calls_recorded"] == 2 and summary["rtp_after_end"] == 2 * 2 * 50
    assert "orphans" not in summary and "rtp_calls" not in summary and len(ms) == 2


def without_sip(tmp_path, spec, tls: bool):
    """A synthetic capture with its SIP taken out (as if signalled out of sight), and, with
    ``tls``, segments of SIP over TLS between CUCM and the recorder a second before it."""
    from capture.wire.pcapfile import PcapWriter

    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, spec)
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    path = str(tmp_path / "nosip.pcap")
    w = PcapWriter(path, 1, nanoseconds=True)
    net = synth._Net(spec)
    for i in range(4 if tls else 0):  # TLS application data records, as CUCM keeps its connection up
        seg = net.tcp(
            synth.CUCM, synth.PRIMARY, 40000, 5061, 1000 + 100 * i, 0, 0x18, b"\x17\x03\x03\x00\x5f" + bytes(95)
        )
        w.write(int(tss[0]) - NS + i * 1000, seg, 1)
    for o, n, ts, lt in zip(offs.tolist(), lens.tolist(), tss.tolist(), lts.tolist()):
        f = PY.packet.parse(buf[o : o + n], lt)
        if not (f.proto == 17 and 5060 in (f.sport, f.dport)):
            w.write(ts, buf[o : o + n], lt)
    w.close()
    return calls, path


def record(path, out, **opts):
    rec = Recorder(Options(out_dir=out, recorder_addrs=(synth.PRIMARY,), **opts), C)
    rec.record_file(path)
    return rec.finish(), _metas(out)


def test_rtp_with_no_sip_is_recorded_as_a_call_of_rtp_alone(tmp_path):
    """No SIP at all (a mirror without it): each phone's two streams are one call, no parties,
    the codec from the static payload type, near and far by port order, audio sample-exact."""
    spec = synth.SynthSpec(calls=2, duration_s=5, spacing_s=0.2, seed=46)
    calls, path = without_sip(tmp_path, spec, tls=False)
    summary, ms = record(path, str(tmp_path / "out"))
    assert summary["rtp_calls"] == 2 and summary["calls_recorded"] == 2 and summary["errors"] == {}
    for c, m in zip(calls, ms):
        assert (m["kind"], m["joined_by"], m["channels_guessed"], m["codec"]) == ("rtp", "rtp", True, "PCMU")
        assert m["near"] == {"device": "", "dn": "", "refci": ""} and m["encrypted"] is False
        assert m["end_reason"] == "capture_end" and m["primary"]["address"] == synth.PRIMARY
        a, skip = _aligned(str(tmp_path / "out"), m, c)
        for ch, sent in ((0, c.near), (1, c.far)):
            n = min(len(a), len(sent) - skip)
            assert n > 3 * 8000 and np.array_equal(a[160:n, ch], sent[skip + 160 : skip + n])


@pytest.mark.parametrize("tls", [True, False], ids=["sip-over-tls", "srtp-tag-sizes"])
def test_srtp_whose_sip_cannot_be_seen_is_metadata_marked_encrypted_never_noise(tmp_path, tls):
    """SRTP calls signalled out of sight: with SIP over TLS seen between CUCM and the recorder,
    or (without) from the payload sizes, which carry the 80-bit tag. The recording says
    ``encrypted`` and why, its WAV is silence, and the encrypted packets are in its pcap."""
    spec = synth.SynthSpec(calls=2, duration_s=4, spacing_s=0.2, srtp="AES_CM_128_HMAC_SHA1_80", seed=47)
    calls, path = without_sip(tmp_path, spec, tls=tls)
    out = str(tmp_path / "out")
    summary, ms = record(path, out)
    assert summary["rtp_calls"] == 2 and len(ms) == 2
    why = "SIP over TLS" if tls else "SRTP authentication tag"
    for m in ms:
        assert m["encrypted"] is True and m["decoded"] is False and m["kind"] == "rtp"
        assert set(m["srtp"]) == {"near", "far"} and all(why in v["reason"] for v in m["srtp"].values())
        assert not audio(out, m).any()  # silence, not ciphertext played as G.711
        buf = open(os.path.join(out, m["pcap"]), "rb").read()
        assert Indexer(buf).next_batch(1 << 20)[0].size >= 2 * 150  # every packet, encrypted
    assert os.listdir(os.path.join(out, "orphans")) == []


def test_a_bye_the_recorder_sends_names_its_call_from_the_to_uri():
    """The recorder may hang up: its BYE's To carries CUCM's x-parameters, and the recorder is
    the BYE's sender."""
    from capture.sip import message
    from capture.sip.calls import ByeUnseen, CallStarted, CallTable

    c = synth._Capture(synth.SynthSpec()).call(0)
    m = synth._bib_messages(synth.SynthSpec(), c, 0, "near", synth.CUCM, synth.PRIMARY, 20000)
    lines = m["bye"].split(b"\r\n")
    frm = next(i for i, x in enumerate(lines) if x.startswith(b"From:"))
    to = next(i for i, x in enumerate(lines) if x.startswith(b"To:"))
    lines[frm], lines[to] = b"From:" + lines[to][3:], b"To:" + lines[frm][5:]
    t = CallTable()
    fx = t.on_sip(message.parse(b"\r\n".join(lines)), 5 * NS, (synth.PRIMARY, 5060), (synth.CUCM, 5060), "udp")
    assert [type(e) for e in fx] == [CallStarted, ByeUnseen]
    bye = fx[1]
    assert isinstance(bye, ByeUnseen) and (bye.role, bye.recorder, bye.at_ns) == ("near", synth.PRIMARY, 5 * NS)
    assert bye.call.near.refci == c.refci and bye.call.joined_by == "bye"
    # its retransmission is the same dialog, and does not end the call before its streams are found
    assert t.on_sip(message.parse(b"\r\n".join(lines)), 6 * NS, (synth.PRIMARY, 5060), (synth.CUCM, 5060), "udp") == []
    assert bye.call.id in t.calls


def test_the_recorders_address_is_learned_from_sip_when_not_configured(tmp_path):
    """Without ``recorder_addrs``, RTP is not the recorder's until SIP names its address: the
    first re-INVITE does, so only what comes after it is kept (2 s into 6 s calls: the first
    call's audio from its re-INVITE on, the second's from then as well)."""
    spec = synth.SynthSpec(calls=2, duration_s=6, spacing_s=0.2, reinvite_at_s=4.0, seed=43)
    calls, metas, summary, out, _ = run_from(tmp_path, C, spec, 2.0)
    assert len(metas) == 2 and summary["calls_recorded"] == 2
    for m in metas.values():
        assert m["joined_late"] is True and m["duration_s"] < 2.2


def test_only_rtp_becomes_an_orphan(tmp_path):
    """RTCP (packet types 192-223), non-RTP datagrams and short ones to the recorder are not kept."""
    from capture.store.orphans import Orphans

    o = Orphans(str(tmp_path), 30 * NS)
    rtp = bytes([0x80, 0]) + bytes(10)
    for payload in (bytes([0x81, 200]) + bytes(26), bytes([0x80, 201]) + bytes(6), b"\x00" * 20, rtp[:11]):
        o.packet(1, 0, b"frame", 1, payload, b"\1\2\3\4", b"\5\6\7\x08")
    assert o.streams == {}
    o.packet(1, 5, b"frame", 1, rtp, b"\1\2\3\4", b"\5\6\7\x08")
    assert list(o.streams) == [1] and o.counters["orphans"] == 1
    (group,) = o.expire(5 + 31 * NS)
    assert o.streams == {} and [x.key for x in group] == [1] and group[0].src == b"\1\2\3\4"


def test_phones_talking_tls_to_cucm_do_not_make_their_calls_orphans(tmp_path):
    """Secure phones talk SIP over TLS to CUCM too: neither end is a recorder, and the RTP between
    two phones is never an orphan (only the recorder's address, configured, is watched)."""
    from capture.wire.pcapfile import PcapWriter

    net = synth._Net(synth.SynthSpec())
    path = str(tmp_path / "tls-phones.pcap")
    w = PcapWriter(path, 1, nanoseconds=True)
    t0 = synth.T0
    for i in range(5):  # the phone's TLS connection to CUCM, and CUCM's answers
        w.write(t0 + i * 1000, net.tcp("198.18.1.10", synth.CUCM, 50000, 5061, 100 * i, 0, 0x18, bytes(40)), 1)
        w.write(t0 + i * 1000 + 500, net.tcp(synth.CUCM, "198.18.1.10", 5061, 50000, 100 * i, 0, 0x18, bytes(40)), 1)
    for j in range(200):  # a phone-to-phone call's RTP, 20 ms apart
        rtp = bytes([0x80, 0]) + j.to_bytes(2, "big") + bytes(8) + bytes(160)
        w.write(t0 + NS + j * 20_000_000, net.udp("198.18.1.11", "198.18.1.10", 30000, 30002, rtp), 1)
    w.close()
    summary, ms = record(path, str(tmp_path / "out"))
    assert ms == [] and "orphans" not in summary and "rtp_calls" not in summary
