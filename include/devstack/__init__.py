"""Running the stack on one machine for the demo, the tests and the benchmarks. Not library code: the
domain package never imports it, and neither do the DAGs or the plugins.

- ``services``: a process group with a log, waiting while watching it, JSON over HTTP, a free port.
- ``airflow_api``: Airflow's REST API as the admin user: health, token, DAGs parsed, runs.
- ``embedded``: the embedded default, ``airflow standalone``, and the environment every Airflow here gets.
- ``cluster``: the scale-out path, CeleryExecutor on PostgreSQL and Redis, and an MLflow server.
- ``label_studio``: a Label Studio server in its own virtual environment, with a personal access token.
"""
