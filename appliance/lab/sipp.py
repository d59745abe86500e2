"""SIPp (Debian's ``sip-tester``) playing CUCM against ``shadowrec run`` while it holds the VIP.

    cucm (198.18.0.10 signalling; media .11 near, .12 far) ─┐
                                                            ├── sw: br0
    app  (shadowrec, eth0 198.18.0.3, VIP .20; span0 idle) ┘  (the primary, .2, is absent: dead)

Two SIPp processes play the two dialogs of each BiB call (x-nearend, x-farend; delayed offer:
INVITE without SDP, the answer in the ACK), with the same call numbering so that they pair, at
``rate`` calls per second each, over UDP or TCP. After the ACK each streams ``rtp_s`` seconds of
G.711 µ-law to the port shadowrec offered, holds the call, streams again just before its BYE (the
port must still be held then), and hangs up. The report: calls answered and failed, the
concurrent dialogs at the peak, the descriptors shadowrec held then, answer times (INVITE to 200 OK,
from SIPp's response-time trace) as percentiles, CPU seconds of shadowrec and SIPp, UDP datagrams
that met no socket and ICMP port unreachables sent on the appliance, and the recordings made.
Everything created is deleted on exit.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid

import numpy as np

VIP, APP, CUCM, NEAR_MEDIA, FAR_MEDIA = "198.18.0.20", "198.18.0.3", "198.18.0.10", "198.18.0.11", "198.18.0.12"
# the unit's LimitNOFILE (65536); a machine that cannot raise the hard limit (no CAP_SYS_RESOURCE) runs
# with the limit it has: ``nofile()``
NOFILE_WANTED = 65536
PRIMARY = "198.18.0.2"  # nobody there: the primary is dead from the start

# the BiB parameters both dialogs of a call share (they pair on x-refci / x-farendrefci / cluster)
BIB = (
    "x-refci=1[call_number];x-nearendclusterid=lab;x-nearenddevice=sepnear[call_number];"
    "x-nearendaddr=5[call_number];x-farendrefci=2[call_number];x-farendclusterid=lab;"
    "x-farenddevice=sepfar[call_number];x-farendaddr=6[call_number]"
)
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="CUCM BiB {role}">
  <send retrans="500" start_txn="invite">
    <![CDATA[
      INVITE sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:5[call_number]@[local_ip];x-{role};{bib}>;tag={role}[call_number]
      To: <sip:rec@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 101 INVITE
      Contact: <sip:5[call_number]@[local_ip]:[local_port];transport=[transport]>
      Supported: timer,resource-priority,replaces
      User-Agent: Cisco-CUCM-lab
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true" response_txn="invite"/>
  <recv response="200" rtd="true" response_txn="invite"/>
  <send ack_txn="invite">
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 101 ACK
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=CiscoSystemsCCM-SIP 1 1 IN IP4 [local_ip]
      s=SIP Call
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [rtpstream_audio_port] RTP/AVP 0 101
      a=ptime:20
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendonly

    ]]>
  </send>
  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>
  <pause milliseconds="{tail_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 102 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def write_audio(path: str, seconds: float) -> None:
    """A µ-law WAV (format 7) of a 440 Hz tone: what SIPp's rtp_stream plays."""
    from capture.media._g711_py import encode_ulaw

    n = int(8000 * seconds)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / 8000)).astype(np.int16)
    data = encode_ulaw(tone)
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + len(body).to_bytes(4, "little") + body)


class SippLab:
    def __init__(self, work: str):
        tag = uuid.uuid4().hex[:5]
        self.ns = {r: f"sip{tag}-{r}" for r in ("sw", "app", "cucm")}
        self.work = work
        self.created: list = []
        self.procs: list = []
        self.env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))

    def ip(self, role, *a):
        return sh("ip", "-n", self.ns[role], *a)

    def exe(self, role, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[role], *cmd, check=check)

    def __enter__(self) -> SippLab:
        try:
            for name in self.ns.values():
                sh("ip", "netns", "add", name)
                self.created.append(name)
            self.ip("sw", "link", "add", "br0", "type", "bridge")
            self.ip("sw", "link", "set", "br0", "up")
            for role, addrs in (("app", [APP]), ("cucm", [CUCM, NEAR_MEDIA, FAR_MEDIA])):
                sh("ip", "link", "add", "eth0", "netns", self.ns[role], "type", "veth", "peer", "name", role,
                   "netns", self.ns["sw"])  # fmt: skip
                self.ip("sw", "link", "set", role, "master", "br0")
                self.ip("sw", "link", "set", role, "up")
                self.ip(role, "link", "set", "lo", "up")
                self.ip(role, "link", "set", "eth0", "up")
                for a in addrs:
                    self.ip(role, "addr", "add", f"{a}/24", "dev", "eth0")
            # the SPAN port: a veth with nothing mirrored to it (the calls cross the service interface)
            sh("ip", "link", "add", "span0", "netns", self.ns["app"], "type", "veth", "peer", "name", "span1",
               "netns", self.ns["sw"])  # fmt: skip
            self.ip("app", "link", "set", "span0", "up")
            self.ip("sw", "link", "set", "span1", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        return False

    def popen(self, role, name, *cmd, cwd=None):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *cmd], stdout=log, stderr=subprocess.STDOUT,
                             env=self.env, cwd=cwd or self.env["PYTHONPATH"])  # fmt: skip
        self.procs.append(p)
        return p

    def snmp(self) -> dict:
        """The appliance namespace's UDP datagrams that met no socket (Udp NoPorts): each draws an ICMP
        port unreachable. (ICMP OutDestUnreachs also counts the host unreachables the kernel reports to
        shadowrec's own probes of the absent primary.)"""
        lines = self.exe("app", "cat", "/proc/net/snmp").stdout.splitlines()
        out = {}
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            names, values = head.split()[1:], vals.split()[1:]
            proto = head.split(":")[0]
            for k, v in zip(names, values, strict=False):
                out[f"{proto}.{k}"] = int(v)
        return {"udp_no_ports": out["Udp.NoPorts"]}  # each would have drawn an ICMP port unreachable


def nofile() -> tuple:
    """A prlimit prefix raising the descriptor limit to the unit's, or () where it cannot be raised."""
    prefix = ("prlimit", f"--nofile={NOFILE_WANTED}:{NOFILE_WANTED}", "--")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= NOFILE_WANTED:
        return prefix
    return prefix if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0 else ()


def cpu_s(pid: int) -> float:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list) -> dict:
    if not values:
        return {}
    a = np.asarray(values, dtype=float)
    return {f"p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)} | {"max": round(float(a.max()), 2)}


def answer_ms(pcap: str) -> list:
    """INVITE-to-200 OK times (ms) seen on CUCM's own interface (SIPp traces whole milliseconds only)."""
    import dpkt

    from capture.sip import message as sip

    sent: dict = {}
    answered: dict = {}
    with open(pcap, "rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, (dpkt.udp.UDP, dpkt.tcp.TCP)):
                continue
            data = bytes(ip.data.data)
            while data:  # a TCP segment may carry several messages
                try:
                    n = sip.frame_length(data) if isinstance(ip.data, dpkt.tcp.TCP) else len(data)
                    msg = sip.parse(data[: n or len(data)])
                except Exception:
                    break
                data = data[n:] if n else b""
                if msg.is_request and msg.method == "INVITE":
                    sent.setdefault(msg.call_id, ts)
                elif not msg.is_request and msg.status == 200 and msg.cseq[1] == "INVITE":
                    answered.setdefault(msg.call_id, ts)
    return [(answered[c] - t) * 1000 for c, t in sent.items() if c in answered]


def recordings(out: str) -> dict:
    calls = [json.load(open(p)) for p in glob.glob(os.path.join(out, "**", "*.json"), recursive=True)]
    calls = [c for c in calls if isinstance(c, dict) and "streams" in c]
    voiced = [c for c in calls if len([s for s in c["streams"] if s["packets"] > 0]) == 2]
    reasons: dict = {}
    for c in calls:
        reasons[c["end_reason"]] = reasons.get(c["end_reason"], 0) + 1
    return {"calls": len(calls), "both_voices_with_audio": len(voiced), "end_reasons": reasons}


def run(work: str, calls: int = 100, rate: float = 50.0, transport: str = "udp", hold_s: float | None = None,
        rtp_s: float = 1.0, rtcp_sockets: bool = True, python: str = sys.executable) -> dict:  # fmt: skip
    """One SIPp run against ``shadowrec run``; returns the report (see the module doc)."""
    os.makedirs(work, exist_ok=True)
    ramp = calls / rate
    hold = hold_s if hold_s is not None else ramp + 10.0
    audio = os.path.join(work, "tone.wav")
    write_audio(audio, rtp_s)
    for role in ("nearend", "farend"):
        text = SCENARIO.format(role=role, bib=BIB, audio=audio, hold_ms=int(hold * 1000),
                               tail_ms=int(rtp_s * 1000 + 500))  # fmt: skip
        with open(os.path.join(work, f"bib_{role}.xml"), "w") as f:
            f.write(text)
    out = os.path.join(work, "rec")
    report: dict = {"calls": calls, "rate": rate, "transport": transport, "hold_s": hold, "rtcp_sockets": rtcp_sockets}
    with SippLab(work) as lab:
        # the unit's LimitNOFILE: 5,000 calls are 20,000 RTP/RTCP sockets and 5,000 WAV files
        prefix = nofile()
        report["descriptor_limit"] = NOFILE_WANTED if prefix else resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        sr = lab.popen("app", "shadowrec", *prefix, python, "-m", "appliance.cli", "run", "--span", "span0",
                       "--service", "eth0", "--vrid", "20", "--vip", f"{VIP}/24", "--primary", PRIMARY,
                       "--out", out, "--sip-peer", CUCM, "--rtp-timeout", str(hold + 60),
                       "--fsync-interval", "0", *([] if rtcp_sockets else ["--no-rtcp-sockets"]))  # fmt: skip
        status = os.path.join(out, "status-0.json")

        def standby() -> dict:
            try:
                return json.load(open(status)).get("standby") or {}
            except (OSError, ValueError):
                return {}

        end = time.monotonic() + 30
        while standby().get("vrrp", {}).get("state") != "Master" or not standby().get("sip"):
            if time.monotonic() > end or sr.poll() is not None:
                raise RuntimeError(
                    f"shadowrec did not take the VIP: {open(os.path.join(work, 'shadowrec.log')).read()}"
                )
            time.sleep(0.2)
        before = lab.snmp()
        cpu0 = cpu_s(sr.pid)
        dump = lab.popen("cucm", "tcpdump", "tcpdump", "-i", "eth0", "-s", "2000", "-U", "-w",
                         os.path.join(work, "sip.pcap"), "port", "5060")  # fmt: skip
        time.sleep(1.0)
        t = "u1" if transport == "udp" else "t1"
        sipps = []
        for i, (role, media) in enumerate((("nearend", NEAR_MEDIA), ("farend", FAR_MEDIA))):
            sipps.append(lab.popen("cucm", f"sipp-{role}", *prefix, "sipp", f"{VIP}:5060", "-sf", f"bib_{role}.xml",
                                   "-t", t,
                                   "-i", CUCM, "-p", str(5070 + i), "-mi", media, "-mp", "10000", "-cp", str(8888 + i),
                                   "-m", str(calls), "-r", str(rate), "-l", str(calls), "-max_socket", "65000",
                                   "-trace_stat", "-fd", "1", "-nostdin",
                                   "-timeout", f"{int(ramp + hold + 120)}s", "-timeout_error",
                                   cwd=work))  # fmt: skip
        peak: dict = {"dialogs": 0, "fds": 0}
        started = time.monotonic()
        sipp_cpu = [0.0, 0.0]
        while any(p.poll() is None for p in sipps):
            sipp_cpu = [max(c, cpu_s(p.pid)) for c, p in zip(sipp_cpu, sipps, strict=True)]
            sb = standby()
            dialogs = (sb.get("sip") or {}).get("dialogs", 0)
            if dialogs >= peak["dialogs"]:
                try:
                    fds = len(os.listdir(f"/proc/{sr.pid}/fd"))
                except OSError:
                    fds = 0
                peak = {"dialogs": dialogs, "fds": fds, "at_s": round(time.monotonic() - started, 1)}
            time.sleep(0.5)
        report["sipp_seconds"] = round(time.monotonic() - started, 1)
        report["sipp_exit"] = [p.returncode for p in sipps]
        time.sleep(2.0)
        report["shadowrec_cpu_s"] = round(cpu_s(sr.pid) - cpu0, 1)
        report["sipp_cpu_s"] = round(sum(sipp_cpu), 1)
        report["peak"] = peak
        after = lab.snmp()
        report["kernel"] = {k: after[k] - before[k] for k in after}
        report["sip"] = {k: v for k, v in (standby().get("sip") or {}).items() if not isinstance(v, dict)}
        report["sip_errors"] = {
            k: (standby().get("sip") or {}).get(k) for k in ("socket_errors", "loop_errors", "errors")
        }
        sr.send_signal(signal.SIGTERM)
        dump.send_signal(signal.SIGTERM)
        sr.wait(60)
        dump.wait(10)
    times = answer_ms(os.path.join(work, "sip.pcap"))
    report["answer_ms"] = {"n": len(times), **percentiles(times)}
    report["sipp"] = sipp_stats(work)
    report["recordings"] = recordings(out)
    return report


def sipp_stats(work: str) -> dict:
    """Successful and failed calls from each SIPp's last statistics line."""
    out = {}
    for path in glob.glob(os.path.join(work, "bib_*_*_.csv")):
        lines = open(path).read().splitlines()
        if len(lines) < 2:
            continue
        head, last = lines[0].split(";"), lines[-1].split(";")
        row = dict(zip(head, last, strict=False))
        role = os.path.basename(path).split("_")[1]
        out[role] = {k: int(row.get(k, 0) or 0) for k in ("SuccessfulCall(C)", "FailedCall(C)", "OutgoingCall(C)")}
    return out
