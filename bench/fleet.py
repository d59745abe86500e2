"""Benchmark: what one appliance writes to the fleet catalog on PostgreSQL, beside a plain
INSERT of the same rows measured in the same run.

    python3 bench/fleet.py [--calls 1000] [--duration 20] [--rounds 2]

Records ``--calls`` synthetic BiB calls of ``--duration`` s (two appliances: the second's copy
of each call loses every 10th packet), counts the changes each call makes in the local catalog
(the rows a push sends), then pushes both appliances' catalogs to a throwaway PostgreSQL
(Debian's, started here, fsync on) and times it; the baseline is psycopg's ``executemany`` of
one INSERT per row (the same JSON) into a bare table, committed once. It prints rows per
second, the bytes a call takes there, and what a site of N concurrent calls of mean length L
asks: N / L calls end a second, each making that many changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from pg import PgServer

from appliance.fleet.push import Pusher
from capture.options import Options
from capture.recorder import Recorder
from capture.store.catalog import Catalog
from capture.testing import synth


def record(cap: str, out: str) -> None:
    rec = Recorder(Options(out_dir=out))
    rec.record_file(cap)
    rec.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="shadowrec-bench-fleet-")
    cap = os.path.join(tmp, "cap.pcap")
    spec = synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.02, keep_audio=False, seed=7)
    synth.generate(cap, spec)
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    record(cap, a)
    spec_b = synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.02, keep_audio=False, seed=7,
                             loss=0.1)  # fmt: skip
    synth.generate(cap, spec_b)
    record(cap, b)
    local = Catalog(os.path.join(a, "catalog.sqlite"), readonly=True)
    changes = local.last_change()
    rows = local.changes(0, 1 << 30)
    local.close()
    print(f"{args.calls} calls of {args.duration:g} s: {changes} changes written to the local catalog "
          f"({changes / args.calls:.2f} a call); a push sends each call's latest row: {len(rows)} rows")  # fmt: skip
    server = PgServer()
    server.start()
    try:
        print(f"{'round':>5} {'push a (rows/s)':>16} {'push b (rows/s)':>16} {'plain INSERT (rows/s)':>22}")
        for r in range(args.rounds):
            url = server.createdb(f"bench{r}")
            import psycopg

            with psycopg.connect(url) as conn:
                conn.execute("CREATE TABLE plain (id text PRIMARY KEY, meta jsonb NOT NULL)")
                conn.commit()
                t = time.perf_counter()
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO plain VALUES (%s, %s::jsonb)", [(str(s), m) for s, m in rows])
                conn.commit()
                plain = len(rows) / (time.perf_counter() - t)
            speeds = []
            for out, name in ((a, "a"), (b, "b")):
                p = Pusher(out, url, name)
                t = time.perf_counter()
                n = p.push_once()
                speeds.append(n / (time.perf_counter() - t))
                p.close()
            with psycopg.connect(url) as conn:
                size = conn.execute(
                    "SELECT pg_total_relation_size('calls') + pg_total_relation_size('copies')"
                ).fetchone()[0]
            print(f"{r + 1:5d} {speeds[0]:16.0f} {speeds[1]:16.0f} {plain:22.0f}"
                  f"   (PostgreSQL: {size / len(rows):.0f} bytes a call, two copies, indexes)")  # fmt: skip
        per_call = changes / args.calls
        for n, mean_s in ((1000, 180.0), (5000, 180.0), (20000, 180.0)):
            print(f"a site of {n} concurrent calls of {mean_s:.0f} s on average: {n / mean_s:.1f} calls end a second, "
                  f"{n / mean_s * per_call:.0f} changes a second to push")  # fmt: skip
    finally:
        server.remove()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
