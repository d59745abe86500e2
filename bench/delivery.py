"""Benchmark: delivery throughput (calls/s, MB/s) to a directory and to S3, beside a plain copy of
the same files in the same run: cp (and cp + sync) for the directory, boto3's upload_file for S3.

S3 is moto's standalone server on loopback (no S3 server is packaged here): it measures our
client side and the protocol's round trips, not a real object store. Each shadowrec run starts
from an empty queue. Runs alternate: baseline, shadowrec, baseline, shadowrec...

    python bench/delivery.py [--calls 40] [--duration 60] [--dir /var/tmp/shadowrec-bench-delivery]
"""

import argparse
import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from appliance.delivery.deliver import Deliverer
from capture.options import Options
from capture.recorder import Recorder
from capture.testing import synth


def row(name: str, calls: int, nbytes: int, s: float) -> None:
    rate = f"{calls / s:8.1f} calls/s {nbytes / 1e6 / s:8.1f} MB/s"
    print(f"{name:48s} {calls:5d} calls {nbytes / 1e6:8.1f} MB {s:7.3f} s {rate}")


def fresh_queue(out: str) -> None:
    db = sqlite3.connect(os.path.join(out, "catalog.sqlite"))
    db.execute("DROP TABLE IF EXISTS deliveries")
    db.commit()
    db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--dir", default="/var/tmp/shadowrec-bench-delivery")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    cap = os.path.join(args.dir, "in.pcap")
    synth.generate(cap, synth.SynthSpec(calls=args.calls, duration_s=args.duration, spacing_s=0.01, seed=9))
    out = os.path.join(args.dir, "rec")
    rec = Recorder(Options(out_dir=out))
    rec.record_file(cap)
    rec.finish()
    os.remove(cap)
    wavs = sorted(glob.glob(os.path.join(out, "calls", "*", "*", "*", "*.wav")))
    jsons = [w[:-4] + ".json" for w in wavs]
    nbytes = sum(os.path.getsize(p) for p in wavs + jsons)
    n = len(wavs)
    print(f"{n} calls of {args.duration:g} s: {nbytes / 1e6:.1f} MB of WAVs and sidecars in {out}")

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p = port.getsockname()[1]
    port.close()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{p}", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    os.environ.update(env)
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(p)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        import boto3

        time.sleep(2.0)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        for r in range(args.rounds):
            dest = os.path.join(args.dir, f"cp{r}")
            os.makedirs(dest)
            t = time.perf_counter()
            subprocess.run(["cp", *wavs, *jsons, dest], check=True)
            row("baseline: cp", n, nbytes, time.perf_counter() - t)
            dest = os.path.join(args.dir, f"cps{r}")
            os.makedirs(dest)
            t = time.perf_counter()
            subprocess.run(["cp", *wavs, *jsons, dest], check=True)
            subprocess.run(["sync", "-f", dest], check=True)
            row("baseline: cp + sync", n, nbytes, time.perf_counter() - t)
            fresh_queue(out)
            d = Deliverer(out, [f"file://{args.dir}/arch{r}"], concurrency=2)
            t = time.perf_counter()
            got = d.run_once(every_pending=True)
            row("shadowrec archive to file:// (fsync, read back)", got.delivered, got.bytes, time.perf_counter() - t)
            d.close()
            t = time.perf_counter()
            for w in wavs + jsons:
                s3.upload_file(w, "bench", f"plain{r}/{os.path.basename(w)}")
            row("baseline: boto3 upload_file", n, nbytes, time.perf_counter() - t)
            for mode in ("checksum", "readback"):
                fresh_queue(out)
                d = Deliverer(out, [f"s3://bench/sr{r}{mode}?verify={mode}"], concurrency=2)
                t = time.perf_counter()
                got = d.run_once(every_pending=True)
                row(f"shadowrec archive to s3:// (verify={mode})", got.delivered, got.bytes, time.perf_counter() - t)
                d.close()
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
