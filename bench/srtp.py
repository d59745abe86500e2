"""Benchmark: SRTP calls per core beside G.711 (plain RTP) calls, the same calls in the same run.

    python3 bench/srtp.py [--calls 200] [--duration 20] [--pairs 3] [--dir /dev/shm/shadowrec-srtp]

Two synthetic BiB captures of the same calls, one plain, one whose phones send SRTP
(AES_CM_128_HMAC_SHA1_80, keys in the SDP), each recorded by `Recorder` with the C kernels,
alternately; every pair is printed. A BiB call is 100 packets/s, so calls/core = packets/s / 100.
SRTP packets are decrypted by libsrtp (pylibsrtp) on the Python path, one call per packet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from capture import speedups
from capture.options import Options
from capture.recorder import Recorder
from capture.testing import synth


def record(path: str, out: str, impl) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    rec = Recorder(Options(out_dir=out), impl)
    rec.record_file(path)
    summary = rec.finish()
    return time.perf_counter() - t, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm/shadowrec-srtp")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    impl = speedups.load(pure=False)
    caps = {}
    for kind, srtp in (("g711", ""), ("srtp", "AES_CM_128_HMAC_SHA1_80")):
        caps[kind] = os.path.join(args.dir, f"{kind}.pcap")
        spec = synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.001, keep_audio=False, srtp=srtp)
        synth.generate(caps[kind], spec)
    rows: dict[str, list[tuple[float, int]]] = {"g711": [], "srtp": []}
    for k in range(args.pairs):
        for kind in ("g711", "srtp") if k % 2 == 0 else ("srtp", "g711"):
            s, summ = record(caps[kind], os.path.join(args.dir, f"out-{kind}"), impl)
            assert summ["calls_recorded"] == args.calls and summ["errors"] == {}, summ
            rows[kind].append((s, summ["records_read"]))
    for k in range(args.pairs):
        line = []
        for kind in ("g711", "srtp"):
            s, n = rows[kind][k]
            line.append(f"{kind} {s:.3f} s {n / s / 1e6:.3f} Mpps {n / s / 100:,.0f} calls/core")
        print(f"pair {k + 1}: " + "; ".join(line))
    best = {kind: max(n / s for s, n in rows[kind]) for kind in rows}
    print(
        f"{args.calls} calls x {args.duration:g} s: G.711 {best['g711'] / 100:,.0f} calls/core, "
        f"SRTP {best['srtp'] / 100:,.0f} calls/core (best of {args.pairs}; {best['g711'] / best['srtp']:.1f}x)"
    )
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
