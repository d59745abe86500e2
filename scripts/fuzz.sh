#!/usr/bin/env bash
# Fuzz every target in tests/fuzz with atheris for a long time: SECONDS_EACH per target (default one
# hour), JOBS targets at a time (default: the number of cores). Corpora and crashes go to fuzz-corpus/;
# copy a crash into tests/fuzz/crashes/<target>/ and tests/test_fuzz.py replays it from then on.
#   bash scripts/fuzz.sh [SECONDS_EACH] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3600}"; shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(.venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); from fuzz.targets import TARGETS; print("\n".join(TARGETS))')
fi
mkdir -p fuzz-corpus
printf '%s\n' "${targets[@]}" | xargs -P "${JOBS:-$(nproc)}" -I{} sh -c \
    ".venv/bin/python tests/fuzz/run.py {} fuzz-corpus/{} -max_total_time=$secs -print_final_stats=1 -rss_limit_mb=2048 -timeout=20 > fuzz-corpus/{}.log 2>&1; echo \"{}: exit \$? \$(grep -E '^#[0-9]+' fuzz-corpus/{}.log | tail -1)\""
ls fuzz-corpus/*/crash-* fuzz-corpus/*/oom-* fuzz-corpus/*/timeout-* 2>/dev/null || echo "no crashes"
