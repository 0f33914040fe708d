"""``active-learning`` as scripts and people use it: exit codes, output, and the errors they read."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from active_learning.cli import main
from conftest import SAMPLE, shared_file

CONFIG = str(SAMPLE / "labeling_config.xml")
BATCH1 = str(SAMPLE / "completions_batch1.json")
BATCH2 = str(SAMPLE / "completions_batch2.json")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def projects(capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    code, out, _ = run(capsys, "projects", "--json")
    assert code == 0
    return {row["name"]: row for row in json.loads(out)}


def test_import_creates_the_project_and_counts_toward_the_next_training(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "import", BATCH1, "--project", "news")
    assert code == 1 and "give its labeling config with --config" in err
    code, out, _ = run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG, "--enable", "--frequency", "100")
    assert code == 0 and json.loads(out)["new_completions"] == 40
    row = projects(capsys)["news"]
    assert (row["active_learning"], row["frequency"], row["completions"], row["to_next_training"]) == (True, 100, 40, 60)
    code, out, _ = run(capsys, "import", BATCH1, "--project", "news")
    assert json.loads(out)["new_completions"] == 0 and json.loads(out)["already_imported"] == 40
    run(capsys, "import", BATCH2, "--project", "news")
    assert projects(capsys)["news"]["due"] is False  # 90 < 100
    run(capsys, "enable", "--project", "news", "--frequency", "50", "--auto-deploy")
    row = projects(capsys)["news"]
    assert row["due"] is True and row["auto_deploy"] is True


def test_an_import_tells_no_airflow_unless_one_is_configured_and_a_dead_one_loses_nothing(  # type: ignore[no-untyped-def]
    home: Path, capsys, monkeypatch
) -> None:
    from devstack.services import free_port

    code, _, err = run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG, "--enable")
    assert code == 0 and "Airflow" not in err  # none configured: the poll finds the completions
    monkeypatch.setenv("ACTIVE_LEARNING_AIRFLOW_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("ACTIVE_LEARNING_AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("ACTIVE_LEARNING_AIRFLOW_PASSWORD", "secret-password")
    started = time.monotonic()
    code, out, err = run(capsys, "import", BATCH2, "--project", "news")
    assert code == 0 and json.loads(out)["new_completions"] == 50
    assert "was not told" in err and "the next scheduled poll sees these completions" in err
    assert "secret-password" not in err and time.monotonic() - started < 30
    assert projects(capsys)["news"]["completions"] == 90
    code, _, err = run(capsys, "import", BATCH2, "--project", "news")
    assert code == 0 and "Airflow" not in err  # nothing new: nothing to tell


def test_recount_brings_in_completions_written_around_the_store(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from active_learning.backends import Backends

    run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG, "--enable", "--frequency", "100")
    with Backends().store.engine.begin() as connection:  # e.g. restored from another database's dump
        connection.execute(text(
            "INSERT INTO completions (task_id, project_id, source_id, annotator, arrived_at, ground_truth, cancelled, spans) "
            "SELECT task_id, project_id, source_id || '-restored', annotator, arrived_at, ground_truth, cancelled, spans "
            "FROM completions"
        ))
    assert projects(capsys)["news"]["to_next_training"] == 60  # the poll's counters have not seen them
    assert run(capsys, "recount")[0] == 0
    assert projects(capsys)["news"]["to_next_training"] == 20


def test_each_import_is_an_mlflow_run_with_its_skip_counts(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from active_learning.backends import Backends

    export = json.loads(Path(BATCH1).read_text())[:3]
    export[0]["completions"][0]["result"].append({"type": "labels", "value": {"start": 5, "end": 999, "labels": ["PER"]}})
    export[1]["completions"][0]["result"].append({"type": "relation", "from_id": "a", "to_id": "b"})
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert run(capsys, "import", str(path), "--project", "news", "--config", CONFIG)[0] == 0
    [imported] = Backends().registry.client.search_runs(
        [Backends().registry.experiment_id("news")], filter_string="tags.type = 'import'"
    )
    assert imported.data.metrics["new_completions"] == 3
    assert imported.data.metrics["skipped.span out of range"] == 1
    assert imported.data.metrics["skipped.non-NER result item"] == 1
    assert imported.info.run_name == "import export.json"


def test_an_import_with_labels_mlflow_cannot_name_counts_them_and_ends_its_run(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from active_learning.backends import Backends

    export = json.loads(Path(BATCH1).read_text())[:2]
    export[0]["completions"][0]["result"][0]["value"]["labels"] = ["LOC/"]  # unknown labels, counted per label
    export[1]["completions"][0]["result"][0]["value"]["labels"] = ["X" * 300]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert run(capsys, "import", str(path), "--project", "news", "--config", CONFIG)[0] == 0
    [imported] = Backends().registry.client.search_runs(
        [Backends().registry.experiment_id("news")], filter_string="tags.type = 'import'"
    )
    assert imported.info.status == "FINISHED"
    unknown = sorted(key for key in imported.data.metrics if key.startswith("unknown_labels."))
    assert len(unknown) == 2 and unknown[0].startswith("unknown_labels.LOC_-") and all(len(key) <= 250 for key in unknown)


def test_an_mlflow_error_is_one_line_and_the_import_run_ends_failed(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mlflow.exceptions import MlflowException

    from active_learning.backends import Backends
    from active_learning.registry import ModelRegistry

    def refuse(self, run_id, metrics):  # type: ignore[no-untyped-def]
        raise MlflowException("Invalid value for parameter 'metrics[0].name' supplied\n\nThe cause of this error is ...")

    monkeypatch.setattr(ModelRegistry, "log_metrics", refuse)
    code, _, err = run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG)
    errors = [line for line in err.splitlines() if line.startswith("error")]  # MLflow also logs its store's creation
    assert code == 1 and errors == ["error: MLflow: Invalid value for parameter 'metrics[0].name' supplied"]
    assert "Traceback" not in err
    [imported] = Backends().registry.client.search_runs(
        [Backends().registry.experiment_id("news")], filter_string="tags.type = 'import'"
    )
    assert imported.info.status == "FAILED"


def test_import_refuses_a_config_naming_an_unknown_model(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.xml"
    config.write_text(Path(CONFIG).read_text().replace('<Label value="PER"', '<Label value="PER" model="news_ner_20990101_000000"'))
    code, _, err = run(capsys, "import", BATCH1, "--project", "news", "--config", str(config))
    assert code == 1 and "model 'news_ner_20990101_000000' is neither a pretrained model nor a registered model" in err
    assert "news" not in projects(capsys)  # nothing written


def test_a_frequency_outside_50_100_200_is_a_usage_error(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["import", BATCH1, "--project", "news", "--config", CONFIG, "--frequency", "70"])
    assert exit_info.value.code == 2
    assert "invalid choice: 70" in capsys.readouterr().err


def test_validate_config_exit_codes_and_messages(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "validate-config", CONFIG)[0] == 0
    bad = tmp_path / "bad.xml"
    bad.write_text(Path(CONFIG).read_text().replace('model="ner_dl"', 'model="ner_dll"'))
    code, _, err = run(capsys, "validate-config", str(bad))
    assert code == 1
    assert "label 'MISC': model 'ner_dll' is neither a pretrained model nor a registered model" in err
    assert "closest existing names: 'ner_dl'" in err


@pytest.mark.parametrize(
    ("name", "xml", "message"),
    [
        ("external entity", '<!DOCTYPE v [<!ENTITY s SYSTEM "file://{secret}">]><View><Text name="t" value="&s;"/></View>', "DTD"),
        ("network entity", '<!DOCTYPE v [<!ENTITY s SYSTEM "http://127.0.0.1:9/x">]><View>&s;</View>', "DTD"),
        ("billion laughs", '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">' + "".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]><View>&j;</View>", "DTD"),
        ("malformed", '<View>\n<Labels name="l" toName="t">\n<Label value="A">\n</Labels></View>', "line 3"),
    ],
)
def test_hostile_configs_fail_clearly_without_reading_or_expanding(home: Path, tmp_path: Path, capsys, name, xml, message) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    path = tmp_path / "hostile.xml"
    path.write_text(xml.replace("{secret}", str(secret)))
    started = time.process_time()  # CPU, not wall time: expanding would burn it; a loaded machine does not
    code, out, err = run(capsys, "validate-config", str(path))
    assert code == 1 and message in err
    assert "TOP-SECRET-CONTENT" not in out + err
    assert time.process_time() - started < 2


def test_train_prints_the_model_name_and_evaluate_scores_it(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG)
    run(capsys, "import", BATCH2, "--project", "news")
    code, out, _ = run(capsys, "train", "--project", "news", "--deploy")
    model = out.strip()
    assert code == 0 and re.fullmatch(r"news_ner_\d{8}_\d{6}", model)
    code, out, _ = run(capsys, "config", "--project", "news")
    assert out.count(f'model="{model}"') == 3
    code, out, _ = run(capsys, "evaluate", "--model", model, "--tasks", BATCH2)
    scores = json.loads(out)
    assert code == 0 and {"precision", "recall", "f1", "per_label"} <= scores.keys()
    assert set(scores["per_label"]) == {"PER", "ORG", "LOC"} and 0 <= scores["f1"] <= 1
    code, out, _ = run(capsys, "history", "--project", "news")
    [training] = json.loads(out)
    assert training["model_name"] == model and training["source"] == "manual" and training["status"] == "success"
    code, _, err = run(capsys, "deploy", "--project", "news", "--model", "news_ner_20000101_000000")
    assert code == 1 and "no registered model named 'news_ner_20000101_000000'" in err
    code, out, _ = run(capsys, "rollback", "--project", "news")
    assert code == 0 and "config revision 3 is live" in out
    assert run(capsys, "config", "--project", "news")[1] == Path(CONFIG).read_text()


def test_disconnecting_frees_the_label_studio_project_even_when_its_server_is_down(  # type: ignore[no-untyped-def]
    home: Path, capsys, monkeypatch
) -> None:
    from active_learning.backends import Backends
    from active_learning.store.models import SOURCE_LABEL_STUDIO, SOURCE_STORE
    from devstack.services import free_port

    run(capsys, "import", BATCH1, "--project", "local", "--config", CONFIG)
    code, _, err = run(capsys, "disconnect-label-studio", "--project", "local")
    assert code == 2 and err == "error: project 'local' is not connected to Label Studio (see `projects`)\n"

    store = Backends().store
    store.projects.create("remote", (SAMPLE / "labeling_config.xml").read_text(), active_learning=True,
                          source=SOURCE_LABEL_STUDIO, source_project_id=7)
    monkeypatch.setenv("AIRFLOW_CONN_LABEL_STUDIO_DEFAULT", f"http://:a-token@127.0.0.1:{free_port()}")  # nothing listens
    code, out, err = run(capsys, "disconnect-label-studio", "--project", "remote")
    assert code == 0 and "disconnected from Label Studio project 7; active learning off" in out
    # What is left there is said, with what to do; nothing of it keeps the project here connected.
    assert "the webhook could not be removed" in err and "Settings > Webhooks" in err and "404" in err
    settings = store.projects.get("remote")
    assert (settings.source, settings.source_project_id, settings.active_learning) == (SOURCE_STORE, None, False)
    assert store.projects.connected(SOURCE_LABEL_STUDIO, 7) is None  # free to be connected again


def test_unknown_project_is_exit_1_with_a_hint(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "history", "--project", "nope")
    assert code == 1 and "no project named 'nope'" in err


@pytest.mark.shared_data
def test_real_corpus_imports_with_its_published_counts(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    tasks = shared_file("ncbi_disease/tasks.json")
    config = shared_file("ncbi_disease/labeling_config.xml")
    code, out, _ = run(capsys, "import", str(tasks), "--project", "ncbi", "--config", str(config))
    summary = json.loads(out)
    assert code == 0 and summary["new_tasks"] == 592 and summary["export"]["spans"] == 5134


def test_import_refuses_names_no_project_may_have_and_projects_shows_safe_names(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name, reason in (("..", "only dots"), (".", "only dots"), (" ", "empty or only whitespace"), ("", "empty")):
        code, out, err = run(capsys, "import", BATCH1, "--project", name, "--config", CONFIG)
        assert code == 1 and out == "" and err.startswith("error: ") and reason in err and len(err.splitlines()) == 1
    assert projects(capsys) == {}

    for name in ("a b", "a_b-c8687a08"):  # one safe name before
        assert run(capsys, "import", BATCH1, "--project", name, "--config", CONFIG)[0] == 0
    assert {name: row["safe_name"] for name, row in projects(capsys).items()} == {
        "a b": "a_b-c8687a08", "a_b-c8687a08": "a_b-c8687a08-98c76cf9",
    }

    monkeypatch.setattr("active_learning.store.projects.safe_name", lambda name: "a_b-c8687a08")  # as a hash collision would
    code, _, err = run(capsys, "import", BATCH1, "--project", "a  b", "--config", CONFIG)
    assert code == 1 and "project name 'a  b' has the safe name 'a_b-c8687a08' of project 'a b'" in err
    assert "a  b" not in projects(capsys)


def test_training_params_show_their_sources_and_reach_the_training(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Project > ACTIVE_LEARNING_SPACY_OVERRIDES > ner.cfg; each change is a config revision; the training
    gets the values (read back from its MLflow run) and splits by the project's dev percent."""
    import mlflow

    monkeypatch.setenv("ACTIVE_LEARNING_SPACY_OVERRIDES", '{"training.max_steps": 60, "training.eval_frequency": 20}')
    run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG)
    code, out, _ = run(capsys, "training-params", "--project", "news", "--set", "training.max_steps=3",
                       "--set", "training.eval_frequency=1", "--set", "dataset.dev_percent=40", "--json")
    shown = {row["name"]: (row["value"], row["source"]) for row in json.loads(out)["parameters"]}
    assert code == 0 and shown["training.max_steps"] == (3, "project") and shown["dataset.dev_percent"] == (40, "project")
    assert shown["training.dropout"] == (0.1, "default") and shown["system.seed"] == (0, "default")
    code, out, _ = run(capsys, "training-params", "--project", "news", "--unset", "training.eval_frequency")
    assert code == 0 and re.search(r"training\.eval_frequency\s+20\s+deployment", out)
    assert re.search(r"training\.max_steps\s+3\s+project", out) and re.search(r"training\.patience\s+1600\s+default", out)
    reasons = [line for line in run(capsys, "config", "--project", "news", "--revisions")[1].splitlines() if "training parameters" in line]
    assert len(reasons) == 2 and "cli" in reasons[0] and "training.max_steps=3" in reasons[0]

    code, out, _ = run(capsys, "train", "--project", "news", "--no-deploy")
    [training] = json.loads(run(capsys, "history", "--project", "news")[1])
    params = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_run(training["mlflow_run_id"]).data.params
    assert params["spacy.training.max_steps"] == params["training_params.training.max_steps"] == "3"
    assert params["spacy.training.eval_frequency"] == "20" and "spacy.training.dropout" not in params
    assert params["training_params.dataset.dev_percent"] == "40"
    assert json.loads(params["training_params.sources"]) == {
        "dataset.dev_percent": "project", "training.eval_frequency": "deployment", "training.max_steps": "project"}


def test_bad_training_params_are_refused_one_line_each_and_nothing_is_saved(home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG)
    code, _, err = run(capsys, "training-params", "--project", "news", "--set", "training.max_step=3",
                       "--set", "training.dropout=1.5", "--set", "system.seed=abc", "--set", "training.max_steps=3",
                       "--unset", "training.patiense")
    assert code == 2 and err.splitlines() == [
        "error: unknown training parameter 'training.patiense': did you mean 'training.patience'?",
        "error: unknown training parameter 'training.max_step': did you mean 'training.max_steps'?",
        "error: training.dropout must be between 0 and 0.9, not 1.5",
        "error: system.seed must be an integer, not 'abc' (str)",
    ]
    code, out, _ = run(capsys, "training-params", "--project", "news", "--json")
    assert all(row["source"] != "project" for row in json.loads(out)["parameters"])
    assert len(run(capsys, "config", "--project", "news", "--revisions")[1].splitlines()) == 1


def test_enable_asks_the_deploy_question_only_at_a_terminal(home: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run(capsys, "import", BATCH1, "--project", "news", "--config", CONFIG)
    code, out, _ = run(capsys, "enable", "--project", "news")  # stdin is not a terminal: today's behaviour, said so
    assert code == 0 and "auto-deploy off (unchanged: --auto-deploy or --no-auto-deploy to choose)" in out
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "y" if "deploy gate" in prompt else "n")
    code, out, _ = run(capsys, "enable", "--project", "news")
    assert code == 0 and out.strip().endswith("auto-deploy on") and projects(capsys)["news"]["auto_deploy"] is True
    code, out, _ = run(capsys, "enable", "--project", "news", "--no-auto-deploy")  # a flag: no question
    assert out.strip().endswith("auto-deploy off")
