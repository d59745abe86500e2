"""The delivery queue (appliance/delivery/): `shadowrec archive` to a directory and to S3, verified,
once, across failures, a corrupted copy and a kill -9.

S3 is tested against moto's standalone server (`python -m moto.server`): no S3-compatible server is
packaged for Debian or PyPI. moto speaks the S3 REST API over HTTP but does not verify the checksum
a client sends (measured: it stores a body that does not match), so these tests use the
``?verify=readback`` mode; AWS, MinIO and Ceph verify it themselves (BadDigest).
"""

import glob
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from appliance.delivery import backoff, layout, targets
from appliance.delivery.deliver import Deliverer
from appliance.delivery.policy import Policy, wanted
from appliance.delivery.queue import Queue
from capture.options import Options
from capture.recorder import Recorder
from capture.testing import synth

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Six calls, the primary dying during some of them (the gaps), recorded like `record` does."""
    base = tmp_path_factory.mktemp("recorded")
    cap = str(base / "site.pcap")
    synth.generate(cap, synth.SynthSpec(calls=6, duration_s=2, spacing_s=1.0, fail_at_s=5.5, seed=3))
    out = str(base / "rec")
    rec = Recorder(Options(out_dir=out))
    rec.record_file(cap)
    rec.finish()
    return out


@pytest.fixture
def rec(recorded, tmp_path):
    """A fresh copy of the recordings (each test has its own queue)."""
    import shutil

    out = str(tmp_path / "rec")
    shutil.copytree(recorded, out)
    return out


def sidecars(out):
    return {
        c["id"]: c for c in (json.load(open(p)) for p in glob.glob(os.path.join(out, "calls", "*", "*", "*", "*.json")))
    }


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def archive(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "archive", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
    )


def test_backoff_doubles_with_jitter_and_is_capped():
    lo = [backoff.delay_s(n, 5.0, 3600.0, rand=lambda: 0.0) for n in (1, 2, 3, 4)]
    hi = [backoff.delay_s(n, 5.0, 3600.0, rand=lambda: 1.0) for n in (1, 2, 3, 4)]
    assert lo == [2.5, 5.0, 10.0, 20.0] and hi == [5.0, 10.0, 20.0, 40.0]
    assert backoff.delay_s(1000, 5.0, 3600.0, rand=lambda: 1.0) == 3600.0


def test_layout_is_deterministic_and_refuses_names_that_escape():
    got = layout.key("site1/", "20260921T1-1-ab", "2026-09-21T14:13:20.000Z", "wav")
    assert got == "site1/2026/09/21/20260921T1-1-ab.wav"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError):
            layout.key("", bad, "2026-09-21T14:13:20.000Z", "wav")


def test_a_directory_target_gets_every_call_verified_once(rec, tmp_path):
    dest = tmp_path / "archive"
    r = archive("--out", rec, "--to", f"file://{dest}", "--once")
    assert r.returncode == 0, r.stderr
    calls = sidecars(rec)
    assert json.loads(r.stdout)["delivered"] == len(calls) == 6
    for cid, c in calls.items():
        day = c["started_at"][:10].replace("-", "/")
        wav, meta = dest / day / f"{cid}.wav", dest / day / f"{cid}.json"
        assert sha(wav) == sha(os.path.join(rec, c["wav"]))
        got = json.load(open(meta))
        assert got["delivery"]["sha256"] == sha(wav) and got["delivery"]["bytes"] == os.path.getsize(wav)
        assert got["delivery"]["target"] == f"file://{dest}" and got["streams"] == c["streams"]
        assert oct(os.stat(wav).st_mode & 0o777) == "0o640"
    assert not glob.glob(str(dest / "**" / "*.part"), recursive=True)
    again = archive("--out", rec, "--to", f"file://{dest}", "--once")
    assert again.returncode == 0 and json.loads(again.stdout)["delivered"] == 0  # nothing sent twice
    q = Queue(os.path.join(rec, "catalog.sqlite"))
    assert {s["state"] for cid in calls for s in q.state(cid).values()} == {"confirmed"}


def test_gaps_are_the_calls_the_primary_did_not_record_whole(rec, tmp_path):
    calls = sidecars(rec)
    gaps = {cid for cid, c in calls.items() if wanted(Policy.GAPS, c)}
    assert 0 < len(gaps) < len(calls)
    d = Deliverer(rec, [f"file://{tmp_path / 'gaps'}"], Policy.GAPS)
    assert d.run_once(every_pending=True).delivered == len(gaps)
    assert {os.path.basename(p)[:-4] for p in glob.glob(str(tmp_path / "gaps" / "*/*/*/*.wav"))} == gaps
    d.close()


def test_a_copy_corrupted_in_flight_is_detected_and_sent_again(rec, tmp_path, monkeypatch):
    real = os.replace

    def corrupt(src, dst):  # a byte flipped between the write and the rename (a bad NFS server, say)
        if dst.endswith(".wav"):
            with open(src, "r+b") as f:
                f.seek(100)
                b = f.read(1)
                f.seek(100)
                f.write(bytes([b[0] ^ 0xFF]))
        real(src, dst)

    monkeypatch.setattr(targets.os, "replace", corrupt)
    d = Deliverer(rec, [f"file://{tmp_path / 'a'}"], base_s=0.01)
    out = d.run_once(every_pending=True)
    assert out.delivered == 0 and "read back" in out.failed[f"file://{tmp_path / 'a'}"][1]
    monkeypatch.setattr(targets.os, "replace", real)
    time.sleep(0.05)  # the backoff
    assert d.run_once().delivered == 6
    for cid, c in sidecars(rec).items():
        day = c["started_at"][:10].replace("-", "/")
        assert sha(tmp_path / "a" / day / f"{cid}.wav") == sha(os.path.join(rec, c["wav"]))
    d.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's standalone S3 server in a process of its own."""

    def __init__(self):
        self.port = free_port()
        self.env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


@pytest.fixture
def moto():
    m = Moto().start()
    m.client().create_bucket(Bucket="rec")
    yield m
    m.stop()


def objects(m, prefix=""):
    r = m.client().list_objects_v2(Bucket="rec", Prefix=prefix)
    return {o["Key"]: o["Size"] for o in r.get("Contents", [])}


def test_s3_gets_every_call_verified_once(rec, moto):
    url = "s3://rec/site1?verify=readback"
    r = archive("--out", rec, "--to", url, "--once", env=moto.env)
    assert r.returncode == 0, r.stderr
    calls = sidecars(rec)
    got = objects(moto, "site1/")
    assert len(got) == 12  # a WAV and a sidecar per call
    c3 = moto.client()
    for cid, c in calls.items():
        key = layout.key("site1", cid, c["started_at"], "wav")
        body = c3.get_object(Bucket="rec", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha(os.path.join(rec, c["wav"]))
        head = c3.head_object(Bucket="rec", Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"]  # sent with its checksum
    again = archive("--out", rec, "--to", url, "--once", env=moto.env)
    assert again.returncode == 0 and json.loads(again.stdout)["delivered"] == 0


def test_a_target_down_fails_in_one_line_and_its_backlog_drains_when_it_returns(rec, moto, tmp_path):
    moto.stop()
    url = "s3://rec/site1?verify=readback"
    r = archive("--out", rec, "--to", url, "--to", f"file://{tmp_path / 'ok'}", "--once", env=moto.env)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.startswith("shadowrec: ")]
    assert len(lines) == 1 and lines[0].startswith("shadowrec: s3://rec/site1: 6 call(s) not delivered: ")
    assert json.loads(r.stdout)["delivered"] == 6  # the other target got everything meanwhile
    q = Queue(os.path.join(rec, "catalog.sqlite"))
    assert q.depth("s3://rec/site1") == 6 and q.depth(f"file://{tmp_path / 'ok'}") == 0
    rows = q.db.execute("SELECT attempts, next_at, last_error FROM deliveries WHERE target = 's3://rec/site1'")
    assert all(a == 1 and n > time.time() and e for a, n, e in rows)  # backoff recorded, across runs
    moto.start()
    moto.client().create_bucket(Bucket="rec")
    r = archive("--out", rec, "--to", url, "--once", env=moto.env)
    assert r.returncode == 0 and json.loads(r.stdout)["delivered"] == 6 and len(objects(moto)) == 12
    assert q.depth("s3://rec/site1") == 0


def test_an_s3_copy_corrupted_in_flight_is_detected_and_sent_again(rec, moto, monkeypatch):
    for k, v in moto.env.items():
        monkeypatch.setenv(k, v)
    real = targets._Metered.read

    def flip(self, n=-1):
        data = real(self, n)
        return bytes([data[0] ^ 0xFF]) + data[1:] if data else data

    monkeypatch.setattr(targets._Metered, "read", flip)
    d = Deliverer(rec, ["s3://rec/x?verify=readback"], base_s=0.01)
    out = d.run_once(every_pending=True)
    # moto stored the altered body under the checksum it was told; reading it back caught it (botocore
    # checks a body against its checksum as it reads: FlexibleChecksumError)
    n, why = out.failed["s3://rec/x"]
    assert out.delivered == 0 and n == 6 and "checksum" in why.lower(), why
    monkeypatch.setattr(targets._Metered, "read", real)
    time.sleep(0.05)
    assert d.run_once().delivered == 6
    d.close()


@pytest.mark.parametrize("kind", ["file", "s3", "sftp"])
def test_kill_9_in_the_middle_of_an_upload_then_a_restart_delivers_each_call_once(rec, tmp_path, kind, request):
    if kind == "s3":
        m = request.getfixturevalue("moto")
        url, env = "s3://rec/k?verify=readback", m.env
    elif kind == "sftp":
        if os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"):
            pytest.skip("needs root and openssh-server")
        keys = tmp_path / "keys"
        keys.mkdir()
        sshd = Sshd(keys).__enter__()
        request.addfinalizer(sshd.__exit__)
        url, env = sshd.url(str(tmp_path / "k")), {}
    else:
        url, env = f"file://{tmp_path / 'k'}", {}
    # 0.4 Mbit/s: the six calls (2 s each, 400 KB) take about 8 s, so the kill lands mid-upload
    p = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "archive", "--out", rec, "--to", url, "--bandwidth-mbps", "0.4",
         "--concurrency", "1"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    q = Queue(os.path.join(rec, "catalog.sqlite"))
    name = url.split("?")[0] if kind != "sftp" else f"sftp://root@198.19.7.2:22{tmp_path / 'k'}"
    # killed once a call or two are confirmed (however long the process took to start: a loaded CI
    # machine took over 3 s), 0.3 s into the next one's upload
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        try:
            sql = "SELECT count(*) FROM deliveries WHERE target = ? AND state = 'confirmed'"
            if q.db.execute(sql, (name,)).fetchone()[0]:
                break
        except sqlite3.OperationalError:  # the queue's table not there yet, or busy
            pass
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    before = 6 - q.depth(name)
    assert 0 < before < 6  # some calls done, one in flight, some not started
    r = archive("--out", rec, "--to", url, "--once", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["delivered"] == 6 - before
    calls = sidecars(rec)
    prefix = "k" if kind == "s3" else ""
    want = sorted(layout.key(prefix, cid, c["started_at"], e) for cid, c in calls.items() for e in ("wav", "json"))
    if kind == "s3":  # exactly one object per key: the re-sent ones replaced themselves
        assert sorted(objects(request.getfixturevalue("moto"), "k/")) == want
    else:  # and no .part left behind by the killed transfer
        found = glob.glob(str(tmp_path / "k" / "**" / "*.*"), recursive=True)
        assert sorted(os.path.relpath(p, tmp_path / "k") for p in found) == want
    assert q.depth(name) == 0


class Sshd:
    """Debian's OpenSSH server in a network namespace of its own (198.19.7.2), key login only."""

    def __init__(self, tmp):
        import uuid

        self.tmp, tag = tmp, uuid.uuid4().hex[:6]
        self.ns, self.veth = f"sftp{tag}", f"sft{tag}"
        self.addr = "198.19.7.2"
        self.proc = None

    def sh(self, *cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    def __enter__(self):
        t = self.tmp
        self.sh("ip", "netns", "add", self.ns)
        try:
            self.sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            self.sh("ip", "addr", "add", "198.19.7.1/30", "dev", self.veth)
            self.sh("ip", "link", "set", self.veth, "up")
            self.sh("ip", "-n", self.ns, "addr", "add", f"{self.addr}/30", "dev", "eth0")
            self.sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
            self.sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            for name in ("host", "client", "other"):
                self.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / name))
            (t / "authorized_keys").write_text((t / "client.pub").read_text())
            (t / "known_hosts").write_text(f"{self.addr} {(t / 'host.pub').read_text()}")
            (t / "wrong_known_hosts").write_text(f"{self.addr} {(t / 'other.pub').read_text()}")
            (t / "sshd_config").write_text(
                f"Port 22\nListenAddress {self.addr}\nHostKey {t / 'host'}\nPidFile {t / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {t / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "Subsystem sftp internal-sftp\n"
            )
            os.makedirs("/run/sshd", exist_ok=True)
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/sbin/sshd", "-D", "-e", "-f",
                                          str(t / "sshd_config")], stderr=subprocess.DEVNULL)  # fmt: skip
            end = time.monotonic() + 10
            while time.monotonic() < end:
                try:
                    socket.create_connection((self.addr, 22), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise
        return self

    def url(self, path, known="known_hosts"):
        return f"sftp://root@{self.addr}{path}?key={self.tmp / 'client'}&known_hosts={self.tmp / known}"

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        return False


needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"), reason="needs root and openssh-server"
)


@needs_sshd
def test_sftp_gets_every_call_verified_once_and_an_unknown_host_key_is_refused(rec, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    with Sshd(keys) as sshd:
        dest = tmp_path / "sftp"
        wrong = archive("--out", rec, "--to", sshd.url(str(dest), "wrong_known_hosts"), "--once")
        assert wrong.returncode == 1 and "BadHostKeyException" in wrong.stderr and not dest.exists()
        r = archive("--out", rec, "--to", sshd.url(str(dest)), "--once")
        assert r.returncode == 0, r.stderr
        calls = sidecars(rec)
        assert json.loads(r.stdout)["delivered"] == len(calls) == 6
        for cid, c in calls.items():
            day = c["started_at"][:10].replace("-", "/")
            assert sha(dest / day / f"{cid}.wav") == sha(os.path.join(rec, c["wav"]))
            assert json.load(open(dest / day / f"{cid}.json"))["delivery"]["target"].startswith("sftp://root@")
        again = archive("--out", rec, "--to", sshd.url(str(dest)), "--once")
        assert json.loads(again.stdout)["delivered"] == 0


def fake_calls(out: str, n: int) -> None:
    """``n`` complete calls in a catalog, each with a small WAV of its own (the queue's load, not audio)."""
    import sqlite3

    from capture.store.catalog import Catalog
    from capture.store.files import to_json

    day = os.path.join(out, "calls", "2026", "01", "02")
    os.makedirs(day, exist_ok=True)
    Catalog(os.path.join(out, "catalog.sqlite")).close()
    db = sqlite3.connect(os.path.join(out, "catalog.sqlite"))
    rows = []
    for i in range(n):
        cid = f"20260102T000000000Z-{i:06d}-ab"
        with open(os.path.join(day, cid + ".wav"), "wb") as f:
            f.write(i.to_bytes(4, "big") * 64)
        started = f"2026-01-02T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}.000Z"
        wav = f"calls/2026/01/02/{cid}.wav"
        meta = {"id": cid, "started_at": started, "wav": wav, "answered_by": "primary", "primary": {"failed_at": None}}
        with open(os.path.join(day, cid + ".json"), "w") as f:
            f.write(to_json(meta))
        rows.append((cid, meta["started_at"], None, "complete", "bye", "", "", "", "", 0, to_json(meta)))
    db.executemany("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL)", rows)
    db.commit()
    db.close()


def test_ten_thousand_queued_calls_drain_with_flat_memory(tmp_path):
    """Peak Python memory of a pass over 1,000 and over 10,000 queued calls: the same (batches of 100)."""
    import tracemalloc

    peaks = {}
    for n in (1000, 10000):
        out = str(tmp_path / f"rec{n}")
        fake_calls(out, n)
        d = Deliverer(out, [f"file://{tmp_path / f'a{n}'}"], concurrency=4)
        tracemalloc.start()
        got = d.run_once(every_pending=True)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert got.delivered == n and not got.failed and d.queue.depth(f"file://{tmp_path / f'a{n}'}") == 0
        d.close()
    print("peak Python memory by queued calls:", peaks)
    assert peaks[10000] < 1.5 * peaks[1000] + 256 * 1024, peaks


def test_delivery_state_is_in_the_sidecar_calls_json_and_the_api(rec, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from appliance.api.main import create_app
    from appliance.config import Settings

    down = "s3://rec/none"  # no S3 endpoint answers: pending, with its error
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    d = Deliverer(rec, [f"file://{tmp_path / 'a'}"])
    d.run_once()
    d.close()
    calls = sidecars(rec)
    one = next(iter(calls.values()))
    assert one["delivery"][f"file://{tmp_path / 'a'}"]["state"] == "confirmed"  # the sidecar file here
    d = Deliverer(rec, [down], base_s=60)
    d.run_once()
    d.close()
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "calls", "--out", rec, "--json", "--undelivered"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))  # fmt: skip
    listed = json.loads(r.stdout)
    assert len(listed) == 6 and all(c["delivery"][down]["state"] == "pending" for c in listed)
    assert all(c["delivery"][down]["last_error"] and c["delivery"][down]["attempts"] == 1 for c in listed)
    app = create_app(Settings(capture={"out": rec}, api={"hosts": ["testserver"]}))
    with TestClient(app) as client:
        page = client.get("/calls", params={"undelivered": True}).json()
        assert len(page["items"]) == 6
        got = client.get(f"/calls/{one['id']}").json()["delivery"]
        assert got[f"file://{tmp_path / 'a'}"]["state"] == "confirmed" and got[down]["state"] == "pending"
        q = Queue(os.path.join(rec, "catalog.sqlite"))
        q.db.execute("UPDATE deliveries SET state = 'confirmed' WHERE target = ?", (down,))
        q.close()
        assert client.get("/calls", params={"undelivered": True}).json()["items"] == []


def test_a_daily_window_holds_a_target_until_it_opens(rec, tmp_path):
    from appliance.delivery.deliver import Spec
    from appliance.delivery.window import Window

    w = Window.parse("22:00-06:00")
    assert [w.open_at(m) for m in (21 * 60 + 59, 22 * 60, 0, 5 * 60 + 59, 6 * 60, 12 * 60)] == [
        False, True, True, True, False, False]  # fmt: skip
    assert Window.parse("").open_at(720) and Window.parse("08:00-17:30").open_at(17 * 60 + 29)
    for bad in ("22:00", "25:00-01:00", "10:00-10:00", "٢٢:00-06:00"):
        with pytest.raises(ValueError):
            Window.parse(bad)
    minute = [12 * 60]
    d = Deliverer(rec, [Spec(f"file://{tmp_path / 'night'}", window=w)], minute_of_day=lambda: minute[0])
    out = d.run_once()
    assert out.delivered == 0 and out.waiting == [f"file://{tmp_path / 'night'}"]
    assert d.queue.depth(f"file://{tmp_path / 'night'}") == 6  # queued meanwhile
    minute[0] = 23 * 60
    assert d.run_once().delivered == 6
    d.close()


def test_the_service_delivers_applies_retention_and_status_flags_a_failing_target(rec, tmp_path, monkeypatch):
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    from appliance.api.main import create_app
    from appliance.config import Settings
    from appliance.service import _delivery_child

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # an S3 target that is down
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    ok, down = f"file://{tmp_path / 'arch'}", "s3://down/x"
    settings = Settings(
        capture={"out": rec},
        delivery={"targets": [{"url": ok}, {"url": down, "policy": "gaps"}], "interval_s": 0.2,
                  "failing_after_s": 0.5},
        retention={"max_age_days": 30},
        api={"hosts": ["testserver"]},
    )  # fmt: skip
    p = mp.get_context("fork").Process(target=_delivery_child, args=(settings,))
    p.start()
    try:
        q = Queue(os.path.join(rec, "catalog.sqlite"))
        end = time.monotonic() + 20
        while time.monotonic() < end and (q.depth(ok) or not q.depth(down)):
            time.sleep(0.1)
        time.sleep(1.0)
        with TestClient(create_app(settings)) as client:
            st = {t["target"]: t for t in client.get("/status").json()["delivery"]}
            text = client.get("/metrics").text
    finally:
        p.terminate()
        p.join(30)
    assert p.exitcode == 0
    assert st[ok]["pending"] == 0 and st[ok]["confirmed"] == 6 and not st[ok]["failing"]
    gaps = sum(wanted(Policy.GAPS, c) for c in sidecars(rec).values())
    assert st[down]["pending"] == gaps and st[down]["failing"] and "EndpointConnectionError" in st[down]["last_error"]
    assert f'shadowrec_delivery_queue_depth{{target="{down}"}} {float(gaps)}' in text
    assert f'shadowrec_delivery_failing{{target="{down}"}} 1.0' in text
    # retention (30 days; the calls are older): the calls the down target never confirmed stayed
    left = sidecars(rec)
    assert set(left) == {cid for cid, c in left.items() if wanted(Policy.GAPS, c)} and len(left) == gaps


def test_copies_in_every_format_are_what_they_say(rec, tmp_path):
    """g711: the phones' codes again (µ-law, half the size); flac: the same samples; opus: the same
    length, far smaller. Each copy's SHA-256 is the one in its delivery record."""
    import numpy as np
    import soundfile as sf

    from appliance.delivery.formats import Format

    calls = sidecars(rec)
    sizes: dict = {}
    for fmt in Format:
        dest = tmp_path / str(fmt)
        d = Deliverer(rec, [f"file://{dest}"], fmt=fmt)
        assert d.run_once().delivered == len(calls)
        d.close()
        for cid, c in calls.items():
            day = c["started_at"][:10].replace("-", "/")
            ext = "opus" if fmt is Format.OPUS else "flac" if fmt is Format.FLAC else "wav"
            path = dest / day / f"{cid}.{ext}"
            record = json.load(open(dest / day / f"{cid}.json"))["delivery"]
            assert record["format"] == str(fmt) and record["sha256"] == sha(path)
            sizes[fmt] = sizes.get(fmt, 0) + os.path.getsize(path)
            original, rate = sf.read(os.path.join(rec, c["wav"]), dtype="int16")
            info = sf.info(str(path))
            assert info.samplerate == rate == 8000 and info.channels == 2
            if fmt is Format.G711:
                assert info.subtype == "ULAW"  # the calls are PCMU
                back, _ = sf.read(str(path), dtype="int16")
                assert np.array_equal(back, original)  # decoded G.711 encodes back to the same codes
            elif fmt is Format.FLAC:
                assert np.array_equal(sf.read(str(path), dtype="int16")[0], original)
            elif fmt is Format.OPUS:
                assert info.subtype == "OPUS" and abs(info.frames - len(original)) <= 8000 * 0.1
    assert sizes[Format.G711] < 0.52 * sizes[Format.WAV] and sizes[Format.FLAC] < sizes[Format.WAV]
    assert sizes[Format.OPUS] < 0.2 * sizes[Format.WAV]
    print("bytes by format:", {str(k): v for k, v in sizes.items()})


def test_a_recording_kept_in_g711_goes_as_it_is_or_decoded(tmp_path):
    """``--local-format g711``: a g711 target gets the recording's own bytes (no conversion), a
    wav target 16-bit PCM decoded from it, the same samples."""
    import shutil

    import numpy as np
    import soundfile as sf

    from appliance.delivery.formats import Format

    cap = str(tmp_path / "site.pcap")
    synth.generate(cap, synth.SynthSpec(calls=2, duration_s=2, codec="PCMA"))
    out = str(tmp_path / "rec")
    rec = Recorder(Options(out_dir=out, local_format="g711"))
    rec.record_file(cap)
    rec.finish()
    calls = sidecars(out)
    assert {c["encoding"] for c in calls.values()} == {"alaw"}
    for fmt in (Format.G711, Format.WAV):
        dest = tmp_path / str(fmt)
        d = Deliverer(out, [f"file://{dest}"], fmt=fmt)
        assert d.run_once().delivered == 2
        d.close()
        for cid, c in calls.items():
            path = dest / c["started_at"][:10].replace("-", "/") / f"{cid}.wav"
            local = os.path.join(out, c["wav"])
            if fmt is Format.G711:
                assert sha(path) == sha(local)  # the file itself
            else:
                assert sf.info(str(path)).subtype == "PCM_16"
                assert np.array_equal(sf.read(str(path), dtype="int16")[0], sf.read(local, dtype="int16")[0])
    shutil.rmtree(out)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 256 KiB tmpfs, grown later with remount (root)."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_target_disk_that_fills_keeps_the_rest_queued_until_space_returns(rec, tiny_fs):
    url = f"file://{tiny_fs}"
    d = Deliverer(rec, [url], concurrency=1, base_s=0.01)
    out = d.run_once()
    assert 0 < out.delivered < 6 and "No space left" in out.failed[url][1], out
    assert not glob.glob(str(tiny_fs / "**" / "*.part"), recursive=True)  # no partial copy left behind
    assert d.queue.depth(url) == 6 - out.delivered
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_fs)], check=True)  # space returns
    time.sleep(0.05)
    assert d.run_once().delivered == 6 - out.delivered and d.queue.depth(url) == 0
    for cid, c in sidecars(rec).items():
        day = c["started_at"][:10].replace("-", "/")
        assert sha(tiny_fs / day / f"{cid}.wav") == sha(os.path.join(rec, c["wav"]))
    d.close()


def test_a_full_disk_here_during_delivery_loses_nothing(rec, tiny_fs, tmp_path):
    """The recordings' own disk (with the queue) full while a pass runs: the pass goes on, nothing
    confirmed is lost, and the next pass after space returns finishes (same keys, no duplicates)."""
    import shutil as sh

    out = str(tiny_fs / "rec")
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_fs)], check=True)
    sh.copytree(rec, out)
    dest = tmp_path / "arch"
    d = Deliverer(out, [f"file://{dest}"], base_s=0.01)
    d.queue.enqueue(f"file://{dest}", Policy.ALL)  # queued before the disk fills
    st = os.statvfs(tiny_fs)
    with open(tiny_fs / "filler", "wb") as f:  # the disk full: SQLite and the sidecars cannot be written
        f.write(b"\1" * (st.f_bavail * st.f_frsize))
    first = d.run_once()
    # every copy reached the target, but the queue could not say so: each stays pending, said why
    assert first.delivered == 0 and "the queue could not be written" in first.failed[f"file://{dest}"][1], first
    assert len(list(dest.rglob("*.wav"))) == 6
    os.remove(tiny_fs / "filler")
    time.sleep(0.05)
    second = d.run_once()
    assert second.delivered == 6 and d.queue.depth(f"file://{dest}") == 0  # sent again, to the same keys
    assert sorted(p.name for p in dest.rglob("*.wav")) == sorted(f"{cid}.wav" for cid in sidecars(out))
    d.close()
