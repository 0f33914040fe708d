"""Every test gets its own annotation store, MLflow store and Airflow home under a temporary folder.

Airflow reads its settings when first imported, so they are set here, before any test module loads.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from quick_benches import Background

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "include" / "sample"

_session_home = Path(tempfile.mkdtemp(prefix="al-tests-"))
os.environ.update({
    "AIRFLOW_HOME": str(_session_home / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "ACTIVE_LEARNING_HOME": str(_session_home / "data"),
    # Tests train on a few dozen sentences: a few steps are enough to learn them.
    "ACTIVE_LEARNING_SPACY_OVERRIDES": '{"training.max_steps": 60, "training.eval_frequency": 20}',
})
os.environ.pop("ACTIVE_LEARNING_DB_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
sys.path[:0] = [str(REPO / "dags"), str(REPO / "plugins")]


QUICK_BENCHES = "test_bench_quick.py"
_background = pytest.StashKey["Background"]()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The benchmarks' quick modes last: the ones that judge times run alone, after the background lane."""
    items.sort(key=lambda item: item.path.name == QUICK_BENCHES)  # stable: each file keeps its order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background lane of the selected quick modes that judge no time (tests/quick_benches.py)."""
    from quick_benches import Background, selected_background

    scripts = selected_background([item.name for item in session.items if item.path.name == QUICK_BENCHES])
    if scripts and not session.config.option.collectonly:
        session.config.stash[_background] = Background(scripts)


@pytest.fixture(scope="session")
def background_benches(request: pytest.FixtureRequest) -> Background:
    return request.config.stash[_background]


@pytest.fixture
def without_background(request: pytest.FixtureRequest) -> None:
    """Wait until the background lane of quick modes is done (a test that judges times runs alone)."""
    if (background := request.config.stash.get(_background, None)) is not None:
        background.wait()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (background := session.config.stash.get(_background, None)) is not None:
        background.stop()
    shutil.rmtree(_session_home, ignore_errors=True)


def run_at_once(target: Callable[[], None], times: int = 2) -> None:
    """``target`` in ``times`` threads started together, returning when all have ended."""
    import threading

    threads = [threading.Thread(target=target) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"../shared/data not found ({path}): the team's shared corpora sit beside the repository")
    return path


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_uris() -> Iterator[None]:
    """mlflow.set_tracking_uri/set_registry_uri also write os.environ: clear them before and after every
    test, so one test's MLflow store never becomes the next one's (nor the next module's fixtures').
    (monkeypatch.delenv of a key that is absent records nothing, so it would not undo MLflow's write.)"""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    for key in keys:
        os.environ.pop(key, None)
    yield
    for key in keys:
        os.environ.pop(key, None)


@pytest.fixture(scope="session")
def _parsed_dags():  # type: ignore[no-untyped-def]
    """The repository's DAGs, parsed once per session against a migrated Airflow metadata DB."""
    subprocess.run([Path(sys.executable).parent / "airflow", "db", "migrate"], check=True, capture_output=True)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def dagbag(_parsed_dags):  # type: ignore[no-untyped-def]
    """The parsed DAGs for ``dag.test()``, their Params as parsed again after the test: ``dag.test()`` runs in
    this process, and a run's conf for an object Param stays in the DAG's Params for the next run."""
    params = {dag_id: copy.deepcopy(dag.params) for dag_id, dag in _parsed_dags.dags.items()}
    yield _parsed_dags
    for dag_id, dag in _parsed_dags.dags.items():
        dag.params = params[dag_id]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder: annotation store and MLflow store (with artifacts) inside it."""
    monkeypatch.setenv("ACTIVE_LEARNING_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def backends(home: Path):  # type: ignore[no-untyped-def]
    from active_learning.backends import Backends

    return Backends()


@pytest.fixture
def sample_config() -> str:
    return (SAMPLE / "labeling_config.xml").read_text()


@pytest.fixture
def sample_tasks():  # type: ignore[no-untyped-def]
    from active_learning.exports import read_export

    tasks = []
    for batch in ("completions_batch1.json", "completions_batch2.json"):
        tasks.extend(read_export(SAMPLE / batch)[0])
    return tasks


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pretrained English pipeline (tok2vec, and a ner with its own encoder knowing PERSON, GPE, ORG),
    trained once per session: a base model to start trainings from (tests/base_pipelines.py)."""
    from base_pipelines import train_base

    return train_base(tmp_path_factory.mktemp("bases") / "tiny_base")


@pytest.fixture(scope="session")
def tiny_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT saved as Hugging Face saves one: a transformer base (tests/base_pipelines.py)."""
    from base_pipelines import tiny_transformer as make

    return make(tmp_path_factory.mktemp("transformers") / "tiny-bert")
