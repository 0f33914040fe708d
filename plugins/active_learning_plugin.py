"""Registers the Active Learning page with Airflow: a FastAPI app on the API server under
``/active-learning/`` and a top-level entry in the UI's navigation that shows it; and the training pool's
priority weight strategy, which every component that creates or serializes task instances must know.

Kept cheap to import (every Airflow component loads plugins): the app is built on its first request.
"""

from __future__ import annotations

from active_learning_airflow.priority import FirstInFirstOut
from active_learning_airflow.ui import NAV_ROUTE, URL_PREFIX
from active_learning_airflow.ui import app as active_learning_app
from airflow.plugins_manager import AirflowPlugin


class ActiveLearningPlugin(AirflowPlugin):
    name = "active_learning"
    fastapi_apps = [{"app": active_learning_app, "url_prefix": URL_PREFIX, "name": "Active Learning"}]
    external_views = [
        {
            "name": "Active Learning",
            "href": f"{URL_PREFIX.lstrip('/')}/",  # relative: works under a base_url sub-path too
            "url_route": NAV_ROUTE,  # shown inside the UI at /plugin/active-learning
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX.lstrip('/')}/static/icon.svg",  # relative to the UI's <base href>
        }
    ]
    priority_weight_strategies = [FirstInFirstOut]
