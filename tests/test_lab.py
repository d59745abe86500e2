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


def test_two_primaries_killing_one_moves_only_its_vip_and_every_call_is_recorded(tmp_path):
    """One shadowrec guards two primary recorders (two keepalived instances, VIPs .20 and .21, VRRP
    ids 20 and 21), each called by its own CUCM. The first's recorder dies mid-call: only its VIP
    moves to shadowrec, which answers its new calls; the second keeps its VIP and answers its own;
    every call to both is recorded whole, once; the first primary takes its VIP back."""
    from appliance.lab.site import run_two_primaries

    r = run_two_primaries(str(tmp_path / "two"), calls=2, kill_at=5.0, restore_at=13.0)
    assert r["takeover_s"] is not None and r["takeover_s"] <= 1.0, r["timeline"]
    assert r["vip2_always_on_its_primary"] and not r["vip2_ever_on_shadowrec"], r["timeline"]
    assert r["failback_s"] is not None and r["vip_single_at_end"]
    for role in ("pri", "pri2"):
        x = r[role]
        assert x["in_progress_packets_sent"] > 1000 and x["in_progress_packets_lost"] == 0, x
        assert x["new_calls_recorded_share"] == 1.0 and x["new_calls_packets_lost"] == 0, x
        assert all(c["recordings"] == 1 and c["end_reason"] == "bye" for c in x["calls"]), x["calls"]
    after = {role: [c for c in r[role]["calls"] if not c["before_failure"]] for role in ("pri", "pri2")}
    assert all(c["answered_by"] == ["shadowrec"] and c["recorded_by"] == "shadowrec" for c in after["pri"])
    assert all(c["answered_by"] != ["shadowrec"] and c["recorded_by"] == "primary" for c in after["pri2"])
    names = {p["name"]: p for p in r["primaries_at_end"]}
    assert set(names) == {"198.18.0.2", "198.18.0.4"} and not any(p["master"] for p in names.values())
    assert names["198.18.0.2"]["invites"] >= 4 and names["198.18.0.4"]["invites"] == 0


def test_an_appliance_pair_the_second_takes_over_when_the_answering_one_dies(tmp_path, pg_server):
    """Two appliances guard one primary (takeover priorities 254 and 253, each the other's fellow),
    both record from the SPAN. The primary's recorder dies: a answers (b stays Backup on a's
    adverts); a's host dies mid-outage: b takes the VIP and a's calls (their BYEs answered, not
    481), answers new ones, and hands the VIP back when the primary returns. b's recordings hold
    every call whole, and the shared catalog has one row per call."""
    from appliance.fleet.store import FleetCatalog
    from appliance.lab.site import run_pair

    pg_server.createdb("pair")
    pg_url = pg_server.url("pair", unix=True)  # the appliances' namespaces reach its socket, not its 127.0.0.1
    r = run_pair(pg_url, str(tmp_path / "pair"))
    assert r["a_took_over_s"] is not None and r["a_took_over_s"] <= 1.0, r["timeline"]
    assert r["b_before_a_died"] == [] and r["a_and_b_held_it_together"] == [], r["timeline"]
    assert r["b_took_over_s"] is not None and r["b_took_over_s"] <= 5.0, r["timeline"]
    assert r["handed_back_s"] is not None, r["timeline"]
    assert r["in_progress_packets_sent"] > 1500 and r["in_progress_packets_lost"] == 0, r
    assert r["new_calls_recorded_share"] == 1.0 and r["new_calls_packets_lost"] == 0, r["calls"]
    assert all(c["recordings"] == 1 for c in r["calls"]), r["calls"]
    sip = r["b_sip_at_end"]
    assert sip["calls_taken_over"] >= 4 and sip["byes_taken_over"] >= 4 and sip["invites"] >= 4, sip
    assert sip["dialogs"] == 0 and sip["rtp_ports"] == 0, sip
    fleet = FleetCatalog(pg_url)
    rows = fleet.query()
    fleet.close()
    assert len(rows) == len(r["calls"]) == 6
    by_dn = {row["near"]["dn"]: row for row in rows}
    for c in r["calls"]:
        row = by_dn[str(8110000 + c["index"])]
        assert row["best"] == "b" and "b" in [cp["appliance"] for cp in row["copies"]]
    assert sum(len(row["copies"]) == 2 for row in rows) >= 4  # the calls a saw too: one row, two copies
