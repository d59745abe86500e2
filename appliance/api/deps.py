"""What every router depends on: the settings, the token check, the appliance's files."""

from __future__ import annotations

import hmac
import os

from fastapi import Depends, HTTPException, Request, status

from appliance.config import Settings
from capture.live.status import read_statuses
from capture.store.catalog import Catalog


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_token(request: Request, settings: Settings = Depends(get_settings)) -> None:
    """With api.token set, every request needs ``Authorization: Bearer <token>`` (or
    ``?access_token=`` for the page's audio elements, which cannot send headers)."""
    token = settings.api.token
    if not token:
        _check_host(request, settings)
        return
    got = request.headers.get("authorization", "")
    got = got[7:] if got.lower().startswith("bearer ") else request.query_params.get("access_token", "")
    if not hmac.compare_digest(got.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def _check_host(request: Request, settings: Settings) -> None:
    """Without a token only loopback listens; a web page from elsewhere could still reach it
    through a name that resolves to 127.0.0.1 (DNS rebinding): its Host header gives it away."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
    allowed = {"localhost", "127.0.0.1", "::1", settings.api.listen, *settings.api.hosts}
    if name.lower() not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Host {host[:60]!r} is not one of this appliance's names")


def disk_state(settings: Settings, st: list) -> dict:
    """The disk as the API sees it: full when free space is under the floor (read here, so it
    shows even when a full disk stops the workers' status files) or a worker says so."""
    import shutil

    du = shutil.disk_usage(settings.capture.out)
    workers = [s.get("disk") or {} for s in st]
    full = du.free < settings.capture.min_free_mb << 20 or any(d.get("state") == "full" for d in workers)
    return {
        "path": settings.capture.out,
        "total_bytes": du.total,
        "free_bytes": du.free,
        "state": "full" if full else "ok",
        "gap_s": round(sum(d.get("gap_s", 0.0) for d in workers), 3),
        "times_full": sum(d.get("times_full", 0) for d in workers),
        "g711_holes_waiting": sum(d.get("g711_holes_waiting", 0) for d in workers),
        "last_error": next((d["last_error"] for d in workers if d.get("last_error")), ""),
    }


def worker_status(settings: Settings) -> list:
    """The capture workers' status files (written every second), with their age."""
    return read_statuses(settings.capture.out)


def catalog(settings: Settings) -> Catalog | None:
    """The call catalog, read-only, or None before the first call."""
    path = os.path.join(settings.capture.out, "catalog.sqlite")
    return Catalog(path, readonly=True) if os.path.exists(path) else None


def fleet_state(settings: Settings, now: float | None = None) -> dict | None:
    """The fleet catalog's push, as its pusher last wrote it (``DIR/fleet.json``); None when this
    appliance has no fleet catalog."""
    import json
    import time

    from appliance.fleet.push import STATUS_FILE
    from appliance.fleet.store import redact

    if not settings.catalog.url:
        return None
    now = time.time() if now is None else now
    try:
        with open(os.path.join(settings.capture.out, STATUS_FILE)) as f:
            st = json.load(f)
    except (OSError, ValueError):  # not pushed yet (the child starting), or a torn read: say so
        return {"url": redact(settings.catalog.url), "appliance": settings.catalog.appliance, "reachable": None}
    last, since = st.pop("last_push_at", None), st.pop("failing_since", None)
    st["last_push_age_s"] = round(now - last, 1) if last else None
    st["failing_for_s"] = round(now - since, 1) if since else None
    return st


def delivery_state(settings: Settings, now: float | None = None) -> list[dict]:
    """Per archive target: the queue's figures, the oldest undelivered call's age, and ``failing``:
    its oldest unresolved failure is older than ``delivery.failing_after_s``."""
    import time

    from appliance.delivery.queue import targets_status
    from capture.clock import epoch

    cat = catalog(settings)
    if cat is None:
        return []
    try:
        rows = targets_status(cat.db)
    finally:
        cat.close()
    now = time.time() if now is None else now
    for r in rows:
        started = r.pop("oldest_pending_started_at")
        t = epoch(started)
        r["oldest_pending_age_s"] = round(now - t, 1) if t is not None else None
        since = r["failing_since"]
        r["failing_for_s"] = round(now - since, 1) if since else None
        r["failing"] = bool(since and now - since > settings.delivery.failing_after_s)
    return rows
