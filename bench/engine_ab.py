#!/usr/bin/env python3
"""The C hot loop of two builds, A/B in one process: Engine.run alone, alternating old and new.

    python3 bench/engine_ab.py --old /path/to/other/checkout [--calls 1000] [--duration 20] [--runs 10]

Both builds' engine modules (.so) are loaded side by side; each run maps every stream of a synthetic
capture of N concurrent BiB calls (written once, by this checkout's synth, to --dir) and runs
Engine.run over all its records (frames handed back to Python are skipped, nothing is flushed), so
only the C loop is timed: frame walk, flow lookup, RTP accounting, placement and decoding. The
order alternates every run; every pair is printed. Whole-run figures are bench.py's and
live_bench.py's: run them from each checkout, alternating, in the same minutes.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import mmap
import os
import sys
import time
from types import ModuleType

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from capture.testing import synth
from capture.wire import _pcapfile_c
from capture.wire.frame import flow_key

PRIMARY = bytes([198, 18, 0, 20])  # synth's recorder address


def load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def engine_of(tree: str) -> ModuleType:
    """A checkout's engine: capture/media/_engine_c (now) or capture/_engine_c (before the rooms,
    whose module imported capture._g711_py and capture.writer at load: those come from that tree)."""
    found = glob.glob(os.path.join(tree, "capture", "media", "_engine_c*.so"))
    if found:
        return load("capture.media._engine_c", found[0])
    for mod in ("_g711_py", "writer"):
        sys.modules[f"capture.{mod}"] = load(f"capture.{mod}", os.path.join(tree, "capture", f"{mod}.py"))
    return load("capture._engine_c", glob.glob(os.path.join(tree, "capture", "_engine_c*.so"))[0])


def run(mod: ModuleType, buf: mmap.mmap, batch: tuple, calls: int) -> float:
    e = mod.Engine((5060,))
    for k in range(calls):
        slot = e.add_call(int(batch[2][0]))
        e.set_stream(flow_key(PRIMARY, 20000 + 4 * k), slot, 0, 1, 0, 101, False)
        e.set_stream(flow_key(PRIMARY, 20002 + 4 * k), slot, 1, 1, 0, 101, False)
    n, i = len(batch[0]), 0
    t = time.perf_counter()
    while i < n:
        st, i, _ = e.run(buf, *batch, i, n, 1 << 62)
        if st == mod.DONE:
            break
        i += 1  # a frame for Python: skipped
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="the other checkout, its C kernels built")
    ap.add_argument("--new", default=ROOT)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dir", default="/dev/shm/shadowrec-engine-ab")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    cap = os.path.join(args.dir, "bib.pcap")
    spec = synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.001, keep_audio=False, seed=7)
    synth.generate(cap, spec)
    new, old = engine_of(args.new), engine_of(args.old)
    with open(cap, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        batch = _pcapfile_c.Indexer(buf).next_batch(1 << 30)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.runs):
            order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for name, mod in order:
                times[name].append(run(mod, buf, batch, args.calls))
        del batch
        buf.close()
    for name, v in times.items():
        s = sorted(v)
        print(f"{name}: Engine.run over {args.calls} calls x {args.duration:g} s: min {s[0]:.4f} s, "
              f"median {s[len(s) // 2]:.4f} s")  # fmt: skip
    print("pairs (old, new, new/old): " + ", ".join(
        f"({a:.4f}, {b:.4f}, {b / a:.3f})" for a, b in zip(times["old"], times["new"])))  # fmt: skip
    os.unlink(cap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
