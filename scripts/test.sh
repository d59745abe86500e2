#!/usr/bin/env bash
# Set up shadowrec (scripts/setup.sh), check lint, formatting and types, and run the whole test suite.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# the lab tests build namespaces and run keepalived; the codec tests encode with bcg729 and libgsm; the fleet
# tests start Debian's PostgreSQL; the page
# test drives chromium; the image tests build a .deb with Debian's python3.11 and a disk image with debootstrap
# and EXTLINUX, and boot it in QEMU (root)
bash scripts/setup.sh iproute2 tcpdump keepalived sip-tester openssh-server libbcg729-0 libgsm1 postgresql chromium debootstrap extlinux syslinux-common \
    qemu-system-x86 fdisk python3.11-venv python3.11-dev
# the house rules first: lint, formatting and types (pyproject.toml configures all three)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
