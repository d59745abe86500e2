"""The whole site (`shadowrec lab`): the primary dies mid-call three ways; nothing is lost (root)."""

import json
import os

import pytest
from lab import can_run_lab

from appliance.lab.site import run_lab

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not can_run_lab() or not os.path.exists("/usr/sbin/keepalived"), reason="needs root and keepalived"
    ),
]


@pytest.mark.parametrize("mode", ["crash", "host", "net"])
def test_primary_dies_mid_call(tmp_path, mode):
    # "host": no SIP peers configured: shadowrec answers the CUCM it saw calling the primary on the SPAN
    learned = mode == "host"
    r = run_lab(mode, str(tmp_path / mode), calls_before=3, calls_after=2, kill_at=5.0, restore_at=13.0,
                sip_peers=not learned)  # fmt: skip
    assert r["takeover_s"] is not None and r["takeover_s"] <= 1.0  # default settings
    assert r["in_progress_packets_sent"] > 2000 and r["in_progress_packets_lost"] == 0
    assert r["new_calls_recorded_share"] == 1.0 and r["new_calls_packets_lost"] == 0
    assert r["failback_s"] is not None and r["vip_single_at_end"]
    # on the connected LAN, only while the primary's keepalived steps down for shadowrec's advert
    assert all(seconds < 0.1 for _, seconds in r["vip_held_twice"]), r["vip_held_twice"]
    for c in r["calls"]:
        assert c["recordings"] == 1 and c["end_reason"] == "bye"
        if c["before_failure"]:
            assert c["recorded_by"] == "primary" and c["primary_failed_at"] is not None
        else:
            assert c["answered_by"] == ["shadowrec"] and c["recorded_by"] == "shadowrec"
    sip = r["standby_sip_at_end"]  # the VIP handed back, every call ended: no dialog, no port held
    assert sip["dialogs"] == 0 and sip["rtp_ports"] == 0 and sip["invites"] >= 4 and not sip["master"], sip
    # the call that spanned the failback ended with a BYE to the primary, seen on the SPAN port
    assert sip["ended_after_release"] >= 2, sip
    if learned:
        peers = json.load(open(tmp_path / mode / "recordings" / "learned-sip-peers.json"))
        assert peers == ["198.18.0.10"]  # CUCM, and nobody else
