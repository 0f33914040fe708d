"""Models are loaded from their artifacts without running anything in them: MLflow is a trust boundary.

``mlflow.spacy.load_model`` puts a logged model's ``code`` folder on ``sys.path``; anyone who can register
a version in MLflow could so run code in the workers and the API server. The loop loads with
``spacy.load`` and refuses a version that ships code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from active_learning.backends import Backends
from active_learning.loop import train_now
from active_learning.registry import UntrustedModelError


@pytest.fixture
def trained(backends: Backends, sample_config: str, sample_tasks) -> Backends:  # type: ignore[no-untyped-def]
    backends.store.projects.create("news", sample_config)
    backends.store.completions.import_tasks("news", sample_tasks)
    train_now(backends, "news", choice="register_only")
    return backends


def test_a_version_that_ships_code_is_refused_and_its_code_never_runs(trained: Backends, tmp_path: Path) -> None:
    import mlflow
    import spacy

    [ours] = trained.registry.project_models("news")
    hostile = tmp_path / "hostile_module.py"
    marker = tmp_path / "ran"
    hostile.write_text(f"open({str(marker)!r}, 'w').close()\n")
    nlp = spacy.load(trained.registry.download_model(ours, tmp_path / "ours"))
    run = trained.registry.client.create_run(trained.registry.experiment_id("news"))
    with mlflow.start_run(run_id=run.info.run_id):
        logged = mlflow.spacy.log_model(nlp, name="model", code_paths=[str(hostile)])
    version = trained.registry.client.create_model_version(
        ours.registered_name, source=logged.model_uri, run_id=run.info.run_id, model_id=logged.model_uri.removeprefix("models:/"),
    )
    foreign = trained.registry.model_version(ours.registered_name, int(version.version))

    with pytest.raises(UntrustedModelError, match=f"version {foreign.version} .*ships code"):
        trained.registry.load_model(foreign)
    with pytest.raises(UntrustedModelError):
        trained.registry.download_model(foreign, tmp_path / "foreign")
    assert "hostile_module" not in sys.modules and not marker.exists()


def test_our_versions_load_with_spacy(trained: Backends) -> None:
    [ours] = trained.registry.project_models("news")
    nlp = trained.registry.load_model(ours)
    assert nlp.pipe_names == ["tok2vec", "ner"] and set(ours.labels) <= set(nlp.get_pipe("ner").labels)
