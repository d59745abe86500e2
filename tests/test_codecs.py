"""Calls in G.722, G.729 (Annex B), Opus and GSM: a known signal encoded by the reference
encoders (tests/codec_refs.py), sent by synthetic BiB phones, recorded, decoded after the call
from its kept packets (capture/media/codecs.py, capture/store/postdecode.py), and compared with
the signal at a documented SNR, both channels aligned to within 20 ms of where their packets
arrived. Also the real G.729 and G.722 captures in tests/data, decoded as FFmpeg alone does."""

import glob
import json
import os

import codec_refs as refs
import numpy as np
import pytest
import soundfile as sf
from conftest import C

from capture.options import Options
from capture.recorder import Recorder
from capture.store.catalog import Catalog
from capture.testing import synth

SECONDS = 3.0
# the least SNR (dB) each codec's path must give on the test signal (measured: see the README)
MIN_SNR = {"G722": 25.0, "G729": 5.0, "OPUS": 10.0, "GSM": 11.0, "AMR": 7.0, "AMR-octet": 7.0, "ILBC-20": 6.0,
           "ILBC-30": 2.5}  # fmt: skip
# the decoder's own delay, beyond which a channel counts as misplaced (FFmpeg's iLBC enhancer: 22 ms in mode 30)
MAX_LAG_MS = {"ILBC-30": 25}


def encoded(codec: str):
    x8, x16 = refs.signal(8000, SECONDS), refs.signal(16000, SECONDS)
    enc = {"G722": lambda: refs.g722(x16), "OPUS": lambda: refs.opus(x16), "G729": lambda: refs.g729(x8),
           "GSM": lambda: refs.gsm(x8), "AMR": lambda: refs.amr(x8, False),
           "AMR-octet": lambda: refs.amr(x8, True), "ILBC-20": lambda: refs.ilbc(20),
           "ILBC-30": lambda: refs.ilbc(30)}[codec]()  # fmt: skip
    return (x16 if codec in ("G722", "OPUS") else x8), enc


def snr_at_best_lag(ref: np.ndarray, got: np.ndarray, start: int, window: int) -> tuple[float, int]:
    """The SNR of ``got`` against ``ref`` placed at ``start`` + lag, for the best lag in [0, window)."""
    best = (-1e9, 0)
    for lag in range(window):
        seg = got[start + lag : start + lag + len(ref)].astype(np.float64)
        r = ref[: len(seg)].astype(np.float64)
        noise = ((r - seg) ** 2).sum()
        snr = 10 * np.log10((r**2).sum() / max(noise, 1e-9))
        best = max(best, (snr, lag))
    return best


def record(tmp_path, spec):
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, spec)
    out = str(tmp_path / "out")
    rec = Recorder(Options(out_dir=out), C)
    rec.record_file(cap)
    summary = rec.finish()
    metas = {m["near"]["dn"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    return calls, metas, summary, out


@pytest.mark.parametrize("codec", ["G722", "G729", "OPUS", "GSM", "AMR", "AMR-octet", "ILBC-20", "ILBC-30"])
def test_a_known_signal_comes_back(tmp_path, codec):
    if codec == "G729" and not refs.have_bcg729():
        pytest.skip("bcg729 (libbcg729-0) is not installed")
    x, payloads = encoded(codec)
    name, ptime = codec, 20
    fmtp = {"AMR-octet": "octet-align=1", "ILBC-20": "mode=20", "ILBC-30": "mode=30"}.get(codec, "")
    if codec.startswith("ILBC"):
        ptime = int(codec[-2:])
    codec = codec.split("-")[0]
    spec = synth.SynthSpec(
        calls=2,
        duration_s=SECONDS,
        codec=codec,
        fmtp=fmtp,
        ptime_ms=ptime,
        payloads=lambda k, role, n: payloads[:n],
    )
    calls, metas, summary, out = record(tmp_path, spec)
    assert summary["calls_decoded"] == 2 and summary["errors"] == {}
    rate = 16000 if codec in ("G722", "OPUS") else 8000
    for c in calls:
        m = metas[c.near_dn]
        assert m["decoded"] is True and m["sample_rate"] == rate and m["decoder"]["codecs"] == [codec]
        a, r = sf.read(os.path.join(out, m["wav"]), dtype="int16", always_2d=True)
        assert r == rate and len(a) == m["frames"] == round(m["duration_s"] * rate)
        for ch, role in enumerate(("near", "far")):
            st = m["decoder"]["streams"][role]
            assert st["errors"] == 0 and st["packets"] == c.packets[role]["sent"]
            if codec == "G729":
                assert st["comfort_noise"] > 0  # Annex B: SID frames in the silence
            arrival = (60 + 2 * ch) * rate // 1000  # where the phone's first packet came, in samples
            window = MAX_LAG_MS.get(name, 20) * rate // 1000
            snr, lag = snr_at_best_lag(x[: len(a) - arrival - window], a[:, ch], arrival, window)
            print(f"{name} {role}: SNR {snr:.1f} dB, {1000 * lag / rate:.2f} ms after its packet's arrival")
            assert snr >= MIN_SNR[name] and lag < window


@pytest.mark.parametrize(
    "capture, codec",
    [("miarec_12a_g729_rtp_with_icmp_port_unreachable.pcap", "G729"), ("miarec_10a_g722_rtp_with_icmp.pcap", "G722")],
)
def test_the_real_captures_decode_as_ffmpeg_alone_decodes_them(tmp_path, capture, codec):
    """A real phone's G.729 and G.722 packets (tests/data), sent as one BiB stream: the recording
    holds exactly what FFmpeg decodes from those packets in order."""
    import av
    from conftest import data

    from capture.media.codecs import CODECS
    from capture.wire import _packet_py as packet
    from capture.wire import rtp
    from capture.wire._pcapfile_py import Indexer

    buf = open(data(capture), "rb").read()
    offs, lens, _, lts = Indexer(buf).next_batch(1 << 20)
    real = []
    for o, n, lt in zip(offs.tolist(), lens.tolist(), lts.tolist()):
        f = packet.parse(buf[o : o + n], lt)
        if f.proto == 17:
            p = buf[o + f.payload_off : o + f.payload_off + f.payload_len]
            h = rtp.parse(p)
            real.append(p[h.payload_offset : h.payload_offset + h.payload_length])
    real = real * 2  # enough for any packet count the call makes
    spec = synth.SynthSpec(calls=1, duration_s=len(real) * 0.01, codec=codec, payloads=lambda k, r, n: real[:n])
    calls, metas, summary, out = record(tmp_path, spec)
    (m,) = metas.values()
    a, rate = sf.read(os.path.join(out, m["wav"]), dtype="int16", always_2d=True)
    s = CODECS[codec]
    ctx = av.CodecContext.create(s.decoder, "r")
    ctx.sample_rate, ctx.layout = s.rate, "mono"
    sent = calls[0].packets["near"]["sent"]
    want = np.concatenate([fr.to_ndarray().reshape(-1) for p in real[:sent] for fr in ctx.decode(av.Packet(p))])
    start = 60 * rate // 1000
    assert np.array_equal(a[start : start + len(want), 0], want)
    assert np.abs(want).max() > 0


def test_a_decoder_that_dies_costs_one_call_not_the_recorder(tmp_path):
    """FFmpeg meets what the world sent: if a decoder crashes, its child process dies, that call
    keeps its silent WAV and pcap (counted as a decode failure), and the next call is decoded by a
    new child."""
    import dataclasses

    from capture.store.postdecode import PostDecoder

    x, payloads = encoded("GSM")
    spec = synth.SynthSpec(calls=2, duration_s=2, codec="GSM", payloads=lambda k, role, n: payloads[:n])
    cap = str(tmp_path / "cap.pcap")
    synth.generate(cap, spec)
    out = str(tmp_path / "out")
    rec = Recorder(Options(out_dir=out), C)
    rec.calls.post = PostDecoder(refs.crashing_decoder)
    submit = rec.calls.post.submit
    first = []

    def submit_first_as_crash(job):  # the first call's job is the one its decoder dies on
        if not first:
            first.append(job.call_id)
            job = dataclasses.replace(job, call_id="crash-" + job.call_id)
        submit(job)

    rec.calls.post.submit = submit_first_as_crash
    rec.record_file(cap)
    summary = rec.finish()
    assert summary["decode_failures"] == 1 and summary["calls_decoded"] == 1 and rec.calls.post.child_deaths == 1
    metas = {m["id"]: m for m in map(lambda p: json.load(open(p)), glob.glob(out + "/calls/*/*/*/*.json"))}
    crashed = metas[first[0]]
    assert crashed["decoded"] is False and crashed["pcap"]
    assert not sf.read(os.path.join(out, crashed["wav"]), dtype="int16")[0].any()  # silence, not noise
    (other,) = [m for cid, m in metas.items() if cid != first[0]]
    assert other["decoded"] is True and other["decoder"]["codecs"] == ["GSM"]


def test_calls_waiting_for_their_decoding_when_killed_are_decoded_at_the_next_start(tmp_path):
    """kill -9 while two GSM calls wait for their decoding (their jobs queued, none decoded): the
    next start finds their jobs kept under DIR/decoding/ and decodes them; nothing is left there."""
    import subprocess
    import sys

    x, payloads = encoded("GSM")
    cap, out = str(tmp_path / "cap.pcap"), str(tmp_path / "out")
    synth.generate(cap, synth.SynthSpec(calls=2, duration_s=2, codec="GSM", payloads=lambda k, role, n: payloads[:n]))
    killed = subprocess.run(
        [sys.executable, "-c", f"""
import os, signal
from capture.options import Options
from capture.recorder import Recorder
rec = Recorder(Options(out_dir={out!r}))
rec.calls.post.thread = True  # its decoding thread never starts: the jobs wait
rec.record_file({cap!r})
rec.tick(rec.now + 10**10)  # the sidecars and catalog rows of the ended calls
os.kill(os.getpid(), signal.SIGKILL)
"""],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    assert killed.returncode == -9
    kept = glob.glob(out + "/decoding/record/*.json")
    metas = [json.load(open(p)) for p in glob.glob(out + "/calls/*/*/*/*.json")]
    assert len(kept) == 2 and [m["decoded"] for m in metas] == [False, False]
    rec = Recorder(Options(out_dir=out), C)
    summary = rec.finish()
    assert summary["decodes_resumed"] == 2 and summary["calls_decoded"] == 2
    assert glob.glob(out + "/decoding/record/*") == []
    for p in glob.glob(out + "/calls/*/*/*/*.json"):
        m = json.load(open(p))
        assert m["decoded"] is True and m["decoder"]["codecs"] == ["GSM"]
        a = sf.read(os.path.join(out, m["wav"]), dtype="int16", always_2d=True)[0]
        assert snr_at_best_lag(x[: len(a) - 640], a[:, 0], 480, 160)[0] >= MIN_SNR["GSM"]
        (row,) = Catalog(os.path.join(out, "catalog.sqlite"), readonly=True).query(call_id=m["id"])
        assert row["decoded"] is True
