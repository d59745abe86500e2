"""The standby's watchdog over its SIP server (appliance/standby/takeover.py): a server that dies or
freezes stops the standby, so that `run` exits non-zero and `serve`'s supervisor starts a new one."""

import threading
import time
from types import SimpleNamespace

import pytest
from test_sip_server import HOST, free_port

import appliance.standby.takeover as takeover
from appliance.standby.sip.server import SipServer
from appliance.standby.sip.uas import Uas


@pytest.fixture
def standby(monkeypatch):
    monkeypatch.setattr(takeover, "SIP_WATCH_S", 0.05)
    monkeypatch.setattr(takeover, "SIP_FROZEN_S", 0.3)
    sb = object.__new__(takeover.Standby)  # the watchdog's parts only: no interfaces, no capture
    sb.sip = SipServer(Uas(HOST), port=free_port()).start()
    sb.worker = SimpleNamespace(stop=False)
    sb.failure = None
    sb.sip.on_death = sb._sip_died
    watch = threading.Thread(target=sb._watch)
    watch.start()
    yield sb, watch
    sb.worker.stop = True
    watch.join(3)
    sb.sip.close()


def test_a_dead_sip_server_stops_the_standby(standby):
    sb, watch = standby
    time.sleep(0.3)
    assert not sb.worker.stop and sb.failure is None  # a healthy server: nothing happens
    sb.sip.call(sb.sip.loop.stop)
    watch.join(3)
    assert sb.worker.stop and sb.failure.startswith("SIP server stopped")


def test_a_frozen_sip_server_stops_the_standby(standby):
    sb, watch = standby
    sb.sip.call(lambda: time.sleep(1.0))  # the loop blocked
    watch.join(3)
    assert sb.worker.stop and "frozen" in sb.failure
