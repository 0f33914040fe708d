"""Running the stack on one machine for the demo, the tests and the benchmarks: Airflow (embedded or
Celery), an MLflow server, a Label Studio server. Not library code: the domain package never imports it."""
