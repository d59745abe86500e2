"""Killing the recorder mid-run leaves every WAV valid up to its last sync; a re-run completes the set."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
from conftest import C

from capture.store.catalog import Catalog
from capture.testing import synth

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_kill_9_mid_run_then_rerun(tmp_path):
    cap = str(tmp_path / "long.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=40, duration_s=20, spacing_s=0.1, seed=11))
    out = str(tmp_path / "out")
    env = dict(os.environ, SHADOWREC_PURE="1", PYTHONPATH=ROOT)  # the slow twins give time to kill it
    p = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "record", cap, "--out", out],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        wavs = glob.glob(out + "/calls/*/*/*/*.wav")
        if len(wavs) >= 10 and all(os.path.getsize(w) > 44 + 4 * 8000 for w in wavs[:10]):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    by_dn = {c.near_dn: c for c in calls}
    wavs = glob.glob(out + "/calls/*/*/*/*.wav")
    assert len(wavs) >= 10
    checked = 0
    for w in wavs:
        meta = json.load(open(w[:-4] + ".json"))  # the sidecar is never half-written
        with wave.open(w) as f:  # the header is valid
            n = f.getnframes()
            a = np.frombuffer(f.readframes(n), dtype=np.int16).reshape(-1, 2)
        assert os.path.getsize(w) >= 44 + 4 * n
        c = by_dn[meta["near"]["dn"]]
        assert np.array_equal(a[:, 0], c.near[:n]) and np.array_equal(a[:, 1], c.far[:n])
        checked += n > 8000
    assert checked >= 5  # real audio, not just headers, survived the kill
    # a re-run on the same DIR neither loses nor duplicates
    subprocess.run(
        [sys.executable, "-m", "appliance.cli", "record", cap, "--out", out],
        cwd=ROOT,
        check=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL,
    )
    cat = Catalog(os.path.join(out, "catalog.sqlite"))
    rows = cat.query()
    cat.close()
    assert len(rows) == 40 and all(r["state"] == "complete" for r in rows)
    assert len(glob.glob(out + "/calls/*/*/*/*.wav")) == 40
    for r in rows:
        with wave.open(os.path.join(out, r["wav"])) as f:
            assert f.getnframes() == by_dn[r["near"]["dn"]].frames


@pytest.mark.parametrize("local_format", ["wav", "g711"])
def test_calls_left_open_by_a_kill_are_closed_where_their_audio_ends(tmp_path, local_format):
    """Live capture starts by closing the calls a SIGKILL or a power loss left "recording" (no state
    file resumes them): each WAV's header covers all its audio, the call ends there, "interrupted".
    In G.711, a hole the kill left unfilled (a full disk's gap, spanning whole blocks) is found
    in the file and made silence."""
    from capture.media import wav
    from capture.options import Options
    from capture.recorder import Recorder
    from capture.store import resume
    from capture.wire._pcapfile_py import Indexer

    cap = str(tmp_path / "cap.pcap")
    synth.generate(cap, synth.SynthSpec(calls=3, duration_s=10, spacing_s=0.1))
    out = str(tmp_path / "out")
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    rec = Recorder(Options(out_dir=out, local_format=local_format), C)
    rec.feed(buf, offs[: len(offs) // 2], lens, tss, lts)  # then "killed": nothing more happens
    open_ids = sorted(r.call.id for r in rec.calls.active.values())
    assert len(open_ids) == 3
    enc = wav.Encoding.ULAW if local_format == "g711" else wav.Encoding.PCM16
    for r in rec.calls.active.values():  # a gap the full disk left just before the kill: a hole
        os.ftruncate(r.wav.fd, os.fstat(r.wav.fd).st_size + 3 * 8192)
    with open(os.path.join(out, "state-0.json"), "w") as f:  # one of them a state file will resume
        json.dump({"version": 1, "calls": [{"call": {"id": open_ids[0]}}]}, f)
    cat = Catalog(os.path.join(out, "catalog.sqlite"))
    assert resume.close_interrupted(out, cat) == 2
    rows = {r["id"]: r for r in cat.query()}
    assert rows[open_ids[0]]["state"] == "recording"
    for cid in open_ids[1:]:
        meta = rows[cid]
        assert meta == json.load(open(glob.glob(f"{out}/calls/*/*/*/{cid}.json")[0]))
        assert meta["state"] == "complete" and meta["end_reason"] == "interrupted"
        path = os.path.join(out, meta["wav"])
        data = open(path, "rb").read()
        assert wav.encoding(data) == enc and meta["encoding"] == enc.name.lower()
        assert wav.data_bytes(data) == meta["frames"] * wav.frame_bytes(enc) == len(data) - 44
        if enc == wav.Encoding.PCM16:
            with wave.open(path) as w:
                assert w.getnframes() == meta["frames"]
        else:  # the hole at the end is silence, to the last byte
            assert data[-3 * 8192 :] == b"\xff" * 3 * 8192
        assert 3.5 < meta["duration_s"] < 7.5 and meta["duration_s"] == round(meta["frames"] / 8000, 3)
    assert resume.close_interrupted(out, cat) == 0  # done once
