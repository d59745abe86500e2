#!/usr/bin/env bash
# Set up shadowrec (scripts/setup.sh) and run the main job on the embedded default: a synthetic capture
# of six Cisco BiB calls whose primary recorder dies mid-call, recorded into ./out (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-out}"
.venv/bin/shadowrec record --out "$out"
.venv/bin/shadowrec calls --out "$out"
echo "recordings, sidecars and catalog.sqlite are in $out/"
