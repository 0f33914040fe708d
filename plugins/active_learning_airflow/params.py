"""What the DAGs' Params share."""

# Airflow validates every Param with jsonschema each time it serialises a DAG (twice per task), and
# jsonschema first checks the Param's schema against its dialect's meta-schema. Draft-07's meta-schema
# is checked about 3x faster than the default 2020-12 one, and the keywords our Params use (type, enum,
# minLength, pattern, minimum, maximum, format) mean the same in both: the training DAG parses in
# 12 ms instead of 18 (bench/dag_parse.py).
DRAFT_07 = {"$schema": "http://json-schema.org/draft-07/schema#"}
