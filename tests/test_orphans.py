"""Calls joined late (capture/store/orphans.py): shadowrec starts while calls are up, their RTP
to the recorder is kept as orphan streams, and each call is recorded from its first packet seen
once its SIP shows up (a re-INVITE); orphans no SIP claims are dropped and counted."""

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


def test_orphans_no_sip_claims_are_dropped_and_counted(tmp_path):
    spec = synth.SynthSpec(calls=2, duration_s=6, spacing_s=0.2, seed=42)  # no re-INVITE: no SIP after the start
    calls, metas, summary, out, _ = run_from(tmp_path, C, spec, 2.0, recorder_addrs=(synth.PRIMARY,))
    assert metas == {} and summary["orphans"] == summary["orphans_expired"] == 4
    assert os.listdir(os.path.join(out, "orphans")) == []


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
        o.packet(1, 0, b"frame", 1, payload)
    assert o.streams == {}
    o.packet(1, 5, b"frame", 1, rtp)
    assert list(o.streams) == [1] and o.counters["orphans"] == 1
    o.expire(5 + 31 * NS)
    assert o.streams == {} and o.counters["orphans_expired"] == 1 and os.listdir(o.dir) == []
