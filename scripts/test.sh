#!/usr/bin/env bash
# Set up shadowrec (scripts/setup.sh) and run the whole test suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh iproute2 tcpdump      # the live tests build namespace labs (as root)
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
