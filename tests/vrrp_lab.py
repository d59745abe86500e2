"""A recorder VIP lab in namespaces: the primary host (keepalived), the appliance (shadowrec) and a
client on one bridge. 198.18.0.0/24: primary .2, appliance .3, client .9, VIP .20. Deleted on exit."""

import os
import signal
import subprocess
import time
import uuid

VIP = "198.18.0.20"
HOSTS = {"pri": "198.18.0.2", "app": "198.18.0.3", "cli": "198.18.0.9"}

KEEPALIVED = """global_defs {{
    router_id {name}
    vrrp_version 3
    enable_script_security
    script_user root
}}
vrrp_instance VI_REC {{
    state MASTER
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_int}
    virtual_ipaddress {{
        {vip}/24
    }}
}}
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class VipLab:
    def __init__(self, tmpdir):
        tag = uuid.uuid4().hex[:6]
        self.ns = {r: f"sv{tag}-{r}" for r in ("sw", *HOSTS)}
        self.tmp = str(tmpdir)
        self.created = []
        self.ka = None

    def __enter__(self):
        try:
            for name in self.ns.values():
                sh("ip", "netns", "add", name)
                self.created.append(name)
            sw = self.ns["sw"]
            sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", sw, "link", "set", "br0", "up")
            for role, addr in HOSTS.items():
                sh(
                    "ip",
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    self.ns[role],
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"{role}1",
                    "netns",
                    sw,
                )
                sh("ip", "-n", sw, "link", "set", f"{role}1", "master", "br0")
                sh("ip", "-n", sw, "link", "set", f"{role}1", "up")
                sh("ip", "-n", self.ns[role], "link", "set", "lo", "up")
                sh("ip", "-n", self.ns[role], "link", "set", "eth0", "up")
                sh("ip", "-n", self.ns[role], "addr", "add", f"{addr}/24", "dev", "eth0")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.kill_keepalived()
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        return False

    def run(self, role, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[role], *cmd, check=check)

    def popen(self, role, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns[role], *cmd], **kw)

    def has_vip(self, role) -> bool:
        return f" {VIP}/" in self.run(role, "ip", "-4", "addr", "show", "dev", "eth0").stdout

    def mac(self, role) -> str:
        return self.run(role, "cat", "/sys/class/net/eth0/address").stdout.strip()

    def start_keepalived(self, priority=100, advert_int=1, vrid=20):
        conf = os.path.join(self.tmp, "keepalived.conf")
        with open(conf, "w") as f:
            f.write(KEEPALIVED.format(name="primary", vrid=vrid, priority=priority, advert_int=advert_int, vip=VIP))
        self.pid, self.vrrp_pid = os.path.join(self.tmp, "ka.pid"), os.path.join(self.tmp, "ka-vrrp.pid")
        for p in (self.pid, self.vrrp_pid):
            if os.path.exists(p):
                os.remove(p)
        self.ka = self.popen(
            "pri",
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-P",
            "-f",
            conf,
            "-p",
            self.pid,
            "-r",
            self.vrrp_pid,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return wait(lambda: self.has_vip("pri"), 10)

    def kill_keepalived(self):
        """A hard crash: both keepalived processes at once (a SIGKILLed parent alone hands over)."""
        if self.ka is None:
            return
        pids = []
        for p in (self.vrrp_pid, self.pid):
            try:
                pids.append(int(open(p).read()))
            except (OSError, ValueError):
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.ka.wait(10)
        self.ka = None


def wait(cond, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False
