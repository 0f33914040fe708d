"""The Active Learning page's FastAPI app: the routers of :mod:`active_learning_airflow.ui.routers`
behind Airflow's auth manager (who may do what: :mod:`active_learning_airflow.ui.auth`).

Mounted by Airflow's API server under ``/active-learning`` (see ``plugins/active_learning_plugin.py``)
and built on its first request (see :mod:`active_learning_airflow.ui`). Changes go through the code the
CLI and the DAGs use (``update_settings``, ``deploy_model``, ``rollback``, and Airflow's own
``trigger_dag`` for "train now"), with the Airflow user's name as the author; how a stale form is
refused: :mod:`active_learning_airflow.ui.revisions`; how a forged one is:
:mod:`active_learning_airflow.ui.same_origin`.
"""

from __future__ import annotations

import html

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from active_learning_airflow.ui.inputs import no_nul_in_query
from active_learning_airflow.ui.routers import changes, deploys, page, reads, webhooks
from active_learning_airflow.ui.same_origin import same_origin_json
from active_learning_airflow.ui.security_headers import SECURITY_HEADERS
from airflow.api_fastapi.app import get_auth_manager


def create_app() -> FastAPI:
    app = FastAPI(
        title="Active Learning",
        description="The Active Learning page of Airflow's UI: projects, trainings, models, config revisions.",
        docs_url=None,
        redoc_url=None,
        # every route: a change only as JSON from this origin; no NUL in a query parameter
        dependencies=[Depends(same_origin_json), Depends(no_nul_in_query)],
    )
    app.add_exception_handler(StarletteHTTPException, http_error)
    for routes in (page, reads, changes, deploys, webhooks):
        app.include_router(routes.router)
    return app


async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    """JSON for the API; for the page itself, a short HTML page that links to Airflow's login."""
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/") or error.status_code not in (401, 403):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    return HTMLResponse(login_page(request, error.status_code), status_code=error.status_code,
                        headers=SECURITY_HEADERS)


def login_page(request: Request, code: int) -> str:
    """What a browser gets without a valid login: why, and a link to Airflow's login page."""
    try:
        login = get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # an auth manager without a login URL
        login = None
    reason = "Log in to Airflow to see this page." if code == 401 else (
        "Your Airflow user may not see the active-learning DAGs, or the login has expired.")
    link = f'<p><a href="{html.escape(login, quote=True)}" target="_top">Log in</a></p>' if login else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Active Learning</title></head>"
        f"<body><h1>Active Learning</h1><p>{html.escape(reason)}</p>{link}</body></html>"
    )
