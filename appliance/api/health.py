from fastapi import APIRouter, Depends, Response

from appliance.api.deps import get_settings, worker_status
from appliance.api.schemas import Health, Ready
from appliance.config import Settings

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness: the API answers")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: every capture worker reported within 5 s",
    responses={503: {"model": Ready}},
)
def ready(response: Response, settings: Settings = Depends(get_settings)) -> Ready:
    st = worker_status(settings)
    if len(st) < settings.capture.workers:
        response.status_code = 503
        return Ready(ready=False, reason=f"{len(st)} of {settings.capture.workers} capture workers reporting")
    stale = [s["worker"] for s in st if s["age_s"] > 5]
    if stale:
        response.status_code = 503
        return Ready(ready=False, reason=f"capture workers {stale} silent for more than 5 s")
    return Ready(ready=True, reason="capturing")
