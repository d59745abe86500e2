"""The .deb and the disk image: build both, boot the image under QEMU, read its serial console (root)."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NEEDS = ("debootstrap", "extlinux", "qemu-system-x86_64", "dpkg-deb", "losetup")
pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in NEEDS) or not os.path.exists("/usr/bin/python3.11"),
        reason="needs root, debootstrap, extlinux, qemu and Debian's python3.11",
    ),
]
TIMINGS = os.path.join(ROOT, "dist", "image-timings.json")


def timed(name, cmd, timeout):
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    took = round(time.monotonic() - t, 1)
    os.makedirs(os.path.dirname(TIMINGS), exist_ok=True)
    data = json.load(open(TIMINGS)) if os.path.exists(TIMINGS) else {}
    data[name] = took
    json.dump(data, open(TIMINGS, "w"), indent=1)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout.strip().split("\n")[-1]


@pytest.fixture(scope="module")
def deb():
    return os.path.join(ROOT, timed("build_deb_s", ["bash", "images/build-deb.sh"], 900))


@pytest.fixture(scope="module")
def image(deb):
    return os.path.join(ROOT, timed("build_image_s", ["bash", "images/build-image.sh"], 1800))


def test_deb_has_what_a_debian_service_needs(deb):
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True, check=True).stdout
    assert "Package: shadowrec" in info and "Depends: python3.11, libpcap0.8" in info
    files = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    for f in (
        "./usr/bin/shadowrec",
        "./lib/systemd/system/shadowrec.service",
        "./etc/shadowrec/shadowrec.toml",
        "./opt/shadowrec/lib/appliance/cli.py",
        "./opt/shadowrec/lib/capture/media/_engine_c.cpython-311-x86_64-linux-gnu.so",
    ):
        assert f in files, f
    conffiles = subprocess.run(["dpkg-deb", "-f", deb, "Package"], capture_output=True, text=True).stdout
    assert conffiles.strip() == "shadowrec"


def test_image_boots_and_the_service_answers(image):
    line = timed("boot_s", ["bash", "images/boot-test.sh", image], 900)
    assert '"status": "ok"' in line
    log = open(os.path.join(ROOT, "dist", "boot-serial.log"), errors="replace").read()
    assert "shadowrec first boot: management eth0, SPAN eth1" in log
    assert '"ready": true' in line  # the capture engine runs on the SPAN NIC as well
    # booted on a 6 GiB disk: first boot grew the 2 GiB image's root into it, and the service sees the room
    disk = json.loads(re.search(r" DISK (\{[^{}]*\})", line).group(1))
    assert disk["total_bytes"] > 5 * 2**30 and disk["state"] == "ok", disk
    assert "for recordings" in log
