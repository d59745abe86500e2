#!/usr/bin/env bash
# Boot dist/shadowrec.img under QEMU (software emulation) with a management and a SPAN NIC, and wait on
# the serial console for the appliance's health report. Exit 0 when the service started and /health
# answered; the console log is kept in dist/boot-serial.log. -cpu max: numpy needs x86-64-v2 (SSE4.2,
# POPCNT), which every appliance CPU has and QEMU's default emulated CPU (qemu64) lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
img=${1:-dist/shadowrec.img}
log=dist/boot-serial.log
limit=${BOOT_TIMEOUT:-600}
rm -f "$log"
run=$(mktemp /tmp/shadowrec-boot.XXXXXX.img)
cp --sparse=always "$img" "$run"        # boot a copy: first boot writes to the disk
truncate -s "${BOOT_DISK:-6G}" "$run"   # on a disk larger than the image: first boot grows into it
qemu-system-x86_64 -m 1536 -smp 2 -cpu max -nographic -no-reboot \
    -drive file="$run",format=raw,if=virtio \
    -netdev user,id=mgmt -device virtio-net-pci,netdev=mgmt \
    -netdev user,id=span -device virtio-net-pci,netdev=span \
    -serial file:"$log" -monitor none -display none &
qemu=$!
trap 'kill $qemu 2>/dev/null || true; rm -f "$run"' EXIT
start=$(date +%s)
while kill -0 $qemu 2>/dev/null; do
    if grep -q "SHADOWREC-HEALTH" "$log" 2>/dev/null; then
        took=$(( $(date +%s) - start ))
        line=$(grep -a "SHADOWREC-HEALTH" "$log" | tail -1 | tr -d '\r')
        # systemd logs "Started" when READY=1 arrives, up to a supervisor tick after /ready turned true
        for _ in $(seq 30); do
            grep -aq "Started shadowrec.service" "$log" && break
            sleep 1
        done
        started=$(grep -ac "Started shadowrec.service" "$log" || true)
        echo "boot: ${took}s; $line; service started lines: $started"
        echo "$line" | grep -q '"status": "ok"' && [ "$started" -ge 1 ] && exit 0
        exit 1
    fi
    if [ $(( $(date +%s) - start )) -gt "$limit" ]; then
        echo "boot: no health report within ${limit}s; see $log" >&2
        exit 1
    fi
    sleep 2
done
echo "boot: qemu exited early; see $log" >&2
exit 1
