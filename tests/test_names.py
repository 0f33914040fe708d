"""Safe names: one-to-one for every project name, unchanged where they were already safe; project names
no project may have; scratch folders that never leave ``work/``; only the exact model names a training
gives are read as ours."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_learning import naming
from active_learning.naming import check_project_name, parse_model_name, safe_name
from active_learning.status import training_run_id
from active_learning.training.workspace import scratch_folder, workspace

SAFE = re.compile(r"[A-Za-z0-9_.-]{1,69}")
# Names near the boundaries: safe characters, names already in the hashed form, dots, any text.
NAMES = st.one_of(
    st.text(),
    st.text(alphabet="ab_.- ", max_size=12),
    st.from_regex(r"[A-Za-z0-9_.-]{0,55}-[0-9a-f]{8}", fullmatch=True),
    st.builds(safe_name, st.text()),
)


def test_the_pair_from_the_review_no_longer_shares_anything() -> None:
    first, second = "a b", "a_b-c8687a08"
    assert safe_name(first) == second  # unchanged: names that were hashed keep their safe name
    assert safe_name(second) != safe_name(first)
    assert naming.registered_model_name(first) != naming.registered_model_name(second)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert naming.model_name(first, at) != naming.model_name(second, at)
    assert training_run_id(first, None) != training_run_id(second, None)


@given(NAMES)
def test_a_name_is_its_own_safe_name_or_gets_one_no_name_keeps(name: str) -> None:
    """Hashed safe names are never fixed points, so no name keeping itself can equal another name's
    hashed one; two hashed ones differ wherever the exact names' hashes do."""
    safe = safe_name(name)
    assert SAFE.fullmatch(safe) and safe.strip(".")
    if safe != name:
        assert safe_name(safe) != safe
        assert safe.endswith("-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8])


@given(NAMES, NAMES)
def test_safe_names_are_one_to_one(first: str, second: str) -> None:
    assert (safe_name(first) == safe_name(second)) == (first == second)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("news", "news"),
        ("demo-news", "demo-news"),
        ("a-DEADBEEF", "a-DEADBEEF"),
        ("x" * 60, "x" * 60),
        ("news desk", "news_desk-385bbb67"),
        ("x" * 61, "x" * 60 + "-c508e75f"),
    ],
)
def test_names_that_were_safe_or_hashed_keep_their_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


@pytest.mark.parametrize("name", ["news-20261101", "a_b-c8687a08", "..", "."])
def test_only_names_in_the_hashed_form_or_of_dots_get_a_new_one(name: str) -> None:
    assert safe_name(name) != name and safe_name(name).endswith("-" + hashlib.sha256(name.encode()).hexdigest()[:8])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("   ", "empty or only whitespace"),
        (".", "only dots"),
        ("..", "only dots"),
        ("a\x00b", "NUL"),
        ("n" * (naming.MAX_PROJECT_NAME + 1), f"at most {naming.MAX_PROJECT_NAME} characters"),
    ],
)
def test_names_no_project_may_have_are_refused_saying_why(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_project_name(name)


def test_names_with_dots_among_other_characters_are_fine() -> None:
    for name in ("a..b", "...x", "news desk", "n" * naming.MAX_PROJECT_NAME):
        check_project_name(name)


def test_a_run_named_dot_dot_works_inside_work_and_leaves_the_home_alone(home: Path) -> None:
    """Before, the run key ".." made the scratch folder ``$ACTIVE_LEARNING_HOME/prepare`` and removed it."""
    kept = home / "prepare" / "keep.txt"
    kept.parent.mkdir()
    kept.write_text("not scratch")
    work = (home / "work").resolve()

    with workspace("..", "prepare") as folder:
        assert folder.parent.parent == work and folder.is_dir()

    assert kept.read_text() == "not scratch"
    assert not folder.exists()


@pytest.mark.parametrize(("run_key", "step"), [("run", "../../outside"), ("run", ".."), ("run", ""), ("run", "a/b")])
def test_a_scratch_folder_outside_work_is_refused(home: Path, run_key: str, step: str) -> None:
    with pytest.raises(ValueError, match="is not a folder of"):
        scratch_folder(run_key, step)


def test_a_model_name_of_ours_gives_its_registered_model_and_training_time() -> None:
    assert parse_model_name("news_ner_20261130_120000") == ("news_ner", datetime(2026, 11, 30, 12, tzinfo=UTC))


@pytest.mark.parametrize("name", ["news_ner_20261130_120000\n", "news_ner_20261130_120000 ", "news_ner_20261130_1200000"])
def test_anything_after_the_name_makes_it_not_ours(name: str) -> None:
    assert parse_model_name(name) is None
