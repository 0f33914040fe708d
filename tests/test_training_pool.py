"""The training pool's size: the default fitted to the machine, the setting, and its creation, which
keeps a size a person changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from active_learning.settings import MEMORY_PER_TRAINING, default_training_pool_slots, training_pool_slots

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30


@pytest.mark.parametrize(("cores", "available", "slots"), [
    (2, 22 * GIB, 2),  # cores bound it
    (8, 3 * GIB + (512 << 20), 3),  # memory bounds it: whole GiB only
    (4, 900 << 20, 1),  # less than one training's GiB: still one
    (4, None, 4),  # memory unknown: cores
])
def test_the_default_is_one_training_per_core_and_gib_available(cores: int, available: int | None, slots: int) -> None:
    assert MEMORY_PER_TRAINING == GIB
    assert default_training_pool_slots(cores, available) == slots


def test_the_setting_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_TRAINING_POOL_SLOTS", " 7 ")
    assert training_pool_slots() == 7
    monkeypatch.setenv("ACTIVE_LEARNING_TRAINING_POOL_SLOTS", "")
    assert training_pool_slots() >= 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ACTIVE_LEARNING_TRAINING_POOL_SLOTS", value)
    with pytest.raises(ValueError, match="ACTIVE_LEARNING_TRAINING_POOL_SLOTS"):
        training_pool_slots()


def test_airflow_sh_standalone_creates_the_pool_on_a_fresh_home_and_a_second_run_keeps_a_changed_size(tmp_path: Path) -> None:
    """`scripts/airflow.sh standalone` runs what the demo, the tests' Airflow and the scale-out cluster run
    before starting Airflow (``devstack.embedded.prepare_airflow``); stopped as soon as Airflow starts
    (about 15 s: Airflow's migration, the pool, then one more Airflow process)."""
    from devstack.embedded import airflow_environment
    from devstack.services import Service, free_port, wait_until

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ACTIVE_LEARNING", "MLFLOW"))}
    env |= {"ACTIVE_LEARNING_HOME": str(tmp_path), "ACTIVE_LEARNING_TRAINING_POOL_SLOTS": "3", "AIRFLOW_PORT": str(free_port()),
            "PYTHON": sys.executable}
    standalone = Service("airflow-sh", [str(REPO / "scripts" / "airflow.sh"), "standalone"], env=env, log_dir=tmp_path).start()
    try:
        wait_until(lambda: "Starting Airflow Standalone" in standalone.log_path.read_text(errors="replace"), timeout=120,
                   what="airflow standalone starting", services=[standalone])
    finally:
        standalone.stop()
    # A person resizes it, as `airflow pools set` and the UI do; then the pool's creation runs again.
    resize_then_create = """
from airflow.models.pool import Pool
from active_learning.constants import TRAINING_POOL
from active_learning_airflow.pools import main
created = Pool.get_pool(TRAINING_POOL)
print("created with", created and created.slots)
Pool.create_or_update_pool(TRAINING_POOL, 5, "resized by hand", include_deferred=False)
main()
"""
    airflow_env = airflow_environment(tmp_path) | {"PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run([sys.executable, "-c", resize_then_create], env=airflow_env, capture_output=True, text=True, check=True)
    created, again = done.stdout.strip().splitlines()[-2:]
    assert created == "created with 3"
    assert again.endswith("active_learning_training: exists with 5 slots, left as it is (resize: airflow pools set)")
