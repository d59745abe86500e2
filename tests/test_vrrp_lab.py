"""shadowrec's VRRP against a real keepalived primary, in namespaces (root)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from lab import can_run_lab
from vrrp_lab import VIP, VipLab, wait

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not can_run_lab() or not os.path.exists("/usr/sbin/keepalived"), reason="needs root and keepalived"
    ),
]
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENV = dict(os.environ, PYTHONPATH=ROOT)


def start_shadowrec(lab, tmp_path, *extra):
    status = str(tmp_path / "vrrp.json")
    p = lab.popen(
        "app",
        sys.executable,
        "-m",
        "appliance.cli",
        "vrrp",
        "--iface",
        "eth0",
        "--vrid",
        "20",
        "--vip",
        f"{VIP}/24",
        "--status-file",
        status,
        "--vrrp-peer",
        "198.18.0.2",
        *extra,
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait(lambda: os.path.exists(status) and json.load(open(status))["adverts_received"] > 0, 10)
    return p, status


def arp_entry(lab):
    lab.run("cli", sys.executable, "-c", f"import socket; socket.socket(2,2).sendto(b'x', ('{VIP}', 9))")
    time.sleep(0.2)
    out = lab.run("cli", "ip", "neigh", "show", VIP).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    return json.loads(out)


def test_backup_takes_over_a_crashed_master_announces_it_and_hands_back(tmp_path):
    with VipLab(tmp_path) as lab:
        assert lab.start_keepalived(priority=100, advert_int=1)
        p, status = start_shadowrec(lab, tmp_path)
        time.sleep(1.5)
        s = json.load(open(status))
        assert s["state"] == "Backup" and s["master_ip"] == "198.18.0.2" and s["bad_adverts"] == 0, s
        assert lab.has_vip("pri") and not lab.has_vip("app")
        assert arp_entry(lab) == lab.mac("pri")
        t0 = time.monotonic()
        lab.kill_keepalived()
        assert wait(lambda: lab.has_vip("app"), 6)
        took = time.monotonic() - t0
        assert took <= 3.0 + (256 - 50) / 256 + 0.2  # 3 x advert_int + skew, at most
        time.sleep(0.1)
        assert lab.mac("app") in lab.run("cli", "ip", "neigh", "show", VIP).stdout  # gratuitous ARP moved it
        assert lab.has_vip("pri")  # the crashed host left its stale VIP behind
        lab.run("pri", "ip", "addr", "del", f"{VIP}/24", "dev", "eth0")  # its restart clears it
        t0 = time.monotonic()
        lab.start_keepalived(priority=100, advert_int=1)
        assert wait(lambda: not lab.has_vip("app"), 8)  # preempted: failback
        assert lab.has_vip("pri") and not lab.has_vip("app")
        time.sleep(1.5)
        assert lab.has_vip("pri") and not lab.has_vip("app")  # and it stays single
        final = stop(p)
    assert final["claims"] == 1 and final["releases"] == 1 and final["state"] == "Initialize"


def test_keepalived_steps_down_for_the_takeover_priority_and_takes_back(tmp_path):
    """The policy for a dead recorder on a live host: shadowrec outranks the primary, then hands back."""
    with VipLab(tmp_path) as lab:
        assert lab.start_keepalived(priority=100, advert_int=1)
        p, status = start_shadowrec(lab, tmp_path)
        t0 = time.monotonic()
        p.send_signal(signal.SIGUSR2)  # health verdict: primary dead
        assert wait(lambda: lab.has_vip("app") and not lab.has_vip("pri"), 3)
        assert time.monotonic() - t0 < 1.0  # keepalived steps down within milliseconds
        time.sleep(2.5)
        assert lab.has_vip("app") and not lab.has_vip("pri")  # it stays down while outranked
        t0 = time.monotonic()
        p.send_signal(signal.SIGHUP)  # primary alive again: priority 0, hand back
        assert wait(lambda: lab.has_vip("pri") and not lab.has_vip("app"), 4)
        assert time.monotonic() - t0 < 1.5  # the primary's Skew_Time
        s = json.load(open(status))
        assert s["state"] == "Backup" and s["priority"] == 50
        stop(p)


FORGE = """
import socket, struct, sys
sys.path.insert(0, {root!r})
from appliance.standby.vrrp import packet
from capture.wire.inet import checksum
src, prio, interval = {src!r}, {prio}, {interval}
body = packet.build(packet.Advert(20, prio, interval, {addresses!r}), src)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 255, 112, 0,
                 socket.inet_aton(src), socket.inet_aton(packet.VRRP_GROUP))
ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
for _ in range({count}):
    s.sendto(ip + body, (packet.VRRP_GROUP, 0))
"""


def forge(lab, src, prio, interval=100, addresses=(VIP,), count=1):
    """A VRRP advert with any source, sent from the client's namespace (IP_HDRINCL)."""
    code = FORGE.format(root=ROOT, src=src, prio=prio, interval=interval, addresses=addresses, count=count)
    lab.run("cli", sys.executable, "-c", code)


def test_forged_adverts_change_nothing(tmp_path):
    """Each forgery of the field report against the real instance: none moves the VIP."""
    with VipLab(tmp_path) as lab:
        lab.run("cli", "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
        assert lab.start_keepalived(priority=100, advert_int=1)
        p, status = start_shadowrec(lab, tmp_path)
        # the primary alive: a forged priority 0 from a host that is not the primary (a backup would
        # claim the VIP within its skew time, 0.8 s) and from off the subnet
        for _ in range(6):
            forge(lab, "198.18.0.9", 0)
            forge(lab, "203.0.113.66", 0)
            time.sleep(0.5)
            assert not lab.has_vip("app") and lab.has_vip("pri")
        # the primary's recorder dead (the probes' verdict): shadowrec takes over, then the forgeries
        p.send_signal(signal.SIGUSR2)
        assert wait(lambda: lab.has_vip("app") and not lab.has_vip("pri"), 3)
        for src in ("203.0.113.66", "198.18.0.9", "198.18.0.2"):  # off-subnet, on-subnet, the primary's own
            forge(lab, src, 255, interval=4095)
        forge(lab, "198.18.0.2", 255, addresses=("198.18.0.99",))  # the primary's, but another address list
        held = []
        for _ in range(40):  # 4 s: longer than the down interval a believed advert would have set
            held.append(lab.has_vip("app"))
            time.sleep(0.1)
        assert all(held)
        s = json.load(open(status))
        assert s["state"] == "Master" and s["claims"] == 1 and s["releases"] == 0, s
        assert s["adverts_rejected"]["not_peer"] == 14 and s["adverts_rejected"]["addresses"] == 1, s
        assert s["conflicts"] == 1 and "255 from 198.18.0.2" in s["last_conflict"]
        stop(p)


def test_fast_adverts_take_over_in_a_third_of_a_second(tmp_path):
    with VipLab(tmp_path) as lab:
        assert lab.start_keepalived(priority=100, advert_int=0.1)
        p, _ = start_shadowrec(lab, tmp_path, "--advert-int", "0.1")
        time.sleep(0.5)
        t0 = time.monotonic()
        lab.kill_keepalived()
        assert wait(lambda: lab.has_vip("app"), 3, step=0.005)
        assert time.monotonic() - t0 < 0.3 + 0.1 + 0.1
        stop(p)


def test_ipv6_vip_is_claimed_and_announced_with_an_unsolicited_na(tmp_path):
    import dpkt

    with VipLab(tmp_path) as lab:
        for role, host in (("app", "2001:db8::3"), ("cli", "2001:db8::9")):
            lab.run(role, "ip", "-6", "addr", "add", f"{host}/64", "dev", "eth0", "nodad")
        lab.run(
            "cli",
            "ip",
            "-6",
            "neigh",
            "add",
            "2001:db8::20",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "stale",
        )
        code = (
            f"import sys; sys.path.insert(0, {ROOT!r}); from appliance.standby.vrrp.vip import VipManager; "
            "from appliance.standby.vrrp.arp import announce;"
            "v=VipManager('eth0', ['198.18.0.20/24', '2001:db8::20/64']); print(v.claim());"
            "print(announce('eth0', [str(x) for x in v.vips], repeat=2))"
        )
        r = lab.run("app", sys.executable, "-c", code)
        assert "2001:db8::20/64" in r.stdout and r.stdout.split()[-1] == "4"
        time.sleep(0.2)
        neigh = lab.run("cli", "ip", "-6", "neigh", "show", "2001:db8::20").stdout
        assert lab.mac("app") in neigh  # the override flag replaced the stale entry
        frame = lab.run(
            "app",
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {ROOT!r}); "
            "from appliance.standby.vrrp.arp import unsolicited_na; "
            "print(unsolicited_na('eth0', '2001:db8::20').hex())",
        ).stdout.strip()
    eth = dpkt.ethernet.Ethernet(bytes.fromhex(frame))
    icmp = eth.data.data
    assert eth.dst == b"\x33\x33\x00\x00\x00\x01" and eth.data.hlim == 255 and icmp.type == 136
    raw = bytes(eth.data)
    import struct

    pseudo = raw[8:40] + struct.pack("!IxxxB", len(raw) - 40, 58)
    from capture.wire.inet import checksum as _csum

    assert _csum(pseudo + raw[40:]) == 0  # a valid ICMPv6 checksum
