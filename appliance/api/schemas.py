"""Response models: they are the OpenAPI documentation of what the API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, Field

from capture.store.sidecar import Sidecar


class Role(StrEnum):
    MASTER = "MASTER"
    BACKUP = "BACKUP"
    PASSIVE = "PASSIVE"


class Health(BaseModel):
    status: str = Field(description="ok")


class Ready(BaseModel):
    ready: bool
    reason: str


class Capture(BaseModel):
    workers: int
    received: int
    kernel_drops: int
    parse_errors: dict[str, int]
    active_calls: int
    active_lost_packets: int
    queue_bytes: int
    bytes_written: int
    write_dropped_bytes: int
    write_wait_s: float = Field(
        0.0,
        description="seconds capture waited for the disk writer while the kernel ring "
        "had room (instead of dropping audio); a steady rise means the "
        "disk or the CPU is too slow for the load",
    )
    write_errors: int = Field(0, description="batches or writes the disk refused (see the service log)")
    link_errors: int = Field(0, description="times the SPAN port's link went down under the capture")
    calls_recorded: int
    ring_bytes: int = Field(
        0,
        description="memory of the calls' audio rings (32 KiB a call, in 2 MiB chunks): "
        "what capture.reserve_calls allocated at start, more after a bigger burst",
    )
    status_age_s: float | None
    last_packet_age_s: float | None = Field(
        None,
        description="seconds since the SPAN port last delivered a packet to any worker (null: none yet); "
        "a growing value on a busy site means the mirror stopped feeding shadowrec",
    )


class Disk(BaseModel):
    path: str
    total_bytes: int
    free_bytes: int
    state: str = Field(
        "ok",
        description="ok, or full: free space under capture.min_free_mb or writes failing; calls and their "
        "metadata are kept, their audio is a counted gap (silence) until space returns",
    )
    gap_s: float = Field(0.0, description="audio not written because the disk was full, all calls so far")
    times_full: int = Field(0, description="times the disk became full since the workers started")
    g711_holes_waiting: int = Field(
        0,
        description="G.711 recordings (capture.local_format g711) with a full disk's gap not yet "
        "written as silence (it reads as noise until then); filled as soon as the disk takes it",
    )
    last_error: str = ""


class Status(BaseModel):
    version: str
    role: Role
    vip: list[str]
    primary: dict = Field(description="address and health verdict of the primary recorder (standby mode)")
    vrrp: dict | None = Field(
        description="the VRRP instance: state, priority, master_ip, peers, adverts_received, adverts_rejected "
        "by reason, conflicts (higher-priority adverts not obeyed while the primary is dead)"
    )
    sip: dict | None = Field(
        None,
        description="the standby's SIP server: state (answering/failed), problem, heartbeat_age_s, dialogs, "
        "rtp_ports, tcp_connections, peers, request and refusal counters, socket_errors, errors",
    )
    primaries: list[dict] | None = Field(
        None,
        description="with several primaries guarded (standby.primaries): each one's name, primary, vrrp, health "
        "and sip (the top-level vrrp, sip and primary are the first's)",
    )
    capture: Capture
    disk: Disk
    delivery: list[dict] = Field(
        default_factory=list,
        description="per archive target: target, policy, pending, oldest_pending_age_s, failing_since, "
        "failing_for_s, failing (longer than delivery.failing_after_s), last_error, confirmed, "
        "bytes_confirmed, failed_attempts",
    )
    catalog: dict | None = Field(
        None,
        description="the fleet catalog (PostgreSQL), if configured: url (no password), appliance, reachable, "
        "waiting (changed calls not yet pushed), pushed, rows_pushed, last_push_age_s, last_error, failing_for_s",
    )


Call = Sidecar  # a call is its sidecar: one typed record (capture/store/sidecar.py) for the file, the
# catalog, ``shadowrec calls --json`` and this API


class Copy(BaseModel):
    """One appliance's recording of a fleet call."""

    appliance: str
    id: str = Field(description="the call's id on that appliance")
    state: str
    started_at: str | None
    ended_at: str | None
    joined_late: bool
    lost: int = Field(description="RTP packets it lost")
    frames: int
    wav: str | None = Field(description="its WAV, relative to that appliance's recordings directory")
    api: str = Field(description="that appliance's API ([catalog] api_url), to play it from there")
    archive: list[dict[str, str]] = Field(description="archive targets that confirmed it: target, key")


@dataclass
class FleetCall(Sidecar):
    """A call of the fleet: its best copy's record, and every copy."""

    call_key: str = field(
        default="", metadata={"description": "the call's identity in the fleet: cluster, refci pair, start"}
    )
    best: str = field(default="", metadata={"description": "the appliance whose copy lost the fewest packets"})
    copies: list[Copy] = field(default_factory=list)


class FleetCallPage(BaseModel):
    items: list[FleetCall]
    offset: int
    limit: int
    next_offset: int | None = Field(description="pass as offset for the next page; null on the last")


class CallPage(BaseModel):
    items: list[Sidecar]
    offset: int
    limit: int
    next_offset: int | None = Field(description="pass as offset for the next page; null on the last")
