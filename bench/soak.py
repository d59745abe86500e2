"""Fault soak (a benchmark, not a test; root): live calls through the namespace lab for a long
time, with faults on a schedule, and what shadowrec recorded against what the phones sent.

    python3 bench/soak.py [--minutes 30] [--calls 40] [--call-s 90]

The lab of ``shadowrec lab`` (appliance/lab/site.py): CUCM and its phones, the primary recorder
with keepalived holding the VIP, a bridge whose tc mirred mirror is the SPAN port, and
``shadowrec capture`` on it, writing to a tmpfs of its own (so that the disk can be filled). The
CUCM keeps about ``--calls`` calls up (each ``--call-s`` long, real time, 20 ms µ-law packets of
known audio), and from the start a sender mixes the SIP messages that once stopped the recorder
(``capture.testing.synth.HOSTILE_SIP``) into the mirrored traffic, two a second. The faults, at
fractions of the run:

- 0.20: the disk is filled to under the floor (--min-free-mb 32), and freed 120 s later;
- 0.45: the capture process is stopped (SIGTERM) and started again, as systemd restarts it;
- 0.65: it is killed (SIGKILL) and started again;
- 0.80: a burst of ``--calls`` new calls within 2 s.

Every 10 s it samples the capture processes' resident memory and open descriptors, the disk state
and the error counters. At the end, per call: the packets each phone sent against those in the
recording bit-exact where they belong, and a summary of who lost what, and why.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import numpy as np

from appliance.lab.site import CUCM, VIP, Site, _expected
from capture.live.status import merge_counters, read_statuses

HOSTILE = f"""
import socket, sys, time
sys.path.insert(0, {ROOT!r})
from capture.testing.synth import HOSTILE_SIP
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({CUCM!r}, 5070))
end = time.monotonic() + float(sys.argv[1])
k = 0
while time.monotonic() < end:
    try:
        s.sendto(HOSTILE_SIP[k % len(HOSTILE_SIP)][:1400], ({VIP!r}, 5060))
    except OSError:
        pass
    k += 1
    time.sleep(0.5)
print(k, "hostile messages sent")
"""


def capture_pids() -> list[int]:
    r = subprocess.run(["pgrep", "-f", "appliance.cli capture --iface span0"], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def sample(pids: list[int]) -> tuple[float, int]:
    """Resident MiB and open descriptors of the capture processes (the parent and its workers)."""
    rss = fds = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                rss += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except (OSError, StopIteration):
            pass
    return round(rss / 1024, 1), fds


def start_capture(site: Site, out: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "appliance.cli", "capture", "--iface", "span0", "--out", out]
    p = site.popen("app", f"capture-{time.monotonic():.0f}", *cmd, "--min-free-mb", "32", "--fsync-interval", "5")
    t = time.monotonic()
    while not glob.glob(os.path.join(out, "status-*.json")) and time.monotonic() - t < 20:
        time.sleep(0.1)
    return p


def fill(disk: str, leave: int) -> None:
    """Fill the disk (while the recorder writes to it) until less than ``leave`` bytes are free."""
    chunk = b"\1" * (4 << 20)
    with open(os.path.join(disk, "filler"), "ab") as f:
        while True:
            st = os.statvfs(disk)
            free = st.f_bavail * st.f_frsize
            if free < leave:
                return
            try:
                f.write(chunk[: max(4096, min(len(chunk), free - leave // 2))])
                f.flush()
            except OSError:
                return


def plan(total_s: float, calls: int, call_s: float, burst_at: float) -> list[tuple[float, float]]:
    """About ``calls`` calls up at any time until the last ``call_s`` + 10 s; then a burst."""
    out, k = [], 0
    while True:
        start = 1.0 + k * call_s / calls
        if start + call_s > total_s - 10:
            break
        out.append((start, call_s))
        k += 1
    out += [(burst_at + 2.0 * i / calls, min(60.0, total_s - burst_at - 10)) for i in range(calls)]
    return out


def check_recording(out: str, meta: dict, dialog: dict, channel: int, call_s: float) -> dict:
    """Packets the phone sent that are in the recording bit-exact, where they belong. The stream is
    found by whichever of its packets comes first in the file (a full disk may have kept the first
    ones out), then every packet is checked at its place from there. A packet placed past the end
    of the WAV counts as lost, unless its place is past the call's end (``call_s``: BYE - start)."""
    import wave

    with wave.open(os.path.join(out, meta["wav"])) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)[:, channel]
    sent = dialog.get("packets_sent", 0)
    if not sent:
        return {"sent": 0, "recorded": 0}
    exp = _expected(dialog["seed"], 160 * sent)
    guess = int(round((dialog["first_rtp_at"] - dialog["invited_at"]) * 8000)) if dialog.get("first_rtp_at") else 0
    pos0 = None
    for i in range(0, sent, 25):  # a packet every 0.5 s, until one is found
        p = exp[160 * i : 160 * i + 160]
        lo, hi = max(0, guess + 160 * i - 4000), min(len(a) - 160, guess + 160 * i + 4000)
        hits = np.flatnonzero(a[lo:hi] == p[0]) + lo if hi > lo else []
        pos0 = next((int(s) - 160 * i for s in hits if np.array_equal(a[s : s + 160], p)), None)
        if pos0 is not None:
            break
    recorded = after_end = 0
    for i in range(sent) if pos0 is not None else ():
        q = pos0 + 160 * i
        if q >= call_s * 8000:  # sent after the BYE: not part of the call
            after_end += 1
            continue
        if q >= len(a):  # the recording ends before it: lost
            continue
        n = min(160, len(a) - q)
        recorded += q >= 0 and np.array_equal(a[q : q + n], exp[160 * i : 160 * i + n])
    return {"sent": sent - after_end, "recorded": int(recorded)}


def report(out: str, manifest: str, events: list) -> dict:
    calls = json.load(open(manifest))
    metas: dict = {}
    for p in glob.glob(os.path.join(out, "calls", "*", "*", "*", "*.json")):
        m = json.load(open(p))
        metas.setdefault(m["near"]["dn"], []).append(m)
    rows = []
    for c in calls:
        ms = metas.get(c["near"]["dn"], [])
        row = {"index": c["index"], "recordings": len(ms), "states": sorted(m["state"] for m in ms)}
        sent = rec = 0
        for m in ms[:1]:
            row["disk_gap_s"] = m.get("disk_gap_s", 0)
            for ch, role in ((0, "near"), (1, "far")):
                d = c["dialogs"].get(role)
                if d and d.get("seed") is not None:
                    r = check_recording(out, m, d, ch, c["bye_at"] - c["started_at"])
                    sent, rec = sent + r["sent"], rec + r["recorded"]
        if not ms:
            sent = sum(d.get("packets_sent", 0) for d in c["dialogs"].values())
        row.update({"sent": sent, "recorded": rec, "start": c.get("started_at"), "end": c.get("bye_at")})
        row["during"] = [name for name, t0, t1 in events if row["start"] and row["start"] < t1 and row["end"] > t0]
        rows.append(row)
    return {"calls": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--calls", type=int, default=40, help="calls up at once (and the burst's size)")
    ap.add_argument("--call-s", type=float, default=90.0)
    ap.add_argument("--disk-mb", type=int, default=1024)
    ap.add_argument("--work", default="/tmp/shadowrec-soak")
    args = ap.parse_args()
    total = args.minutes * 60
    shutil.rmtree(args.work, ignore_errors=True)
    disk = os.path.join(args.work, "disk")
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.disk_mb}m,mode=0750", "tmpfs", disk], check=True)
    out, manifest = os.path.join(disk, "rec"), os.path.join(args.work, "calls.json")
    at = {"fill": 0.20 * total, "free": 0.20 * total + 120, "term": 0.45 * total, "kill": 0.65 * total}
    at["burst"] = 0.80 * total
    samples, events, done = [], [], set()
    try:
        with Site(args.work, phones=min(args.calls, 200)) as site:
            site.start_primary()
            t = time.monotonic()
            while not site.has_vip("pri") and time.monotonic() - t < 10:
                time.sleep(0.1)
            cap = start_capture(site, out)
            p = plan(total, args.calls, args.call_s, at["burst"])
            cucm = site.popen("site", "cucm", sys.executable, "-m", "appliance.cli", "lab-cucm", "--ip", CUCM,
                              "--vip", VIP, "--phones", ",".join(site.phones), "--plan",
                              ";".join(f"{a:.2f}:{b:.2f}" for a, b in p), "--manifest", manifest)  # fmt: skip
            t0, w0 = time.monotonic(), time.time()
            site.popen("site", "hostile", sys.executable, "-c", HOSTILE, str(total))
            next_sample = 0.0
            while cucm.poll() is None:
                now = time.monotonic() - t0
                if now >= at["fill"] and "fill" not in done:
                    done.add("fill")
                    fill(disk, 16 << 20)
                if now >= at["free"] and "free" not in done:
                    done.add("free")
                    os.unlink(os.path.join(disk, "filler"))
                    events.append(("disk full", w0 + at["fill"], time.time()))
                for sig, name in ((signal.SIGTERM, "term"), (signal.SIGKILL, "kill")):
                    if now >= at[name] and name not in done:
                        done.add(name)
                        t1 = time.time()
                        if sig == signal.SIGTERM:  # to the main process, as systemd's KillMode=mixed
                            cap.send_signal(signal.SIGTERM)
                        else:  # every capture process at once, with no chance to save anything
                            for pid in capture_pids():
                                os.kill(pid, signal.SIGKILL)
                        cap.wait(120)
                        cap = start_capture(site, out)
                        events.append((f"capture {'stopped' if sig == signal.SIGTERM else 'killed'}", t1, time.time()))
                if now >= next_sample:
                    next_sample = now + 10
                    rss, fds = sample(capture_pids())
                    st = read_statuses(out)
                    tot = merge_counters(st) if st else {}
                    disk_state = next((s.get("disk", {}).get("state") for s in st), None)
                    samples.append(
                        {
                            "t": round(now),
                            "rss_mb": rss,
                            "fds": fds,
                            "active_calls": tot.get("active_calls"),
                            "disk": disk_state,
                            "errors": tot.get("errors"),
                            "kernel_drops": tot.get("kernel_drops"),
                        }
                    )
                    print(json.dumps(samples[-1]), flush=True)
                time.sleep(0.2)
            cap.send_signal(signal.SIGTERM)
            cap.wait(120)
            final = read_statuses(out)
        events.append(("burst", w0 + at["burst"], w0 + at["burst"] + 2))
        result = report(out, manifest, events)
        result.update({"samples": samples, "events": events, "final": final, "args": vars(args)})
        with open(os.path.join(args.work, "soak.json"), "w") as f:
            json.dump(result, f, indent=1)
        summarise(result)
    finally:
        subprocess.run(["umount", "-l", disk], check=False)


def summarise(r: dict) -> None:
    rows = r["calls"]
    sent = sum(x["sent"] for x in rows)
    rec = sum(x["recorded"] for x in rows)
    print(f"\ncalls {len(rows)}; packets sent {sent}, recorded bit-exact {rec} ({100 * rec / max(sent, 1):.2f}%)")
    by: dict = {}
    for x in rows:
        key = ",".join(x["during"]) or "no fault"
        b = by.setdefault(key, [0, 0, 0, 0, 0])
        b[0] += 1
        b[1] += x["sent"]
        b[2] += x["recorded"]
        b[3] += x["recordings"] == 1
        b[4] += int(round(x.get("disk_gap_s", 0) * 50 * 2))  # both streams' 20 ms packets
    print("| calls spanning | calls | one recording | packets sent | recorded | share | disk gap (packets) |")
    print("|---|---|---|---|---|---|---|")
    for k, (n, s, rc, one, gap) in sorted(by.items()):
        print(f"| {k} | {n} | {one} | {s} | {rc} | {100 * rc / max(s, 1):.2f}% | {gap} |")
    s = r["samples"]
    if s:
        print(f"rss MiB first/max/last {s[0]['rss_mb']}/{max(x['rss_mb'] for x in s)}/{s[-1]['rss_mb']}; "
              f"fds first/max/last {s[0]['fds']}/{max(x['fds'] for x in s)}/{s[-1]['fds']}")  # fmt: skip
        print("errors at the end:", s[-1]["errors"], "kernel drops:", s[-1]["kernel_drops"])


if __name__ == "__main__":
    main()
