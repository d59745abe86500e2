"""Live capture benchmark in the namespace SPAN lab (root), beside a C libpcap counter.

    python3 bench/live_bench.py [--calls 2000] [--duration 10]

Builds the lab of tests/lab.py, generates N concurrent synthetic BiB calls, and for each
path (through the bridge and its tc mirred mirror at ~200k pps; injected straight into the
capture veth at ~480k pps; with ``--paths realtime``, injected at the calls' own rate, so that
N calls are N calls at once in wall time too and the per-second work of each open call is
counted at its real weight) and for 1 and 2 capture workers, sends the traffic with a C
sendmmsg sender (bench/sender.c) while `shadowrec capture` and a plain libpcap counter
(bench/pcapcount_live.c) listen on the same interface. Prints pps offered and captured,
kernel drops, capture CPU per packet and calls/core. The capacity rows pin 1 and 2 workers to
as many cores and measure what they read from rings the sender filled while they were stopped
(on 2 cores, the only way to keep the sender off theirs). Then the memory per active call from
an offline run with --mem-calls concurrent calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from lab import SpanLab

from capture.live import status as live
from capture.testing import synth

ENV = dict(os.environ, PYTHONPATH=ROOT)


def start_capture(lab, out, workers, seconds, ring_mb, calls, pin=(), root=ROOT):
    """`shadowrec capture` (from the checkout ``root``) on the lab's SPAN port (``pin``: a taskset
    prefix), once its workers are up. Its audio rings are reserved for ``calls``, as a site sized
    for them would be."""
    shutil.rmtree(out, ignore_errors=True)
    cap = lab.popen(
        "app",
        *pin,
        sys.executable,
        "-m",
        "appliance.cli",
        "capture",
        "--iface",
        "app0",
        "--out",
        out,
        "--workers",
        str(workers),
        "--seconds",
        str(seconds),
        "--fsync-interval",
        "0",
        "--ring-mb",
        str(ring_mb),
        "--reserve-calls",
        str(calls),
        env=dict(os.environ, PYTHONPATH=root),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t = time.time()
    while (
        time.time() - t < 30
        and len([f for f in os.listdir(out) if f.startswith("status-")] if os.path.isdir(out) else []) < workers
    ):
        time.sleep(0.1)
    return cap


def start_counter(lab, work, seconds, *buffer_mb, pin=()):
    """The libpcap counter on the same port, once it listens."""
    counter = lab.popen(
        "app",
        *pin,
        os.path.join(work, "pcapcount_live"),
        "app0",
        str(seconds),
        *map(str, buffer_mb),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert counter.stderr.readline().strip() == "ready"
    time.sleep(0.5)
    return counter


def finish_capture(cap, out, timeout):
    """The capture's merged counters; its stderr is kept beside the recordings' place, which is
    deleted (tmpfs: the memory is freed for the next run)."""
    o, e = cap.communicate(timeout=timeout)
    with open(out + ".stderr", "w") as f:
        f.write(e)
    if cap.returncode:
        raise SystemExit(e)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(o)


def steady(out, workers, send_s, result):
    """Capture-thread CPU per packet between 30% and 90% of the send: the calls have all started
    and none has ended, so this is the per-packet cost without the calls' set-up and teardown
    (the status files are rewritten every second, so each end is up to a second old: a send too
    short for that to be small against the window gets no figure)."""
    if 0.6 * send_s < 5:
        return
    ends = []
    for wait in (0.3 * send_s, 0.6 * send_s):
        time.sleep(wait)
        statuses = live.read_statuses(out, workers)
        if len(statuses) < workers:  # a worker's file unreadable: no figure rather than a partial one
            return
        ends.append(live.merge_counters(statuses))
    (a, b) = ends
    if b["received"] > a["received"]:
        result["steady_capture_us_per_packet"] = round(
            (b["capture_cpu_s"] - a["capture_cpu_s"]) / (b["received"] - a["received"]) * 1e6, 3
        )


def one(lab, path, target_pps, workers, traffic, work, seconds, ring_mb, calls, root=ROOT, send_s=0.0):
    out = os.path.join(work, f"out-{path}-{workers}")
    cap = start_capture(lab, out, workers, seconds, ring_mb, calls, root=root)
    counter = start_counter(lab, work, seconds - 1.5)
    ns, dev = ("tx", "tx0") if path == "mirror" else ("sw", "app1")  # realtime: like direct
    mid = {}
    sampler = threading.Thread(target=steady, args=(out, workers, send_s, mid))
    sampler.start()
    sent = json.loads(lab.run(ns, os.path.join(work, "sender"), dev, traffic, str(target_pps)).stdout)
    sampler.join()
    base = json.loads(counter.communicate(timeout=seconds + 30)[0])
    s = finish_capture(cap, out, seconds + 60)
    return {
        "path": path,
        "workers": workers,
        "offered_pps": sent["pps"],
        "sent": sent["sent"],
        "audio": root == ROOT,
        "steady_capture_us_per_packet": mid.get("steady_capture_us_per_packet"),
        "captured": s["received"],
        "kernel_drops": s["kernel_drops"],
        "write_dropped_bytes": s.get("write_dropped_bytes", 0),
        "calls_recorded": s.get("calls_recorded", 0),
        "cpu_s": s["cpu_s"],
        "us_per_packet": round(s["cpu_s"] / max(1, s["received"]) * 1e6, 3),
        "capture_us_per_packet": round(s["capture_cpu_s"] / max(1, s["received"]) * 1e6, 3),
        "writer_us_per_packet": round(s["writer_cpu_s"] / max(1, s["received"]) * 1e6, 3),
        "libpcap_packets": base["packets"],
        "libpcap_drops": base["ps_drop"],
        "libpcap_us_per_packet": round(base["cpu_s"] / max(1, base["packets"]) * 1e6, 3),
    }


def _group_cpu_ticks(pgid: int) -> int:
    """User + system CPU (clock ticks) of every process in process group ``pgid``."""
    total = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2 :].split()  # from field 3 (state) on
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total


def capacity(lab, workers, traffic, work, ring_mb, pps, calls):
    """What ``workers`` capture workers pinned to as many cores can read, with the sender out of the way.

    The capture and the libpcap counter are stopped (SIGSTOP) while the sender fills their kernel
    rings with the whole traffic at its real rate (``pps``: the kernel's timestamps must keep the
    calls' timing, or the engine places far less audio than real calls carry); then each is resumed
    alone. The counter's rate is the packets it read over the time to its last packet. The
    capture's is the packets it read over the time until it had also written everything (its
    processes stop using CPU), with shadowrec's default write queue: audio it had to drop is
    reported beside the rate. On this 2-core machine that is the only way to give a worker a
    core of its own: while the sender runs it takes one."""
    import signal

    out = os.path.join(work, f"out-capacity-{workers}")
    cores = ",".join(str(c) for c in range(workers))
    packets = os.path.getsize(traffic) // 200
    seconds = packets / pps + 15
    cap = start_capture(lab, out, workers, seconds + 600, ring_mb, calls, pin=("taskset", "-c", cores))
    counter = start_counter(lab, work, seconds, ring_mb, pin=("taskset", "-c", "0"))
    os.killpg(cap.pid, signal.SIGSTOP)
    os.killpg(counter.pid, signal.SIGSTOP)
    try:
        sent = json.loads(lab.run("sw", os.path.join(work, "sender"), "app1", traffic, str(pps)).stdout)
        time.sleep(0.5)
        t_base = time.time()
    finally:
        os.killpg(counter.pid, signal.SIGCONT)
    base = json.loads(counter.communicate(timeout=seconds + 30)[0])
    t_cap = time.time()
    os.killpg(cap.pid, signal.SIGCONT)
    busy_until, ticks = t_cap, _group_cpu_ticks(cap.pid)
    while time.time() - busy_until < 2.0:  # until the capture has used no CPU for 2 s
        time.sleep(0.05)
        now, t = _group_cpu_ticks(cap.pid), time.time()
        if now - ticks >= 2:  # 20 ms of CPU in 50 ms: still reading or writing
            busy_until = t
        ticks = now
    cap.send_signal(signal.SIGTERM)
    s = finish_capture(cap, out, 120)
    drain = busy_until - t_cap
    base_drain = base["last_packet_at"] - t_base
    return {
        "workers": workers,
        "sent": sent["sent"],
        "captured": s["received"],
        "kernel_drops": s["kernel_drops"],
        "calls_recorded": s.get("calls_recorded", 0),
        "seconds": round(drain, 3),
        "read_seconds": round(s["last_packet_at"] - t_cap, 3),
        "write_dropped_bytes": s.get("write_dropped_bytes", 0),
        "bytes_written": s.get("bytes_written", 0),
        "pps": round(s["received"] / drain),
        "cpu_s": s["cpu_s"],
        "libpcap_packets": base["packets"],
        "libpcap_drops": base["ps_drop"],
        "libpcap_seconds": round(base_drain, 3),
        "libpcap_pps": round(base["packets"] / base_drain),
    }


MEM_CODE = """
import mmap, sys
from capture import speedups
from capture.options import Options
from capture.recorder import Recorder
path, out, cut = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = Recorder(Options(out_dir=out))
f = open(path, "rb")
mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
idx = speedups.default().Indexer(mm)
while True:
    b = idx.next_batch(65536)
    if not len(b[0]):
        break
    keep = b[2] < cut
    r.feed(mm, *(x[keep] for x in b))
anon = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")][0]
print(anon * 1024, len(r.calls.active))
"""


def memory_per_call(work, calls):
    """Anonymous memory (not the mapped capture) with every call open, minus a 10-call baseline."""
    res = []
    for n in (10, calls):
        f = os.path.join(work, f"mem-{n}.pcap")
        synth.generate(f, synth.SynthSpec(calls=n, duration_s=4, spacing_s=1.0 / n, keep_audio=False))
        out = os.path.join(work, "mem-out")
        shutil.rmtree(out, ignore_errors=True)
        cut = synth.T0 + int(3.5e9)  # all calls started, none ended yet
        r = subprocess.run(
            [sys.executable, "-c", MEM_CODE, f, out, str(cut)],
            env=ENV,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        res.append((int(r[0]), int(r[1])))
    (a0, c0), (a1, c1) = res
    return (a1 - a0) / (c1 - c0)


def build_floor(work):
    """A copy of this checkout built with SHADOWREC_NO_AUDIO (see ext/engine.pyx); its root."""
    dst = os.path.join(work, "floor-build")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(
        ROOT,
        dst,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.so", "__pycache__", ".hypothesis", ".pytest_cache", ".venv"
        ),
    )
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
        cwd=dst,
        check=True,
        env=dict(os.environ, CFLAGS="-DSHADOWREC_NO_AUDIO"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    check = subprocess.run(
        [sys.executable, "-c", "from capture.media import _engine_c as e; print(e.AUDIO)"],
        cwd=dst,
        env=dict(os.environ, PYTHONPATH=dst),
        capture_output=True,
        text=True,
    )
    if check.stdout.strip() != "False":
        raise SystemExit(f"the floor build in {dst} still places audio: {check.stdout}{check.stderr}")
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument(
        "--mem-calls", type=int, default=10000, help="concurrent calls for the memory measurement (0: skip it)"
    )
    ap.add_argument("--dir", default="/dev/shm/shadowrec-live-bench")
    ap.add_argument("--ring-mb", type=int, default=256, help="kernel ring per worker (shadowrec's default 256)")
    ap.add_argument(
        "--paths",
        default="mirror,direct,capacity",
        help="rows to run: mirror (paced through the bridge), direct (paced into the capture veth), "
        "realtime (into the capture veth at the calls' own rate, calls x 100 pps), "
        "capacity (what 1 and 2 cores read from a full ring)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="capacity rows: runs of each (the median is compared)")
    ap.add_argument(
        "--capacity-ring-mb",
        type=int,
        default=1536,
        help="kernel ring per worker for the capacity rows: it must hold the whole traffic",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="after each paced row with 1 worker, run it again with a copy of shadowrec built "
        "with SHADOWREC_NO_AUDIO (every count and timer, no audio placed or read back): "
        "what any audio layout would still cost",
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid():
        sys.exit("run as root (network namespaces)")
    work = args.dir
    os.makedirs(work, exist_ok=True)
    for src, dst in (("sender.c", "sender"), ("pcapcount_live.c", "pcapcount_live")):
        subprocess.run(["gcc", "-O2", "-o", os.path.join(work, dst), os.path.join(HERE, src), "-lpcap"], check=True)
    traffic = os.path.join(work, "traffic.pcap")
    # in a child process: the synthesiser holds every packet in memory until it writes them
    import multiprocessing

    gen = multiprocessing.get_context("fork").Process(
        target=synth.generate,
        args=(
            traffic,
            synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.0005, keep_audio=False, seed=9),
        ),
    )
    gen.start()
    gen.join()
    if gen.exitcode:
        sys.exit(f"generating the traffic failed ({gen.exitcode})")
    print(f"traffic: {args.calls} concurrent BiB calls x {args.duration:g} s", flush=True)
    rows = []
    with SpanLab() as lab:
        # no IPv6 neighbour discovery noise: only the benchmark's traffic is counted and timed
        for ns, dev in (("tx", "tx0"), ("sw", "tx1"), ("sw", "br0"), ("sw", "app1"), ("app", "app0")):
            lab.run(ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        paced = (("mirror", 200000), ("direct", 480000), ("realtime", args.calls * 100))
        floor = build_floor(work) if args.floor else None
        runs = []
        for path, pps in [p for p in paced if p[0] in args.paths.split(",")]:
            runs += [(path, pps, 1, ROOT)] + ([(path, pps, 1, floor)] if floor else []) + [(path, pps, 2, ROOT)]
        try:
            for path, pps, workers, root in runs:
                send_s = args.calls * 100 * args.duration / pps
                seconds = send_s + 8
                r = one(lab, path, pps, workers, traffic, work, seconds, args.ring_mb, args.calls, root, send_s)
                rows.append(r)
                label = path if root == ROOT else f"{path}, NO AUDIO (floor build)"
                print(
                    f"{label} workers={workers} offered {r['offered_pps']:>9,.0f} pps  captured {r['captured']:>9,} "
                    f"of {r['sent']:,}  kernel drops {r['kernel_drops']:>7,}  cpu {r['us_per_packet']:.3f} us/pkt "
                    f"(capture thread {r['capture_us_per_packet']:.3f}, in steady state "
                    f"{r['steady_capture_us_per_packet'] or float('nan'):.3f}; "
                    f"writer {r['writer_us_per_packet']:.3f}) "
                    f"({1e6 / max(r['us_per_packet'], 1e-9) / 100:>7,.0f} calls/core)  calls {r['calls_recorded']}  "
                    f"audio dropped {r['write_dropped_bytes']:,} bytes  | "
                    f"libpcap counter: {r['libpcap_packets']:,} pkts, {r['libpcap_drops']:,} drops, "
                    f"{r['libpcap_us_per_packet']:.3f} us/pkt",
                    flush=True,
                )
        finally:
            if floor:
                shutil.rmtree(floor, ignore_errors=True)  # a build that records silence must not linger
        if "capacity" in args.paths.split(","):
            for workers in [w for _ in range(args.repeat) for w in (1, 2)]:
                r = capacity(lab, workers, traffic, work, args.capacity_ring_mb, args.calls * 100, args.calls)
                r["path"] = "capacity"
                rows.append(r)
                print(
                    f"capacity workers={workers} on {workers} core(s): read {r['captured']:>9,} of {r['sent']:,} "
                    f"in {r['read_seconds']:.2f} s, all written in {r['seconds']:.2f} s = {r['pps']:>9,.0f} pps "
                    f"({r['pps'] / 100:>7,.0f} calls on {workers} core(s)), kernel drops {r['kernel_drops']:,}, "
                    f"calls {r['calls_recorded']}, audio written "
                    f"{r['bytes_written'] / 1e6:,.0f} MB, dropped {r['write_dropped_bytes']:,} bytes  | "
                    f"libpcap counter on 1 core: {r['libpcap_packets']:,} pkts in {r['libpcap_seconds']:.2f} s = "
                    f"{r['libpcap_pps']:,.0f} pps, {r['libpcap_drops']:,} drops",
                    flush=True,
                )
        cap = {w: sorted(r["pps"] for r in rows if r["path"] == "capacity" and r["workers"] == w) for w in (1, 2)}
        if cap[1] and cap[2]:
            med = {w: v[len(v) // 2] for w, v in cap.items()}
            print(
                f"scaling from 1 to 2 cores (median of {len(cap[1])}): {med[2] / med[1]:.2f}x "
                f"({med[1]:,} -> {med[2]:,} pps)"
            )
    mem = None
    if args.mem_calls > 10:
        mem = memory_per_call(work, args.mem_calls)
        print(f"memory per active call ({args.mem_calls} concurrent, offline record): {mem / 1024:.1f} KiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "memory_per_call_bytes": mem}, f, indent=2)


if __name__ == "__main__":
    main()
