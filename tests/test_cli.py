import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def sh(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )


def test_record_embedded_demo_then_list_and_filter(tmp_path):
    out = str(tmp_path / "o")
    r = sh("record", "--out", out)
    summary = json.loads(r.stdout)
    assert summary["calls_recorded"] == 6 and "embedded demo" in r.stderr
    calls = json.loads(sh("calls", "--out", out, "--json").stdout)
    assert len(calls) == 6 and {c["end_reason"] for c in calls} == {"bye"}
    failed = json.loads(sh("calls", "--out", out, "--json", "--primary-failed").stdout)
    assert 0 < len(failed) <= 6 and all(c["primary"]["failed_at"] for c in failed)
    one = json.loads(sh("calls", "--out", out, "--json", "--dn", calls[0]["far"]["dn"]).stdout)
    assert [c["id"] for c in one] == [calls[0]["id"]]
    assert calls[0]["id"] in sh("calls", "--out", out).stdout
    # recordings are private whatever the caller's umask: files 0640 at most, directories 0750 at most
    for d, _dirs, files in os.walk(out):
        assert os.stat(d).st_mode & 0o027 == 0, d
        for f in files:
            assert os.stat(os.path.join(d, f)).st_mode & 0o137 == 0, f


def test_synth_command_and_help(tmp_path):
    p = str(tmp_path / "x.pcapng")
    r = sh("synth", p, "--calls", "2", "--duration", "1", "--transport", "tcp", "--pcapng")
    assert json.loads(r.stdout) == {"output": p, "calls": 2, "answered": 2}
    top = sh("--help").stdout
    assert "record" in top and "--fsync-interval" in sh("record", "--help").stdout
    assert "SUPPRESS" not in top and "lab-cucm" not in top  # the lab's own actors are not listed


def test_bad_recording_options_are_one_line_and_nothing_is_written(tmp_path):
    r = sh("record", "--out", str(tmp_path / "o"), "--rtp-timeout", "-1", check=False)
    assert r.returncode == 2 and "shadowrec: bad options: rtp_timeout_s" in r.stderr
    assert not os.path.exists(tmp_path / "o")


def test_calls_without_catalog_is_a_clear_error(tmp_path):
    r = sh("calls", "--out", str(tmp_path), check=False)
    assert r.returncode == 2 and "no catalog" in r.stderr


def test_capture_options_are_checked_before_anything_opens(tmp_path):
    assert "--reserve-calls" in sh("capture", "--help").stdout
    for bad, why in (("-1", "-1 is outside 0-100000"), ("1e9", "'1e9' is not a number of calls")):
        r = sh("capture", "--iface", "lo", "--out", str(tmp_path / "o"), "--reserve-calls", bad, check=False)
        assert r.returncode == 2 and f"--reserve-calls: {why}" in r.stderr
    assert not os.path.exists(tmp_path / "o")


def test_the_unit_is_hardened():
    """systemd-analyze's exposure score of the shipped unit (6.4 before the hardening; aim: 4.0 or less)."""
    import re
    import shutil

    import pytest

    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze")
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", os.path.join(ROOT, "images", "shadowrec.service")],
        capture_output=True,
        text=True,
    )
    score = float(re.search(r"Overall exposure level for shadowrec.service: ([0-9.]+)", r.stdout).group(1))
    assert score <= 4.0, r.stdout[-3000:]
    for line in ("UMask=0027", "StateDirectoryMode=0750", "NoNewPrivileges=yes"):
        assert line in open(os.path.join(ROOT, "images", "shadowrec.service")).read()
