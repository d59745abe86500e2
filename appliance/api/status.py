import time
from typing import Any

from fastapi import APIRouter, Depends

from appliance.api.deps import delivery_state, disk_state, fleet_state, get_settings, require_token, worker_status
from appliance.api.schemas import Capture, Disk, Role, Status
from appliance.config import Settings
from capture import __version__
from capture.live.status import merge_counters

router = APIRouter(tags=["status"], dependencies=[Depends(require_token)])


def summarise(settings: Settings) -> dict:
    st = worker_status(settings)
    total = merge_counters(st)
    num = (
        "received",
        "kernel_drops",
        "active_calls",
        "active_lost_packets",
        "queue_bytes",
        "bytes_written",
        "write_dropped_bytes",
        "write_errors",
        "link_errors",
        "calls_recorded",
        "ring_bytes",
    )
    cap: dict[str, Any] = {k: int(total.get(k, 0)) for k in num}
    cap.update(
        workers=len(st),
        parse_errors=total["errors"],
        write_wait_s=round(total.get("write_wait_s", 0.0), 3),
        status_age_s=max((s["age_s"] for s in st), default=None),
        last_packet_age_s=round(time.time() - total["last_packet_at"], 3) if total.get("last_packet_at") else None,
    )
    standby = next((s["standby"] for s in st if s.get("standby")), None)
    return {"capture": cap, "standby": standby}


@router.get("/status", response_model=Status, summary="Role, VIP, primary health, capture counters, disk, version")
def status(settings: Settings = Depends(get_settings)) -> Status:
    s = summarise(settings)
    sb = s["standby"]
    if not settings.standby.enabled:
        role = Role.PASSIVE
    else:
        guards = (sb.get("primaries") or [sb]) if sb else []
        role = Role.MASTER if any(g.get("vrrp", {}).get("state") == "Master" for g in guards) else Role.BACKUP
    return Status(
        version=__version__,
        role=role,
        vip=settings.standby.vips,
        primary={"address": settings.standby.primary or None, "health": sb.get("health") if sb else None},
        vrrp=sb.get("vrrp") if sb else None,
        sip=sb.get("sip") if sb else None,
        primaries=sb.get("primaries") if sb else None,
        capture=Capture(**s["capture"]),
        disk=Disk(**disk_state(settings, worker_status(settings))),
        delivery=delivery_state(settings),
        catalog=fleet_state(settings),
    )
