import os

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])
_PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")


@router.get("/", response_class=HTMLResponse, summary="The status page (plain HTML and JS)")
def page() -> HTMLResponse:
    with open(_PAGE, encoding="utf-8") as f:
        return HTMLResponse(f.read())
