"""Benchmark: the cost of decoding a call's packets after it ends, per packet and codec, beside
FFmpeg's own decoding of the same payloads in the same run (PyAV, no placement).

    python3 bench/codecs.py [--seconds 60] [--repeat 3]

Each codec's payloads come from its reference encoder (tests/codec_refs.py: FFmpeg for G.722 and
Opus, bcg729 for G.729, libgsm for GSM, opencore-amr for AMR-NB in bandwidth-efficient payloads;
for iLBC, mode 20, WebRTC's encoder's 3 s in tests/data/ilbc, repeated) on a known signal, 20 ms a
packet. ``decode_stream`` is what the recorder runs per stream (ordering, placement, comfort noise, the decoder); the
baseline is a bare loop over ``CodecContext.decode``. Best of ``--repeat``, microseconds a packet.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import av
import codec_refs as refs

from capture.media.codecs import CODECS, decode_stream, frames_of, ilbc_spec

NS = 1_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    x8, x16 = refs.signal(8000, args.seconds), refs.signal(16000, args.seconds)
    enc = {"G722": lambda: refs.g722(x16), "OPUS": lambda: refs.opus(x16), "GSM": lambda: refs.gsm(x8),
           "AMR": lambda: refs.amr(x8, False)}  # fmt: skip
    if refs.have_bcg729():
        enc["G729"] = lambda: refs.g729(x8)
    enc["ILBC"] = lambda: refs.ilbc(20) * int(args.seconds // 3 + 1)
    head = f"{'codec':6s} {'packets':>8s} {'decode_stream':>14s} {'FFmpeg alone':>13s}"
    print(f"{head}  (us a packet, best of {args.repeat})")
    for name, make in enc.items():
        payloads = make()
        spec = ilbc_spec(CODECS[name], {"mode": "20"}, []) if name == "ILBC" else CODECS[name]
        step = spec.clock // 50
        packets = [(k * NS // 50, k & 0xFFFF, k * step, 96, p) for k, p in enumerate(payloads)]
        length = len(payloads) * spec.rate // 50
        ours = base = 1e9
        frames = [f for p in payloads for f in frames_of(spec, p, {})[0]]
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = decode_stream(packets, spec, 96, 0, length, {"mode": "20"})
            ours = min(ours, time.perf_counter() - t)
            ctx = av.CodecContext.create(spec.decoder, "r")
            ctx.sample_rate, ctx.layout = spec.out_rate, "mono"
            if spec.bit_rate:
                ctx.bit_rate = spec.bit_rate
            t = time.perf_counter()
            for p in frames:  # the decoder's packets, cut out beforehand
                ctx.decode(av.Packet(p))
            base = min(base, time.perf_counter() - t)
        assert res.errors == 0
        n = len(payloads)
        print(f"{name:6s} {n:8d} {1e6 * ours / n:14.1f} {1e6 * base / n:13.1f}")


if __name__ == "__main__":
    main()
