"""A full disk is a state, not a crash: a real filesystem (a tmpfs of a few MiB) fills up under
the recorder, then gets room again. Root (mount) is needed; CI runs as root."""

import contextlib
import glob
import json
import os
import subprocess
import sys
import wave

import pytest
from conftest import C
from test_recorder import assert_exact, audio

from capture.options import Options
from capture.recorder import Recorder
from capture.store.catalog import Catalog
from capture.testing import synth

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt, leave_bytes):
    """Take all but ``leave_bytes`` of the filesystem with a filler file."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(mnt, "filler"), "wb") as f:
        f.write(b"\1" * max(0, free - leave_bytes))


def sidecars(out):
    return {m["near"]["dn"]: m for m in (json.load(open(p)) for p in glob.glob(out + "/calls/*/*/*/*.json"))}


def test_a_disk_that_fills_and_empties(tmp_path, small_fs):
    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=6, duration_s=6, spacing_s=0.5))
    out = os.path.join(small_fs, "rec")
    fill(small_fs, 1_600_000)  # under a floor of 1 MiB after about 3 calls' audio (32 kB/s each)
    rec = Recorder(Options(out_dir=out, min_free_mb=1), C)
    rec.record_file(cap)
    summary = rec.finish()  # no exception: the disk's state is reported
    disk = summary["disk"]
    assert disk["times_full"] == 1 and disk["gap_s"] > 0 and disk["state"] == "full"
    metas = sidecars(out)
    assert len(metas) == 6 and all(m["state"] == "complete" and m["end_reason"] == "bye" for m in metas.values())
    assert sum(m["disk_gap_s"] for m in metas.values()) > 0
    for m in metas.values():  # no header claims more than the file holds
        path = os.path.join(out, m["wav"])
        with wave.open(path) as w:
            assert 44 + w.getnframes() * 4 <= os.path.getsize(path)
    assert not glob.glob(out + "/**/*.tmp", recursive=True)
    # space comes back: the same command again on the same directory records every call whole, once
    os.unlink(os.path.join(small_fs, "filler"))
    rec = Recorder(Options(out_dir=out, min_free_mb=0), C)
    rec.record_file(cap)
    summary = rec.finish()
    assert summary["disk"]["state"] == "ok" and rec.io.errors == 0
    metas = sidecars(out)
    assert len(metas) == 6 and all(m["disk_gap_s"] == 0 for m in metas.values())
    for c in calls:
        assert_exact(out, c, metas[c.near_dn])
    assert len(Catalog(os.path.join(out, "catalog.sqlite"), readonly=True).query(limit=100)) == 6


@pytest.mark.parametrize("local_format", ["wav", "g711"])
def test_audio_goes_on_when_space_returns_without_a_restart(tmp_path, small_fs, local_format):
    """The first half of the capture on a full disk, the second after space was freed, one run.
    The gap is silence in place: zeros in 16-bit PCM, and in G.711 (where a zero byte is a
    full-scale sample) the law's silence code, written once the disk took it."""
    import numpy as np

    from capture.wire._pcapfile_py import Indexer

    cap = str(tmp_path / "cap.pcap")
    calls = synth.generate(cap, synth.SynthSpec(calls=2, duration_s=8, spacing_s=0.1))
    out = os.path.join(small_fs, "rec")
    os.makedirs(out)
    fill(small_fs, 1_200_000 if local_format == "wav" else 1_100_000)
    rec = Recorder(Options(out_dir=out, min_free_mb=1, local_format=local_format), C)
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    half = int(len(offs) * 0.5)
    rec.feed(buf, offs[:half], lens[:half], tss[:half], lts[:half])
    assert rec.status()["disk"]["state"] == "full"
    os.unlink(os.path.join(small_fs, "filler"))
    rec.feed(buf, offs[half:], lens[half:], tss[half:], lts[half:])
    summary = rec.finish()
    assert summary["disk"]["state"] == "ok" and summary["disk"]["times_full"] == 1
    for c in calls:
        m = sidecars(out)[c.near_dn]
        assert m["state"] == "complete" and 0 < m["disk_gap_s"] < 7
        a = audio(out, m)
        assert len(a) == c.frames  # whole length: the gap is silence in place
        tail = 8000 * 2  # the last 2 s were written after space came back: exact
        assert np.array_equal(a[-tail:, 0], c.near[-tail:]) and np.array_equal(a[-tail:, 1], c.far[-tail:])
        sent = np.stack([c.near, c.far], axis=1)
        gap = (a != sent) & (a == 0)  # silence where audio was sent: the gap
        assert gap.sum() >= 2 * 8000 * m["disk_gap_s"] * 0.9 and np.all((a == sent) | gap)
    assert rec.io.holes.pending == {} and (local_format == "wav") == (rec.io.holes.filled_bytes == 0)


def test_record_says_so_and_exits_non_zero(tmp_path, small_fs):
    out = os.path.join(small_fs, "rec")
    fill(small_fs, 1_500_000)
    p = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "record", "--out", out, "--min-free-mb", "1"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert p.returncode == 3, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("shadowrec: the disk holding") and "run the same command again" in last
    assert "Traceback" not in p.stderr
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(small_fs, "filler"))


def test_a_restart_while_the_disk_is_full_keeps_the_calls_gap(tmp_path, small_fs):
    """A stop (SIGTERM: open calls saved) while the disk is full, and a start: the calls resume,
    and their sidecars still count the audio the full disk kept out before the restart."""
    from capture.sip.calls import EndReason
    from capture.wire._pcapfile_py import Indexer

    cap = str(tmp_path / "cap.pcap")
    synth.generate(cap, synth.SynthSpec(calls=2, duration_s=6, spacing_s=0.1))
    out = os.path.join(small_fs, "rec")
    os.makedirs(out)
    state = os.path.join(out, "state-0.json")
    fill(small_fs, 1_200_000)
    buf = open(cap, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    half = len(offs) // 2
    rec = Recorder(Options(out_dir=out, min_free_mb=1, state_file=state), C)
    rec.feed(buf, offs[:half], lens[:half], tss[:half], lts[:half])
    rec.finish(EndReason.SHUTDOWN)
    gaps = {m["id"]: m["disk_gap_s"] for m in sidecars(out).values()}
    assert len(gaps) == 2 and all(g > 0 for g in gaps.values())
    os.unlink(os.path.join(small_fs, "filler"))
    rec = Recorder(Options(out_dir=out, min_free_mb=1, state_file=state), C)
    rec.feed(buf, offs[half:], lens[half:], tss[half:], lts[half:])
    rec.finish()
    metas = sidecars(out)
    assert rec.counters["calls_resumed"] == 2 and len(metas) == 2
    for m in metas.values():
        assert m["state"] == "complete" and m["end_reason"] == "bye" and m["disk_gap_s"] >= gaps[m["id"]]
