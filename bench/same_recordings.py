#!/usr/bin/env python3
"""Are the recordings byte-identical between two builds? For refactors that promise no behaviour change.

    python3 bench/same_recordings.py --old /path/to/old/checkout [--calls 100]

Each checkout records, with its own .venv, (1) the embedded demo (`shadowrec record --out DIR`) and
(2) a synthetic capture of N BiB calls over TCP with loss, duplicates, reordering, jitter, DTMF and a
primary that dies mid-call, and (3) with --pcap, IPv6 calls in QinQ with SIP in IP fragments and
G.729 calls (not decoded); the captures are written once, by this checkout's synth. Every file under the two output
directories (WAVs, per-call pcaps, JSON sidecars, the demo capture) is compared byte for byte, and
the catalogs row by row. Prints one line per case and exits non-zero on any difference.
"""

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def record(tree: str, out: str, files: list, extra: tuple = ()) -> None:
    py = os.path.join(tree, ".venv", "bin", "python")
    module = "appliance.cli" if os.path.exists(os.path.join(tree, "appliance", "cli.py")) else "capture.cli"
    subprocess.run([py, "-m", module, "record", *files, "--out", out, *extra], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def digest(out: str) -> dict:
    files = {}
    for d, _, names in os.walk(out):
        for n in names:
            if n.startswith("catalog.sqlite"):
                continue
            p = os.path.join(d, n)
            files[os.path.relpath(p, out)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    db = sqlite3.connect(os.path.join(out, "catalog.sqlite"))
    rows = sorted(db.execute("SELECT * FROM calls"))
    db.close()
    return {"files": files, "rows": rows}


def compare(name: str, old: dict, new: dict) -> bool:
    same = old == new
    wavs = sum(1 for f in new["files"] if f.endswith(".wav"))
    print(f"{name}: {len(new['files'])} files ({wavs} WAVs), {len(new['rows'])} catalog rows: "
          f"{'identical' if same else 'DIFFERENT'}")  # fmt: skip
    if not same:
        for f in sorted(set(old["files"]) | set(new["files"])):
            if old["files"].get(f) != new["files"].get(f):
                print(f"  differs: {f}")
        if old["rows"] != new["rows"]:
            print(f"  catalog rows differ: {json.dumps([r[0] for r in set(old['rows']) ^ set(new['rows'])])}")
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="the other checkout (with its .venv built)")
    ap.add_argument("--new", default=ROOT, help="this checkout (default)")
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for side, tree in (("old", args.old), ("new", args.new)):
            out = os.path.join(tmp, f"demo-{side}")
            record(tree, out, [])
            res[side] = digest(out)
        ok &= compare("embedded demo (6 calls, primary dies at 5 s)", res["old"], res["new"])
        cap = os.path.join(tmp, "calls.pcap")
        sys.path.insert(0, args.new)
        from capture.testing import synth

        synth.generate(cap, synth.SynthSpec(calls=args.calls, duration_s=12, spacing_s=0.1, transport="tcp",
                                            tcp_split=True, loss=0.02, dup=0.02, reorder=0.02, jitter_ms=8,
                                            dtmf="19", fail_at_s=8.0, calls_after_fail=5, noise_flows=20,
                                            garbage=30, seed=7, keep_audio=False))  # fmt: skip
        for side, tree in (("old", args.old), ("new", args.new)):
            out = os.path.join(tmp, f"synth-{side}")
            record(tree, out, [cap])
            res[side] = digest(out)
        ok &= compare(f"{args.calls} calls over TCP, loss/dup/reorder/jitter/DTMF, primary dies at 8 s",
                      res["old"], res["new"])  # fmt: skip
        cap6 = os.path.join(tmp, "v6.pcapng")
        synth.generate(cap6, synth.SynthSpec(calls=20, duration_s=6, ipv6=True, vlan=(10, 20), fragment_sip=True,
                                             codec="PCMA", loss=0.01, dup=0.01, fail_at_s=4.0, pcapng=True,
                                             seed=3, keep_audio=False))  # fmt: skip
        cap729 = os.path.join(tmp, "g729.pcap")
        synth.generate(cap729, synth.SynthSpec(calls=5, duration_s=3, codec="G729", seed=5, start_offset_s=60,
                                               keep_audio=False))  # fmt: skip
        for side, tree in (("old", args.old), ("new", args.new)):
            out = os.path.join(tmp, f"pcap-{side}")
            record(tree, out, [cap6, cap729], ("--pcap",))
            res[side] = digest(out)
        ok &= compare("--pcap: 20 calls over IPv6, QinQ, SIP in IP fragments, A-law; 5 G.729 calls",
                      res["old"], res["new"])  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
