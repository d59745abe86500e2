"""The fleet catalog (appliance/fleet): several appliances' calls on a real PostgreSQL (Debian's,
started by tests/pg.py), each call once with every copy, the best named; pushed from each
appliance's own catalog, so rows wait there while PostgreSQL is unreachable."""

import json
import os
import threading

import pytest
from pg import PgServer

from appliance.cli import main
from appliance.fleet import identity
from appliance.fleet.push import Pusher, beside, push_now
from appliance.fleet.store import FleetCatalog, redact
from capture.options import Options
from capture.recorder import Recorder
from capture.store.catalog import Catalog
from capture.testing import synth
from capture.wire._pcapfile_py import Indexer
from capture.wire.pcapfile import PcapWriter

NS = 1_000_000_000


def capture(tmp_path, spec, name="cap.pcap"):
    path = str(tmp_path / name)
    return synth.generate(path, spec), path


def lossy(tmp_path, path, every=10, start_after_s=0.0):
    """The capture as a second appliance saw it: every ``every``-th RTP frame missing (a mirror
    that drops), and nothing of its first ``start_after_s`` seconds (it started later)."""
    buf = open(path, "rb").read()
    offs, lens, tss, lts = Indexer(buf).next_batch(1 << 20)
    out = str(tmp_path / f"lossy-{every}-{start_after_s}.pcap")
    w = PcapWriter(out, 1, nanoseconds=True)
    t0 = int(tss[0]) + int(start_after_s * NS)
    n = 0
    for o, ln, ts in zip(offs.tolist(), lens.tolist(), tss.tolist()):
        frame = buf[o : o + ln]
        if ts < t0:
            continue
        if len(frame) > 200:  # RTP (SIP messages are longer, but few: keep every one of those)
            n += 1
            if b"SIP/2.0" not in frame and n % every == 0:
                continue
        w.write(ts, frame, 1)
    w.close()
    return out


def record(path, out, **opts):
    rec = Recorder(Options(out_dir=out, **opts))
    rec.record_file(path)
    return rec.finish()


def fleet_calls(url, capsys, *extra):
    capsys.readouterr()
    assert main(["calls", "--catalog", url, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_migrations_apply_once_in_order_even_when_appliances_start_together(pg_url):
    cats = [FleetCatalog(pg_url) for _ in range(4)]
    versions: list[int] = []
    threads = [threading.Thread(target=lambda c=c: versions.append(c.migrate())) for c in cats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with cats[0].pool.connection() as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert versions == [1, 1, 1, 1] and applied == [1]
    assert {"calls", "copies", "appliances", "schema_migrations"} <= tables
    for c in cats:
        c.close()


def test_two_appliances_recording_the_same_calls_make_one_row_each_with_both_copies(tmp_path, pg_url, capsys):
    """Appliance a sees the SPAN whole; b (an overlapping mirror) loses every 10th RTP packet.
    Each call is one row, listing both copies, and a's is named the best (fewest lost)."""
    calls, path = capture(tmp_path, synth.SynthSpec(calls=3, duration_s=4, spacing_s=0.3, seed=61))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    record(path, a)
    record(lossy(tmp_path, path), b)
    assert push_now(a, pg_url, "a")["waiting"] == 0 and push_now(b, pg_url, "b")["waiting"] == 0
    rows = fleet_calls(pg_url, capsys)
    assert len(rows) == 3
    local_a = {m["near"]["dn"]: m for m in Catalog(os.path.join(a, "catalog.sqlite"), readonly=True).query()}
    for r, c in zip(rows, calls):
        assert [cp["appliance"] for cp in r["copies"]] == ["a", "b"] and r["best"] == "a"
        assert r["id"] == local_a[c.near_dn]["id"] and r["near"]["refci"] == c.refci
        lost = {cp["appliance"]: cp["lost"] for cp in r["copies"]}
        assert lost["a"] == 0 and lost["b"] > 0
        assert r["call_key"].startswith(f"bib:lab-cluster:{c.refci}:")
    # the filters of ``calls`` work on the fleet's rows too
    (one,) = fleet_calls(pg_url, capsys, "--dn", calls[1].near_dn)
    assert one["near"]["dn"] == calls[1].near_dn and len(one["copies"]) == 2


def test_a_copy_that_joined_late_is_the_same_call_and_not_the_best(tmp_path, pg_url, capsys):
    """b started 2 s into the calls and joined them at their re-INVITE: its copies begin later
    (joined_late) but are copies of the same calls; a's, whole, is the best."""
    spec = synth.SynthSpec(calls=2, duration_s=8, spacing_s=0.3, reinvite_at_s=5.0, seed=62)
    calls, path = capture(tmp_path, spec)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    record(path, a)
    record(lossy(tmp_path, path, every=1 << 30, start_after_s=2.0), b, recorder_addrs=(synth.PRIMARY,))
    push_now(b, pg_url, "b")  # the late copy first: the whole one must still find it
    push_now(a, pg_url, "a")
    rows = fleet_calls(pg_url, capsys)
    assert len(rows) == 2
    for r in rows:
        joined = {cp["appliance"]: cp["joined_late"] for cp in r["copies"]}
        assert joined == {"a": False, "b": True} and r["best"] == "a"


def _meta(cid, start, end, refci="100", late=False, lost=0):
    iso = lambda t: None if t is None else f"2026-01-02T00:00:{t:06.3f}Z"  # noqa: E731
    return {
        "id": cid, "started_at": iso(start), "ended_at": iso(end), "state": "complete" if end else "recording",
        "end_reason": "bye", "cluster": "c1", "near": {"dn": "1", "device": "SEPA", "refci": refci},
        "far": {"dn": "2", "device": "SEPB", "refci": str(int(refci) - 1)}, "primary": {"failed_at": None},
        "streams": [{"role": "near", "lost": lost}, {"role": "far", "lost": 0}], "frames": 8000,
        "joined_late": late, "wav": f"calls/{cid}.wav", "pcap": None,
    }  # fmt: skip


def test_successive_recordings_of_one_refci_pair_stay_separate_calls(pg_url):
    """CUCM opens new recording dialogs for the same legs after a hold: two recordings, one after
    the other, with one refci pair. Two appliances each have both: two rows, two copies each."""
    f = FleetCatalog(pg_url)
    f.push("a", "u-a", [(1, _meta("a1", 0.0, 3.0)), (2, _meta("a2", 3.5, 9.0))])
    f.push("b", "u-b", [(1, _meta("b1", 0.004, 3.001, lost=2)), (2, _meta("b2", 3.503, 9.0, lost=1))])
    f.push("c", "u-c", [(1, _meta("c1", 5.0, 9.0, late=True))])  # joined the second one late
    rows = f.query()
    assert [[cp["id"] for cp in r["copies"]] for r in rows] == [["a1", "b1"], ["a2", "b2", "c1"]]
    assert [r["best"] for r in rows] == ["a", "a"]
    # pushing the same changes again changes nothing (an upsert: a push cut short is sent again)
    f.push("b", "u-b", [(1, _meta("b1", 0.004, 3.001, lost=2)), (2, _meta("b2", 3.503, 9.0, lost=1))])
    assert [[cp["id"] for cp in r["copies"]] for r in f.query()] == [["a1", "b1"], ["a2", "b2", "c1"]]
    assert f.pushed("b", "u-b") == 2 and f.pushed("b", "other") == 0
    f.close()


def test_the_best_copy_is_the_one_that_lost_least_counting_what_a_late_one_missed():
    a = identity.copy_of(_meta("a", 0.0, 59.0, lost=30), "a")
    b = identity.copy_of(_meta("b", 0.5, 59.0, lost=0), "b")  # missed 0.5 s x 2 streams = 50 packets
    c = identity.copy_of(_meta("c", 0.01, 59.0, lost=40), "c")
    assert identity.best([a, b, c]).appliance == "a"
    assert identity.best([b, identity.copy_of(_meta("d", 0.0, 59.0, lost=60), "d")]).appliance == "b"


def test_record_with_the_catalog_unreachable_records_and_its_rows_wait_until_it_answers(tmp_path, capsys):
    """Recording never waits for PostgreSQL: with it down, record finishes, says how many changes
    wait, and exits 0; once it answers, the next push sends them, each once."""
    server = PgServer()  # not started: nothing listens on its port
    try:
        url = server.url("fleet")
        _, path = capture(tmp_path, synth.SynthSpec(calls=3, duration_s=3, spacing_s=0.3, seed=63))
        out = str(tmp_path / "out")
        capsys.readouterr()
        assert main(["record", path, "--out", out, "--catalog", url, "--appliance", "a"]) == 0
        res = capsys.readouterr()
        summary = json.loads(res.out)
        assert summary["calls_recorded"] == 3 and summary["catalog"]["reachable"] is False
        assert summary["catalog"]["waiting"] > 0 and "unreachable" in res.err and "wait" in res.err
        server.start()
        server.createdb("fleet")
        p = Pusher(out, url, "a")
        assert p.tick() == summary["catalog"]["waiting"] and p.status["waiting"] == 0
        assert p.tick() == 0  # nothing twice
        p.close()
        rows = fleet_calls(url, capsys)
        assert len(rows) == 3 and all(len(r["copies"]) == 1 for r in rows)
        status = json.load(open(os.path.join(out, "fleet.json")))
        assert status["reachable"] is True and status["waiting"] == 0 and status["url"] == url
    finally:
        server.remove()


def test_a_push_cut_short_commits_nothing_and_is_sent_again_whole(tmp_path, pg_url, monkeypatch):
    _, path = capture(tmp_path, synth.SynthSpec(calls=4, duration_s=2, spacing_s=0.3, seed=64))
    out = str(tmp_path / "out")
    record(path, out)
    p = Pusher(out, pg_url, "a")
    real = FleetCatalog._choose_best
    seen = []

    def fail_third(self, conn, key):
        seen.append(key)
        if len(seen) == 3:
            raise OSError("connection lost")
        real(self, conn, key)

    monkeypatch.setattr(FleetCatalog, "_choose_best", fail_third)
    assert p.tick() == 0 and p.status["reachable"] is False and "connection lost" in p.status["last_error"]
    assert p.fleet.query() == [] and p.fleet.pushed("a", p._local().uuid) == 0
    monkeypatch.setattr(FleetCatalog, "_choose_best", real)
    p.next_try = 0
    assert p.tick() == 4 and len(p.fleet.query()) == 4
    p.close()


def test_changes_made_while_capturing_reach_the_fleet_from_a_process_beside_it(tmp_path, pg_url):
    """``capture`` and ``run`` push from a process of their own: calls recorded while it runs
    (and a delivery confirmed later, which changes a row again) reach the fleet catalog."""
    import time

    _, path = capture(tmp_path, synth.SynthSpec(calls=2, duration_s=2, spacing_s=0.3, seed=65))
    out = str(tmp_path / "out")
    os.makedirs(out)
    with beside(out, pg_url, "a", "http://a:8080"):
        record(path, out)
        f = FleetCatalog(pg_url)
        deadline = time.monotonic() + 30
        while len(f.query()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = f.query()
    assert len(rows) == 2 and all(r["copies"][0]["api"] == "http://a:8080" for r in rows)
    f.close()


def test_the_catalog_url_is_shown_without_its_password(tmp_path):
    assert redact("postgresql://rec:s3cr#t@db:5432/fleet") == "postgresql://rec:***@db:5432/fleet"
    assert redact("postgresql://db/fleet") == "postgresql://db/fleet"
    p = Pusher(str(tmp_path), "postgresql://rec:s3cret@127.0.0.1:1/fleet", "a")
    p.write_status()
    assert "s3cret" not in open(tmp_path / "fleet.json").read()
    p.close()


@pytest.mark.parametrize("bad", ["sqlite:///x", "http://db/fleet", "db:5432"])
def test_a_catalog_that_is_not_postgresql_is_refused_in_one_line(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        main(["calls", "--catalog", bad])
    assert e.value.code == 2 and "PostgreSQL URL" in capsys.readouterr().err


def _serve(app):
    """``app`` on a port of its own (uvicorn in a thread): another appliance's API."""
    import time

    import uvicorn
    from pg import free_port

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, t, f"http://127.0.0.1:{port}"


def test_any_appliances_api_lists_the_fleet_and_plays_a_call_from_wherever_a_copy_is(tmp_path, pg_url, capsys):
    """Appliance a's API lists the fleet's calls (each once, with a's and b's copies) and plays a
    call from a's disk; with that gone, from a's archive; with that gone too, from b's API."""
    from fastapi.testclient import TestClient

    from appliance.api.main import create_app
    from appliance.config import ApiSettings, CaptureSettings, CatalogSettings, Settings

    _, path = capture(tmp_path, synth.SynthSpec(calls=2, duration_s=3, spacing_s=0.3, seed=66))
    a, b, arch = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "archive")
    record(path, a)
    record(lossy(tmp_path, path), b)
    assert main(["archive", "--out", a, "--to", f"file://{arch}", "--once"]) == 0
    hosts = ApiSettings(hosts=["testserver", "127.0.0.1"])
    sb = Settings(capture=CaptureSettings(out=b), api=hosts, catalog=CatalogSettings(url=pg_url, appliance="b"))
    srv, t, b_api = _serve(create_app(sb))
    try:
        push_now(b, pg_url, "b", api=b_api)
        push_now(a, pg_url, "a")  # after the archive: its copies say where they are archived
        sa = Settings(
            capture=CaptureSettings(out=a), api=hosts,
            catalog=CatalogSettings(url=pg_url, appliance="a"),
        )  # fmt: skip
        c = TestClient(create_app(sa))
        page = c.get("/fleet/calls").json()
        assert len(page["items"]) == 2 and page["next_offset"] is None
        call = page["items"][0]
        assert call["best"] == "a" and [cp["appliance"] for cp in call["copies"]] == ["a", "b"]
        (copy_a, copy_b) = call["copies"]
        assert copy_a["archive"][0]["target"] == f"file://{arch}" and copy_b["api"] == b_api
        assert c.get(f"/fleet/calls/{copy_b['id']}").json()["call_key"] == call["call_key"]  # by any copy's id
        wav_a = open(os.path.join(a, copy_a["wav"]), "rb").read()
        r = c.get(f"/fleet/calls/{copy_b['id']}/audio")
        assert r.status_code == 200 and r.headers["x-shadowrec-copy"] == f"a/{copy_a['id']}" and r.content == wav_a
        os.unlink(os.path.join(a, copy_a["wav"]))
        r = c.get(f"/fleet/calls/{call['id']}/audio")
        assert r.headers["x-shadowrec-copy"] == f"a/{copy_a['id']}" and r.content == wav_a  # the archived copy
        os.unlink(os.path.join(arch, copy_a["archive"][0]["key"]))
        r = c.get(f"/fleet/calls/{call['id']}/audio")
        assert r.headers["x-shadowrec-copy"] == f"b/{copy_b['id']}"
        assert r.content == open(os.path.join(b, copy_b["wav"]), "rb").read()  # from b's API
    finally:
        srv.should_exit = True
        t.join(5)
    assert c.get(f"/fleet/calls/{call['id']}/audio").status_code == 404  # b is gone too: no copy reachable
    st = c.get("/status").json()["catalog"]
    assert st is None or st["appliance"] == "a"  # a's pusher never ran here: nothing written yet


def test_the_page_lists_the_fleets_calls_with_their_copies(tmp_path, pg_url):
    """In Debian's Chromium: with a fleet catalog, the page shows its card and the fleet's calls,
    each with its copies (the best in bold) and a player on /fleet/calls/{id}/audio."""
    import re
    import shutil
    import subprocess

    from test_page import CHROMIUM, FLAGS

    from appliance.api.main import create_app
    from appliance.config import ApiSettings, CaptureSettings, CatalogSettings, Settings

    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium")
    _, path = capture(tmp_path, synth.SynthSpec(calls=3, duration_s=2, spacing_s=0.3, seed=67))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    record(path, a)
    record(lossy(tmp_path, path), b)
    push_now(a, pg_url, "a")
    push_now(b, pg_url, "b")
    s = Settings(
        capture=CaptureSettings(out=a), api=ApiSettings(hosts=["127.0.0.1"]),
        catalog=CatalogSettings(url=pg_url.replace("shadowrec@", "shadowrec:pw@"), appliance="a"),
    )  # fmt: skip
    Pusher(a, s.catalog.url or "", "a").tick()  # its status file, as the service's pusher writes it
    srv, t, url = _serve(create_app(s))
    try:
        dom = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url + "/"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    finally:
        srv.should_exit = True
        t.join(5)
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    assert re.search(r"fleet catalog postgresql://shadowrec:\*\*\*@[^<]*<b>0 waiting, 0 pushed</b>", dom), dom
    assert "pw@" not in dom
    rows = re.findall(r"<td><b>a</b> <small>0 lost</small>, b <small>\d+ lost</small></td>", dom)
    assert len(rows) == 3
    assert len(re.findall(r'<audio controls="" preload="none" src="/fleet/calls/\d{8}T[\w-]+/audio">', dom)) == 3


def test_the_fleet_operations_never_answer_5xx_whatever_the_schema_allows(tmp_path, pg_url):
    """schemathesis over /fleet/calls* with a real fleet catalog behind them."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    from appliance.api.main import create_app
    from appliance.config import CaptureSettings, CatalogSettings, Settings

    _, path = capture(tmp_path, synth.SynthSpec(calls=2, duration_s=2, spacing_s=0.3, seed=68))
    a = str(tmp_path / "a")
    record(path, a)
    push_now(a, pg_url, "a")
    app = create_app(Settings(capture=CaptureSettings(out=a), catalog=CatalogSettings(url=pg_url, appliance="a")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if not op.path.startswith("/fleet"):
            continue

        @given(case=op.as_strategy())
        @hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, response.text[:200])

        check()
        checked += 1
    assert checked == 3


def test_the_service_pushes_from_its_delivery_child_and_serve_takes_catalog_on_its_command_line(
    tmp_path, pg_url, monkeypatch
):
    """``serve``: with [catalog] url (or ``serve --catalog``), the delivery child pushes on a thread
    of its own; /status.catalog reports it."""
    import signal
    import time

    from fastapi.testclient import TestClient

    import appliance.service as service
    from appliance.api.main import create_app
    from appliance.config import ApiSettings, CaptureSettings, Settings

    _, path = capture(tmp_path, synth.SynthSpec(calls=2, duration_s=2, spacing_s=0.3, seed=69))
    out = str(tmp_path / "out")
    record(path, out)
    seen = {}
    monkeypatch.setattr(service, "serve", lambda settings: seen.setdefault("settings", settings) and 0)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[capture]\nout = "{out}"\n[catalog]\nappliance = "svc"\n')
    assert main(["serve", "--config", str(cfg), "--catalog", pg_url]) == 0
    settings = seen["settings"]
    assert settings.catalog.url == pg_url and settings.catalog.appliance == "svc"
    sup = service.Supervisor(settings)
    sup._spawn_delivery()
    try:
        f = FleetCatalog(pg_url)
        deadline = time.monotonic() + 30
        while len(f.query()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r["copies"][0]["appliance"] for r in f.query()] == ["svc", "svc"]
        f.close()
        api = Settings(
            capture=CaptureSettings(out=out), api=ApiSettings(hosts=["testserver"]), catalog=settings.catalog
        )
        st = TestClient(create_app(api)).get("/status").json()["catalog"]
        assert st["reachable"] is True and st["waiting"] == 0 and st["appliance"] == "svc"
    finally:
        os.kill(sup.delivery.pid, signal.SIGTERM)
        sup.delivery.join(30)
    assert sup.delivery.exitcode == 0
