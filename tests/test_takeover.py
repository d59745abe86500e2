"""The standby's watchdog over its SIP servers (appliance/standby/takeover.py): a server that dies or
freezes stops the standby, so that `run` exits non-zero and `serve`'s supervisor starts a new one.
With several primaries guarded, any one of their servers does."""

import threading
import time
from types import SimpleNamespace

import pytest
from test_sip_server import HOST, free_port

import appliance.standby.takeover as takeover
from appliance.standby.sip.server import SipServer
from appliance.standby.sip.uas import Uas


@pytest.fixture(params=[1, 2], ids=["one-primary", "two-primaries"])
def standby(monkeypatch, request):
    """The watchdog's parts only (no interfaces, no capture); with two primaries, the second
    guard's server is the one that fails."""
    monkeypatch.setattr(takeover, "SIP_WATCH_S", 0.05)
    monkeypatch.setattr(takeover, "SIP_FROZEN_S", 0.3)
    sb = object.__new__(takeover.Standby)
    sb.guards = [SimpleNamespace(sip=SipServer(Uas(HOST), port=free_port()).start()) for _ in range(request.param)]
    sb.worker = SimpleNamespace(stop=False)
    sb.failure = None
    for g in sb.guards:
        g.sip.on_death = sb._sip_died
    watch = threading.Thread(target=sb._watch)
    watch.start()
    yield sb, sb.guards[-1], watch
    sb.worker.stop = True
    watch.join(3)
    for g in sb.guards:
        g.sip.close()


def test_a_dead_sip_server_stops_the_standby(standby):
    sb, failing, watch = standby
    time.sleep(0.3)
    assert not sb.worker.stop and sb.failure is None  # a healthy server: nothing happens
    failing.sip.call(failing.sip.loop.stop)
    watch.join(3)
    assert sb.worker.stop and sb.failure.startswith("SIP server stopped")


def test_a_frozen_sip_server_stops_the_standby(standby):
    sb, failing, watch = standby
    failing.sip.call(lambda: time.sleep(1.0))  # the loop blocked
    watch.join(3)
    assert sb.worker.stop and "frozen" in sb.failure
