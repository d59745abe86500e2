#!/usr/bin/env bash
# Set up shadowrec on a Debian machine: system packages (apt), a virtualenv in .venv, the C kernels built.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again. Extra apt packages may be named.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc libpcap-dev "$@")
python3 -m venv --help >/dev/null 2>&1 || pkgs+=(python3-venv)
python3 - <<'PY' || pkgs+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# editable: the Cython kernels are built into capture/ next to their pure-Python twins
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -c "from capture import speedups; assert speedups.load().name == 'c', 'C kernels not built'"
