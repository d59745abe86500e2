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
        return
    got = request.headers.get("authorization", "")
    got = got[7:] if got.lower().startswith("bearer ") else request.query_params.get("access_token", "")
    if not hmac.compare_digest(got.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def worker_status(settings: Settings) -> list:
    """The capture workers' status files (written every second), with their age."""
    return read_statuses(settings.capture.out)


def catalog(settings: Settings) -> Catalog | None:
    """The call catalog, read-only, or None before the first call."""
    path = os.path.join(settings.capture.out, "catalog.sqlite")
    return Catalog(path, readonly=True) if os.path.exists(path) else None
