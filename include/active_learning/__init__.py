"""Active learning for NER annotation projects: the domain logic, free of Airflow.

Airflow DAGs in ``dags/`` and the CLI in :mod:`active_learning.cli` only wire these modules together.
"""
