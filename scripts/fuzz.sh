#!/usr/bin/env bash
# Fuzz every target in tests/fuzz with atheris for a long time: SECONDS_EACH per target (default one
# hour), JOBS targets at a time (default: the number of cores). Corpora and crashes go to fuzz-corpus/;
# copy a crash into tests/fuzz/crashes/<target>/ and tests/test_fuzz.py replays it from then on.
#   bash scripts/fuzz.sh [SECONDS_EACH] [TARGET ...]
# ASAN=1: afterwards, replay every input of the corpora the guided pass found through the C kernels
# built with AddressSanitizer (gcc's; in a worktree under /tmp), each checked for memory errors and
# against the Python twins. (gcc's ASan runtime hides libFuzzer's coverage, so guided fuzzing of
# the C kernels under ASan is not possible here; their coverage is their twins'.)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3600}"; shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(.venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); from fuzz.targets import TARGETS; print("\n".join(TARGETS))')
fi
mkdir -p fuzz-corpus
run() {  # run TREE LOGSUFFIX FLAGS ENV...: every target, JOBS at a time; one line each: exit status, last stats
    local tree=$1 sfx=$2 flags=$3; shift 3
    printf '%s\n' "${targets[@]}" | xargs -P "${JOBS:-$(nproc)}" -I{} env "$@" sh -c \
        ".venv/bin/python $tree/tests/fuzz/run.py {} fuzz-corpus/{} $flags > fuzz-corpus/{}$sfx.log 2>&1; echo \"{}$sfx: exit \$? \$(grep -E '^#[0-9]+' fuzz-corpus/{}$sfx.log | tail -1)\""
}
run . "" "-max_total_time=$secs -print_final_stats=1 -rss_limit_mb=2048 -timeout=20" PYTHONUNBUFFERED=1
if [ "${ASAN:-0}" = 1 ]; then
    tree=/tmp/shadowrec-asan
    rm -rf "$tree"; git worktree prune
    git worktree add -q --detach "$tree" HEAD
    (cd "$tree" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer -O1 -g" LDFLAGS="-fsanitize=address" \
        "$OLDPWD/.venv/bin/python" setup.py build_ext --inplace -q >/dev/null 2>&1)
    run "$tree" "-asan" "-runs=0 -rss_limit_mb=4096 -timeout=60" \
        LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0
    git worktree remove --force "$tree"
fi
ls fuzz-corpus/*/crash-* fuzz-corpus/*/oom-* fuzz-corpus/*/timeout-* 2>/dev/null || echo "no crashes"
