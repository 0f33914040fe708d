# The image of every Airflow service (and of the MLflow server) in docker-compose.yaml: Airflow's official
# image plus this project's pinned requirements and the active_learning package, with dags/ and plugins/
# baked in (docker-compose.yaml mounts both over the copies for development).
#   docker compose build        (or: docker build -t active-learning-airflow:3.3.2 .)
FROM apache/airflow:3.3.2-python3.11

USER root
# MLflow's served artifacts (a named volume starts with this folder's owner) and the loop's scratch space.
# Group 0 may write: the containers run as AIRFLOW_UID with group 0, whatever that uid is.
RUN mkdir -p /mlflow/artifacts /opt/airflow/active-learning /opt/airflow/project \
    && chown -R airflow:0 /mlflow /opt/airflow/active-learning /opt/airflow/project \
    && chmod -R g+rwX /mlflow /opt/airflow/active-learning
USER airflow

# Every pin of the tested environment; naming the image's Airflow version keeps pip from moving Airflow.
COPY --chown=airflow:0 requirements.txt /opt/airflow/project/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/project/requirements.txt

# Optional extras, for the GPU workers' image (docker-compose.yaml's airflow-worker-gpu): ACTIVE_LEARNING_EXTRAS=transformers
# adds requirements-transformers.txt (transformer bases; PyPI's torch for Linux is its CUDA build).
ARG ACTIVE_LEARNING_EXTRAS=""
COPY --chown=airflow:0 requirements-transformers.txt /opt/airflow/project/requirements-transformers.txt
RUN if [ "$ACTIVE_LEARNING_EXTRAS" = "transformers" ]; then \
      pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/project/requirements-transformers.txt; fi

# Editable, as scripts/setup.sh does: the package finds include/configs/ beside itself. plugins/ is in it
# too: the Airflow plugin's package sends the notifications of `active-learning train` (an entry point).
COPY --chown=airflow:0 pyproject.toml /opt/airflow/project/pyproject.toml
COPY --chown=airflow:0 include /opt/airflow/project/include
COPY --chown=airflow:0 plugins /opt/airflow/project/plugins
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/project

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
