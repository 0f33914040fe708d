"""Airflow pieces of the active-learning loop: the due-projects sensor and task callbacks.

Importing this package stays cheap (no spaCy, MLflow, lxml or SQLAlchemy): DAG files import it at
parse time; the domain package ``active_learning`` is imported only when a task runs.
"""
