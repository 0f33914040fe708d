"""The Active Learning page: its HTML, its JSON endpoints, and Airflow's auth manager in front of both.

Mounted by Airflow's API server under ``/active-learning`` (see ``plugins/active_learning_plugin.py``).

**Who may do what** is the auth manager's decision, asked the way Airflow's own API asks it:

| action | needs |
|---|---|
| see the page and read every endpoint | read access to the runs of ``active_learning_training`` |
| change settings, train now | permission to trigger ``active_learning_training`` |
| deploy a model, roll back the config | permission to trigger ``active_learning_deploy`` |

No credentials: 401; a bad token or too few rights: 403. Changes go through the code the CLI and the
DAGs use (``AnnotationStore.update_settings``, ``deployment.deploy_model``, ``deployment.rollback``,
and Airflow's own ``trigger_dag`` for "train now"), with the Airflow user's name as the author. Every
change names the config revision its form was rendered from; a change against an older revision is
refused with 409: the domain call compares and sets the revision inside its own write, so a change
made in between by anyone (another tab, the CLI, a training) is never overwritten.

Domain code (SQLAlchemy store, MLflow, spaCy, lxml) is imported inside the handlers.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from active_learning_airflow.ui import URL_PREFIX
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag

if TYPE_CHECKING:
    from active_learning.backends import Backends
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

TRAINING_DAG_ID = "active_learning_training"
DEPLOY_DAG_ID = "active_learning_deploy"
STATIC = Path(__file__).resolve().parent / "static"
PAGE_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
UI = "Active Learning page"

may_read = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_train = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=TRAINING_DAG_ID)
may_deploy = requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DEPLOY_DAG_ID)
ProjectName = Annotated[str, Query(min_length=1, max_length=200, description="the project's name")]

# A strict policy: scripts and styles only from this app, framed only by Airflow's UI (same origin).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- request bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettingsBody(_Body):
    config_revision: int = Field(ge=1, description="the config revision the form was rendered from")
    active_learning: bool | None = None
    frequency: int | None = Field(default=None, description="50, 100 or 200 new completions")
    auto_deploy: bool | None = None


class DeployBody(_Body):
    config_revision: int = Field(ge=1)
    model_name: str = Field(min_length=1, max_length=200)


class RollbackBody(_Body):
    config_revision: int = Field(ge=1)
    to_revision: int = Field(ge=1)


class TrainBody(_Body):
    deploy: Literal["auto", "deploy", "register_only"] = "auto"


# -- the domain, one context per process and settings --------------------------------------------------

_contexts: dict[tuple[str, str], Backends] = {}
_contexts_lock = threading.Lock()


def domain() -> Backends:
    """The store and registry of the current settings, kept per process: engines pool their connections."""
    from active_learning import settings
    from active_learning.backends import Backends

    key = (settings.annotation_db_url(), settings.mlflow_tracking_uri())
    with _contexts_lock:
        backends = _contexts.get(key)
        if backends is None:
            backends = _contexts[key] = Backends(*key)
    return backends


def links(request: Request) -> dict[str, str]:
    """Where the page's links point: Airflow's UI (this server) and MLflow's UI."""
    from active_learning import settings

    root = request.scope.get("root_path", "")
    airflow_base = root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root
    return {"airflow": f"{airflow_base}/", "mlflow": mlflow_ui_url(settings.mlflow_tracking_uri())}


def mlflow_ui_url(tracking_uri: str) -> str:
    """``ACTIVE_LEARNING_MLFLOW_UI_URL``, else an HTTP tracking URI (a server serves its UI), else the
    ``mlflow ui`` of the README on port 5000."""
    import os

    explicit = os.environ.get("ACTIVE_LEARNING_MLFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://localhost:5000"


def permissions(user: BaseUser) -> dict[str, bool]:
    manager = get_auth_manager()

    def may_trigger(dag_id: str) -> bool:
        return manager.is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )

    can_train = may_trigger(TRAINING_DAG_ID)
    return {"can_change_settings": can_train, "can_train": can_train, "can_deploy": may_trigger(DEPLOY_DAG_ID)}


def known_project(backends: Backends, name: str) -> Any:
    from active_learning.store.repository import UnknownProjectError

    try:
        return backends.store.project(name)
    except UnknownProjectError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def stale(name: str, form_revision: int, live: int) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        {"message": f"project {name!r} changed after revision {form_revision} was shown (revision {live} is live "
                    "now): reload and apply your change again", "live_revision": live},
    )


def refused_as_stale(backends: Backends, name: str, form_revision: int) -> HTTPException:
    """The domain's compare-and-set refused the form: 409, naming the revision that is live instead."""
    return stale(name, form_revision, backends.store.read_config(name).revision)


# -- Airflow's side: training runs ----------------------------------------------------------------------


def airflow_run_ids(session: Any, run_keys: list[str]) -> set[str]:
    """Which training run keys are runs of the training DAG (trainings started by the CLI are not)."""
    from sqlalchemy import select

    from airflow.models import DagRun

    if not run_keys:
        return set()
    found: set[str] = set()
    for start in range(0, len(run_keys), 500):
        chunk = run_keys[start : start + 500]
        found.update(session.scalars(
            select(DagRun.run_id).where(DagRun.dag_id == TRAINING_DAG_ID, DagRun.run_id.in_(chunk))
        ))
    return found


def pending_runs(session: Any, project: str, recorded: set[str]) -> list[dict[str, Any]]:
    """Training DAG runs for ``project`` that are queued or running but wrote no history row yet."""
    from sqlalchemy import select

    from airflow.models import DagRun

    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.queued_at, DagRun.start_date, DagRun.conf)
        .where(DagRun.dag_id == TRAINING_DAG_ID, DagRun.state.in_(["queued", "running"]))
        .order_by(DagRun.id.desc())
        .limit(200)
    ).all()
    return [
        {"run_id": run_id, "state": str(state), "queued_at": queued_at, "started_at": start_date}
        for run_id, state, queued_at, start_date, conf in rows
        if (conf or {}).get("project") == project and run_id not in recorded
    ]


def training_dag_state(session: Any) -> dict[str, Any]:
    from sqlalchemy import select

    from airflow.models import DagModel

    paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == TRAINING_DAG_ID))
    return {"dag_id": TRAINING_DAG_ID, "loaded": paused is not None, "paused": bool(paused)}


# -- the app -------------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    app = FastAPI(
        title="Active Learning",
        description="The Active Learning page of Airflow's UI: projects, trainings, models, config revisions.",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """JSON for the API; for the page itself, a short HTML page that links to Airflow's login."""
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/") or error.status_code not in (401, 403):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
        return HTMLResponse(login_page(request, error.status_code), status_code=error.status_code,
                            headers=SECURITY_HEADERS)

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(may_read)])
    def page(request: Request) -> HTMLResponse:
        template = (STATIC / "index.html").read_text(encoding="utf-8")
        page_links = links(request)
        body = template.replace("{{airflow_base}}", html.escape(page_links["airflow"], quote=True)).replace(
            "{{mlflow_ui}}", html.escape(page_links["mlflow"], quote=True)
        )
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    @app.get("/static/icon.svg", include_in_schema=False)
    def icon() -> FileResponse:
        """The navigation icon: no data in it, so no login needed (the nav bar loads it as an image)."""
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml")

    @app.get("/static/{asset}", include_in_schema=False, dependencies=[Depends(may_read)])
    def static_asset(asset: str) -> FileResponse:
        if asset not in PAGE_ASSETS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
        return FileResponse(STATIC / asset, media_type=PAGE_ASSETS[asset], headers={"Cache-Control": "no-cache"})

    @app.get("/api/projects", dependencies=[Depends(may_read)])
    def list_projects(request: Request, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        """Every project: two store statements, one Airflow query, no MLflow call."""
        from active_learning.project_page import project_rows
        from active_learning.store.models import utcnow

        started = time.perf_counter()
        backends = domain()
        now = utcnow()
        rows = [row.as_dict() for row in project_rows(backends.store, now, pretrained=backends.pretrained)]
        in_airflow = airflow_run_ids(session, [r["last_training"]["run_key"] for r in rows if r["last_training"]])
        for row in rows:
            if row["last_training"]:
                row["last_training"]["airflow_run"] = row["last_training"]["run_key"] in in_airflow
        return {
            "as_of": now.isoformat(),
            "projects": rows,
            "permissions": permissions(user),
            "links": links(request),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    @app.get("/api/project", dependencies=[Depends(may_read)])
    def project_page(request: Request, project: ProjectName, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        """One project: settings, validation (against MLflow), history, models, revisions, learning curve."""
        from active_learning.project_page import project_detail
        from active_learning.store.models import utcnow

        backends = domain()
        known_project(backends, project)
        detail = project_detail(backends, project, utcnow())
        keys = [t["run_key"] for t in detail["history"]]
        in_airflow = airflow_run_ids(session, keys)
        for training in detail["history"]:
            training["airflow_run"] = training["run_key"] in in_airflow
        detail["pending_runs"] = pending_runs(session, project, set(keys))
        detail["training_dag"] = training_dag_state(session)
        detail["permissions"] = permissions(user)
        detail["links"] = links(request)
        return detail

    @app.post("/api/project/settings", dependencies=[Depends(may_train)])
    def change_settings(project: ProjectName, body: SettingsBody, user: GetUserDep) -> dict[str, Any]:
        """Switch active learning, its frequency and auto-deploy; recorded as a config revision by the user."""
        from active_learning.store.models import FREQUENCIES
        from active_learning.store.repository import ConfigConflictError

        backends = domain()
        current = known_project(backends, project)
        if body.frequency is not None and body.frequency not in FREQUENCIES:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"frequency must be one of {', '.join(map(str, FREQUENCIES))} new completions, not {body.frequency}",
            )
        wanted = {
            "active_learning": body.active_learning,
            "frequency": body.frequency,
            "auto_deploy": body.auto_deploy,
        }
        changes = {k: v for k, v in wanted.items() if v is not None and v != getattr(current, k)}
        config = backends.store.read_config(project)
        if config.revision != body.config_revision:
            raise stale(project, body.config_revision, config.revision)
        if not changes:
            return {"changed": False, "config_revision": config.revision, "message": "nothing to change"}
        after = {k: changes.get(k, getattr(current, k)) for k in wanted}
        summary = describe_settings(after)
        author = user.get_name()
        try:  # compare-and-set on the form's revision, the change recorded as a revision, one transaction
            revision = backends.store.update_settings(
                project, **changes, expected_revision=body.config_revision, author=author, reason=f"settings: {summary} ({UI})"
            ).config_revision
        except ConfigConflictError:
            raise refused_as_stale(backends, project, body.config_revision) from None
        return {"changed": True, "config_revision": revision, "message": f"{project}: {summary}"}

    @app.post("/api/project/train", dependencies=[Depends(may_train)])
    def train_now(request: Request, project: ProjectName, user: GetUserDep, body: TrainBody | None = None) -> dict[str, Any]:
        """Trigger ``active_learning_training`` for the project, through Airflow, as the user."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists
        from airflow.utils.types import DagRunTriggeredByType

        known_project(domain(), project)
        conf = {"project": project, "source": "manual", "deploy": (body or TrainBody()).deploy}
        try:
            run = trigger_dag(
                TRAINING_DAG_ID, conf=conf, triggered_by=DagRunTriggeredByType.UI,
                triggering_user_name=user.get_name(),
            )
        except DagNotFound as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"Airflow has not loaded the DAG {TRAINING_DAG_ID!r} yet: {error}") from None
        except DagRunAlreadyExists as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        except ValueError as error:  # the DAG's Params refused the conf
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
        if run is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Airflow created no run")
        return {"dag_id": TRAINING_DAG_ID, "dag_run_id": run.run_id, "state": str(run.state), "conf": conf,
                "url": f"{links(request)['airflow']}dags/{TRAINING_DAG_ID}/runs/{run.run_id}"}

    @app.get("/api/project/comparison", dependencies=[Depends(may_read)])
    def comparison(
        project: ProjectName,
        user: GetUserDep,
        model_name: Annotated[str, Query(min_length=1, max_length=200)],
        rescore: bool = False,
    ) -> dict[str, Any]:
        """The model against the deployed one: their scores when trained (instant); with ``rescore``,
        both scored now on the project's evaluation set, as the deploy gate does (loads both models)."""
        from active_learning.deploy.deployment import DeployError, find_project_model
        from active_learning.project_page import stored_comparison

        backends = domain()
        settings = known_project(backends, project)
        history = backends.store.history(project)
        if not any(t.model_name == model_name for t in history):
            try:  # not in this project's history: MLflow says whose it is, or that it does not exist
                find_project_model(backends, project, model_name)
            except DeployError as error:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
        result = stored_comparison(history, model_name, settings.deployed_model)
        if rescore:
            if not permissions(user)["can_deploy"]:
                raise HTTPException(status.HTTP_403_FORBIDDEN, "scoring models needs permission to deploy")
            from active_learning.deploy.gate import compare_with_deployed

            try:
                scored = compare_with_deployed(backends, project, model_name)
            except DeployError as error:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
            result["rescored"] = scored.as_dict() | {"description": scored.describe()}
        return result

    @app.post("/api/project/deploy", dependencies=[Depends(may_deploy)])
    def deploy(project: ProjectName, body: DeployBody, user: GetUserDep) -> dict[str, Any]:
        """Deploy a registered model of the project into its labeling config (not gated, like the CLI)."""
        from active_learning.deploy.deployment import ConfigValidationError, DeployError, deploy_model
        from active_learning.store.repository import ConfigConflictError

        backends = domain()
        known_project(backends, project)
        try:
            result = deploy_model(backends, project, body.model_name, author=user.get_name(),
                                  reason=f"manual deploy ({UI})", expected_revision=body.config_revision)
        except ConfigValidationError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                {"message": str(error), "problems": [str(p) for p in error.problems]}) from None
        except DeployError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
        except ConfigConflictError:
            raise refused_as_stale(backends, project, body.config_revision) from None
        return {"model_name": result.model_name, "version": result.version, "config_revision": result.revision,
                "changed": result.changed,
                "message": f"{project}: {result.model_name} (version {result.version}) deployed, "
                           f"config revision {result.revision}"}

    @app.get("/api/project/diff", dependencies=[Depends(may_read)])
    def diff(
        project: ProjectName,
        revision: Annotated[int, Query(ge=1)],
        against: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        """Unified diff of a config revision against another (default: the revision before it)."""
        from active_learning.project_page import revision_diff

        backends = domain()
        known_project(backends, project)
        try:
            return revision_diff(backends.store, project, revision, against)
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None

    @app.post("/api/project/rollback", dependencies=[Depends(may_deploy)])
    def rollback(project: ProjectName, body: RollbackBody, user: GetUserDep) -> dict[str, Any]:
        """Make an earlier config revision live again, as a new revision (validated first)."""
        from active_learning.deploy import deployment
        from active_learning.store.repository import ConfigConflictError

        backends = domain()
        known_project(backends, project)
        try:
            revision = deployment.rollback(backends, project, to_revision=body.to_revision, author=user.get_name(),
                                           expected_revision=body.config_revision)
        except deployment.ConfigValidationError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                {"message": str(error), "problems": [str(p) for p in error.problems]}) from None
        except deployment.DeployError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
        except ConfigConflictError:
            raise refused_as_stale(backends, project, body.config_revision) from None
        return {"config_revision": revision,
                "message": f"{project}: revision {body.to_revision} is live again, as revision {revision}"}

    return app


def describe_settings(values: dict[str, Any]) -> str:
    if not values["active_learning"]:
        return "active learning off"
    deploy = "deploy right after training" if values["auto_deploy"] else "register only"
    return f"active learning on, every {values['frequency']} new completions, {deploy}"


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
