"""``shadowrec lab``: a whole recording site in network namespaces, and the primary dying in it.

    site  (CUCM 198.18.0.10, phones 198.18.1.x) ─┐
    pri   (primary recorder + keepalived, .2)  ──┼── sw: br0 ── app eth0 (shadowrec, .3; the VIP's LAN)
                                                 │   tc u32 mirred: site and pri ports ─► app span0
    VIP 198.18.0.20/16 (VRRP id 20, keepalived priority 100, advert 1 s; shadowrec 50)

Calls start before the failure, the primary dies one of three ways (``crash``: its recorder
process, host up; ``host``: keepalived, recorder and links gone at once; ``net``: its
bridge port disabled, carrier up: a split brain), more calls start after it, the primary comes
back, and calls span the failback. The report: time from the failure to the VIP owned by
shadowrec, packets missing from each recording against the audio the phones sent, the share
of calls recorded, the failback time, and when and how long the VIP was held twice on a connected
LAN. Everything created is deleted on exit.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import wave

import numpy as np

VIP, PRIMARY, APP, CUCM = "198.18.0.20", "198.18.0.2", "198.18.0.3", "198.18.0.10"
VIP2, PRIMARY2, CUCM2 = "198.18.0.21", "198.18.0.4", "198.18.0.11"  # a second primary (run_two_primaries)
APP2 = "198.18.0.5"  # a second appliance (run_pair)
PRIMARIES = {"pri": (PRIMARY, VIP, 20), "pri2": (PRIMARY2, VIP2, 21)}  # namespace -> address, VIP, vrid
KEEPALIVED = """global_defs {{
    router_id {role}
    vrrp_version 3
}}
vrrp_instance VI_REC {{
    state MASTER
    interface eth0
    virtual_router_id {vrid}
    priority 100
    advert_int {advert}
    virtual_ipaddress {{
        {vip}/16
    }}
}}
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class Site:
    def __init__(self, work: str, phones: int = 8, advert: float = 1.0, primaries: int = 1, appliances: int = 1):
        tag = uuid.uuid4().hex[:5]
        roles = ("sw", "site", "pri", "app") + ("pri2",) * (primaries > 1) + ("app2",) * (appliances > 1)
        # each appliance's SPAN port: span0 in its namespace, its peer on the switch (every mirror copies to each)
        self.spans = {"app": "span1"} | ({"app2": "span2"} if appliances > 1 else {})
        self.ns = {r: f"srl{tag}-{r}" for r in roles}
        self.work = work
        self.phones = [f"198.18.1.{i + 1}" for i in range(phones)]
        self.advert = advert
        self.procs: dict = {}
        self.created: list = []
        self.env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    # topology -------------------------------------------------------------------------------
    def ip(self, role, *a, check=True):
        return sh("ip", "-n", self.ns[role], *a, check=check)

    def exe(self, role, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[role], *cmd, check=check)

    def popen(self, role, name, *cmd):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], *cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.env["PYTHONPATH"],
        )
        self.procs[name] = p
        return p

    def _port(self, role, addr=None):
        sw = self.ns["sw"]
        sh("ip", "link", "add", "eth0", "netns", self.ns[role], "type", "veth", "peer", "name", f"{role}1", "netns", sw)
        self.ip("sw", "link", "set", f"{role}1", "master", "br0")
        self.ip("sw", "link", "set", f"{role}1", "up")
        self.ip(role, "link", "set", "eth0", "up")
        if addr:
            self.ip(role, "addr", "add", f"{addr}/16", "dev", "eth0")
        # the SPAN session: these ports' traffic to each appliance's span0 (with two appliances, theirs too:
        # each sees the other's answers)
        if role in ("site", "pri", "pri2") or (role in ("app", "app2") and len(self.spans) > 1):
            self.exe("sw", "tc", "qdisc", "add", "dev", f"{role}1", "ingress")
            mirror = f"tc filter add dev {role}1 parent ffff: protocol all u32 match u32 0 0".split()
            for dev in self.spans.values():
                mirror += ["action", "mirred", "egress", "mirror", "dev", dev, "pipe"]
            self.exe("sw", *mirror)

    def __enter__(self):
        try:
            for name in self.ns.values():
                sh("ip", "netns", "add", name)
                self.created.append(name)
            for role in self.ns:
                self.ip(role, "link", "set", "lo", "up")
            self.ip("sw", "link", "add", "br0", "type", "bridge")
            self.ip("sw", "link", "set", "br0", "up")
            for app, peer in self.spans.items():
                sh("ip", "link", "add", "span0", "netns", self.ns[app], "type", "veth", "peer", "name", peer,
                   "netns", self.ns["sw"])  # fmt: skip
                self.ip("sw", "link", "set", peer, "up")
            self._port("site", CUCM)
            for ph in self.phones:
                self.ip("site", "addr", "add", f"{ph}/16", "dev", "eth0")
            self._port("app", APP)
            if "app2" in self.ns:
                self._port("app2", APP2)
            self._port("pri", PRIMARY)
            if "pri2" in self.ns:
                self.ip("site", "addr", "add", f"{CUCM2}/16", "dev", "eth0")
                self._port("pri2", PRIMARY2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for p in list(self.procs.values()):
            if p.poll() is None:
                p.kill()
                p.wait(5)
        for role in PRIMARIES:
            self.kill_keepalived(role)
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        return False

    # the primary ------------------------------------------------------------------------------
    def start_primary(self, role: str = "pri"):
        """A primary recorder host (``pri``, or ``pri2``): keepalived and the recorder on its VIP."""
        _, vip, vrid = PRIMARIES[role]
        conf = os.path.join(self.work, f"keepalived-{role}.conf")
        with open(conf, "w") as f:
            f.write(KEEPALIVED.format(role=role, vrid=vrid, advert=self.advert, vip=vip))
        pidf, vpidf = os.path.join(self.work, f"ka-{role}.pid"), os.path.join(self.work, f"ka-vrrp-{role}.pid")
        self.pidfiles = getattr(self, "pidfiles", {}) | {role: (vpidf, pidf)}
        self.popen(role, f"keepalived-{role}", "keepalived", "-n", "-l", "-D", "-P", "-f", conf, "-p", pidf,
                   "-r", vpidf)  # fmt: skip
        self.start_recorder(role)

    def start_recorder(self, role: str = "pri"):
        vip = PRIMARIES[role][1]
        self.popen(role, f"recorder-{role}", sys.executable, "-m", "appliance.cli", "lab-recorder", "--address", vip)

    def kill_keepalived(self, role: str = "pri"):
        p = self.procs.pop(f"keepalived-{role}", None)
        if p is None:
            return
        for f in getattr(self, "pidfiles", {}).get(role, ()):
            try:
                os.kill(int(open(f).read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        p.kill()
        p.wait(5)

    def kill_appliance(self, role: str) -> None:
        """An appliance's host dies: every process in its namespace at once, then its links."""
        for pid in sh("ip", "netns", "pids", self.ns[role], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        p = self.procs.pop("shadowrec" if role == "app" else f"shadowrec-{role}", None)
        if p is not None:
            p.wait(5)
        self.ip(role, "link", "del", "eth0", check=False)
        self.ip(role, "link", "del", "span0", check=False)

    def has_vip(self, role, vip: str = VIP) -> bool:
        r = self.ip(role, "-4", "addr", "show", "dev", "eth0", check=False)
        return f" {vip}/" in r.stdout

    def kill(self, mode: str, role: str = "pri"):
        if mode == "crash":  # the recorder process dies; host and keepalived live
            self.procs.pop(f"recorder-{role}").kill()
        elif mode == "host":  # everything at once: processes and links
            self.kill_keepalived(role)
            self.procs.pop(f"recorder-{role}").kill()
            self.ip(role, "link", "del", "eth0")
        elif mode == "net":  # its switch port stops forwarding; carrier stays up
            self.exe("sw", "bridge", "link", "set", "dev", f"{role}1", "state", "0")
        else:
            raise ValueError(mode)

    def restore(self, mode: str, role: str = "pri"):
        if mode == "crash":
            self.start_recorder(role)
        elif mode == "host":  # the host boots again: links, keepalived, recorder
            self._port(role, PRIMARIES[role][0])
            self.start_primary(role)
        elif mode == "net":
            self.exe("sw", "bridge", "link", "set", "dev", f"{role}1", "state", "3")


def _expected(seed: int, n: int) -> np.ndarray:
    from appliance.lab.sim import audio_codes
    from capture.media._g711_py import ULAW_TABLE

    return ULAW_TABLE[np.frombuffer(audio_codes(seed, n), dtype=np.uint8)]


def check_recording(out: str, meta: dict, dialog: dict, channel: int) -> dict:
    """How many of the packets the phone sent are in the recording, bit-exact, where they belong."""
    with wave.open(os.path.join(out, meta["wav"])) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)[:, channel]
    sent = dialog.get("packets_sent", 0)
    exp = _expected(dialog["seed"], 160 * sent)
    if sent == 0:
        return {"sent": 0, "recorded": 0}
    guess = int(round((dialog["first_rtp_at"] - dialog["invited_at"]) * 8000)) if dialog.get("first_rtp_at") else 0
    first = exp[:160]
    pos0 = None
    for s in range(max(0, guess - 4000), min(len(a) - 160, guess + 4000)):
        if a[s] == first[0] and np.array_equal(a[s : s + 160], first):
            pos0 = s
            break
    recorded = after_end = 0
    if pos0 is not None:
        for i in range(sent):
            p = pos0 + 160 * i
            if p >= len(a):  # sent after the BYE: not part of the call
                after_end += 1
                continue
            n = min(160, len(a) - p)  # the last packet may straddle the BYE
            if np.array_equal(a[p : p + n], exp[160 * i : 160 * i + n]):
                recorded += 1
    return {"sent": sent - after_end, "recorded": recorded}


def _start_appliance(
    site: Site, out: str, advert: float, probe: float, sip_peers: bool, *extra: str, role: str = "app"
) -> None:
    """``shadowrec run`` on the appliance's namespace, waited for until its first status file. Without
    ``sip_peers`` it answers only the CUCM it saw on the SPAN port calling the primary."""
    peers = ["--sip-peer", CUCM] if sip_peers else []
    name = "shadowrec" if role == "app" else f"shadowrec-{role}"
    site.popen(role, name, sys.executable, "-m", "appliance.cli", "run", "--span", "span0",
               "--service", "eth0", "--vrid", "20", "--vip", f"{VIP}/16", "--primary", PRIMARY, "--out", out,
               *peers, "--advert-int", str(advert), "--probe-interval", str(probe), *extra)  # fmt: skip
    t = time.monotonic()
    while not glob.glob(os.path.join(out, "status-*.json")) and time.monotonic() - t < 20:
        time.sleep(0.05)
    time.sleep(1.0)


class _VipWatch:
    """Who holds the VIP, sampled every 5 ms: a timeline of (seconds, primary has it, shadowrec has it),
    or of (seconds, each of ``probes``: (namespace, VIP) holds it)."""

    def __init__(self, site: Site, t0: float, probes: list[tuple[str, str]] | None = None):
        self.site, self.t0 = site, t0
        self.probes = probes or [("pri", VIP), ("app", VIP)]
        self.timeline: list[tuple] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        last = None
        while not self.stop.is_set():
            cur = tuple(self.site.has_vip(role, vip) for role, vip in self.probes)
            if cur != last:
                self.timeline.append((round(time.monotonic() - self.t0, 3), *cur))
                last = cur
            time.sleep(0.005)

    def primary_alone(self) -> bool:
        return bool(self.timeline and self.timeline[-1][1] and not self.timeline[-1][2])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _vip_report(timeline: list, mode: str, kill_t: float, restore_t: float) -> dict:
    """Takeover and failback times, and when the VIP was held twice on the connected LAN."""
    after_kill = [x for x in timeline if x[0] >= kill_t]
    took = next((x[0] for x in after_kill if x[2]), None)
    back = next((x[0] for x in timeline if x[0] >= restore_t and x[1] and not x[2]), None)
    return {
        "timeline": timeline,
        "takeover_s": round(took - kill_t, 3) if took is not None else None,
        "failback_s": round(back - restore_t, 3) if back is not None else None,
        # [when, for how long] the VIP was on both hosts of the connected LAN (not the split brain)
        "vip_held_twice": [
            [at, round((timeline[k + 1][0] if k + 1 < len(timeline) else at) - at, 3)]
            for k, (at, pri, app) in enumerate(timeline)
            if pri and app and not (mode == "net" and kill_t <= at < restore_t)
        ],
        "vip_single_at_end": bool(timeline and timeline[-1][1] and not timeline[-1][2]),
    }


def _calls_report(out: str, manifest: str, calls_before: int) -> dict:
    """Each call the CUCM placed against its recording: packets sent and recorded per voice."""
    calls = json.load(open(manifest))
    metas: dict = {}
    for p in glob.glob(os.path.join(out, "calls", "*", "*", "*", "*.json")):
        m = json.load(open(p))
        metas.setdefault(m["near"]["dn"], []).append(m)
    rows = []
    for c in calls:
        ms = metas.get(c["near"]["dn"], [])
        row = {
            "index": c["index"],
            "before_failure": c["index"] < calls_before,
            "recordings": len(ms),
            "answered_by": sorted({d.get("answered_by") or "nobody" for d in c["dialogs"].values()}),
        }
        if len(ms) == 1:
            m = ms[0]
            row.update(
                {
                    "end_reason": m["end_reason"],
                    "primary_failed_at": m["primary"]["failed_at"],
                    "evidence": sorted({e["kind"] for e in m["primary"]["evidence"]}),
                    "recorded_by": m["answered_by"],
                }
            )
            for ch, role in ((0, "near"), (1, "far")):
                if role in c["dialogs"] and c["dialogs"][role].get("seed") is not None:
                    row[role] = check_recording(out, m, c["dialogs"][role], ch)
        rows.append(row)
    before = [r for r in rows if r["before_failure"]]
    after = [r for r in rows if not r["before_failure"]]
    ok_after = [
        r
        for r in after
        if r["recordings"] == 1
        and all(s in r and r[s]["sent"] and r[s]["recorded"] == r[s]["sent"] for s in ("near", "far"))
    ]
    return {
        "calls": rows,
        "in_progress_packets_lost": sum(
            r[s]["sent"] - r[s]["recorded"] for r in before for s in ("near", "far") if s in r
        ),
        "in_progress_packets_sent": sum(r[s]["sent"] for r in before for s in ("near", "far") if s in r),
        "new_calls_recorded_share": round(len(ok_after) / len(after), 3) if after else None,
        "new_calls_packets_lost": sum(
            r[s]["sent"] - r[s]["recorded"] for r in after for s in ("near", "far") if s in r
        ),
    }


def _sip_at_end(out: str) -> dict:
    """The standby's SIP server once every call has ended: what it still holds (nothing, if no dialog
    or port leaked across the takeover and the failback), waited for up to 5 s."""
    end = time.monotonic() + 5
    sip: dict = {}
    while time.monotonic() < end:
        try:
            sip = json.load(open(os.path.join(out, "status-0.json")))["standby"]["sip"]
        except (OSError, ValueError, KeyError, TypeError):
            sip = {}
        if sip and sip.get("dialogs") == 0 and sip.get("rtp_ports") == 0:
            break
        time.sleep(0.2)
    keys = ("dialogs", "rtp_ports", "invites", "byes", "ended_after_release", "not_peer", "master")
    return {k: sip.get(k, 0) for k in keys}


def run_lab(
    mode: str = "crash",
    work: str | None = None,
    calls_before: int = 4,
    calls_after: int = 3,
    kill_at: float = 6.0,
    restore_at: float = 16.0,
    advert: float = 1.0,
    probe: float = 0.2,
    sip_peers: bool = True,
) -> dict:
    """Build the site, place calls, kill the primary one way mid-call, bring it back; the report."""
    work = work or f"/tmp/shadowrec-lab-{mode}"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    out = os.path.join(work, "recordings")
    manifest = os.path.join(work, "calls.json")
    report: dict = {"mode": mode, "advert_int": advert, "probe_interval": probe, "sip_peers_configured": sip_peers}
    with Site(work, advert=advert) as site:
        site.start_primary()
        t = time.monotonic()
        while not site.has_vip("pri") and time.monotonic() - t < 10:
            time.sleep(0.05)
        _start_appliance(site, out, advert, probe, sip_peers)
        # before the failure: long calls that span it; after it: calls that only shadowrec can answer,
        # the last of which spans the failback
        plan = [(0.5 + 0.3 * k, kill_at + 6.0 - 0.3 * k) for k in range(calls_before)]
        plan += [
            (kill_at + 2.5 + 0.4 * k, 5.0 + (restore_at - kill_at) * (k == calls_after - 1)) for k in range(calls_after)
        ]
        plan_s = ";".join(f"{a:.2f}:{b:.2f}" for a, b in plan)
        cucm = site.popen("site", "cucm", sys.executable, "-m", "appliance.cli", "lab-cucm", "--ip", CUCM,
                          "--vip", VIP, "--phones", ",".join(site.phones), "--plan", plan_s,
                          "--manifest", manifest)  # fmt: skip
        t0 = time.monotonic()
        watch = _VipWatch(site, t0)
        time.sleep(max(0.0, kill_at - (time.monotonic() - t0)))
        kill_t = time.monotonic() - t0
        site.kill(mode)
        time.sleep(max(0.0, restore_at - (time.monotonic() - t0)))
        restore_t = time.monotonic() - t0
        site.restore(mode)
        cucm.wait(120)
        t = time.monotonic()
        while time.monotonic() - t < 10 and not watch.primary_alone():
            time.sleep(0.1)  # the failback, if it has not happened yet
        time.sleep(1.0)
        watch.close()
        report["standby_sip_at_end"] = _sip_at_end(out)
        site.procs["shadowrec"].send_signal(signal.SIGTERM)
        site.procs["shadowrec"].wait(30)
        report.update(_vip_report(watch.timeline, mode, kill_t, restore_t))
    report.update(_calls_report(out, manifest, calls_before))
    report["work"] = work
    return report


def run_two_primaries(work: str | None = None, calls: int = 2, kill_at: float = 5.0, restore_at: float = 13.0) -> dict:
    """Two primary recorders (each with its keepalived, VIP and VRRP id: 20 and 21) guarded by one
    shadowrec (``run --also``), each called by its own CUCM. The first primary's recorder dies
    mid-call and comes back; the report says who held each VIP when, and, per CUCM, how its calls
    (before the failure, spanning it; after it) were answered and recorded."""
    work = work or "/tmp/shadowrec-lab-two-primaries"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    out = os.path.join(work, "recordings")
    report: dict = {}
    with Site(work, primaries=2) as site:
        for role in ("pri", "pri2"):
            site.start_primary(role)
        t = time.monotonic()
        while not (site.has_vip("pri") and site.has_vip("pri2", VIP2)) and time.monotonic() - t < 10:
            time.sleep(0.05)
        _start_appliance(site, out, 1.0, 0.2, True, "--sip-peer", CUCM2, "--also", f"{PRIMARY2},{VIP2}/16,21")
        plan = [(0.5 + 0.3 * k, kill_at + 6.0 - 0.3 * k) for k in range(calls)]
        plan += [(kill_at + 2.5 + 0.4 * k, 4.0) for k in range(calls)]
        plan_s = ";".join(f"{a:.2f}:{b:.2f}" for a, b in plan)
        half = len(site.phones) // 2
        manifests = {"pri": os.path.join(work, "calls-pri.json"), "pri2": os.path.join(work, "calls-pri2.json")}
        cucms = [
            site.popen(
                "site",
                f"cucm-{role}",
                sys.executable,
                "-m",
                "appliance.cli",
                "lab-cucm",
                "--ip",
                ip,
                "--vip",
                vip,
                "--phones",
                ",".join(phones),
                "--plan",
                plan_s,
                "--manifest",
                manifests[role],
                "--first-index",
                str(first),
            )  # fmt: skip
            for role, ip, vip, phones, first in (
                ("pri", CUCM, VIP, site.phones[:half], 0),
                ("pri2", CUCM2, VIP2, site.phones[half:], 100),
            )
        ]
        t0 = time.monotonic()
        watch = _VipWatch(site, t0, [("pri", VIP), ("app", VIP), ("pri2", VIP2), ("app", VIP2)])
        time.sleep(max(0.0, kill_at - (time.monotonic() - t0)))
        kill_t = time.monotonic() - t0
        site.kill("crash", "pri")
        time.sleep(max(0.0, restore_at - (time.monotonic() - t0)))
        restore_t = time.monotonic() - t0
        site.restore("crash", "pri")
        for c in cucms:
            c.wait(120)
        t = time.monotonic()
        while time.monotonic() - t < 10 and not watch.primary_alone():
            time.sleep(0.1)
        time.sleep(1.0)
        watch.close()
        status = json.load(open(os.path.join(out, "status-0.json")))["standby"]
        report["primaries_at_end"] = [
            {"name": p["name"], "vrrp": p["vrrp"]["state"], "health": p["health"], "master": p["sip"]["master"],
             "invites": p["sip"].get("invites", 0)}
            for p in status.get("primaries", [])
        ]  # fmt: skip
        site.procs["shadowrec"].send_signal(signal.SIGTERM)
        site.procs["shadowrec"].wait(30)
    tl = watch.timeline
    report.update(_vip_report([x[:3] for x in tl], "crash", kill_t, restore_t))
    report["timeline"] = tl
    report["vip2_ever_on_shadowrec"] = any(x[4] for x in tl)
    report["vip2_always_on_its_primary"] = bool(tl) and all(x[3] for x in tl)
    for role, first in (("pri", 0), ("pri2", 100)):
        r = _calls_report(out, manifests[role], first + calls)
        report[role] = {k: v for k, v in r.items() if k != "calls"} | {"calls": r["calls"]}
    report["work"] = work
    return report


def run_pair(
    catalog: str | None = None,
    work: str | None = None,
    kill_at: float = 5.0,
    app_dies_at: float = 11.0,
    restore_at: float = 21.0,
) -> dict:
    """An appliance pair: two shadowrec appliances (a: takeover priority 254, b: 253; each the
    other's ``--fellow``) guard one primary, both recording from the SPAN port (each also sees the
    other's port). The primary's recorder dies; a answers; a dies mid-outage (its host: every
    process and its links); b takes the VIP and a's calls; the primary comes back. With ``catalog``
    both push to it. The report: who held the VIP when, each call against b's recordings, and b's
    SIP server's counters."""
    work = work or "/tmp/shadowrec-lab-pair"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    outs = {"app": os.path.join(work, "recordings-a"), "app2": os.path.join(work, "recordings-b")}
    manifest = os.path.join(work, "calls.json")
    report: dict = {}
    cat = ["--catalog", catalog] if catalog else []
    with Site(work, appliances=2) as site:
        site.start_primary("pri")
        t = time.monotonic()
        while not site.has_vip("pri") and time.monotonic() - t < 10:
            time.sleep(0.05)
        _start_appliance(site, outs["app"], 1.0, 0.2, True, "--fellow", APP2, "--takeover-priority", "254",
                         "--appliance", "a", *cat, role="app")  # fmt: skip
        _start_appliance(site, outs["app2"], 1.0, 0.2, True, "--fellow", APP, "--priority", "40",
                         "--takeover-priority", "253", "--appliance", "b", *cat, role="app2")  # fmt: skip
        end = restore_at - 0.5
        plan = [(0.5 + 0.3 * k, end - 0.5 - 0.3 * k) for k in range(2)]  # the primary's, spanning everything
        plan += [(kill_at + 2.0 + 0.4 * k, app_dies_at + 5.0 - kill_at - 2.0) for k in range(2)]  # a's: past its death
        plan += [(app_dies_at + 4.5 + 0.4 * k, 3.5) for k in range(2)]  # b's
        plan_s = ";".join(f"{a:.2f}:{b:.2f}" for a, b in plan)
        cucm = site.popen("site", "cucm", sys.executable, "-m", "appliance.cli", "lab-cucm", "--ip", CUCM,
                          "--vip", VIP, "--phones", ",".join(site.phones), "--plan", plan_s,
                          "--manifest", manifest)  # fmt: skip
        t0 = time.monotonic()
        watch = _VipWatch(site, t0, [("pri", VIP), ("app", VIP), ("app2", VIP)])
        marks = {}
        for at, what in ((kill_at, "primary_killed"), (app_dies_at, "a_died"), (restore_at, "primary_restored")):
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            marks[what] = round(time.monotonic() - t0, 3)
            if what == "primary_killed":
                site.kill("crash", "pri")
            elif what == "a_died":
                site.kill_appliance("app")
            else:
                site.restore("crash", "pri")
        cucm.wait(120)
        t = time.monotonic()
        while time.monotonic() - t < 10 and not (watch.timeline and watch.timeline[-1][1:] == (True, False, False)):
            time.sleep(0.1)
        time.sleep(1.5)
        watch.close()
        report["b_sip_at_end"] = json.load(open(os.path.join(outs["app2"], "status-0.json")))["standby"]["sip"]
        site.procs["shadowrec-app2"].send_signal(signal.SIGTERM)
        site.procs["shadowrec-app2"].wait(30)
    tl = watch.timeline

    def first(after: float, cond) -> float | None:
        return next((round(x[0] - after, 3) for x in tl if x[0] >= after and cond(x)), None)

    report.update(marks)
    report["timeline"] = tl
    report["a_took_over_s"] = first(marks["primary_killed"], lambda x: x[2] and not x[1])
    report["b_took_over_s"] = first(marks["a_died"], lambda x: x[3])
    report["handed_back_s"] = first(marks["primary_restored"], lambda x: x[1] and not x[2] and not x[3])
    report["a_and_b_held_it_together"] = [x[0] for x in tl if x[2] and x[3]]
    report["b_before_a_died"] = [x[0] for x in tl if x[3] and x[0] < marks["a_died"]]
    report.update(_calls_report(outs["app2"], manifest, 2))
    report["outs"] = outs
    return report
