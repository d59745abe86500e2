"""The status API on a real data directory: health, status, calls, audio ranges, metrics, auth, OpenAPI."""

import os
import time
import wave

import api_data
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import settings as hsettings

from appliance.api.main import create_app
from appliance.config import ApiSettings, CaptureSettings, Settings, load
from capture.errors import ConfigError


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("appliance") / "data")
    os.makedirs(out)
    keep = api_data.make(out)
    yield out
    keep["recorder"].calls.catalog.close()


def client(out, token=""):
    s = Settings(capture=CaptureSettings(out=out), api=ApiSettings(token=token, hosts=["testserver"]))
    return TestClient(create_app(s))


def test_health_ready_and_status(datadir):
    c = client(datadir)
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/ready").json()["ready"] is True
    st = c.get("/status").json()
    assert st["role"] == "PASSIVE" and st["capture"]["kernel_drops"] == 7 and st["capture"]["active_calls"] == 1
    assert st["capture"]["link_errors"] == 2 and st["capture"]["write_errors"] == 0
    assert st["capture"]["write_wait_s"] == 1.25
    assert st["capture"]["ring_bytes"] == 2 << 20  # one call's ring: its 2 MiB chunk
    assert 5 <= st["capture"]["last_packet_age_s"] < 600  # the status file says 5 s before it was written
    assert st["disk"]["free_bytes"] > 0 and st["version"]
    (arch,) = st["delivery"]  # the failing archive api_data set up
    assert arch["target"] == "s3://archive/site1" and arch["failing"] and arch["pending"] == 5
    assert arch["failed_attempts"] == 5 and 7100 < arch["failing_for_s"] < 7300 and arch["oldest_pending_age_s"] > 0
    os.utime(os.path.join(datadir, "status-0.json"), (1, 1))  # a silent engine
    r = c.get("/ready")
    assert r.status_code == 503 and "silent" in r.json()["reason"]
    os.utime(os.path.join(datadir, "status-0.json"))


def test_calls_filters_pages_and_one_call(datadir):
    c = client(datadir)
    page = c.get("/calls", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    everything = c.get("/calls").json()["items"]
    assert len(everything) == 6
    assert everything[0]["started_at"] >= everything[-1]["started_at"]  # newest first
    one = everything[3]
    assert [x["id"] for x in c.get("/calls", params={"dn": one["far"]["dn"]}).json()["items"]] == [one["id"]]
    dev = one["near"]["device"].lower()
    assert [x["id"] for x in c.get("/calls", params={"device": dev}).json()["items"]] == [one["id"]]
    failed = c.get("/calls", params={"primary_failed": True}).json()["items"]
    assert failed and all(x["primary"]["failed_at"] for x in failed)
    assert all(x["end_reason"] == "bye" for x in c.get("/calls", params={"end_reason": "bye"}).json()["items"])
    assert c.get("/calls", params={"since": "2030-01-01T00:00:00Z"}).json()["items"] == []
    live = c.get("/calls/live").json()
    assert len(live) == 1 and live[0]["state"] == "recording"
    assert c.get(f"/calls/{one['id']}").json() == one
    assert c.get("/calls/nope-nothing").status_code == 404
    for bad in ({"limit": 0}, {"since": "yesterday"}, {"end_reason": "lunch"}, {"offset": -1}):
        assert c.get("/calls", params=bad).status_code == 422


def test_audio_with_range_requests(datadir):
    c = client(datadir)
    one = c.get("/calls", params={"end_reason": "bye"}).json()["items"][0]
    full = c.get(f"/calls/{one['id']}/audio")
    assert full.status_code == 200 and full.headers["content-type"] == "audio/wav"
    with open(os.path.join(datadir, one["wav"]), "rb") as f:
        assert full.content == f.read()
    with wave.open(os.path.join(datadir, one["wav"])) as w:
        assert w.getnchannels() == 2
    part = c.get(f"/calls/{one['id']}/audio", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.content == full.content[:44]
    assert part.headers["content-range"] == f"bytes 0-43/{len(full.content)}"


def test_metrics(datadir):
    text = client(datadir).get("/metrics").text
    assert 'shadowrec_kernel_drops_total{worker="0"} 7.0' in text and "shadowrec_active_calls" in text
    assert 'shadowrec_link_errors_total{worker="0"} 2.0' in text
    assert 'shadowrec_write_wait_seconds_total{worker="0"} 1.25' in text
    assert 'shadowrec_ring_bytes{worker="0"} 2.097152e+06' in text
    stamp = float(text.split('shadowrec_last_packet_timestamp_seconds{worker="0"} ')[1].split()[0])
    assert 5 <= time.time() - stamp < 600


def test_token_auth(datadir):
    c = client(datadir, token="s3cret-token-0123456789")
    assert c.get("/health").status_code == 200  # liveness stays open
    assert c.get("/status").status_code == 401
    h = {"Authorization": "Bearer s3cret-token-0123456789"}
    assert c.get("/status", headers=h).status_code == 200
    one = c.get("/calls", headers=h).json()["items"][0]
    assert c.get(f"/calls/{one['id']}/audio", params={"access_token": "s3cret-token-0123456789"}).status_code == 200
    assert c.get("/calls", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_config_errors_are_clear(tmp_path, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text('[api]\nlisten = "0.0.0.0"\n[capture]\nworkers = 0\nsip_ports = [70000]\n')
    monkeypatch.delenv("SHADOWREC_API__LISTEN", raising=False)
    with pytest.raises(ConfigError) as e:
        load(str(p))
    msg = str(e.value)
    assert "capture.workers" in msg and "capture.sip_ports" in msg and "api" in msg and str(p) in msg
    p.write_text('[capture]\nspan = "eth9"\n')
    monkeypatch.setenv("SHADOWREC_CAPTURE__OUT", str(tmp_path))
    s = load(str(p))
    assert s.capture.span == "eth9" and s.capture.out == str(tmp_path)
    p.write_text("[capture\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(p))
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(tmp_path / "missing.toml"))


def test_shipped_config_loads_and_bounds_the_write_queue(tmp_path):
    shipped = os.path.join(os.path.dirname(__file__), "..", "images", "shadowrec.toml")
    s = load(shipped)
    assert s.capture.queue_mb == 64 and s.capture.ring_mb == 256  # what the comments there say
    assert s.capture.reserve_calls == 1024
    p = tmp_path / "q.toml"
    p.write_text("[capture]\nqueue_mb = 1\n")
    with pytest.raises(ConfigError, match="capture.queue_mb"):
        load(str(p))


def test_openapi_property_no_server_errors(datadir):
    """Whatever the schema allows, for every operation, the API never answers 5xx (schemathesis's
    strategies driven by hypothesis directly, not through its pytest plugin)."""
    from hypothesis import HealthCheck, given

    app = create_app(Settings(capture=CaptureSettings(out=datadir)))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, response.text[:200])

        check()
        checked += 1
    assert checked == 12  # /fleet/calls included (404 here: no fleet catalog; test_fleet.py runs them on one)


def test_without_a_token_only_the_appliances_names_are_answered(datadir):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 is refused."""
    c = TestClient(create_app(Settings(capture=CaptureSettings(out=datadir))), base_url="http://127.0.0.1:8480")
    assert c.get("/status").status_code == 200
    assert c.get("/status", headers={"host": "localhost:8480"}).status_code == 200
    assert c.get("/status", headers={"host": "[::1]:8480"}).status_code == 200
    r = c.get("/status", headers={"host": "evil.example:8480"})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    c = TestClient(create_app(Settings(capture=CaptureSettings(out=datadir), api=ApiSettings(hosts=["rec1.example"]))))
    assert c.get("/status", headers={"host": "rec1.example"}).status_code == 200


def test_a_full_disk_shows_in_status_metrics(datadir):
    """A worker that reports its disk full: /status and /metrics say so (the page shows /status)."""
    import json

    path = os.path.join(datadir, "status-0.json")
    keep = open(path).read()
    st = json.loads(keep)
    st["disk"] = {"state": "full", "gap_s": 12.5, "times_full": 1, "last_error": "ENOSPC", "free_bytes": 0}
    with open(path, "w") as f:
        json.dump(st, f)
    try:
        c = client(datadir)
        disk = c.get("/status").json()["disk"]
        assert disk["state"] == "full" and disk["gap_s"] == 12.5 and disk["times_full"] == 1
        text = c.get("/metrics").text
        assert "shadowrec_disk_full 1.0" in text and "shadowrec_disk_gap_seconds_total 12.5" in text
    finally:
        with open(path, "w") as f:
            f.write(keep)
    assert client(datadir).get("/status").json()["disk"]["state"] == "ok"


@pytest.mark.parametrize(
    "value", ["bytes=²-3", "bytes=١-٢", "bytes=-²", "bytes=5-2", "bytes=99999999999999999999999-", "bytes=0-0,²-"]
)
def test_hostile_range_headers_are_refused_not_server_errors(datadir, value):
    c = TestClient(create_app(Settings(capture=CaptureSettings(out=datadir), api=ApiSettings(hosts=["testserver"]))))
    cid = c.get("/calls?limit=1").json()["items"][0]["id"]
    r = c.get(f"/calls/{cid}/audio", headers={b"range": value.encode()})
    assert r.status_code in (206, 400, 416)  # "0-0,²-": the good part is served, the bad one ignored


def test_the_standbys_sip_server_and_vrrp_show_in_status_and_metrics(datadir):
    """A real SIP server's status (a stranger refused, then its loop stopped under it) and the VRRP
    instance's rejections, as a standby worker reports them: /status and /metrics say so."""
    import json
    import socket

    from appliance.standby.sip.peers import Peers
    from appliance.standby.sip.server import SipServer
    from appliance.standby.sip.uas import Uas

    srv = SipServer(Uas("127.0.0.1", peers=Peers(["127.0.0.2"])), port=0).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n", ("127.0.0.1", srv.port))
    deadline = time.time() + 3
    while not srv.uas.counters["not_peer"] and time.time() < deadline:
        time.sleep(0.01)
    srv.call(srv.loop.stop)
    srv.thread.join(3)
    vrrp = {"state": "Master", "adverts_rejected": {"not_peer": 3, "addresses": 1}, "conflicts": 1}
    path = os.path.join(datadir, "status-0.json")
    keep = open(path).read()
    st = json.loads(keep)
    st["standby"] = {"vrrp": vrrp, "health": "dead", "sip": srv.status()}
    with open(path, "w") as f:
        json.dump(st, f)
    try:
        c = client(datadir)
        sip = c.get("/status").json()["sip"]
        assert sip["state"] == "failed" and "stopped" in sip["problem"] and sip["not_peer"] == 1
        text = c.get("/metrics").text
        assert "shadowrec_sip_up 0.0" in text and 'shadowrec_sip_refused_total{reason="not_peer"} 1.0' in text
        assert 'shadowrec_vrrp_adverts_rejected_total{reason="not_peer"} 3.0' in text
        assert "shadowrec_vrrp_conflicts_total 1.0" in text and "shadowrec_vrrp_master 1.0" in text
    finally:
        with open(path, "w") as f:
            f.write(keep)


def test_several_primaries_in_the_config_each_get_their_own_settings(tmp_path):
    """[[standby.primaries]]: each its own VIP, vrid and probe target; what an entry leaves out comes
    from [standby]; two with one vrid or one VIP are refused in one line."""
    p = tmp_path / "two.toml"
    p.write_text(
        '[standby]\nenabled = true\npriority = 40\nsip_peers = ["198.18.0.10"]\n'
        '[[standby.primaries]]\nprimary = "198.18.0.2"\nvips = ["198.18.0.20/16"]\nvrid = 20\n'
        '[[standby.primaries]]\nname = "rec-b"\nprimary = "198.18.0.4"\nvips = ["198.18.0.21/16"]\nvrid = 21\n'
        "priority = 60\n"
    )
    guards = load(str(p)).standby.guards()
    assert [(g.name, g.primary, g.vrid, g.priority, g.sip_peers) for g in guards] == [
        ("", "198.18.0.2", 20, 40, ["198.18.0.10"]),
        ("rec-b", "198.18.0.4", 21, 60, ["198.18.0.10"]),
    ]
    from appliance.config import standby_addrs

    assert standby_addrs(load(str(p)).standby) == ("198.18.0.20", "198.18.0.2", "198.18.0.21", "198.18.0.4")
    p.write_text(p.read_text().replace("vrid = 21", "vrid = 20"))
    with pytest.raises(ConfigError, match="a vrid and VIPs of its own"):
        load(str(p))


@pytest.mark.parametrize("also", ["198.18.0.4,198.18.0.21/16", "198.18.0.4,198.18.0.21/16,٢١", "x,y,z"])
def test_run_refuses_a_malformed_also_in_one_line(tmp_path, capsys, also):
    from appliance.cli import main

    rc = main(["run", "--span", "lo", "--service", "lo", "--primary", "198.18.0.2", "--vip", "198.18.0.20/16",
               "--vrid", "20", "--out", str(tmp_path), "--also", also])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("shadowrec: ") and len(err.strip().splitlines()) == 1, err
