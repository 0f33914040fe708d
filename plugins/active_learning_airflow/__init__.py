"""Airflow pieces of the active-learning loop: the due-projects sensor, the tasks' shared helper, the
Params helper and task callbacks.

Importing this package stays cheap (no spaCy, MLflow, lxml or SQLAlchemy): DAG files import it at
parse time; of the domain package ``active_learning`` they import only the leaf module
``active_learning.constants``, and the rest only when a task runs.
"""
