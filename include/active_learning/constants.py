"""Names shared by the DAGs, the Airflow plugin, the CLI and the domain: one place for each.

A leaf module (no imports): DAG files import it at parse time.
"""

# DAG ids
SENSOR_DAG_ID = "active_learning_sensor"
TRAINING_DAG_ID = "active_learning_training"
DEPLOY_DAG_ID = "active_learning_deploy"

# The Airflow pool of the tasks that load spaCy models (training, the deploy gate's scoring,
# pre-annotation): it bounds how many run at once, whatever the executor's slots.
TRAINING_POOL = "active_learning_training"

# What a training does with its model: the project's auto-deploy flag and the deploy gate, deploy
# (gate overridden), or only register.
DEPLOY_AUTO = "auto"
DEPLOY_ALWAYS = "deploy"
DEPLOY_REGISTER_ONLY = "register_only"
DEPLOY_CHOICES = (DEPLOY_AUTO, DEPLOY_ALWAYS, DEPLOY_REGISTER_ONLY)

# What started a training: the sensor, at a threshold crossing, or a person (CLI, page, DAG form).
TRIGGERED_BY_ACTIVE_LEARNING = "active_learning"
TRIGGERED_BY_HAND = "manual"

# Pre-annotation: its DAG runs on the asset event a deploy emits (a model deployed into a config, by
# training, by hand, by an MLflow alias move, or by a rollback); the event's extra names the projects.
PREANNOTATE_DAG_ID = "active_learning_preannotate"
DEPLOYED_MODELS_ASSET = "active_learning_deployed_models"
DEPLOYED_MODELS_ASSET_URI = "x-active-learning://deployed-models"

# New completions: the sensor DAG is scheduled on its cron or on this asset, whose events a Label Studio
# webhook, `active-learning import` and the page's changes emit, so a crossing is polled at once; the event's
# extra names the projects.
COMPLETIONS_ASSET = "active_learning_completions"
COMPLETIONS_ASSET_URI = "x-active-learning://completions"
