"""How the DAGs declare their Params (the trigger form)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import DAG, Param

# Airflow validates a Param with jsonschema each time it serialises it, and jsonschema first checks the
# Param's schema against its dialect's meta-schema. Draft-07's meta-schema is checked about 3x faster than
# the default 2020-12 one, and the keywords our Params use (type, enum, minLength, pattern, minimum,
# maximum, format) mean the same in both.
DRAFT_07 = {"$schema": "http://json-schema.org/draft-07/schema#"}


def add_trigger_form(dag: DAG, form: dict[str, Param]) -> None:
    """Give ``dag`` its Params once its tasks exist, instead of the DAG's ``params`` argument.

    That argument is copied into every task created under the DAG, and Airflow validates each copy twice
    when it serialises the DAG: the training DAG's 4 Params in 7 tasks were half its parse time
    (bench/dag_parse.py: 1.31x a trivial DAG). Set afterwards, they live on the DAG alone, which is all
    that needs them: the trigger form and the validation of a run's conf read the DAG's Params, and every
    task gets them at run time, since Airflow merges the DAG's Params into each task's. Assigned, so
    Airflow converts and checks them as it does the argument (a scheduled DAG's Params need valid defaults).
    """
    dag.params = form
