"""A SPAN lab in network namespaces: a sender, a switch (bridge) whose sender port is mirrored
with ``tc ... u32 match u32 0 0 action mirred egress mirror`` to the appliance's capture port.

    tx ns: tx0 ──veth── tx1 ┐ sw ns: br0 (bridge), tx1 ingress mirrored to app1
                            └ app1 ──veth── app0 : app ns (the SPAN port shadowrec captures on)

Addresses are from 198.18.0.0/15; everything created is deleted on exit.
"""

import os
import signal
import subprocess
import uuid


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


class SpanLab:
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.ns = {r: f"sr{tag}-{r}" for r in ("tx", "sw", "app")}
        self.created = []
        self.procs = []

    def ip(self, ns, *args):
        return sh("ip", "-n", self.ns[ns], *args)

    def __enter__(self):
        try:
            for r, name in self.ns.items():
                sh("ip", "netns", "add", name)
                self.created.append(name)
                self.ip(r, "link", "set", "lo", "up")
            sw = self.ns["sw"]
            sh("ip", "link", "add", "tx0", "netns", self.ns["tx"], "type", "veth", "peer", "name", "tx1", "netns", sw)
            sh(
                "ip",
                "link",
                "add",
                "app0",
                "netns",
                self.ns["app"],
                "type",
                "veth",
                "peer",
                "name",
                "app1",
                "netns",
                sw,
            )
            self.ip("sw", "link", "add", "br0", "type", "bridge")
            self.ip("sw", "link", "set", "tx1", "master", "br0")
            for r, dev in (("sw", "br0"), ("sw", "tx1"), ("sw", "app1"), ("tx", "tx0"), ("app", "app0")):
                self.ip(r, "link", "set", dev, "up")
            self.ip("tx", "addr", "add", "198.18.200.1/24", "dev", "tx0")
            sh("ip", "netns", "exec", sw, "tc", "qdisc", "add", "dev", "tx1", "ingress")
            mirror = "tc filter add dev tx1 parent ffff: protocol all u32 match u32 0 0 action mirred egress mirror"
            sh("ip", "netns", "exec", sw, *mirror.split(), "dev", "app1")  # tx1's traffic, copied to app1
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.procs:  # nothing started in the lab outlives it (a failed test too)
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # with its children (capture workers)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        return False

    def popen(self, ns, *cmd, **kw):
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[ns], *cmd], **kw)
        self.procs.append(p)
        return p

    def run(self, ns, *cmd, **kw):
        return sh("ip", "netns", "exec", self.ns[ns], *cmd, **kw)


def can_run_lab() -> bool:
    import shutil

    return os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("tc"))
