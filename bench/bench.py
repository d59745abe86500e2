"""Benchmark: `shadowrec record` on N concurrent BiB calls, beside a C libpcap read of the same file.

    python3 bench/bench.py [--calls 1000] [--duration 20] [--dir /dev/shm/shadowrec-bench]

Writes the synthetic capture and the recordings to --dir (tmpfs by default), then prints
packets/s and calls/core for: the C libpcap baseline (bench/pcapcount.c, compiled here),
the C indexer alone, the full record run with the C kernels, and the full run with the
pure-Python twins on a slice of the calls. A G.711 BiB call is 100 packets/s (two
50 packet/s streams), so calls/core = packets/s / 100. Last, a floor: the record run's WAV
bytes written again to the same place with nothing else done (C pwrite from 2 MiB buffers,
one second of a call per piece, as the run writes them), the part of the run that no
parsing or decoding speed can remove. Then the local formats: the same record run with
16-bit PCM WAVs and with G.711 WAVs (``--local-format g711``), alternating, every pair given,
with the bytes each left on disk.
"""

from __future__ import annotations

import argparse
import glob
import json
import mmap
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np

from capture import speedups
from capture.options import Options
from capture.recorder import Recorder
from capture.store.writer import BATCH_BYTES
from capture.testing import synth

HERE = os.path.dirname(os.path.abspath(__file__))


def record(path, out, impl, repeat=1, local_format="wav"):
    best = None
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        rec = Recorder(Options(out_dir=out, local_format=local_format), impl)
        rec.record_file(path)
        summary = rec.finish()
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best, summary


def write_floor(recorded, floor_dir, pwrite_batch, repeat=3, piece=32000):
    """Seconds to write the WAVs under ``recorded`` again into ``floor_dir`` (same file system)
    with nothing else: every file opened, written in one-second pieces (32,000 bytes of 16-bit
    PCM, 16,000 of G.711) from 2 MiB buffers, a second of every call before the next second,
    closed. Best of ``repeat``."""
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(recorded, "calls", "**", "*.wav"), recursive=True)]
    per = BATCH_BYTES // piece
    # the pieces, in write order, planned before the clock starts: (file index, offset, length)
    plan = np.array(
        [
            (i, off, min(piece, size - off))
            for off in range(0, max(sizes, default=0), piece)
            for i, size in enumerate(sizes)
            if off < size
        ],
        dtype=np.int64,
    ).reshape(-1, 3)
    offsets = [plan[k : k + per, 1].copy() for k in range(0, len(plan), per)]
    lengths = [plan[k : k + per, 2].copy() for k in range(0, len(plan), per)]
    buf = np.zeros(BATCH_BYTES, dtype=np.uint8)
    best = None
    for _ in range(repeat):
        shutil.rmtree(floor_dir, ignore_errors=True)
        os.makedirs(floor_dir)
        t = time.perf_counter()
        fds = np.array(
            [os.open(os.path.join(floor_dir, f"{i}.wav"), os.O_WRONLY | os.O_CREAT, 0o644) for i in range(len(sizes))],
            dtype=np.int64,
        )
        for b, k in enumerate(range(0, len(plan), per)):
            if pwrite_batch(buf, fds[plan[k : k + per, 0]], offsets[b], lengths[b]):
                sys.exit(f"writing to {floor_dir} failed")
        for fd in fds:
            os.close(int(fd))
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    shutil.rmtree(floor_dir, ignore_errors=True)
    return best, sum(sizes)


def row(name, packets, seconds):
    pps = packets / seconds
    print(f"{name:44s} {packets:>10,d} pkts {seconds:8.3f} s {pps / 1e6:8.3f} Mpps {pps / 100:>12,.0f} calls/core")
    return {"name": name, "packets": packets, "seconds": round(seconds, 4), "pps": round(pps)}


def disk_bytes(out):
    """Bytes the recordings take on disk (allocated blocks), WAVs only."""
    paths = glob.glob(os.path.join(out, "calls", "**", "*.wav"), recursive=True)
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def local_formats(cap, d, impl, pairs):
    """The record run with 16-bit PCM WAVs, then with G.711 ones, ``pairs`` times in turn."""
    runs: dict = {"wav": [], "g711": []}
    floors: dict = {"wav": [], "g711": []}
    size = {}
    for k in range(pairs):
        for fmt in ("wav", "g711") if k % 2 == 0 else ("g711", "wav"):
            out = os.path.join(d, f"out-{fmt}")
            s, summ = record(cap, out, impl, local_format=fmt)
            runs[fmt].append(round(s, 3))
            size[fmt] = disk_bytes(out)
            floor = os.path.join(d, "out-floor")
            piece = 32000 if fmt == "wav" else 16000
            floors[fmt].append(round(write_floor(out, floor, impl.engine.pwrite_batch, 1, piece)[0], 3))
    for k in range(pairs):
        print(
            f"local format pair {k + 1}: record wav {runs['wav'][k]:.3f} s, g711 {runs['g711'][k]:.3f} s; "
            f"writing the WAVs alone: wav {floors['wav'][k]:.3f} s, g711 {floors['g711'][k]:.3f} s"
        )
    print(
        f"local format: wav {min(runs['wav']):.3f} s {size['wav'] / 1e6:,.0f} MB on disk; "
        f"g711 {min(runs['g711']):.3f} s {size['g711'] / 1e6:,.0f} MB ({size['g711'] / size['wav']:.2f} of wav); "
        f"records {summ['records_read']:,d}"
    )
    return {"name": "local formats", "seconds": runs, "write_seconds": floors, "disk_bytes": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--dir", default="/dev/shm/shadowrec-bench")
    ap.add_argument("--python-calls", type=int, default=50, help="calls for the pure-Python twin run")
    ap.add_argument("--pairs", type=int, default=4, help="wav/g711 record runs, alternating")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    cap = os.path.join(args.dir, "bib.pcap")
    small = os.path.join(args.dir, "bib-small.pcap")
    t = time.perf_counter()
    spec = synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.001, keep_audio=False, seed=7)
    synth.generate(cap, spec)
    spec.calls = args.python_calls
    synth.generate(small, spec)
    print(
        f"synthesised {args.calls} concurrent calls x {args.duration:g} s in {time.perf_counter() - t:.1f} s "
        f"({os.path.getsize(cap) / 1e6:.0f} MB)"
    )
    binary = os.path.join(args.dir, "pcapcount")
    subprocess.run(["gcc", "-O2", "-o", binary, os.path.join(HERE, "pcapcount.c"), "-lpcap"], check=True)
    results = []
    base = min(
        (
            json.loads(subprocess.run([binary, cap], capture_output=True, text=True, check=True).stdout)
            for _ in range(3)
        ),
        key=lambda r: r["seconds"],
    )
    results.append(row("baseline: C libpcap pcap_next_ex read", base["packets"], base["seconds"]))
    c = speedups.load(pure=False)
    if c.name != "c":
        sys.exit("the C kernels are not built: pip install . (or python setup.py build_ext --inplace)")
    with open(cap, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        best = None
        for _ in range(3):
            t = time.perf_counter()
            idx = c.Indexer(mm)
            n = 0
            while True:
                b = idx.next_batch(65536)
                if not len(b[0]):
                    break
                n += len(b[0])
            best = min(best or 1e9, time.perf_counter() - t)
            del idx
        mm.close()
    results.append(row("shadowrec C indexer only (pcap walk)", n, best))
    s, summ = record(cap, os.path.join(args.dir, "out-c"), c, repeat=3)
    results.append(row(f"shadowrec record, C kernels ({summ['calls_recorded']} calls)", summ["records_read"], s))
    record_s = s
    floor_s, floor_bytes = write_floor(
        os.path.join(args.dir, "out-c"), os.path.join(args.dir, "out-floor"), c.engine.pwrite_batch
    )
    s, summ2 = record(small, os.path.join(args.dir, "out-py"), speedups.load(pure=True))
    results.append(row(f"shadowrec record, Python twins ({summ2['calls_recorded']} calls)", summ2["records_read"], s))
    results.append(row("floor: writing the run's WAVs alone", summ["records_read"], floor_s))
    print(
        f"record run on {args.calls} calls: ratio to the libpcap baseline "
        f"{results[2]['pps'] / results[0]['pps']:.2f}; errors {summ['errors']}"
    )
    print(
        f"writing the {floor_bytes / 1e6:,.0f} MB of WAVs alone took {floor_s:.3f} s of the run's {record_s:.3f} s "
        f"({100 * floor_s / record_s:.0f}%)"
    )
    results.append(local_formats(cap, args.dir, c, args.pairs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
