"""Training, registering and deploying against a real MLflow store (SQLite) and annotation store."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from active_learning import naming
from active_learning.backends import Backends
from active_learning.deploy.deployment import (
    ConfigValidationError,
    DeployError,
    ForeignAliasError,
    find_project_model,
    apply_alias_moves,
    deploy_model,
    rollback,
    validate_project,
)
from active_learning.registry import CANDIDATE, DEPLOYED, TAG_MODEL_NAME, TAG_PROJECT, TAG_RUN_KEY
from active_learning.loop import train_now

PROJECT = "news desk"  # not a safe name: exercises the mapping to MLflow names


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_tasks_module, sample_config_module):  # type: ignore[no-untyped-def]
    """A project with two registered models, none deployed yet (auto-deploy off)."""
    home = tmp_path_factory.mktemp("deploy")
    previous = os.environ.get("ACTIVE_LEARNING_HOME")
    os.environ["ACTIVE_LEARNING_HOME"] = str(home)
    backends = Backends()
    backends.store.projects.create(PROJECT, sample_config_module, active_learning=True)
    backends.store.completions.import_tasks(PROJECT, sample_tasks_module)
    first = train_now(backends, PROJECT)
    time.sleep(1.1)  # model names carry the training second
    second = train_now(backends, PROJECT)
    yield backends, first["model_name"], second["model_name"]
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # set by MLflow for the module's store
        os.environ.pop(key, None)
    if previous is None:
        os.environ.pop("ACTIVE_LEARNING_HOME")
    else:
        os.environ["ACTIVE_LEARNING_HOME"] = previous


@pytest.fixture(scope="module")
def sample_config_module() -> str:
    return (Path(__file__).resolve().parents[1] / "include" / "sample" / "labeling_config.xml").read_text()


@pytest.fixture(scope="module")
def sample_tasks_module():  # type: ignore[no-untyped-def]
    from active_learning.exports import read_export

    sample = Path(__file__).resolve().parents[1] / "include" / "sample"
    return [t for batch in ("completions_batch1.json", "completions_batch2.json") for t in read_export(sample / batch)[0]]


def test_each_training_is_a_version_of_the_projects_registered_model(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, second = trained
    versions = backends.registry.project_models(PROJECT)
    assert [v.model_name for v in versions] == [first, second]
    assert {v.registered_name for v in versions} == {naming.registered_model_name(PROJECT)}
    assert naming.parse_model_name(first) is not None and first.startswith(naming.safe_name(PROJECT) + "_ner_")
    assert set(versions[0].labels) == {"PER", "ORG", "LOC"}
    assert CANDIDATE in versions[1].aliases  # register-only: waits for a person
    history = backends.store.trainings.history(PROJECT)
    assert [h.status for h in history] == ["success", "success"]
    assert history[0].metrics["f1"] > 0.5 and history[0].completions_used == 90


def test_deploy_names_the_model_in_untied_labels_only_and_keeps_the_previous_revision(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, _ = trained
    before = backends.store.configs.read(PROJECT)
    result = deploy_model(backends, PROJECT, first, author="test", reason="manual deploy")
    after = backends.store.configs.read(PROJECT).xml
    assert result.changed and result.revision == before.revision + 1
    for label in ("PER", "ORG", "LOC"):
        assert f'value="{label}" model="{first}"' in after
    assert 'value="MISC" model="ner_dl"' in after
    assert backends.store.configs.revisions(PROJECT)[-2].labeling_config == before.xml
    assert backends.registry.version_by_alias(naming.registered_model_name(PROJECT), DEPLOYED).model_name == first
    assert validate_project(backends, PROJECT) == []


def test_deploying_the_same_model_again_writes_no_revision(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, _ = trained
    deploy_model(backends, PROJECT, first, author="test", reason="once")
    revisions = len(backends.store.configs.revisions(PROJECT))
    assert deploy_model(backends, PROJECT, first, author="test", reason="twice").changed is False
    assert len(backends.store.configs.revisions(PROJECT)) == revisions


def test_moving_the_alias_in_mlflow_is_applied_to_the_config(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, second = trained
    deploy_model(backends, PROJECT, first, author="test", reason="start")
    version = backends.model(second).version
    backends.registry.set_alias(naming.registered_model_name(PROJECT), DEPLOYED, version)  # what a person does in the UI
    [applied] = apply_alias_moves(backends).applied
    assert applied.model_name == second
    assert f'model="{second}"' in backends.store.configs.read(PROJECT).xml
    assert apply_alias_moves(backends).applied == []  # applied once


def test_a_version_this_loop_did_not_register_is_never_deployed_nor_used(trained) -> None:  # type: ignore[no-untyped-def]
    """Someone with MLflow access registers versions under the project's model with tags like ours (a new
    model name; a copy of a real one) and moves the alias: the store has no training of either."""
    backends, first, _ = trained
    deploy_model(backends, PROJECT, first, author="test", reason="start")
    registered = naming.registered_model_name(PROJECT)
    client = backends.registry.client
    source = client.get_model_version(registered, str(backends.registry.version_by_alias(registered, DEPLOYED).version)).source

    def forge(model_name: str) -> int:
        tags = {TAG_PROJECT: PROJECT, TAG_MODEL_NAME: model_name, TAG_RUN_KEY: "forged"}
        return int(client.create_model_version(registered, source=source, tags=tags).version)

    new_name, copied = forge(naming.model_name(PROJECT, datetime.now(UTC))), forge(first)
    config = backends.store.configs.read(PROJECT)
    try:
        backends.registry.set_alias(registered, DEPLOYED, new_name)
        moves = apply_alias_moves(backends)
        assert moves.applied == []
        with pytest.raises(ForeignAliasError, match=f"version {new_name} of registered model '{registered}' was not registered by this loop"):
            moves.raise_refused()
        assert backends.store.configs.read(PROJECT) == config
        # A copied model name still means the version its training registered, wherever it is looked up.
        genuine = backends.store.trainings.that_registered(first).model_version
        assert find_project_model(backends, PROJECT, first).version == genuine != copied
        assert backends.deployed_version(PROJECT).version == genuine
    finally:
        for version in (new_name, copied):
            client.delete_model_version(registered, str(version))
        backends.registry.set_alias(registered, DEPLOYED, backends.deployed_version(PROJECT).version)
    assert apply_alias_moves(backends).refused == []


def test_unknown_and_foreign_models_are_refused_with_a_hint(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, _ = trained
    revisions = len(backends.store.configs.revisions(PROJECT))
    typo = first[:-1] + ("0" if first[-1] != "0" else "1")
    with pytest.raises(DeployError, match=f"no registered model named '{typo}' \\(closest: .*{first}"):
        deploy_model(backends, PROJECT, typo, author="test", reason="typo")
    backends.store.projects.create("other", backends.store.configs.read(PROJECT).xml)
    with pytest.raises(DeployError, match="belongs to project 'news desk', not to 'other'"):
        deploy_model(backends, "other", first, author="test", reason="foreign")
    assert len(backends.store.configs.revisions(PROJECT)) == revisions


def test_a_deploy_that_would_leave_an_invalid_config_writes_nothing(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, _ = trained
    state = backends.store.configs.read(PROJECT)
    broken = state.xml.replace('model="ner_dl"', 'model="ner_dll"')
    backends.store.configs.write(PROJECT, broken, expected_revision=state.revision, author="test", reason="typo in MISC")
    live = backends.store.configs.read(PROJECT)
    with pytest.raises(ConfigValidationError, match="label 'MISC': model 'ner_dll' .* closest existing names: 'ner_dl'"):
        deploy_model(backends, PROJECT, first, author="test", reason="deploy onto a broken config")
    assert backends.store.configs.read(PROJECT) == live
    [problem] = validate_project(backends, PROJECT)
    assert problem.label == "MISC" and problem.model == "ner_dll"
    rollback(backends, PROJECT, to_revision=live.revision - 1, author="test")
    assert validate_project(backends, PROJECT) == []


def test_rollback_restores_an_earlier_revision_as_a_new_one(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, second = trained
    deploy_model(backends, PROJECT, first, author="test", reason="a")
    deploy_model(backends, PROJECT, second, author="test", reason="b")
    revisions = backends.store.configs.revisions(PROJECT)
    new = rollback(backends, PROJECT, to_revision=None, author="test")
    assert new == revisions[-1].revision + 1
    assert backends.store.configs.read(PROJECT).xml == revisions[-2].labeling_config
    assert backends.store.configs.revisions(PROJECT)[-1].reason == f"rollback to revision {revisions[-2].revision}"
    with pytest.raises(DeployError, match="has no config revision 999"):
        rollback(backends, PROJECT, to_revision=999, author="test")


def test_after_a_rollback_the_deployed_model_is_the_one_the_config_names(trained) -> None:  # type: ignore[no-untyped-def]
    backends, first, second = trained
    registered = naming.registered_model_name(PROJECT)
    deploy_model(backends, PROJECT, first, author="test", reason="a")
    deploy_model(backends, PROJECT, second, author="test", reason="b")
    rollback(backends, PROJECT, to_revision=None, author="test")
    assert backends.store.projects.get(PROJECT).deployed_model == first
    assert backends.registry.version_by_alias(registered, DEPLOYED).model_name == first
    assert apply_alias_moves(backends).applied == []  # the sensor does not undo the rollback

    rollback(backends, PROJECT, to_revision=1, author="test")  # the config before any model of ours
    assert backends.store.projects.get(PROJECT).deployed_model is None
    assert backends.registry.version_by_alias(registered, DEPLOYED) is None
    deploy_model(backends, PROJECT, second, author="test", reason="restore for the next tests")


def test_a_deploy_or_rollback_decided_on_an_older_revision_changes_nothing(trained) -> None:  # type: ignore[no-untyped-def]
    from active_learning.store import ConfigConflictError

    backends, first, second = trained
    shown = backends.store.configs.read(PROJECT).revision  # what a person looked at
    deploy_model(backends, PROJECT, first if backends.store.projects.get(PROJECT).deployed_model != first else second,
                 author="someone else", reason="meanwhile")
    live = backends.store.configs.read(PROJECT)
    deployed = backends.store.projects.get(PROJECT).deployed_model
    other = second if deployed == first else first

    with pytest.raises(ConfigConflictError, match=f"changed after revision {shown} was read"):
        deploy_model(backends, PROJECT, other, author="test", reason="manual deploy", expected_revision=shown)
    with pytest.raises(ConfigConflictError):
        rollback(backends, PROJECT, to_revision=None, author="test", expected_revision=shown)
    assert backends.store.configs.read(PROJECT) == live and backends.store.projects.get(PROJECT).deployed_model == deployed
    assert deploy_model(backends, PROJECT, other, author="test", reason="manual deploy", expected_revision=live.revision).changed
