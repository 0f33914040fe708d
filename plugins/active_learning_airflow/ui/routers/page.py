"""The page itself: its HTML and static assets (the JSON it shows comes from the other routers)."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from active_learning_airflow.ui.auth import may_read
from active_learning_airflow.ui.links import links
from active_learning_airflow.ui.security_headers import SECURITY_HEADERS

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}

router = APIRouter()


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(may_read)])
def page(request: Request) -> HTMLResponse:
    """The page's HTML, its links in data attributes: the strict CSP allows no inline script to carry them."""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    page_links = links(request)
    body = template.replace("{{airflow_base}}", html.escape(page_links["airflow"], quote=True)).replace(
        "{{mlflow_ui}}", html.escape(page_links["mlflow"], quote=True)
    )
    return HTMLResponse(body, headers=SECURITY_HEADERS)


@router.get("/static/icon.svg", include_in_schema=False)
def icon() -> FileResponse:
    """The navigation icon: no data in it, so no login needed (the nav bar loads it as an image)."""
    return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml")


@router.get("/static/{asset}", include_in_schema=False, dependencies=[Depends(may_read)])
def static_asset(asset: str) -> FileResponse:
    """Only the page's own assets, by name: no path reaches any other file."""
    if asset not in PAGE_ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    return FileResponse(STATIC / asset, media_type=PAGE_ASSETS[asset], headers={"Cache-Control": "no-cache"})
