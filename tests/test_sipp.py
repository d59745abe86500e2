"""SIPp (Debian's sip-tester) as CUCM against `shadowrec run` holding the VIP: delayed-offer BiB calls,
near and far dialogs, RTP to the offered ports, over UDP and TCP (root, namespaces). The full
5,000-call run is bench/sipp_load.py."""

import os
import shutil

import pytest
from lab import can_run_lab

from appliance.lab import sipp

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not can_run_lab() or not shutil.which("sipp"), reason="needs root and sipp (sip-tester)"),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_bib_call_is_answered_and_recorded(tmp_path, transport):
    r = sipp.run(str(tmp_path / transport), calls=150, rate=50, transport=transport, hold_s=4)
    assert r["sipp_exit"] == [0, 0], r
    for role in ("nearend", "farend"):
        assert r["sipp"][role]["SuccessfulCall(C)"] == 150 and r["sipp"][role]["FailedCall(C)"] == 0
    assert r["peak"]["dialogs"] == 300  # every call up at once, both dialogs
    assert r["peak"]["fds"] >= 600  # an RTP and an RTCP socket per dialog
    assert r["kernel"]["udp_no_ports"] == 0  # no RTP met a closed port: no ICMP to the phones
    assert r["answer_ms"]["n"] == 300 and r["answer_ms"]["p90"] < 100
    assert r["recordings"] == {"calls": 150, "both_voices_with_audio": 150, "end_reasons": {"bye": 150}}
    assert r["sip"]["dialogs"] == 0 and r["sip"]["rtp_ports"] == 0  # all given back after the BYEs
    assert r["sip_errors"] == {"socket_errors": {}, "loop_errors": {}, "errors": {}}
    assert os.path.exists(tmp_path / transport / "sip.pcap")
