"""A SPAN lab in network namespaces: a sender, a switch (bridge) whose sender port is mirrored
with ``tc ... u32 match u32 0 0 action mirred egress mirror`` to the appliance's capture port.

    tx ns: tx0 ──veth── tx1 ┐ sw ns: br0 (bridge), tx1 ingress mirrored to app1
                            └ app1 ──veth── app0 : app ns (the SPAN port shadowrec captures on)

With ``tunnel`` the mirror is remote: tx1's traffic goes into a Linux tunnel device on the switch
(vxlan, gretap, erspan, erspan3), the kernel encapsulates it, and the tunnel's packets reach
app0 over app1 (app0 has no address: the appliance captures them as they come).

Addresses are from 198.18.0.0/15; everything created is deleted on exit.
"""

import os
import signal
import subprocess
import uuid


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


TUNNEL_LINKS = {
    "vxlan": ["type", "vxlan", "id", "42", "dstport", "4789"],
    "gretap": ["type", "gretap", "key", "42"],
    "erspan": ["type", "erspan", "seq", "key", "1", "erspan_ver", "1", "erspan", "100"],
    "erspan3": ["type", "erspan", "seq", "key", "2", "erspan_ver", "2", "erspan_dir", "ingress", "erspan_hwid", "7"],
}


def kernel_has_tunnel(kind: str) -> bool:
    """Whether this kernel can make a ``kind`` device (these VMs' kernels have VXLAN but no GRE)."""
    name = f"srprobe{uuid.uuid4().hex[:6]}"
    try:
        sh("ip", "netns", "add", name)
    except subprocess.CalledProcessError:
        return False
    try:
        r = sh("ip", "-n", name, "link", "add", "t0", *TUNNEL_LINKS[kind], "local", "198.18.201.1", "remote",
               "198.18.201.2", check=False)  # fmt: skip
        return r.returncode == 0
    finally:
        sh("ip", "netns", "del", name, check=False)


class SpanLab:
    def __init__(self, tunnel=None):
        tag = uuid.uuid4().hex[:6]
        self.ns = {r: f"sr{tag}-{r}" for r in ("tx", "sw", "app")}
        self.created = []
        self.procs = []
        self.tunnel = tunnel

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
            sh("ip", "netns", "exec", sw, *mirror.split(), "dev", self._remote() if self.tunnel else "app1")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _remote(self) -> str:
        """The switch's tunnel to the appliance (198.18.201.1 -> .2, app0's MAC): its device."""
        mac = self.ip("app", "-j", "link", "show", "app0").stdout.split('"address":"')[1].split('"')[0]
        self.ip("sw", "addr", "add", "198.18.201.1/24", "dev", "app1")
        self.ip("sw", "neigh", "add", "198.18.201.2", "lladdr", mac, "dev", "app1")
        link = TUNNEL_LINKS[self.tunnel]
        self.ip("sw", "link", "add", "mir", *link, "local", "198.18.201.1", "remote", "198.18.201.2")
        self.ip("sw", "link", "set", "mir", "up")
        return "mir"

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
