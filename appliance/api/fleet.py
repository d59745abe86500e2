"""The fleet's calls (``[catalog] url``): every appliance's, each call once with its copies, from
the shared catalog on PostgreSQL; and a call's audio from wherever a copy is: this appliance's
disk, an archive target, or the appliance that holds it (its API, with this one's token)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, StreamingResponse

from appliance.api.calls import CALL_ID, CallFilters
from appliance.api.deps import get_settings, require_token
from appliance.api.schemas import FleetCall, FleetCallPage
from appliance.config import Settings

router = APIRouter(prefix="/fleet/calls", tags=["fleet"], dependencies=[Depends(require_token)])
CHUNK = 1 << 16
_fleets: dict[str, Any] = {}  # one pool per catalog URL for the process (the API's workers share it)


def fleet(settings: Settings) -> Any:
    from appliance.fleet.store import FleetCatalog

    url = settings.catalog.url
    if not url:
        raise HTTPException(404, "no fleet catalog is configured ([catalog] url)")
    if url not in _fleets:
        _fleets[url] = FleetCatalog(url)
    return _fleets[url]


def _query(settings: Settings, **filters: Any) -> list[dict[str, Any]]:
    from appliance.fleet.store import redact

    try:
        return fleet(settings).query(newest_first=True, **filters)
    except HTTPException:
        raise
    except Exception as e:  # unreachable: a state to report, not a crash
        where = redact(settings.catalog.url or "")
        raise HTTPException(503, f"the fleet catalog {where} is unreachable: {e}") from None


@router.get("", response_model=FleetCallPage, summary="The fleet's calls, each once with its copies, newest first")
def list_fleet_calls(settings: Settings = Depends(get_settings), f: CallFilters = Depends()) -> FleetCallPage:
    return FleetCallPage(**f.page(_query(settings, limit=f.limit + 1, offset=f.offset, **f.query)))


def _one(settings: Settings, call_id: str) -> dict[str, Any]:
    items = _query(settings, limit=1, call_id=call_id)
    if not items:
        raise HTTPException(404, f"no call {call_id} in the fleet")
    return items[0]


@router.get(
    "/{call_id}",
    response_model=FleetCall,
    summary="One call of the fleet (by any copy's id), with its copies",
    responses={404: {"description": "no such call"}, 503: {"description": "the fleet catalog is unreachable"}},
)
def get_fleet_call(call_id: str = CALL_ID, settings: Settings = Depends(get_settings)) -> dict:
    return _one(settings, call_id)


def _stream(f: Any) -> Iterator[bytes]:
    try:
        while chunk := f.read(CHUNK):
            yield chunk
    finally:
        f.close()


def _local(settings: Settings, copy: dict[str, Any]) -> str | None:
    root = os.path.realpath(settings.capture.out)
    path = os.path.realpath(os.path.join(root, copy.get("wav") or ""))
    return path if copy.get("wav") and path.startswith(root + os.sep) and os.path.exists(path) else None


def _archived(settings: Settings, copy: dict[str, Any]) -> Any:
    """An archived copy opened for reading: through this appliance's own target of that name (its
    credentials), else the URL itself (file://, s3:// with the standard AWS credentials)."""
    from appliance.delivery.targets import target_for

    mine = {}
    for t in settings.delivery.targets:
        try:
            target = target_for(t.url)
            mine[target.url] = target  # the queue names a target by its URL without options
        except ValueError:
            continue
    for a in copy.get("archive") or []:
        if not a.get("key"):
            continue
        try:
            return (mine.get(a["target"]) or target_for(a["target"])).open(a["key"])
        except (OSError, ValueError):
            continue  # unreachable, or a target this appliance cannot read: the next place
    return None


def _remote(settings: Settings, copy: dict[str, Any]) -> Any:
    """The copy from the appliance that holds it (its API), or None."""
    import urllib.request

    if not str(copy.get("api") or "").startswith(("http://", "https://")):
        return None  # none, or not an API (a file: URL in the catalog is never opened)
    url = f"{copy['api'].rstrip('/')}/calls/{copy['id']}/audio"
    req = urllib.request.Request(url)
    if settings.api.token:
        req.add_header("Authorization", f"Bearer {settings.api.token}")
    try:
        return urllib.request.urlopen(req, timeout=5)
    except OSError:
        return None


@router.get(
    "/{call_id}/audio",
    summary="The call's WAV from the nearest copy: this appliance's disk, an archive target, or the appliance "
    "that holds it",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "the best copy that can be read (header X-Shadowrec-Copy)"},
        404: {"description": "no such call, or no copy can be read"},
        503: {"description": "the fleet catalog is unreachable"},
    },
)
def get_fleet_audio(call_id: str = CALL_ID, settings: Settings = Depends(get_settings)) -> Any:
    call = _one(settings, call_id)
    me = settings.catalog.appliance
    copies = sorted(call["copies"], key=lambda c: (c["appliance"] != call["best"], c["appliance"], c["id"]))
    name = f"{call['id']}.wav"
    for c in copies:  # the best copy first, from the nearest place it is
        where = f"{c['appliance']}/{c['id']}"
        if c["appliance"] == me and (path := _local(settings, c)):
            return FileResponse(path, media_type="audio/wav", filename=name, headers={"X-Shadowrec-Copy": where})
        f = _archived(settings, c) or (_remote(settings, c) if c["appliance"] != me else None)
        if f is not None:
            headers = {"X-Shadowrec-Copy": where, "Content-Disposition": f'attachment; filename="{name}"'}
            return StreamingResponse(_stream(f), media_type="audio/wav", headers=headers)
    raise HTTPException(404, f"no copy of call {call_id} can be read from here")
