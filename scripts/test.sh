#!/usr/bin/env bash
# Set up shadowrec (scripts/setup.sh) and run the whole test suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh iproute2 tcpdump keepalived   # the lab tests build namespaces and run keepalived (root)
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
