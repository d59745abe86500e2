"""Live capture in a namespace SPAN lab (root): recordings equal `record` on a witness capture."""

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
from lab import SpanLab, can_run_lab, kernel_has_tunnel

from capture.testing import synth, tunnels

pytestmark = [pytest.mark.netns, pytest.mark.skipif(not can_run_lab(), reason="needs root, ip and tc")]
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, PYTHONPATH=ROOT)
PY = sys.executable


def cli(*args):
    return [PY, "-m", "appliance.cli", *args]


def sidecars(out):
    return {m["near"]["dn"]: m for m in (json.load(open(p)) for p in glob.glob(out + "/calls/*/*/*/*.json"))}


def frames(out, meta):
    with wave.open(os.path.join(out, meta["wav"])) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)


def live_run(
    tmp_path, spec, workers=1, during=None, before=None, rc=0, after=None, args=(), seconds=None, tunnel=None, wrap=None
):
    """Replay ``spec`` through the mirror (a remote one: the kernel's ``tunnel`` device; or the
    frames sent already wrapped as ``wrap``); capture live (with ``args``, for ``seconds``) and
    with tcpdump; return both output dirs."""
    cap = str(tmp_path / "traffic.pcap")
    calls = synth.generate(cap, spec)
    if wrap:
        plain, cap = cap, str(tmp_path / "wrapped.pcap")
        tunnels.wrap_capture(plain, cap, wrap)
    out, witness = str(tmp_path / "live"), str(tmp_path / "witness.pcap")
    seconds = seconds or spec.calls * spec.spacing_s + spec.duration_s + 4
    with SpanLab(tunnel) as lab:
        # immediate mode: libpcap hands every packet over at once (TPACKET_V3 would keep the last
        # block up to its 1 s timeout, and a SIGINT before that loses the traffic's tail, BYEs included)
        wit = lab.popen(
            "app",
            "tcpdump",
            "-i",
            "app0",
            "-w",
            witness,
            "--time-stamp-precision",
            "nano",
            "--immediate-mode",
            "-B",
            "65536",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        live = lab.popen(
            "app",
            *cli(
                "capture", "--iface", "app0", "--out", out, "--workers", str(workers), "--seconds", str(seconds), *args
            ),
            env=ENV,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 20
        while time.time() < deadline and len(glob.glob(out + "/status-*.json")) < workers and live.poll() is None:
            time.sleep(0.1)
        assert live.poll() is None, live.communicate()  # it did not start: say why
        time.sleep(0.3)
        if before:
            before(live, out)
        sender = lab.popen(
            "tx", *cli("replay", cap, "--iface", "tx0"), env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        if during:
            during(live, lab)
        assert json.loads(sender.communicate(timeout=120)[0])["errors"] == 0
        if after:
            after(live)
        stdout, stderr = live.communicate(timeout=120)
        time.sleep(0.5)  # the witness's last packets to its file (a loaded machine)
        wit.send_signal(signal.SIGINT)
        wit.wait(10)
    assert live.returncode == rc, stderr
    ref = str(tmp_path / "ref")
    subprocess.run(cli("record", witness, "--out", ref), env=ENV, cwd=ROOT, check=True, capture_output=True)
    return calls, out, ref, json.loads(stdout)


def assert_same(out, ref, n):
    a, b = sidecars(out), sidecars(ref)
    assert len(a) == len(b) == n
    for dn, m in b.items():
        lm = a[dn]
        for k in ("id", "started_at", "ended_at", "duration_s", "end_reason", "codec", "near", "far", "primary"):
            assert lm[k] == m[k], (k, {x: (lm.get(x), m.get(x)) for x in ("id", "ended_at", "end_reason", "streams")})
        assert [(s["packets"], s["lost"]) for s in lm["streams"]] == [(s["packets"], s["lost"]) for s in m["streams"]]
        assert np.array_equal(frames(out, lm), frames(ref, m))


def test_live_recordings_equal_a_witness_capture(tmp_path):
    spec = synth.SynthSpec(calls=4, duration_s=3, loss=0.02, dup=0.02, dtmf="7", seed=21)
    calls, out, ref, summary = live_run(tmp_path, spec)
    assert summary["kernel_drops"] == 0 and summary["received"] >= sum(
        c.packets[r]["sent"] for c in calls for r in ("near", "far")
    )
    assert_same(out, ref, 4)
    for c in calls:  # and the audio is the audio that was sent
        m = sidecars(out)[c.near_dn]
        a = frames(out, m)
        assert np.array_equal(a[a[:, 0] != 0, 0][:8000], c.near[c.near != 0][:8000])


def assert_sent_audio(out, calls):
    """Each recording holds the audio its phones sent, and no tunnel address is a call's."""
    metas = sidecars(out)
    for c in calls:
        m = metas[c.near_dn]
        a = frames(out, m)
        assert np.array_equal(a[a[:, 0] != 0, 0][:8000], c.near[c.near != 0][:8000])
        assert np.array_equal(a[a[:, 1] != 0, 1][:8000], c.far[c.far != 0][:8000])
        assert "198.18.201." not in json.dumps(m) and "198.18.250." not in json.dumps(m)


@pytest.mark.parametrize("kind", ["vxlan", "gretap", "erspan", "erspan3"])
def test_a_remote_mirror_the_kernel_encapsulates_records_what_the_plain_span_does(tmp_path, kind):
    """The switch mirrors into a Linux tunnel device: the kernel encapsulates, the appliance takes
    the tunnel's packets as they come and walks each to the frame it carries."""
    if not kernel_has_tunnel(kind):
        pytest.skip(f"this kernel cannot make a {kind} device (it was built without it)")
    spec = synth.SynthSpec(calls=3, duration_s=3, seed=27)
    calls, out, ref, summary = live_run(tmp_path, spec, tunnel=kind, workers=2)
    assert summary["kernel_drops"] == 0 and summary["calls_recorded"] == 3
    assert_same(out, ref, 3)
    assert_sent_audio(out, calls)


@pytest.mark.parametrize("kind", ["erspan2", "erspan3-platform", "gretap", "tzsp"])
def test_remote_mirror_frames_on_the_span_port_are_recorded_live(tmp_path, kind):
    """Frames a switch sent through a tunnel (wrapped here: this kernel has no GRE devices), live,
    through the C walker, two workers: the same as the plain frames."""
    spec = synth.SynthSpec(calls=3, duration_s=3, seed=28)
    calls, out, ref, summary = live_run(tmp_path, spec, wrap=kind, workers=2)
    assert summary["kernel_drops"] == 0 and summary["calls_recorded"] == 3
    assert_same(out, ref, 3)
    assert_sent_audio(out, calls)


def test_two_workers_record_what_one_records(tmp_path):
    spec = synth.SynthSpec(calls=6, duration_s=2, seed=22)
    calls, out, ref, summary = live_run(tmp_path, spec, workers=2)
    assert summary["workers"] == 2 and summary["kernel_drops"] == 0
    assert_same(out, ref, 6)
    status = [json.load(open(p)) for p in sorted(glob.glob(out + "/status-*.json"))]
    assert [s["worker"] for s in status] == [0, 1]
    assert all(s["calls_recorded"] > 0 for s in status)  # the calls were shared out
    assert all(s["ring_bytes"] == 32 << 20 for s in status)  # the default 1,024 rings, reserved at start
    assert summary["last_packet_at"] == max(s["last_packet_at"] for s in status)  # the latest, not a sum
    assert time.time() - 60 < summary["last_packet_at"] < time.time()


def test_a_capture_that_stalls_loses_nothing_its_ring_kept(tmp_path):
    """Stopped for 2 s mid-call (a stall, a debugger, CPU starvation), the capture catches up on
    the packets its ring held: the wall clock must not flush their audio away before it reads them."""

    def stall(live, lab):
        time.sleep(1.0)
        os.killpg(live.pid, signal.SIGSTOP)
        time.sleep(2.0)
        os.killpg(live.pid, signal.SIGCONT)

    spec = synth.SynthSpec(calls=3, duration_s=5, seed=24)
    calls, out, ref, summary = live_run(tmp_path, spec, during=stall)
    assert summary["kernel_drops"] == 0
    assert_same(out, ref, 3)
    assert all(s["lost"] == 0 for m in sidecars(out).values() for s in m["streams"])


def test_a_stop_first_reads_what_the_ring_holds(tmp_path):
    """The capture is stopped (SIGSTOP) while all the traffic arrives, then told to end (SIGTERM):
    everything the ring holds reached the port before the stop, so every call is recorded."""

    def freeze(live, out):
        os.killpg(live.pid, signal.SIGSTOP)

    def stop(live):
        time.sleep(0.5)  # the last packets into the ring
        assert live.poll() is None, live.communicate()
        live.send_signal(signal.SIGTERM)
        os.killpg(live.pid, signal.SIGCONT)

    spec = synth.SynthSpec(calls=3, duration_s=2, seed=25)
    calls, out, ref, summary = live_run(tmp_path, spec, before=freeze, after=stop)
    assert summary["kernel_drops"] == 0 and summary["calls_recorded"] == 3
    assert_same(out, ref, 3)


def test_a_backlog_on_one_core_waits_for_the_writer_instead_of_dropping_audio(tmp_path):
    """Capture and its writer share one core, and the capture is frozen while 40 calls arrive.
    Resumed, it reads the backlog faster than the writer writes, through a 1 MiB write queue:
    with the ring nearly empty, audio waits for the writer rather than being dropped."""

    def freeze_on_one_core(live, out):
        subprocess.run(["taskset", "-a", "-cp", "0", str(live.pid)], check=True, capture_output=True)
        os.killpg(live.pid, signal.SIGSTOP)

    def resume(live):
        time.sleep(0.5)  # the last packets into the ring
        assert live.poll() is None, live.communicate()
        os.killpg(live.pid, signal.SIGCONT)

    spec = synth.SynthSpec(calls=40, duration_s=3, spacing_s=0.02, seed=26)
    calls, out, ref, summary = live_run(
        tmp_path, spec, before=freeze_on_one_core, after=resume, args=("--queue-mb", "1"), seconds=12
    )
    assert summary["kernel_drops"] == 0 and summary["write_dropped_bytes"] == 0
    assert summary["calls_recorded"] == 40
    assert_same(out, ref, 40)


def test_a_worker_that_dies_is_started_again_and_reported(tmp_path):
    def kill_one(live, out):
        kids = subprocess.run(["pgrep", "-P", str(live.pid)], capture_output=True, text=True).stdout.split()
        assert len(kids) == 2
        os.kill(int(kids[1]), signal.SIGKILL)
        killed = time.time()
        deadline = killed + 30  # until the new worker's loop writes its status
        while time.time() < deadline and not all(
            os.path.getmtime(f) > killed + 1.2 for f in glob.glob(out + "/status-*.json")
        ):
            time.sleep(0.1)
        assert time.time() < deadline, (
            {os.path.basename(f): round(os.path.getmtime(f) - killed, 1) for f in glob.glob(out + "/status-*.json")},
            kids,
            subprocess.run(["pgrep", "-P", str(live.pid)], capture_output=True, text=True).stdout.split(),
        )

    spec = synth.SynthSpec(calls=6, duration_s=2, seed=22)
    calls, out, ref, summary = live_run(tmp_path, spec, workers=2, before=kill_one, rc=1)
    assert summary["worker_failures"] == 1 and summary["worker_exit_codes"] == [-signal.SIGKILL]
    assert_same(out, ref, 6)  # the calls after the restart are all recorded


def test_sigusr1_prints_counters_and_sigterm_resumes_after_restart(tmp_path):
    spec = synth.SynthSpec(calls=1, duration_s=6, seed=23)
    cap = str(tmp_path / "t.pcap")
    (call,) = synth.generate(cap, spec)
    out = str(tmp_path / "live")
    with SpanLab() as lab:

        def start():
            p = lab.popen(
                "app",
                *cli("capture", "--iface", "app0", "--out", out),
                env=ENV,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            t = time.time()
            while time.time() - t < 20 and not os.path.exists(out + "/status-0.json"):
                time.sleep(0.05)
            return p

        first = start()
        time.sleep(0.3)
        sender = lab.popen("tx", *cli("replay", cap, "--iface", "tx0"), env=ENV, cwd=ROOT, stdout=subprocess.PIPE)
        time.sleep(2.5)
        first.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        first.send_signal(signal.SIGTERM)
        _, err1 = first.communicate(timeout=30)
        counters = json.loads(err1.strip().splitlines()[-1])
        assert counters["received"] > 100 and counters["active_calls"] == 1 and "kernel_drops" in counters
        (m,) = sidecars(out).values()
        assert m["state"] == "recording"  # saved, not ended
        os.remove(out + "/status-0.json")
        second = start()
        sender.wait(60)
        time.sleep(1.0)
        second.send_signal(signal.SIGTERM)
        out2, _ = second.communicate(timeout=30)
    summary = json.loads(out2)
    assert summary["calls_resumed"] == 1
    (m,) = sidecars(out).values()
    assert m["end_reason"] == "bye" and m["state"] == "complete" and abs(m["duration_s"] - 6.0) < 0.05
    a = frames(out, m)
    assert abs(len(a) - call.frames) < 80
    # the audio before the stop and after the restart is the audio sent, with silence between
    got = a[:, 0]
    nz = np.nonzero(got)[0]
    gap = np.nonzero(np.diff(nz) > 800)[0]
    assert len(gap) == 1  # one hole: the restart
    before, after = got[nz[0] : nz[gap[0]] + 1], got[nz[gap[0] + 1] : nz[-1] + 1]
    sent = call.near[call.near != 0]
    assert len(before) > 8000 and len(after) > 8000
    head = before[before != 0]
    assert np.array_equal(head, sent[: len(head)])
    tail = after[after != 0]
    assert np.array_equal(tail, sent[len(sent) - len(tail) :])
    from capture.store.catalog import Catalog

    cat = Catalog(os.path.join(out, "catalog.sqlite"))
    assert len(cat.query()) == 1
    cat.close()


def test_interface_is_prepared_and_put_back(tmp_path):
    helper = os.path.join(os.path.dirname(__file__), "ifstate.py")
    with SpanLab() as lab:
        state = lambda *a: json.loads(lab.run("app", PY, helper, "app0", *a).stdout)  # noqa: E731
        lab.run("app", "ip", "link", "set", "app0", "down")
        assert state("gro-on") == {"up": False, "promisc": False, "gro": True}
        p = lab.popen(
            "app",
            *cli("capture", "--iface", "app0", "--out", str(tmp_path / "o"), "--seconds", "4"),
            env=ENV,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        t = time.time()
        while time.time() - t < 20 and not os.path.exists(tmp_path / "o" / "status-0.json"):
            time.sleep(0.05)
        assert state() == {"up": True, "promisc": True, "gro": False}  # while capturing
        p.communicate(timeout=30)
        assert p.returncode == 0
        assert state() == {"up": False, "promisc": False, "gro": True}  # exactly as it was


def test_bad_interface_and_filter_are_clear_errors(tmp_path):
    r = subprocess.run(
        cli("capture", "--iface", "nosuch0", "--out", str(tmp_path), "--seconds", "1"),
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no interface named nosuch0" in r.stderr
    with SpanLab() as lab:
        r = lab.run(
            "app",
            *cli("capture", "--iface", "app0", "--out", str(tmp_path), "--filter", "udp port nope", "--seconds", "1"),
            env=ENV,
            cwd=ROOT,
            check=False,
        )
    assert r.returncode == 2 and "bad capture filter" in r.stderr


def _cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _one_call_capture(lab, tmp_path, duration_s, seed, seconds):
    """A capture on the lab's SPAN port, running; and a one-call capture file to replay."""
    cap, out = str(tmp_path / "t.pcap"), str(tmp_path / "live")
    synth.generate(cap, synth.SynthSpec(calls=1, duration_s=duration_s, seed=seed))
    p = lab.popen(
        "app",
        *cli("capture", "--iface", "app0", "--out", out, "--seconds", str(seconds)),
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t = time.time()
    while time.time() - t < 20 and not os.path.exists(out + "/status-0.json"):
        time.sleep(0.05)
    return p, cap, out


def test_link_down_and_up_is_survived_without_spinning(tmp_path):
    with SpanLab() as lab:
        p, cap, out = _one_call_capture(lab, tmp_path, 2, 24, 12)
        lab.run("app", "ip", "link", "set", "app0", "down")  # the kernel flags the socket (ENETDOWN)
        time.sleep(0.5)
        c0 = _cpu_s(p.pid)
        time.sleep(2.0)
        spent = _cpu_s(p.pid) - c0
        lab.run("app", "ip", "link", "set", "app0", "up")
        time.sleep(0.5)
        sender = lab.popen("tx", *cli("replay", cap, "--iface", "tx0"), env=ENV, cwd=ROOT, stdout=subprocess.PIPE)
        sender.wait(60)
        o, e = p.communicate(timeout=60)
    assert spent < 0.5, f"{spent:.2f} s of CPU in 2 s with the link down: the loop spins"
    assert p.returncode == 0, e
    summary = json.loads(o)
    assert summary["link_errors"] >= 1 and "capture socket error" in e
    assert summary["calls_recorded"] == 1 and len(sidecars(out)) == 1  # recording went on after the link came back


def test_interface_that_disappears_ends_the_capture_with_calls_saved(tmp_path):
    with SpanLab() as lab:
        p, cap, out = _one_call_capture(lab, tmp_path, 8, 25, 30)
        sender = lab.popen("tx", *cli("replay", cap, "--iface", "tx0"), env=ENV, cwd=ROOT, stdout=subprocess.PIPE)
        time.sleep(3.0)  # the call is up and recording
        gone = time.time()
        lab.run("sw", "ip", "link", "del", "app1")  # the SPAN port's veth pair goes away
        o, e = p.communicate(timeout=20)
        took = time.time() - gone
        sender.kill()
    assert p.returncode == 1 and "app0: the capture interface is gone" in e
    assert took < 5
    summary = json.loads(o)
    assert summary["error"].startswith("app0") and summary["calls_saved"] == 1  # resumable, not lost
    (m,) = sidecars(out).values()
    assert m["state"] == "recording" and frames(out, m).shape[0] > 2 * 8000
