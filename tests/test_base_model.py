"""Base models (training parameter ``model.base``): a training starts from a pretrained pipeline's NER.

The bases are made here (tests/base_pipelines.py): nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy
import pytest
import spacy

from active_learning import cli
from active_learning.backends import Backends
from active_learning.exports import CompletionRecord, Span, TaskRecord
from active_learning.loop import train_now
from active_learning.preannotation.run import preannotate
from active_learning.registry import TAG_BASE_MODEL
from active_learning.store.models import utcnow
from active_learning.training import base_model
from active_learning.training.base_model import BaseModelError, keep_only_labels, locate, starting_pipeline
from base_pipelines import PEOPLE, as_package, train_base

CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PERSON"/>
    <Label value="DRUG"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
DRUGS = ["aspirin", "ibuprofen", "insulin", "heparin"]
TEXT = "Alice lives in Paris and works for Acme ."


def task(i: int) -> TaskRecord:
    person, drug = PEOPLE[i % len(PEOPLE)], DRUGS[i % len(DRUGS)]
    text = f"The patient {person} was given {drug} today ."
    spans = (Span(12, 12 + len(person), "PERSON"), Span(text.index(drug), text.index(drug) + len(drug), "DRUG"))
    completion = CompletionRecord(f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None, False, spans, 0)
    return TaskRecord(f"t{i}", text, None, (completion,))


def project(backends: Backends, name: str, base: str | None, tasks: int = 30) -> str:
    backends.store.projects.create(name, CONFIG)
    backends.store.completions.import_tasks(name, [task(i) for i in range(tasks)])
    if base is not None:
        backends.store.projects.set_training_params(name, {"model.base": base}, author="test", reason="base")
    return name


def mlflow_params(backends: Backends, run_key: str) -> dict[str, str]:
    return backends.registry.client.get_run(backends.store.trainings.get(run_key).mlflow_run_id).data.params


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- the starting pipeline --------------------------------------------------------------------------------


@pytest.mark.parametrize("use_upper", [True, False], ids=["output-layer", "hidden-layer-scores"])
def test_labels_the_project_does_not_use_are_dropped_and_the_shared_ones_keep_their_weights(
    tmp_path: Path, tiny_base: Path, use_upper: bool
) -> None:
    base = tiny_base if use_upper else train_base(tmp_path / "no-upper", ner_model={"use_upper": False})
    before = spacy.load(base)
    assert set(before.get_pipe("ner").labels) == {"PERSON", "GPE", "ORG"}
    assert ("Alice", "PERSON") in [(e.text, e.label_) for e in before(TEXT).ents]

    nlp = spacy.load(base)
    keep_only_labels(nlp.get_pipe("ner"), {"PERSON", "DRUG"})  # DRUG: the base never knew it
    nlp.to_disk(tmp_path / "kept")
    after = spacy.load(tmp_path / "kept")
    assert after.get_pipe("ner").labels == ("PERSON",)
    assert ("Alice", "PERSON") in [(e.text, e.label_) for e in after(TEXT).ents]
    assert not {e.label_ for e in after(TEXT).ents} - {"PERSON"}
    old, new = (transition_weights(p.get_pipe("ner"), "upper" if use_upper else "lower") for p in (before, after))
    assert set(new) == {"B-PERSON", "I-PERSON", "L-PERSON", "U-PERSON", "U-", "O"}
    for name, weights in new.items():  # each transition kept has the weights it had
        assert all(numpy.array_equal(mine, theirs) for mine, theirs in zip(weights, old[name], strict=True)), name


def transition_weights(ner, layer: str) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Each transition's slice of every weight of the layer that scores the transitions."""
    model = ner.model.get_ref(layer)
    axes = {"W": 0, "b": 0} if layer == "upper" else {"W": 1, "b": 0, "pad": 2}
    names = [ner.moves.get_class_name(i) for i in range(ner.moves.n_moves)]
    return {name: [model.get_param(p).take(row, axis=axis) for p, axis in axes.items()] for row, name in enumerate(names)}


def test_the_starting_pipeline_is_the_bases_ner_alone_when_it_has_its_own_encoder(tmp_path: Path, tiny_base: Path) -> None:
    located = locate(str(tiny_base))
    assert located.name == "tiny_base" and located.version == "0.1.0" and len(located.sha256) == 64
    start = spacy.load(starting_pipeline(located, {"PERSON", "DRUG"}, tmp_path / "start"))
    assert start.pipe_names == ["ner"] and start.get_pipe("ner").labels == ("DRUG", "PERSON")  # GPE, ORG dropped


def test_the_files_hash_changes_with_any_file(tmp_path: Path, tiny_base: Path) -> None:
    import shutil

    copy = shutil.copytree(tiny_base, tmp_path / "copy")
    assert base_model.files_sha256(copy) == base_model.files_sha256(tiny_base)
    (copy / "meta.json").write_text((copy / "meta.json").read_text() + " ")
    assert base_model.files_sha256(copy) != base_model.files_sha256(tiny_base)


# -- refused bases: one line, nothing saved, never a quiet fallback ---------------------------------------


@pytest.fixture
def bad_bases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """model.base value -> (the case, what the one-line refusal says)."""
    german = spacy.blank("de")
    german.add_pipe("ner").add_label("PER")
    german.initialize()
    german.to_disk(tmp_path / "german")
    train_base(tmp_path / "no-ner", with_ner=False)
    (tmp_path / "empty").mkdir()
    return {
        "en_core_web_nothere": ("not installed", "no such package is installed on this worker"),
        "abc": ("a module that is no pipeline package", "is a Python module, not a spaCy pipeline package"),
        "json": ("a package that holds no pipeline", "the package holds no spaCy pipeline"),
        str(tmp_path / "empty"): ("a folder without a pipeline", "is not a spaCy pipeline folder"),
        str(tmp_path / "german"): ("a pipeline in another language", "is a pipeline for language 'de'"),
        str(tmp_path / "no-ner"): ("a pipeline without a ner", "has no trained NER component"),
        "models:/someone_elses_ner@deployed": ("a registered model of another loop", "no project of this loop owns"),
        "models:/not a model": ("not a model URI of this loop", "is not a model of this loop"),
    }


def test_each_unusable_base_is_refused_in_one_line_with_exit_2_and_nothing_saved(
    home: Path, capsys: pytest.CaptureFixture[str], bad_bases: dict[str, tuple[str, str]]
) -> None:
    Backends().store.projects.create("clinic", CONFIG)
    for value, (case, message) in bad_bases.items():
        code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", f"model.base={value}")
        assert code == 2, case
        assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, (case, err)
    code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", "model.base=3")
    assert code == 2 and "model.base must be text, not 3 (int)" in err
    assert Backends().store.projects.get("clinic").training_params == {}


def test_a_base_gone_since_it_was_set_fails_the_training_saying_so(backends: Backends, tmp_path: Path, tiny_base: Path) -> None:
    import shutil

    moved = shutil.copytree(tiny_base, tmp_path / "soon-gone")
    project(backends, "clinic", str(moved))
    shutil.rmtree(moved)
    with pytest.raises(BaseModelError, match="is not a spaCy pipeline folder"):
        train_now(backends, "clinic", choice="register_only")
    (training,) = backends.store.trainings.history("clinic")
    assert training.status == "failed" and "is not a spaCy pipeline folder" in (training.error or "")
    assert training.model_name is None  # nothing was trained from scratch instead


# -- trainings from a base --------------------------------------------------------------------------------


def test_a_training_from_an_installed_package_records_its_start_and_loads_without_it(
    backends: Backends, tmp_path: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package, on_path = as_package(tiny_base, tmp_path / "dist")
    monkeypatch.syspath_prepend(str(on_path))  # installed, as far as imports go
    project(backends, "clinic", None)
    code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", f"model.base={package}")
    assert code == 0, err
    result = train_now(backends, "clinic", choice="deploy")

    located = locate(package)
    params = mlflow_params(backends, result["run_key"])
    assert {k: params[k] for k in ("base_model", "base_model.name", "base_model.version", "base_model.sha256")} == {
        "base_model": package, "base_model.name": package, "base_model.version": "0.1.0", "base_model.sha256": located.sha256}
    version = backends.registry.client.get_model_version(result["registered_name"], str(result["version"]))
    assert version.tags[TAG_BASE_MODEL] == located.describe() == f"{package} 0.1.0 (sha256 {located.sha256[:12]})"
    (training,) = backends.store.trainings.history("clinic")
    assert training.base_model == located.describe()
    code, out, _ = run_cli(capsys, "history", "--project", "clinic")
    assert json.loads(out[: out.rindex("]") + 1])[0]["base_model"] == located.describe()

    # The logged model is self-contained: spaCy loads it where the base package cannot be imported.
    folder = backends.registry.download_model(backends.model(result["model_name"]), tmp_path / "downloaded")
    script = ("import importlib.util, sys, spacy; assert importlib.util.find_spec(sys.argv[2]) is None; "
              "nlp = spacy.load(sys.argv[1]); print(nlp.pipe_names, nlp.get_pipe('ner').labels)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, "-c", script, str(folder), package], capture_output=True, text=True, env=env, check=True)
    assert loaded.stdout.strip() == "['ner'] ('DRUG', 'PERSON')"


def test_what_the_base_knows_is_there_from_the_first_steps(backends: Backends, tiny_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(backends, "scratch", None)
    project(backends, "based", str(tiny_base))
    # Three steps: from random weights nothing is learnt yet; from the base PERSON is known.
    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": 3, "training.eval_frequency": 1}')
    scratch = train_now(backends, "scratch", choice="register_only")
    based = train_now(backends, "based", choice="register_only")
    person_f1 = {run: result["metrics"]["per_label"].get("PERSON", {}).get("f1", 0.0) for run, result in (("scratch", scratch), ("based", based))}
    assert person_f1["based"] > 0.8 and person_f1["scratch"] < 0.2, person_f1
    assert mlflow_params(backends, scratch["run_key"])["base_model"] == "none"
    assert backends.store.trainings.get(scratch["run_key"]).base_model is None


def test_with_a_base_the_gate_refit_warm_start_and_preannotation_work_as_from_scratch(backends: Backends, tiny_base: Path) -> None:
    project(backends, "clinic", str(tiny_base), tasks=40)
    backends.store.completions.import_tasks("clinic", [TaskRecord(f"w{i}", f"The patient {name} was given aspirin today .", None, ())
                                                       for i, name in enumerate(PEOPLE)])  # waiting to be annotated
    backends.store.projects.set_training_params("clinic", {"model.base": str(tiny_base), "dataset.refit": True}, author="t", reason="r")
    backends.store.projects.update_settings("clinic", auto_deploy=True)
    first = train_now(backends, "clinic", choice="auto")  # the gate: nothing deployed yet, so it deploys
    assert first["deploy"].startswith("gate passed") and first["gate_model_uri"]  # the refit, its twin tagged for the gate
    assert backends.store.projects.get("clinic").deployed_model == first["model_name"]
    report = preannotate(backends, "clinic")
    assert report.predicted == len(PEOPLE)
    predicted = backends.store.predictions.of_model("clinic", first["model_name"])
    assert all(any(item["value"]["labels"] == ["PERSON"] for item in items) for _, items in predicted.values())

    second = train_now(backends, "clinic", choice="auto", warm_start=True)  # the gate scores both versions
    params = mlflow_params(backends, second["run_key"])
    assert params["warm_start_from"] == first["model_name"] and params["base_model"] == "none"  # it started from the deployed model
    assert second["metrics"]["f1"] > 0.9


def test_transfer_from_another_projects_model(backends: Backends, capsys: pytest.CaptureFixture[str]) -> None:
    backends.store.projects.create("cities", CONFIG.replace('"DRUG"', '"CITY"'))
    cities = [TaskRecord(f"t{i}", f"{p} moved to Paris .", None, (CompletionRecord(
        f"c{i}", "ana", None, utcnow() - timedelta(days=1), False, None, False,
        (Span(0, len(p), "PERSON"), Span(len(p) + 10, len(p) + 15, "CITY")), 0),)) for i, p in enumerate(PEOPLE * 3)]
    backends.store.completions.import_tasks("cities", cities)
    source = train_now(backends, "cities", choice="deploy")

    project(backends, "clinic", None)
    code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", "model.base=models:/cities_ner@deployed")
    assert code == 0, err
    result = train_now(backends, "clinic", choice="deploy")
    params = mlflow_params(backends, result["run_key"])
    assert params["base_model.name"] == source["model_name"] and params["base_model.version"] == "1"
    model = backends.registry.load_model(backends.model(result["model_name"]))
    assert model.pipe_names == ["tok2vec", "ner"] and model.get_pipe("ner").labels == ("DRUG", "PERSON")  # CITY dropped

    code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", "model.base=models:/cities_ner/7")
    assert code == 2 and "version 7 of registered model 'cities_ner' was not registered by this loop" in err


def test_simulate_starts_every_round_from_the_base(home: Path, tmp_path: Path, tiny_base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks.json"  # an Annotation Lab export
    tasks.write_text(json.dumps([{"id": i, "data": {"text": t.text}, "completions": [{"id": i, "created_username": "ana", "created_at": "2026-11-20T10:00:00Z", "result": [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": s.start, "end": s.end, "labels": [s.label]}} for s in t.completions[0].spans]}]}
        for i, t in enumerate(task(i) for i in range(20))]))
    config = tmp_path / "config.xml"
    config.write_text(CONFIG)
    code, out, err = run_cli(capsys, "simulate", "--tasks", str(tasks), "--config", str(config), "--eval-tasks", str(tasks),
                             "--seed-size", "10", "--batch", "5", "--rounds", "1", "--base", str(tiny_base))
    assert code == 0, err
    result = json.loads(out)
    assert result["base"].startswith("tiny_base 0.1.0 (sha256 ") and len(result["rounds"]) == 2
    code, _, err = run_cli(capsys, "simulate", "--tasks", str(tasks), "--config", str(config), "--eval-tasks", str(tasks),
                           "--seed-size", "10", "--batch", "5", "--rounds", "1", "--base", "en_core_web_nothere")
    assert code == 2 and "no such package is installed" in err


TRAIN_FROM_BASE = """
import json, sys
from pathlib import Path
from active_learning.training.base_model import locate, training_config
from active_learning.training.spacy_ner import NER_CONFIG_PATH, load_model, train_ner
base, data, out = locate(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
config = training_config(base, {"PERSON", "DRUG", "DOSE", "ROUTE"}, NER_CONFIG_PATH, out / "start")
done = train_ner(data / "train.spacy", data / "dev.spacy", out / "output", config_path=config,
                 overrides={"training.max_steps": 2, "training.eval_frequency": 1, "training.seed": 0})
print(json.dumps(load_model(done.model_dir).get_pipe("ner").move_names))
"""


def test_a_training_from_a_base_gives_the_same_model_whatever_the_processs_hash_seed(tmp_path: Path, tiny_base: Path) -> None:
    """spaCy adds the labels a resumed NER lacks in the order of a set of strings, which each process's hash
    seed changes: the starting pipeline adds them itself, sorted, so that the same seed trains the same model."""
    from active_learning.training.dataset import write_docbin

    nlp = spacy.blank("en")
    docs = []
    for i, (dose, route) in enumerate([("5 mg", "orally"), ("2 ml", "intravenously"), ("1 tablet", "by mouth")] * 2):
        text = f"{PEOPLE[i]} took {dose} of {DRUGS[i % len(DRUGS)]} {route} ."
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(text.index(part), text.index(part) + len(part), label=label)
                    for part, label in ((PEOPLE[i], "PERSON"), (dose, "DOSE"), (DRUGS[i % len(DRUGS)], "DRUG"), (route, "ROUTE"))]
        docs.append(doc)
    write_docbin(docs[:4], tmp_path / "train.spacy")
    write_docbin(docs[4:], tmp_path / "dev.spacy")
    moves = []
    for hash_seed in ("1", "2", "3"):
        env = os.environ | {"PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", TRAIN_FROM_BASE, str(tiny_base), str(tmp_path), str(tmp_path / hash_seed)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        moves.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert moves[0] == moves[1] == moves[2]
    added = [move[2:] for move in moves[0] if move.startswith("B-") and move != "B-PERSON"]
    assert added == ["DOSE", "DRUG", "ROUTE"]  # after what the base knew, in sorted order


# -- a transformer base (the optional extra, installed for the tests) -------------------------------------


def test_unusable_transformer_bases_are_refused_saying_what_to_do(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "not-a-model").mkdir()
    Backends().store.projects.create("clinic", CONFIG)
    for value, message in (("transformer:", "names no transformer"),
                           ("transformer:bert-base-cased", "is neither a folder nor in this worker's Hugging Face cache, and "
                                                           "nothing is downloaded at run time"),
                           (f"transformer:{tmp_path / 'not-a-model'}", "holds no Hugging Face model (no config.json)")):
        code, _, err = run_cli(capsys, "training-params", "--project", "clinic", "--set", f"model.base={value}")
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (value, err)

    real_find_spec = base_model.importlib.util.find_spec
    monkeypatch.setattr(base_model.importlib.util, "find_spec",
                        lambda name, *a: None if name == "spacy_transformers" else real_find_spec(name, *a))
    with pytest.raises(BaseModelError, match="transformer bases need the optional packages of requirements-transformers.txt"):
        locate("transformer:bert-base-cased")  # where it would train: refused
    # Where it is only set or its data prepared (the page's server, a CPU worker), the worker that trains checks it.
    assert base_model.check("transformer:bert-base-cased", Backends()) is None


def test_a_transformer_base_trains_through_the_training_dag_on_the_cpu_and_its_model_stands_alone(  # type: ignore[no-untyped-def]
    dagbag, backends: Backends, tmp_path: Path, tiny_transformer: Path
) -> None:
    import shutil

    from active_learning.preannotation.scoring import predict

    project(backends, "clinic", None, tasks=40)
    base = shutil.copytree(tiny_transformer, tmp_path / "tiny-bert")
    run = dagbag.dags["active_learning_training"].test(run_conf={
        "project": "clinic", "deploy": "deploy",
        # A few steps: what is tested is that a transformer base goes through every task, not what it learns.
        "training_params": {"model.base": f"transformer:{base}", "training.max_steps": 12, "training.eval_frequency": 6}})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    (training,) = backends.store.trainings.history("clinic")
    assert training.base_model == f"tiny-bert folder (sha256 {base_model.files_sha256(base.resolve())[:12]})"
    params = mlflow_params(backends, training.run_key)
    assert params["base_model"] == f"transformer:{base}" and params["base_model.version"] == "folder"

    shutil.rmtree(base)  # the model holds the transformer's weights and tokenizer itself
    version = backends.model(training.model_name)
    nlp = backends.registry.load_model(version)
    assert nlp.pipe_names == ["transformer", "ner"] and set(nlp.get_pipe("ner").labels) <= {"PERSON", "DRUG"}
    scored = list(predict(nlp, ["The patient Alice was given aspirin today ."]))
    assert scored[0] is not None and 0.0 < scored[0].score <= 1.0  # pre-annotation's beam score, through the listener
    requirements = Path(backends.registry.client.download_artifacts(version.run_id, "model/requirements.txt", str(tmp_path))).read_text()
    assert "spacy-transformers==1.4.0" in requirements and "torch==" in requirements
