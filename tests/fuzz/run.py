"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    .venv/bin/python tests/fuzz/run.py TARGET [CORPUS_DIR] [libFuzzer flags, e.g. -max_total_time=60]

The Python code (the twins, the call table, the store...) is instrumented for coverage; the C
kernels are not (no clang here) but are checked against their twins on every input. The seed
corpus is written into CORPUS_DIR (default ``fuzz-corpus/TARGET``) first; a crash is saved as
``crash-<sha1>`` there too, to be copied into ``tests/fuzz/crashes/TARGET/`` as a regression.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "..")]

with atheris.instrument_imports(include=["capture", "appliance", "fuzz", "codec_refs"]):
    from fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} TARGET [CORPUS_DIR] [libFuzzer flags]; targets: {', '.join(TARGETS)}")
    name = argv[1]
    one, seeds = TARGETS[name]
    rest = argv[2:]
    corpus = rest.pop(0) if rest and not rest[0].startswith("-") else os.path.join("fuzz-corpus", name)
    os.makedirs(corpus, exist_ok=True)
    for s in seeds():
        with open(os.path.join(corpus, "seed-" + hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    logging.getLogger("shadowrec").setLevel(logging.CRITICAL)  # errors are the point here: counted, not logged
    prefix = [
        f"-artifact_prefix={corpus.rstrip('/')}/",
        "-max_len=300000" if name in ("recorder", "pcapfile") else "-max_len=4096",
    ]
    atheris.Setup([argv[0], *prefix, *rest, corpus], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
