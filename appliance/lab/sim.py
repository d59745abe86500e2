"""The lab's other actors: a CUCM-like trunk with its phones, and a primary recorder.

``Cucm`` places Cisco BiB recording calls like CUCM: per call two delayed-offer INVITEs
(x-nearend, x-farend) to the recorder's VIP, retransmitted at T1 doubling while unanswered
(RFC 3261 Timer A) and abandoned after Timer B (32 s); on the 2xx it sends the ACK with the
answer (c= the phone) and the phone starts its RTP to the address in the offer: known
audio, 20 ms µ-law packets. At the call's end it sends BYEs (retransmitted while
unanswered). Everything it did is written to a manifest for the lab to check the
recordings against.
"""

from __future__ import annotations

import json
import random
import select
import socket
import struct
import time

import numpy as np

from capture.errors import ParseError
from capture.sip import message as sip
from capture.sip import sdp

T1 = 0.5


def audio_codes(seed: int, n: int) -> bytes:
    """The µ-law bytes a lab phone sends (never 0xFF/0x7F: no zero sample, so gaps are visible)."""
    codes = np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)
    codes[(codes == 0xFF) | (codes == 0x7F)] = 0x55
    return codes.tobytes()


class Cucm:
    def __init__(self, cucm_ip: str, vip: str, phones: list, calls: list, manifest: str, first: int = 0):
        """``calls``: [(start offset s, duration s)], one phone each (round robin); the calls are
        numbered from ``first`` (their refci, DNs and devices: two CUCMs' calls differ)."""
        self.first = first
        self.ip, self.vip = cucm_ip, vip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((cucm_ip, 5060))
        self.phones = phones
        self.plan = calls
        self.manifest = manifest
        self.txns: dict = {}  # (call-id, cseq method) -> {data, next, interval, until, done}
        self.dialogs: dict = {}  # call-id -> dict
        self.streams: list = []
        self.calls: list = []

    def _send_txn(self, key, data, now, until=32.0):
        self.txns[key] = {
            "data": data,
            "next": now + T1,
            "interval": T1,
            "until": now + until,
            "done": False,
            "sent": 1,
        }
        self.sock.sendto(data, (self.vip, 5060))

    def _invite(self, call, role, now):
        k = call["index"]
        cid = f"lab{k:04d}-{role}-{random.getrandbits(24):x}@{self.ip}"
        tag = f"{k}{role[0]}~lab"
        near, far = call["near"], call["far"]
        params = (
            f"x-refci={call['refci']};x-nearendclusterid=lab;x-nearenddevice={near['device'].lower()};"
            f"x-nearendaddr={near['dn']};x-farendrefci={call['far_refci']};x-farendclusterid=lab;"
            f"x-farenddevice={far['device'].lower()};x-farendaddr={far['dn']}"
        )
        frm = f"<sip:{near['dn']}@{self.ip};x-{role}end;{params}>;tag={tag}"
        d = {
            "call": call,
            "role": role,
            "cid": cid,
            "from": frm,
            "to": f"<sip:8675309@{self.vip}>",
            "to_tag": None,
            "branch": f"z9hG4bK{random.getrandbits(40):x}",
            "answered_by": None,
            "stream": None,
        }
        self.dialogs[cid] = d
        msg = self._request(d, "INVITE", 101, f"sip:8675309@{self.vip}:5060")
        self._send_txn((cid, "INVITE"), msg, now)
        call["dialogs"][role] = {"call_id": cid, "invited_at": time.time()}

    def _request(self, d, method, cseq, uri, body=b"", branch=None):
        to = d["to"] + (f";tag={d['to_tag']}" if d["to_tag"] else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.ip}:5060;branch={branch or d['branch']}",
            f"From: {d['from']}",
            f"To: {to}",
            f"Call-ID: {d['cid']}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            "User-Agent: Cisco-CUCM14.0 (shadowrec lab)",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def _on_response(self, msg, now):
        d = self.dialogs.get(msg.call_id)
        num, method = msg.cseq
        if d is None:
            return
        t = self.txns.get((msg.call_id, method))
        if t is not None and msg.status >= 200:
            t["done"] = True
        if method != "INVITE" or msg.status < 200:
            return
        if msg.status >= 300:
            d["call"]["dialogs"][d["role"]]["rejected"] = msg.status
            return
        d["to_tag"] = msg.to.param("tag")
        if d["answered_by"] is None:
            d["answered_by"] = msg.header("server") or msg.header("user-agent") or "?"
        m = sdp.parse(msg.body).audio()
        phone = d["call"]["phone"]
        answer = (
            f"v=0\r\no=CiscoSystemsCCM-SIP 1 1 IN IP4 {self.ip}\r\ns=SIP Call\r\nc=IN IP4 {phone}\r\n"
            "t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=ptime:20\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        ).encode()
        ack = self._request(d, "ACK", 101, f"sip:{self.vip}:5060", answer, branch=f"z9hG4bK{random.getrandbits(40):x}")
        self.sock.sendto(ack, (self.vip, 5060))
        if d["stream"] is None:  # the phone starts its RTP to the offered address
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((phone, 0))
            seed = d["call"]["index"] * 2 + (0 if d["role"] == "near" else 1)
            st = {
                "sock": s,
                "dst": (m.address, m.port),
                "seq": random.getrandbits(16),
                "ts": random.getrandbits(32),
                "ssrc": random.getrandbits(32),
                "seed": seed,
                "sent": 0,
                "first_at": None,
                "dialog": d,
                "codes": audio_codes(seed, int(d["call"]["duration"] * 8000) + 8000),
                "until": d["call"]["end"],
            }
            d["stream"] = st
            self.streams.append(st)
            rec = d["call"]["dialogs"][d["role"]]
            rec.update({"answered_by": d["answered_by"], "rtp_dst": f"{m.address}:{m.port}", "seed": seed})

    def _bye(self, call, now):
        for info in call["dialogs"].values():
            d = self.dialogs.get(info["call_id"])
            if d is None or d["to_tag"] is None:
                continue
            d["branch"] = f"z9hG4bK{random.getrandbits(40):x}"
            self._send_txn((d["cid"], "BYE"), self._request(d, "BYE", 102, f"sip:{self.vip}:5060"), now, until=8.0)
        call["bye_at"] = time.time()

    def run(self):
        t0 = time.monotonic()
        for k, (start, dur) in enumerate(self.plan, self.first):
            phone = self.phones[(k - self.first) % len(self.phones)]
            self.calls.append(
                {
                    "index": k,
                    "refci": str(50000000 + 2 * k),
                    "far_refci": str(50000000 + 2 * k - 1),
                    "near": {"dn": str(8110000 + k), "device": f"SEP00AA{k:06X}"},
                    "far": {"dn": str(8120000 + k), "device": f"SEP00BB{k:06X}"},
                    "phone": phone,
                    "start": t0 + start,
                    "end": t0 + start + dur,
                    "duration": dur,
                    "dialogs": {},
                    "state": "planned",
                }
            )
        tick = t0
        while True:
            now = time.monotonic()
            for c in self.calls:
                if c["state"] == "planned" and now >= c["start"]:
                    c["state"] = "near"
                    c["started_at"] = time.time()
                    self._invite(c, "near", now)
                elif c["state"] == "near" and now >= c["start"] + 0.03:
                    c["state"] = "live"
                    self._invite(c, "far", now)
                elif c["state"] == "live" and now >= c["end"]:
                    c["state"] = "ended"
                    self._bye(c, now)
            for key, t in self.txns.items():  # Timer A / E retransmissions
                if not t["done"] and now >= t["next"] and now < t["until"]:
                    self.sock.sendto(t["data"], (self.vip, 5060))
                    t["sent"] += 1
                    t["interval"] = t["interval"] * 2 if key[1] == "INVITE" else min(t["interval"] * 2, 4.0)
                    t["next"] = now + t["interval"]
            if now >= tick:  # every 20 ms, each phone sends its packet
                tick += 0.02
                for st in self.streams:
                    if now >= st["until"] or st["sock"] is None:
                        if st["sock"] is not None:
                            st["sock"].close()
                            st["sock"] = None
                        continue
                    i = st["sent"]
                    pkt = (
                        struct.pack(
                            "!BBHII", 0x80, 0, (st["seq"] + i) & 0xFFFF, (st["ts"] + 160 * i) & 0xFFFFFFFF, st["ssrc"]
                        )
                        + st["codes"][160 * i : 160 * (i + 1)]
                    )
                    try:
                        st["sock"].sendto(pkt, st["dst"])
                    except OSError:
                        pass  # ICMP unreachable from an earlier packet: keep sending
                    if st["first_at"] is None:
                        st["first_at"] = time.time()
                    st["sent"] += 1
            if all(c["state"] == "ended" for c in self.calls) and all(
                t["done"] or now >= t["until"] for t in self.txns.values()
            ):
                break
            r, _, _ = select.select([self.sock], [], [], max(0.0, min(tick - time.monotonic(), 0.01)))
            if r:
                data = self.sock.recv(65535)
                try:
                    msg = sip.parse(data)
                    if not msg.is_request:
                        self._on_response(msg, time.monotonic())
                except ParseError:
                    pass
        for st in self.streams:
            rec = st["dialog"]["call"]["dialogs"][st["dialog"]["role"]]
            rec.update({"packets_sent": st["sent"], "first_rtp_at": st["first_at"]})
        for c in self.calls:
            for info in c["dialogs"].values():
                t = self.txns.get((info["call_id"], "INVITE"))
                info["invite_sends"] = t["sent"] if t else 0
        with open(self.manifest, "w") as f:
            json.dump([{k: v for k, v in c.items() if k not in ("start", "end")} for c in self.calls], f, indent=1)


def run_recorder(address: str):
    """The primary recorder of the lab: answers recording dialogs on ``address`` until killed."""
    from appliance.standby.sip.peers import Peers
    from appliance.standby.sip.server import SipServer, SocketPorts
    from appliance.standby.sip.uas import Uas

    uas = Uas(address, SocketPorts(address, 40000, 49998), Peers.anyone(), user_agent="primary-recorder")
    srv = SipServer(uas, bind="0.0.0.0").start()  # the VIP for calls, its own address for OPTIONS
    srv.thread.join()
