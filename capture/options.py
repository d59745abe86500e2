"""What a recording run is told: where to write, which SIP ports, timeouts, durability and (live)
the bounds of its queue and state. One record, built by the appliance's command line and service
from their settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    out_dir: str
    sip_ports: tuple = (5060,)
    sip_tls_ports: tuple = (5061,)  # SIP over TLS: unreadable, but it says a recorder's calls are signalled there
    rtp_timeout_s: float = 30.0
    keep_pcap: bool = False  # a raw pcap for every call (always for undecoded codecs)
    tick_s: float = 0.25  # housekeeping period, capture time
    lag_s: float = 0.25  # audio is written this long after it is due (reordering)
    # The engine keeps 1.024 s per call (WINDOW); a packet is placed at most 0.25 s ahead of wall
    # time (RESYNC). tick + lag + RESYNC + a packet must stay below WINDOW.
    sync_s: float = 1.0  # WAV headers cover everything written this often
    durable_s: float = 0.0  # fdatasync recordings this often and at call end (0: never;
    # a killed process still leaves valid files, a power loss may not)
    linger_s: float = 5.0  # keep an ended call's metadata open for late evidence
    own_by_rtp: bool = False  # several workers: open a call's files only once its RTP is seen here
    queue_mb: int = 64  # live: bound of the writer queue; audio beyond it is dropped and counted
    state_file: str | None = None  # live: where open calls are saved on shutdown and resumed from
    min_free_mb: int = 64  # below this much free space the disk counts as full: audio waits as a gap
    recorder_addrs: tuple = ()  # the recorders' (IPv4) addresses: RTP to them from calls joined late is
    # kept from the start (addresses seen in SIP are added as it shows them)
    local_format: str = "wav"  # "g711": a G.711 call's WAV keeps its own law's bytes (half the size)
    reserve_calls: int = 0  # audio rings allocated at start (32 KiB a call), not when a burst comes
