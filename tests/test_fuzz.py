"""The fuzz targets (tests/fuzz): every crash atheris found, replayed as a regression, and each
target fuzzed for a bounded time (FUZZ_SECONDS, 20 by default; scripts/fuzz.sh runs them for hours)."""

import glob
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)

from fuzz.targets import TARGETS  # noqa: E402

CRASHES = sorted(glob.glob(os.path.join(HERE, "fuzz", "crashes", "*", "*")))


@pytest.mark.parametrize(
    "path", CRASHES, ids=[os.path.relpath(p, os.path.join(HERE, "fuzz", "crashes")) for p in CRASHES]
)
def test_crashes_found_by_fuzzing_stay_fixed(path):
    one, _ = TARGETS[os.path.basename(os.path.dirname(path))]
    with open(path, "rb") as f:
        data = f.read()
    one(data)
    if data and os.path.basename(os.path.dirname(path)) == "recorder":  # the other twin as well
        one(bytes([data[0] ^ 1]) + data[1:])


def test_every_target_has_seeds_that_pass():
    for name, (one, seeds) in TARGETS.items():
        s = seeds()
        assert s, name
        for x in s:
            one(x)


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz(name, tmp_path):
    """atheris, coverage-guided, for FUZZ_SECONDS: no crash, no disagreement between twins."""
    seconds = int(os.environ.get("FUZZ_SECONDS", "20"))
    p = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "fuzz", "run.py"),
            name,
            str(tmp_path / "corpus"),
            f"-max_total_time={seconds}",
            "-print_final_stats=1",
            "-rss_limit_mb=2048",
            "-timeout=20",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=tmp_path,
    )
    tail = p.stderr[-3000:]
    assert p.returncode == 0, f"{name}: a crash (saved under {tmp_path}/corpus):\n{tail}"
    done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)", p.stderr)
    runs, cov, ft, corp = map(int, done[-1])
    print(f"fuzz {name}: {runs} executions in {seconds} s, cov {cov}, features {ft}, corpus {corp}")
    assert runs > 0 and cov > 0
