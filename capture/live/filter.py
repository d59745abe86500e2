"""What each capture worker's kernel ring lets through: a BPF program compiled by libpcap
(through pcapy-ng) from a tcpdump expression. Every worker sees all SIP and ICMP; RTP is split
between workers by the phone's address, so both streams of a call reach one worker. A remote
mirror's tunnels (GRE: ERSPAN, GRE TEB; VXLAN; TZSP) all go to worker 0: a filter cannot see
the phone's address inside them. (A Linux tunnel device as the SPAN port instead, which the
kernel decapsulates, is split between workers like any port.)"""

from __future__ import annotations

from capture.errors import ConfigError


def compile_bpf(expr: str, snaplen: int = 262144) -> list:
    """Compile a tcpdump filter with libpcap (through pcapy-ng) to classic BPF instructions."""
    import pcapy

    try:
        return pcapy.compile(1, snaplen, expr, 1, 0).get_bpf()
    except Exception as e:  # pcapy raises its own PcapError type
        raise ConfigError(f"bad capture filter {expr!r}: {e}") from e


TUNNELS = "(ip proto 47) or (ip6 proto 47) or (udp dst port 4789) or (udp dst port 37008)"


def rtp_filter(sip_ports=(5060,), tls_ports=(5061,)) -> str:
    """SIP (UDP/TCP; TCP on the TLS ports too, for who talks to whom), RTP-looking UDP (version 2),
    ICMP errors and IP fragments (not GRE's)."""
    sip = " or ".join(f"port {p}" for p in sip_ports)
    tcp = " or ".join(f"port {p}" for p in (*sip_ports, *tls_ports))
    return (
        f"(udp and ({sip})) or (tcp and ({tcp})) or icmp or icmp6 or "
        "(ip and ip[6:2] & 0x3fff != 0 and not ip proto 47) or (ip6 and ip6[6] = 44)"
    )


def worker_filter(k: int, n: int, sip_ports=(5060,), extra: str | None = None, tls_ports=(5061,)) -> str:
    """Worker ``k`` of ``n``: everything but RTP, and RTP from phones with address % n == k."""
    base = rtp_filter(sip_ports, tls_ports)
    rtp = "(udp[8] & 0xc0 = 0x80)"
    if n > 1:
        rtp = f"({rtp} and ((ip and ip[12:4] % {n} = {k}) or (ip6 and ip6[20:4] % {n} = {k})))"
    f = f"({base}) or (udp and {rtp})"
    if k == 0:  # every tunnel (before the first "vlan", which shifts what follows it)
        f = f"({TUNNELS}) or ({f}) or (vlan and ({f} or {TUNNELS}))"
    else:
        f = f"({f}) or (vlan and ({f}))"
    return f"({f}) and ({extra})" if extra else f
