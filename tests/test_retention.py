"""Retention (appliance/retention/): the plan's rules, property-tested, and `shadowrec prune` on real
recordings with a delivery queue."""

import json
import os
import shutil
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from test_delivery import ROOT, archive, fake_calls

from appliance.delivery.queue import Queue
from appliance.retention.plan import Item, Limits, Reason, plan
from appliance.retention.prune import parse_size


def items(*spec):
    return [Item(f"c{i}", age, size, rec, gap, unc) for i, (age, size, rec, gap, unc) in enumerate(spec)]


def test_age_keeps_gaps_three_times_longer_and_never_takes_a_call_recording():
    it = items((40, 10, False, False, False), (40, 10, False, True, False), (100, 10, False, True, False),
               (200, 10, True, False, False))  # fmt: skip
    got = [(i.id, why) for i, why in plan(it, Limits(max_age_days=30))]
    assert got == [("c0", Reason.AGE), ("c2", Reason.AGE)]


def test_size_and_free_space_take_the_oldest_confirmed_first_and_unconfirmed_only_as_a_last_resort():
    it = items((9, 100, False, False, True), (8, 100, False, False, False), (7, 100, False, False, False),
               (6, 100, False, False, True))  # fmt: skip
    assert [(i.id, w) for i, w in plan(it, Limits(max_bytes=250))] == [("c1", Reason.SIZE), ("c2", Reason.SIZE)]
    # nothing confirmed is left to free 350 bytes: the oldest unconfirmed goes, said so
    got = [(i.id, w) for i, w in plan(it, Limits(min_free_bytes=350), free_bytes=0)]
    assert got == [("c1", Reason.FREE_SPACE), ("c2", Reason.FREE_SPACE), ("c0", Reason.FREE_SPACE_UNCONFIRMED),
                   ("c3", Reason.FREE_SPACE_UNCONFIRMED)]  # fmt: skip


ITEM = st.builds(
    Item,
    id=st.text(min_size=1, max_size=8),
    age_days=st.floats(0, 400),
    bytes=st.integers(0, 10**6),
    recording=st.booleans(),
    gap=st.booleans(),
    unconfirmed=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ITEM, max_size=30, unique_by=lambda i: i.id),
    st.one_of(st.none(), st.floats(0, 400)),
    st.one_of(st.none(), st.integers(0, 10**7)),
    st.one_of(st.none(), st.integers(0, 10**7)),
    st.integers(0, 10**7),
)
def test_the_plan_keeps_its_promises(its, age, max_bytes, min_free, free):
    got = plan(its, Limits(max_age_days=age, max_bytes=max_bytes, min_free_bytes=min_free), free)
    ids = [i.id for i, _ in got]
    assert len(ids) == len(set(ids))  # each at most once
    for i, why in got:
        assert not i.recording  # never a call still recording
        if i.unconfirmed:
            assert why is Reason.FREE_SPACE_UNCONFIRMED  # only the floor, as a last resort
    kept = [i for i in its if i.id not in set(ids)]
    if max_bytes is not None and min_free is None:
        movable = [i for i in kept if not i.recording and not i.unconfirmed]
        assert sum(i.bytes for i in kept) <= max_bytes or not movable  # it fits, or nothing else may go
    if min_free is not None:
        freed = free + sum(i.bytes for i, _ in got)
        assert freed >= min_free or not [i for i in kept if not i.recording]


def test_sizes_parse_from_ascii_digits_only():
    assert parse_size("500G") == 500 << 30 and parse_size("1.5T") == int(1.5 * (1 << 40)) and parse_size("4096") == 4096
    for bad in ("", "G", "5X", "١٢G", "-1G"):
        try:
            parse_size(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def prune(*args):
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "prune", *args], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))  # fmt: skip
    return r


def test_prune_removes_files_and_rows_and_keeps_what_an_archive_has_not_confirmed(tmp_path):
    out = str(tmp_path / "rec")
    fake_calls(out, 20)  # 20 calls of 2026-01-02, each a 256-byte WAV and its catalog row
    wav_dir = os.path.join(out, "calls", "2026", "01", "02")
    q = Queue(os.path.join(out, "catalog.sqlite"))
    # an archive that confirmed only the first 5 (the rest: its target is down)
    dest = tmp_path / "arch"
    assert archive("--out", out, "--to", f"file://{dest}", "--once").returncode == 0
    shutil.rmtree(dest)
    q.db.execute("UPDATE deliveries SET state = 'pending' WHERE call_id >= '20260102T000000000Z-000005'")
    dry = prune("--out", out, "--max-age", "30", "--dry-run")
    assert dry.returncode == 0 and len(json.loads(dry.stdout)["would_remove"]) == 5
    assert len(os.listdir(wav_dir)) == 40  # a dry run removes nothing (a WAV and a sidecar a call)
    first5 = sorted(os.listdir(wav_dir))[:10]  # their WAVs and sidecars
    size5 = sum(os.path.getsize(os.path.join(wav_dir, f)) for f in first5)
    r = prune("--out", out, "--max-age", "30")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["removed"] == 5 and got["by_reason"] == {"age": 5} and got["bytes"] == size5
    left = sorted(f for f in os.listdir(wav_dir) if f.endswith(".wav"))
    assert len(left) == 15 and left[0].startswith("20260102T000000000Z-000005") and len(os.listdir(wav_dir)) == 30
    assert q.db.execute("SELECT count(*) FROM calls").fetchone()[0] == 15
    assert (
        q.db.execute("SELECT count(*) FROM deliveries WHERE call_id < '20260102T000000000Z-000005'").fetchone()[0] == 0
    )
    # files removed by hand: the row goes on the next run
    os.unlink(os.path.join(wav_dir, left[0]))
    os.unlink(os.path.join(wav_dir, left[0][:-4] + ".json"))
    r = json.loads(prune("--out", out, "--max-age", "30").stdout)
    assert r["removed"] == 0 and r["orphan_rows"] == 1
    assert q.db.execute("SELECT count(*) FROM calls").fetchone()[0] == 14
    q.close()


def test_a_retired_target_no_longer_protects_its_calls(tmp_path):
    out = str(tmp_path / "rec")
    fake_calls(out, 4)
    dead = "s3://gone/site?verify=readback"
    r = archive("--out", out, "--to", dead, "--once", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
    assert r.returncode == 1
    assert json.loads(prune("--out", out, "--max-age", "30").stdout)["removed"] == 0  # kept for the target
    f = archive("--out", out, "--forget", dead)
    assert f.returncode == 0 and json.loads(f.stdout) == {
        "forgotten": "s3://gone/site",
        "calls_it_had_not_confirmed": 4,
    }
    assert json.loads(prune("--out", out, "--max-age", "30").stdout)["removed"] == 4
