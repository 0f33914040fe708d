"""Hypothesis fuzzing of everything that reads outside input: labeling configs, exports, names."""

from __future__ import annotations

import json
import re
import time
from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from active_learning.exports import read_export
from active_learning.labeling_config import (
    LabelingConfigError,
    assign_model,
    list_labels,
    parse_config,
    validate_config,
)
from active_learning.naming import safe_name

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRETRAINED = frozenset({"ner_dl", "ner_clinical"})
# Anything XML 1.0 can carry (no control characters), quotes and shell/SQL metacharacters included.
hostile_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(list("'\"<>&;/\\$`|*%_-")), max_size=40
)
xml_ish = st.lists(
    st.sampled_from(["<View>", "</View>", "<Labels name='l' toName='t'>", "</Labels>", "<Label value='A'/>",
                     "<Text name='t' value='$text'/>", "<!DOCTYPE x>", "<!ENTITY e 'x'>", "&e;", "<!--c-->", "<?pi?>",
                     "\x00", "\xff", "]]>", "<![CDATA[", "model='m'", " ", "\n"]) | st.text(max_size=5),
    max_size=30,
).map("".join)


@FUZZ
@given(st.one_of(xml_ish, st.text(max_size=200), st.binary(max_size=200)))
def test_any_input_gives_problems_or_a_config_never_a_crash(data) -> None:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    problems = validate_config(data, pretrained=PRETRAINED, registered=set())
    assert all(str(problem) for problem in problems)
    try:
        parse_config(data)
    except LabelingConfigError as error:
        assert str(error)
    assert time.perf_counter() - started < 1


@st.composite
def configs(draw):  # type: ignore[no-untyped-def]
    labels = draw(st.lists(hostile_text.filter(str.strip), min_size=1, max_size=6, unique=True))
    models = [draw(st.none() | st.sampled_from(sorted(PRETRAINED)) | hostile_text) for _ in labels]
    body = "".join(
        f"<Label value={quoteattr(v)}" + ("" if m is None else f" model={quoteattr(m)}") + "/>" for v, m in zip(labels, models)
    )
    return f'<View><Labels name="l" toName="t">{body}</Labels><Text name="t" value="$text"/></View>', labels, models


@FUZZ
@given(configs(), hostile_text.filter(lambda s: s.strip() == s and s.isprintable() and s), st.data())
def test_assigning_a_model_changes_exactly_the_untied_trained_labels(config, model_name: str, data) -> None:  # type: ignore[no-untyped-def]
    xml, labels, models = config
    trained = set(data.draw(st.lists(st.sampled_from(labels), unique=True)))
    updated = assign_model(xml, model_name=model_name, trained_labels=trained, pretrained=PRETRAINED)
    after = {spec.value: spec.model for spec in list_labels(updated)}
    for label, model in zip(labels, models):
        tied = model in PRETRAINED
        assert after[label] == (model_name if label in trained and not tied else model)
    problems = validate_config(updated, pretrained=PRETRAINED, registered={model_name})
    assert not [p for p in problems if p.model == model_name]


task = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(), st.text(max_size=5), st.none())},
    optional={
        "data": st.one_of(st.fixed_dictionaries({"text": st.text(max_size=30)}), st.integers(), st.none()),
        "completions": st.lists(st.fixed_dictionaries({}, optional={
            "id": st.integers(0, 5),
            "submitted_at": st.one_of(st.text(max_size=25), st.just("2026-11-25T10:00:00Z"), st.none()),
            "result": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["labels", "relation", "choices", 3])}, optional={
                "value": st.fixed_dictionaries({}, optional={
                    "start": st.one_of(st.integers(-5, 40), st.text(max_size=2), st.none()),
                    "end": st.one_of(st.integers(-5, 40), st.floats(allow_nan=True)),
                    "text": st.text(max_size=10),
                    "labels": st.one_of(st.lists(st.sampled_from(["PER", "LOC", "??"]), max_size=3), st.text(max_size=3)),
                }),
            }), max_size=4),
        }), max_size=3),
    },
)


@FUZZ
@given(st.one_of(st.lists(task, max_size=6), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_any_export_imports_what_is_valid_and_counts_the_rest(document) -> None:  # type: ignore[no-untyped-def]
    try:
        tasks, summary = read_export(json.dumps(document).encode(), allowed_labels={"PER", "LOC"})
    except ValueError as error:  # only a top level that is no list of tasks is refused whole
        assert not isinstance(document, list) and str(error)
        return
    for record in tasks:
        for completion in record.completions:
            for span in completion.spans:
                assert 0 <= span.start < span.end <= len(record.text) and span.label in {"PER", "LOC"}
                assert record.text[span.start:span.end].strip()
    assert summary.tasks == len(tasks)


@FUZZ
@given(st.text(min_size=1, max_size=300).filter(str.strip), st.text(min_size=1, max_size=300).filter(str.strip))
def test_safe_names_are_safe_and_one_to_one(first: str, second: str) -> None:
    for name in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,69}", safe_name(name))
    assert (safe_name(first) == safe_name(second)) == (first == second)
