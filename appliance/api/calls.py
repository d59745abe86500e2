import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse

from appliance.api.deps import catalog, get_settings, require_token
from appliance.api.schemas import Call, CallPage
from appliance.config import Settings
from appliance.delivery.queue import PENDING_SQL, with_delivery
from capture.sip.calls import EndReason

router = APIRouter(prefix="/calls", tags=["calls"], dependencies=[Depends(require_token)])
CALL_ID = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,80}$", description="the call's id")


def _iso(v: datetime | None) -> str | None:
    if v is None:
        return None
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    v = v.astimezone(UTC)
    return f"{v:%Y-%m-%dT%H:%M:%S}.{v.microsecond // 1000:03d}Z"


def _query(settings: Settings, limit: int = 1000, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
    cat = catalog(settings)
    if cat is None:
        return []
    try:
        return with_delivery(cat.db, cat.query(limit=limit, offset=offset, newest_first=True, **filters))
    finally:
        cat.close()


class CallFilters:
    """The listing filters of ``/calls`` and ``/fleet/calls`` (a dependency: one definition)."""

    def __init__(
        self,
        since: datetime | None = Query(None, description="started at or after (ISO 8601)"),
        until: datetime | None = Query(None, description="started before (ISO 8601)"),
        dn: str | None = Query(None, max_length=64, description="directory number on either side"),
        device: str | None = Query(None, max_length=64, description="device name on either side"),
        end_reason: EndReason | None = None,
        primary_failed: bool | None = Query(None, description="only calls that outlived the primary"),
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10**9),
    ):
        self.limit, self.offset = limit, offset
        self.query: dict[str, Any] = {
            "since": _iso(since), "until": _iso(until), "dn": dn, "device": device,
            "end_reason": end_reason.value if end_reason else None, "primary_failed": primary_failed,
        }  # fmt: skip

    def page(self, items: list) -> dict[str, Any]:
        """A page's fields from the ``limit + 1`` items fetched (one more: there is a next page)."""
        more = len(items) > self.limit
        next_offset = self.offset + self.limit if more else None
        return {"items": items[: self.limit], "offset": self.offset, "limit": self.limit, "next_offset": next_offset}


@router.get("", response_model=CallPage, summary="Recorded calls, newest first, filtered and paged")
def list_calls(
    settings: Settings = Depends(get_settings),
    f: CallFilters = Depends(),
    undelivered: bool | None = Query(None, description="only calls an archive target has not confirmed yet"),
) -> CallPage:
    items = _query(settings, f.limit + 1, f.offset, **f.query, extra=PENDING_SQL if undelivered else None)
    return CallPage(**f.page(items))


@router.get("/live", response_model=list[Call], summary="Calls being recorded now")
def live_calls(settings: Settings = Depends(get_settings)) -> list:
    return _query(settings, state="recording")


def _one(settings: Settings, call_id: str) -> dict[str, Any]:
    items = _query(settings, 1, call_id=call_id)
    if not items:
        raise HTTPException(404, f"no call {call_id}")
    return items[0]


@router.get(
    "/{call_id}",
    response_model=Call,
    summary="One call's metadata (its JSON sidecar)",
    responses={404: {"description": "no such call"}},
)
def get_call(call_id: str = CALL_ID, settings: Settings = Depends(get_settings)) -> dict:
    return _one(settings, call_id)


@router.get(
    "/{call_id}/audio",
    summary="The call's stereo WAV (near end left); HTTP range requests supported",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/wav": {}}},
        206: {"content": {"audio/wav": {}}},
        404: {"description": "no such call or no audio"},
    },
)
def get_audio(call_id: str = CALL_ID, settings: Settings = Depends(get_settings)) -> FileResponse:
    meta = _one(settings, call_id)
    root = os.path.realpath(settings.capture.out)
    path = os.path.realpath(os.path.join(root, meta["wav"]))
    if not path.startswith(root + os.sep) or not os.path.exists(path):
        raise HTTPException(404, f"no audio for call {call_id}")
    return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")
