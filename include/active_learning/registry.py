"""MLflow: one experiment and one registered model per project, one run and one version per training.

Only ``MLFLOW_TRACKING_URI`` ties this to a store: a local SQLite file by default, an MLflow server
with served artifacts in the scale-out setup; nothing here knows the difference.

The alias ``deployed`` marks the version the project's labeling config names. Moving it in the MLflow
UI is how a person deploys by hand; the sensor DAG applies the move to the config. The alias
``candidate`` marks the newest version trained but not deployed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from active_learning import naming, settings
from active_learning.preannotation.strategies import MARGIN, scorer_for

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

DEPLOYED = "deployed"
CANDIDATE = "candidate"
TAG_PROJECT = "project"
TAG_MODEL_NAME = "model_name"
TAG_RUN_KEY = "training_run_key"
TAG_TRAINED_AT = "trained_at"
TAG_LABELS = "labels"  # a JSON list: all of the model's labels, or the first that fit LABELS_TAG_LIMIT
TAG_LABELS_COUNT = "labels_count"  # set when the labels tag holds only the first of them
LABELS_TAG_LIMIT = 2000  # characters: the tag is read in MLflow's UI; the full list is the run's LABELS_ARTIFACT
LABELS_ARTIFACT = "labels.json"
STRATEGY_PARAM = "training_params.queue.strategy"  # as the training logs it (training.steps._logged)
TAG_GATE_MODEL = "gate_model_uri"  # a refit version's split-trained twin: the model the gate scores
TAG_BASE_MODEL = "base_model"  # where its training started: training/base_model.py (absent: from scratch)
DATASET_DIR = "dataset"
MODEL_DIR = "model"
GATE_MODEL_DIR = "gate_model"
_METRIC_UNSAFE = re.compile(r"[^\w.\- ]")
_METRIC_NAME_ROOM = 200  # of MLflow's 250 characters a key may have, the rest for a prefix of ours
_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch


class UntrustedModelError(ValueError):
    """A registered version that would run code of its own when loaded."""


@dataclass(frozen=True)
class ModelVersionInfo:
    registered_name: str
    version: int
    model_name: str
    project: str
    trained_at: str
    labels: tuple[str, ...]
    run_id: str | None
    aliases: tuple[str, ...]
    gate_model_uri: str | None = None  # set on a refit version (training/refit.py)
    labels_count: int | None = None  # how many labels it has when ``labels`` holds only the first (the tag's cap)

    @property
    def labels_complete(self) -> bool:
        return self.labels_count is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for an XCom: :meth:`from_dict` reads it back."""
        return {**self.__dict__, "labels": list(self.labels), "aliases": list(self.aliases)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersionInfo:
        return cls(**{**data, "labels": tuple(data["labels"]), "aliases": tuple(data["aliases"])})

    @classmethod
    def from_mlflow(cls, version: ModelVersion) -> ModelVersionInfo:
        tags = version.tags or {}
        return cls(
            registered_name=version.name,
            version=int(version.version),
            model_name=tags.get(TAG_MODEL_NAME, ""),
            project=tags.get(TAG_PROJECT, ""),
            trained_at=tags.get(TAG_TRAINED_AT, ""),
            labels=tuple(json.loads(tags.get(TAG_LABELS, "[]"))),
            run_id=version.run_id,
            aliases=tuple(version.aliases or ()),
            gate_model_uri=tags.get(TAG_GATE_MODEL) or None,
            labels_count=int(tags[TAG_LABELS_COUNT]) if TAG_LABELS_COUNT in tags else None,
        )


def labels_tags(labels: Iterable[str]) -> dict[str, str]:
    """The version's labels tag: the sorted labels that fit :data:`LABELS_TAG_LIMIT` as a JSON list, and
    their count when that is not all of them."""
    ordered, room, shown = sorted(labels), LABELS_TAG_LIMIT - len("[]"), []
    for label in ordered:
        room -= len(json.dumps(label)) + (len(", ") if shown else 0)
        if room < 0:
            break
        shown.append(label)
    return {TAG_LABELS: json.dumps(shown)} | ({TAG_LABELS_COUNT: str(len(ordered))} if len(shown) < len(ordered) else {})


class ModelRegistry:
    def __init__(self, tracking_uri: str | None = None) -> None:
        import mlflow

        self.tracking_uri = tracking_uri or settings.mlflow_tracking_uri()
        # Some client calls (registering a logged model, the spaCy flavor) resolve URIs through the
        # process-wide tracking URI, not the client's: both must name the same store.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self.client: mlflow.MlflowClient = mlflow.MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    # -- runs -----------------------------------------------------------------------------------

    def experiment_id(self, project: str) -> str:
        """The project's experiment, created on first use."""
        found = self.existing_experiment_id(project)
        if found is not None:
            return found
        return self.client.create_experiment(
            _experiment_name(project), artifact_location=settings.local_artifact_root(), tags={TAG_PROJECT: project}
        )

    def existing_experiment_id(self, project: str) -> str | None:
        experiment = self.client.get_experiment_by_name(_experiment_name(project))
        return experiment.experiment_id if experiment is not None else None

    def run_experiment(self, run_id: str | None) -> str | None:
        """The experiment a run belongs to; None for no run or one MLflow does not have."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            return self.client.get_run(run_id).info.experiment_id
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # MLflow down is a fault to retry, not a foreign run
            return None

    def start_run(self, project: str, *, run_key: str, run_name: str, tags: Mapping[str, str]) -> str:
        """The MLflow run of a training; a retry of the same training finds and reuses its run."""
        experiment_id = self.experiment_id(project)
        existing = self.client.search_runs(
            [experiment_id], filter_string=f"tags.{TAG_RUN_KEY} = '{_quote(run_key)}'", max_results=1
        )
        if existing:
            return existing[0].info.run_id
        run = self.client.create_run(
            experiment_id, run_name=run_name, tags={TAG_PROJECT: project, TAG_RUN_KEY: run_key, **tags}
        )
        return run.info.run_id

    def log_import(self, project: str, *, source: str, summary: Mapping[str, Any], added: Mapping[str, int]) -> str:
        """One MLflow run per import in the project's experiment: what was added, skipped, repaired and why."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        counts = {f"export_{k}": v for k, v in summary.items() if isinstance(v, int)} | dict(added)
        for group in ("skipped", "repaired", "unknown_labels"):  # unknown labels are the export's own words
            counts |= {metric_key(f"{group}.", k): v for k, v in summary.get(group, {}).items()}
        run_id = self.client.create_run(
            self.experiment_id(project),
            tags={TAG_PROJECT: project, "type": "import", MLFLOW_RUN_NAME: f"import {Path(source).name}"},
        ).info.run_id
        try:
            self.log_params(run_id, {"source": Path(source).name})
            self.log_metrics(run_id, counts)
            self.client.log_dict(run_id, dict(summary), "import_summary.json")
        except BaseException:
            with contextlib.suppress(Exception):  # MLflow gone meanwhile: the error to report is the first one
                self.finish_run(run_id, "FAILED")
            raise
        self.finish_run(run_id)
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_params_once(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log the params the run does not have yet (a retry's are mostly the first attempt's: MLflow refuses a
        param logged twice with another value). One that differs is kept as the first attempt logged it, and
        the retry's value goes to the run's tag ``retry.<param>``, with a warning."""
        logged = self.client.get_run(run_id).data.params
        values = {key: str(value)[:6000] for key, value in params.items()}
        if new := {key: value for key, value in values.items() if key not in logged}:
            self.log_params(run_id, new)
        for key, value in values.items():
            if key in logged and logged[key] != value:
                log.warning("param %s of run %s was %r in an earlier attempt and is %r in this one: kept, the new value "
                            "in tag retry.%s", key, run_id, logged[key], value, key)
                self.client.set_tag(run_id, f"retry.{key}", value[:5000])

    def next_step(self, run_id: str, key: str) -> int:
        """The step after the last one the run logged of metric ``key`` (0: none yet)."""
        return max((metric.step + 1 for metric in self.client.get_metric_history(run_id, key)), default=0)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], *, step: int = 0, timestamp_ms: int | None = None) -> None:
        """``metrics`` at one step (a training's evaluations: spaCy's step), in batches MLflow takes (1,000 a request)."""
        from mlflow.entities import Metric

        stamp = int(datetime.now().timestamp() * 1000) if timestamp_ms is None else timestamp_ms
        logged = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
        for start in range(0, len(logged), _METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=logged[start : start + _METRICS_PER_BATCH])

    def log_dataset(self, run_id: str, folder: Path, *, name: str, digest: str, summary: Mapping[str, Any]) -> None:
        """Upload the prepared train/dev files, so a training on another machine can fetch them."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        self.client.log_artifacts(run_id, str(folder), DATASET_DIR)
        self.client.log_dict(run_id, dict(summary), f"{DATASET_DIR}/summary.json")
        run = self.client.get_run(run_id)
        dataset = MetaDataset(self._dataset_source(run), name=name, digest=digest[:32])  # MLflow keeps 36 characters
        self.client.log_inputs(
            run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "training")])]
        )

    def _dataset_source(self, run: Any) -> Any:
        """Where the run's dataset lives: its artifact folder, or, behind a server (whose
        ``mlflow-artifacts:`` URIs MLflow cannot name as a dataset source), the run's artifacts page."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.exceptions import MlflowException

        try:
            with warnings.catch_warnings():  # MLflow registers two equal sources for local artifact URIs
                warnings.simplefilter("ignore", UserWarning)
                return resolve_dataset_source(f"{run.info.artifact_uri}/{DATASET_DIR}")
        except MlflowException:
            server = settings.hide_passwords(self.tracking_uri)  # MLflow keeps the source for every reader of the run
            page = f"{server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts/{DATASET_DIR}"
            return HTTPDatasetSource(url=page)

    def download_dataset(self, run_id: str, destination: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, DATASET_DIR, str(destination)))

    def labels(self, info: ModelVersionInfo) -> tuple[str, ...]:
        """All of the version's labels: its tag's, or the training run's :data:`LABELS_ARTIFACT` when the tag
        holds only the first of them."""
        if info.labels_complete:
            return info.labels
        with tempfile.TemporaryDirectory(prefix="al-labels-") as folder:
            path = self.client.download_artifacts(info.run_id or "", LABELS_ARTIFACT, folder)
            return tuple(json.loads(Path(path).read_text(encoding="utf-8")))

    def scorer(self, info: ModelVersionInfo) -> str:
        """The scorer the version's pre-annotation uses: that of the ``queue.strategy`` its training logged
        (a model trained before the parameter existed: ``margin``, the only scorer then)."""
        params = self.client.get_run(info.run_id).data.params if info.run_id else {}
        return scorer_for(params.get(STRATEGY_PARAM, MARGIN))

    def log_model(self, run_id: str, nlp: Any, *, name: str = MODEL_DIR) -> str:
        """Log the spaCy pipeline with MLflow's spaCy flavor; returns the logged model's URI."""
        import mlflow
        import spacy

        with mlflow.start_run(run_id=run_id):
            info = mlflow.spacy.log_model(nlp, name=name, pip_requirements=_requirements(nlp, spacy.__version__))
        return info.model_uri

    def finish_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    # -- registry -------------------------------------------------------------------------------

    def register(
        self,
        project: str,
        *,
        model_uri: str,
        run_id: str,
        run_key: str,
        trained_at: datetime,
        labels: tuple[str, ...],
        description: str,
        gate_model_uri: str | None = None,
        base_model: str | None = None,
    ) -> ModelVersionInfo:
        """Register one version per training: a retried registration finds the version it made.
        ``gate_model_uri``: a refit's split-trained twin, tagged on the version for the gate; ``base_model``:
        where its training started."""
        registered = naming.registered_model_name(project)
        existing = self._search_versions(f"name = '{_quote(registered)}' and tags.{TAG_RUN_KEY} = '{_quote(run_key)}'")
        if existing:
            return existing[0]
        self.client.log_dict(run_id, sorted(labels), LABELS_ARTIFACT)  # all of them: the tag holds what fits
        if not self.client.search_registered_models(f"name = '{_quote(registered)}'"):
            self.client.create_registered_model(
                registered,
                tags={TAG_PROJECT: project},
                description=f"NER models of annotation project {project!r}, one version per training.",
            )
        version = self.client.create_model_version(
            registered,
            source=model_uri,
            run_id=run_id,
            model_id=model_uri.removeprefix("models:/"),  # an MLflow server insists on both for a logged model
            description=description,
            tags={
                TAG_PROJECT: project,
                TAG_MODEL_NAME: naming.model_name(project, trained_at),
                TAG_RUN_KEY: run_key,
                TAG_TRAINED_AT: trained_at.isoformat(timespec="seconds"),
            } | labels_tags(labels) | ({TAG_GATE_MODEL: gate_model_uri} if gate_model_uri else {}) | ({TAG_BASE_MODEL: base_model} if base_model else {}),
        )
        return ModelVersionInfo.from_mlflow(self.client.get_model_version(registered, version.version))

    def set_version_tags(self, info: ModelVersionInfo, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(info.registered_name, str(info.version), key, value[:5000])

    def set_alias(self, registered_name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(registered_name, alias, str(version))

    def delete_alias(self, registered_name: str, alias: str) -> None:
        """Remove the alias if the registered model has it (nothing to do otherwise)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(registered_name, alias)
        except MlflowException:
            pass  # no such registered model or alias

    def version_by_alias(self, registered_name: str, alias: str) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return ModelVersionInfo.from_mlflow(self.client.get_model_version_by_alias(registered_name, alias))
        except MlflowException:
            return None

    def project_models(self, project: str) -> list[ModelVersionInfo]:
        from dataclasses import replace

        registered = naming.registered_model_name(project)
        versions = self._search_versions(f"name = '{_quote(registered)}'")
        if not versions:
            return []
        # Version searches leave aliases out; the registered model lists them.
        aliases: dict[int, list[str]] = {}
        for alias, version in self.client.get_registered_model(registered).aliases.items():
            aliases.setdefault(int(version), []).append(alias)
        return sorted((replace(v, aliases=tuple(sorted(aliases.get(v.version, [])))) for v in versions), key=lambda v: v.version)

    def model_names(self) -> set[str]:
        """Every model name we registered, for validation of labeling configs."""
        return {v.model_name for v in self._search_versions(f"tags.{TAG_MODEL_NAME} LIKE '%_ner_%'") if v.model_name}

    def deployed_versions(self) -> dict[str, int]:
        """registered model name -> version under the ``deployed`` alias, in one paginated listing."""
        deployed: dict[str, int] = {}
        token = None
        while True:
            page = self.client.search_registered_models(max_results=200, page_token=token)
            for model in page:
                if DEPLOYED in model.aliases:
                    deployed[model.name] = int(model.aliases[DEPLOYED])
            token = page.token
            if not token:
                return deployed

    def model_version(self, registered_name: str, version: int) -> ModelVersionInfo:
        return ModelVersionInfo.from_mlflow(self.client.get_model_version(registered_name, str(version)))

    def download_model(self, info: ModelVersionInfo, destination: Path, *, scored: bool = False) -> Path:
        """The version's spaCy pipeline folder, downloaded under ``destination``; with ``scored``, the model
        the gate scores for it: a refit version's split-trained twin, else the version itself. A version
        whose MLmodel ships code is refused: loading it through MLflow would put that code on ``sys.path``,
        and whoever can register a version in MLflow is not trusted to run code in workers or the API server."""
        import mlflow
        import yaml

        uri = info.gate_model_uri if scored and info.gate_model_uri else f"models:/{info.registered_name}/{info.version}"
        if not uri.startswith("models:/"):  # a tag anyone may write: never a path or a server of its choosing
            raise UntrustedModelError(f"{info.registered_name} version {info.version}: its {TAG_GATE_MODEL} tag {uri!r} "
                                      "is not an MLflow logged model (models:/...): refused")
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")) or {}
        flavors = mlmodel.get("flavors") or {}
        if mlmodel.get("code") or any(isinstance(conf, dict) and conf.get("code") for conf in flavors.values()):
            raise UntrustedModelError(f"{info.registered_name} version {info.version} ({info.model_name or 'not ours'}) "
                                      "ships code with the model: refused, nothing of it was loaded")
        return folder / "model.spacy"  # where MLflow's spaCy flavor keeps the pipeline

    def load_model(self, info: ModelVersionInfo, *, scored: bool = False) -> Any:
        """The version's spaCy pipeline (``scored``: the one the gate scores, :meth:`download_model`), loaded
        by ``spacy.load`` from its downloaded folder (weights and config only)."""
        import tempfile

        import spacy

        with tempfile.TemporaryDirectory(prefix="al-model-") as folder:
            return spacy.load(self.download_model(info, Path(folder), scored=scored))

    def _search_versions(self, filter_string: str) -> list[ModelVersionInfo]:
        found: list[ModelVersionInfo] = []
        token = None
        while True:
            page = self.client.search_model_versions(filter_string, max_results=1000, page_token=token)
            found.extend(ModelVersionInfo.from_mlflow(v) for v in page)
            token = page.token
            if not token:
                return found


def _requirements(nlp: Any, spacy_version: str) -> list[str]:
    """What loading the pipeline needs: spaCy, and for a transformer (a base's: training/base_model.py) the
    packages that run it, at the versions it was trained with."""
    from importlib.metadata import version

    needs = [f"spacy=={spacy_version}"]
    if "transformer" in nlp.pipe_names:
        needs += [f"{package}=={version(package)}" for package in ("spacy-transformers", "transformers", "torch")]
    return needs


def _experiment_name(project: str) -> str:
    return f"active-learning/{naming.safe_name(project)}"


def metric_key(prefix: str, name: str) -> str:
    """``prefix + name`` as an MLflow metric key, for a name that comes from users (a label, say).

    MLflow takes keys of at most 250 letters, digits and ``_ . - space : /`` that read as a path to
    themselves (not ``PER/`` nor ``a//b``), ``:`` only where its server does not run on Windows. A name of
    letters, digits and ``_ . - space`` that leaves room for the prefix stays as it is; any other has every
    other character replaced by ``_``, is cut short and ends in a hash of itself, so two names never share
    a key.
    """
    if _METRIC_UNSAFE.search(name) is None and len(name) <= _METRIC_NAME_ROOM:
        return prefix + name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{prefix}{_METRIC_UNSAFE.sub('_', name)[:_METRIC_NAME_ROOM - 9]}-{digest}"


def _quote(value: str) -> str:
    """A literal for an MLflow filter string; our names and run keys never hold quotes, so refuse them."""
    if "'" in value or "\\" in value:
        raise ValueError(f"{value!r} cannot be used in an MLflow search")
    return value
