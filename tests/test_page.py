"""The status page in headless Chromium (Debian's chromium): it renders the real API's data."""

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import api_data
import pytest
import uvicorn

from appliance.api.main import create_app
from appliance.config import CaptureSettings, Settings

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    "--window-size=1200,900",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("page") / "data")
    os.makedirs(out)
    keep = api_data.make(out)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(capture=CaptureSettings(out=out))), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", out
    srv.should_exit = True
    t.join(5)
    keep["recorder"].calls.catalog.close()


def chromium(tmp_path, *args):
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_page_shows_role_counters_and_calls(server, tmp_path):
    import re

    url, _ = server
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert 'class="role PASSIVE"' in dom
    card = r"archive s3://archive/site1<b>FAILING 72\d\d s: EndpointConnectionError[^<]*; 5 to send"
    assert re.search(card, dom), dom
    assert "kernel drops" in dom and "<b>7</b>" in dom
    assert '<div class="card">disk<b>ok</b></div>' in dom  # "FULL: ... s of audio not written" when full

    assert len(re.findall(r'<audio controls="" preload="none" src="/calls/\d{8}T[\w-]+/audio">', dom)) == 6
    assert len(re.findall(r'class="survived"', dom)) >= 3  # the calls that outlived the primary
    assert 'id="livecount">(1)' in dom and "<td>live</td>" in dom


def test_screenshot(server, tmp_path):
    url, _ = server
    png = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={png}", url)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert (w, h) == (1200, 900) and len(data) > 20000  # a real page, not a blank one
    shutil.copy(png, "/tmp/shadowrec-page.png")
