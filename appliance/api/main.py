"""The FastAPI application: ``create_app(settings)``; the lifespan opens and closes what it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from appliance.api import calls, fleet, health, metrics, page, status
from appliance.config import Settings
from capture import __version__


def create_app(
    settings: Settings,
    on_start: Callable[[FastAPI], None] | None = None,
    on_stop: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_start:
            on_start(app)
        try:
            yield
        finally:
            if on_stop:
                on_stop(app)

    app = FastAPI(
        title="shadowrec",
        version=__version__,
        lifespan=lifespan,
        description="Status, recordings and metrics of a shadowrec appliance. With `api.token` set, "
        "send `Authorization: Bearer <token>`.",
    )
    app.state.settings = settings
    for r in (health.router, status.router, calls.router, fleet.router, metrics.router, page.router):
        app.include_router(r)
    return app
