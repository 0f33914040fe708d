import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from active_learning.exports import Span, read_export

from conftest import shared_file

TEXT = "Alice met Bob in Paris."  # Alice 0-5, Bob 10-13, Paris 17-22


def item(start, end, label="PER", text=None, **extra):
    value = {"start": start, "end": end, "labels": [label] if isinstance(label, str) else label}
    if text is not None:
        value["text"] = text
    return {"from_name": "label", "to_name": "text", "type": "labels", "value": value, **extra}


def completion(*items, id=1001, **fields):
    return {"id": id, "created_at": "2024-05-01T10:00:00Z", "result": list(items), **fields}


def task(*completions, id=1, text=TEXT, key="completions"):
    return {"id": id, "data": {"text": text}, key: list(completions)}


def read_one(*items, text=TEXT, **options):
    """The spans of one completion of one task, and the summary."""
    tasks, summary = read_export([task(completion(*items), text=text)], **options)
    return tasks[0].completions[0], summary


# -- the shared corpora --------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "tasks", "spans"),
    [("wnut17/tasks.json", 3394, 1975), ("ncbi_disease/tasks.json", 592, 5134)],
)
def test_shared_corpora_import_completely(relative, tasks, spans):
    records, summary = read_export(shared_file(relative))
    assert (summary.tasks, summary.completions, summary.spans) == (tasks, tasks, spans)
    assert summary.as_dict()["skipped"] == {} and summary.as_dict()["repaired"] == {}
    for record in records:
        for span in record.completions[0].spans:
            assert record.text[span.start : span.end].strip() == record.text[span.start : span.end]


@pytest.mark.shared_data
def test_annotation_lab_demo_keeps_every_completion_and_counts_relations_and_choices():
    records, summary = read_export(shared_file("formats/annotation_lab/alab_demo.json"))
    assert [r.source_id for r in records] == ["2", "3", "1"]
    assert [len(r.completions) for r in records] == [5, 5, 4]
    assert summary.spans == 139  # PROBLEM 73, ABSENT 26, DATE 25, TREATMENT 8, TEST 7
    assert summary.skipped == {"non-NER result item": 23}  # 20 relations, 3 choices

    first = records[0].completions[0]
    assert (first.source_id, first.annotator, first.ground_truth) == ("2001", "luca.martial", False)
    assert first.submitted_at == datetime(2022, 7, 27, 16, 37, 26, 78000, tzinfo=UTC)
    assert first.created_at == datetime(2022, 7, 27, 20, 37, 22, 219022, tzinfo=UTC)
    assert records[0].completions[3].ground_truth is True  # honeypot
    assert all(c.skipped_spans == 0 for r in records for c in r.completions)


@pytest.mark.shared_data
def test_annotation_lab_assertion_labels_are_left_out_by_the_config_labels():
    _, summary = read_export(
        shared_file("formats/annotation_lab/alab_demo.json"),
        allowed_labels={"PROBLEM", "DATE", "TREATMENT", "TEST"},
    )
    assert summary.spans == 139 - 26
    assert summary.unknown_labels == {"ABSENT": 26}
    assert summary.skipped["label not in config"] == 26


@pytest.mark.shared_data
def test_label_studio_february_22_quirk_is_repaired_not_kept_wrong():
    raw = json.loads(shared_file("formats/label_studio/text_named_entity_tasks.json").read_text())
    records, summary = read_export(raw)
    assert summary.completions == 0 and summary.skipped == {"prediction ignored": 1}

    # The same result item as a human annotation: text[343:353] is "February 2", value.text "February 22".
    raw[0]["annotations"] = raw[0].pop("predictions")
    records, summary = read_export(raw)
    (span,) = records[0].completions[0].spans
    assert records[0].text[span.start : span.end] == "February 22"
    assert (span.start, span.end, span.label) == (343, 354, "Date")
    assert summary.repaired == {"offsets repaired": 1}


# -- offsets ----------------------------------------------------------------------------------------


def test_valid_spans_are_kept_in_order():
    record, summary = read_one(item(10, 13, text="Bob"), item(0, 5, text="Alice"), item(17, 22, "LOC"))
    assert record.spans == (Span(10, 13, "PER"), Span(0, 5, "PER"), Span(17, 22, "LOC"))
    assert summary.as_dict()["skipped"] == {} and record.skipped_spans == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (item(17, 99, text="Paris."), "span out of range"),
        (item(17, 99), "span out of range"),
        (item(-1, 5), "span out of range"),
        (item(13, 10), "reversed offsets"),
        (item(10, 10), "empty span"),
        (item("10", 13), "wrong type"),
        (item(10.0, 13), "wrong type"),
        (item(True, 13), "wrong type"),
        (item(10, 13, text=13), "wrong type"),
        (item(10, 13, label=[1]), "wrong type"),
        (item(10, 13, label="PER") | {"value": "Bob"}, "wrong type"),
        (item(10, 13, label=[]), "span without label"),
        ({"type": "labels", "value": {"start": 10, "labels": ["PER"]}}, "missing key"),
        ({"type": "labels", "value": {"start": 10, "end": 13}}, "missing key"),
        ({"type": "labels"}, "missing key"),
        ("Bob", "wrong type"),
        (item(5, 6, text=" "), "whitespace-only span"),
        (item(0, 5, text="Paul"), "offsets disagree with value.text"),
    ],
)
def test_a_bad_span_is_skipped_and_counted_and_the_rest_is_kept(bad, reason):
    record, summary = read_one(bad, item(0, 5, text="Alice"))
    assert record.spans == (Span(0, 5, "PER"),)
    assert record.skipped_spans == 1
    assert summary.skipped == {reason: 1}


def test_misplaced_offsets_move_to_the_only_occurrence_of_value_text():
    record, summary = read_one(item(9, 12, text="Bob"))
    assert record.spans == (Span(10, 13, "PER"),)
    assert summary.repaired == {"offsets repaired": 1}


def test_misplaced_offsets_move_to_a_nearby_occurrence_only_when_it_is_close_and_unique():
    text = "Bob and Bob and Bob"  # Bob at 0, 8, 16
    record, summary = read_one(item(6, 9, text="Bob"), item(12, 15, text="Bob"), text=text)
    assert record.spans == (Span(8, 11, "PER"),)  # 12 is 4 away from 8 and 16: ambiguous
    assert summary.repaired == {"offsets repaired": 1}
    assert summary.skipped == {"offsets disagree with value.text": 1}


def test_the_repair_window_is_three_characters():
    text = "Bob xx Bob xxxxxxxx Bob"  # Bob at 0, 7, 20
    record, summary = read_one(item(3, 6, text="Bob"), item(11, 14, text="Bob"), text=text)
    assert record.spans == (Span(0, 3, "PER"),)  # 3 from 0; 11 is 4 from 7
    assert summary.skipped == {"offsets disagree with value.text": 1}


def test_far_misplaced_offsets_with_several_occurrences_are_skipped():
    record, summary = read_one(item(4, 7, text="Bob"), text="Bob Bob Bob Bob")
    assert record.spans == (Span(4, 7, "PER"),)  # exact match first
    record, summary = read_one(item(0, 5, text="Bob"), text="Alice Bob xx Bob")
    assert record.spans == ()
    assert summary.skipped == {"offsets disagree with value.text": 1}


def test_surrounding_whitespace_is_trimmed_and_counted():
    record, summary = read_one(item(9, 14, text=" Bob "))
    assert record.spans == (Span(10, 13, "PER"),)
    assert summary.repaired == {"whitespace trimmed": 1}


def test_utf16_offsets_from_a_browser_are_converted_to_code_points():
    text = "I 😀 love Paris 🇫🇷 and Bob"
    paris = text.index("Paris")
    utf16_paris = paris + 1  # the emoji is two UTF-16 code units
    bob = text.index("Bob")
    utf16_bob = bob + 1 + 2  # and each regional indicator of the flag is two more
    record, summary = read_one(
        item(utf16_paris, utf16_paris + 5, "LOC", text="Paris"),
        item(utf16_bob, utf16_bob + 3, text="Bob"),
        text=text,
    )
    assert record.spans == (Span(paris, paris + 5, "LOC"), Span(bob, bob + 3, "PER"))
    assert summary.repaired == {"UTF-16 offsets converted": 2}


def test_code_point_offsets_in_an_emoji_text_are_kept_as_they_are():
    text = "😀 Bob"
    record, summary = read_one(item(2, 5, text="Bob"), text=text)
    assert record.spans == (Span(2, 5, "PER"),)
    assert summary.repaired == {}


# -- labels and result items ------------------------------------------------------------------------


def test_unknown_labels_are_skipped_and_counted_per_label():
    record, summary = read_one(
        item(0, 5, "PERSON"), item(10, 13, "PERSON"), item(17, 22, "CITY"), item(17, 22, "LOC"),
        allowed_labels={"PER", "LOC"},
    )
    assert record.spans == (Span(17, 22, "LOC"),)
    assert record.skipped_spans == 3
    assert summary.skipped == {"label not in config": 3}
    assert summary.unknown_labels == {"PERSON": 2, "CITY": 1}


def test_of_several_labels_the_first_allowed_one_is_kept_and_the_rest_counted():
    record, summary = read_one(item(0, 5, ["PROBLEM", "PER", "LOC"]), allowed_labels={"PER", "LOC"})
    assert record.spans == (Span(0, 5, "PER"),)
    assert summary.skipped == {"extra label on span": 2}
    record, _ = read_one(item(0, 5, ["PROBLEM", "PER"]))
    assert record.spans == (Span(0, 5, "PROBLEM"),)


def test_duplicate_spans_are_merged_but_overlaps_are_kept():
    record, summary = read_one(item(0, 5), item(0, 5), item(0, 13), item(0, 5, "LOC"))
    assert record.spans == (Span(0, 5, "PER"), Span(0, 13, "PER"), Span(0, 5, "LOC"))
    assert summary.skipped == {"duplicate span": 1}


def test_non_ner_items_are_counted_not_treated_as_spans():
    relation = {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right", "labels": ["x"]}
    choice = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Female"]}}
    record, summary = read_one(relation, choice, item(0, 5))
    assert record.spans == (Span(0, 5, "PER"),) and record.skipped_spans == 0
    assert summary.skipped == {"non-NER result item": 2}


def test_ner_from_names_limits_which_labels_controls_count():
    other = item(10, 13) | {"from_name": "assertion"}
    record, summary = read_one(item(0, 5), other, ner_from_names={"label"})
    assert record.spans == (Span(0, 5, "PER"),)
    assert summary.skipped == {"non-NER result item": 1}


# -- tasks and completions -----------------------------------------------------------------------


def test_duplicate_task_and_completion_ids_keep_the_first():
    tasks, summary = read_export(
        [
            task(completion(item(0, 5)), completion(item(-1, 13), id=1001), completion(item(10, 13), id=1002)),
            task(completion(item(17, 22), id=7), text="Other text, same id."),
        ]
    )
    assert len(tasks) == 1
    assert [c.source_id for c in tasks[0].completions] == ["1001", "1002"]
    assert tasks[0].completions[0].spans == (Span(0, 5, "PER"),)
    assert summary.skipped == {"duplicate task id": 1, "duplicate completion id": 1}
    assert (summary.tasks, summary.completions, summary.spans) == (1, 2, 2)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"id": 2, "data": {"text": ""}, "completions": []}, "task without text"),
        ({"id": 2, "data": {"text": "  \n"}, "completions": []}, "task without text"),
        ({"id": 2, "data": {"text": 5}, "completions": []}, "task without text"),
        ({"id": 2, "data": {"a": "one", "b": "two"}}, "task without text"),
        ({"id": 2, "completions": []}, "missing key"),
        ({"id": 2, "data": "text"}, "wrong type"),
        ({"id": 2.5, "data": {"text": TEXT}}, "wrong type"),
        ({"id": {"x": 1}, "data": {"text": TEXT}}, "wrong type"),
        ("a task", "wrong type"),
        (None, "wrong type"),
    ],
)
def test_a_bad_task_is_skipped_and_counted(bad, reason):
    tasks, summary = read_export([bad, task(completion(item(0, 5)))])
    assert [t.source_id for t in tasks] == ["1"]
    assert summary.skipped == {reason: 1}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"id": 5}, "missing key"),
        ({"id": 5, "result": {"start": 0}}, "wrong type"),
        ({"id": [5], "result": []}, "wrong type"),
        ("completion", "wrong type"),
    ],
)
def test_a_bad_completion_is_skipped_and_counted(bad, reason):
    tasks, summary = read_export([task(bad, completion(item(0, 5)))])
    assert [c.source_id for c in tasks[0].completions] == ["1001"]
    assert summary.skipped == {reason: 1}


def test_completions_that_are_not_a_list_are_counted():
    tasks, summary = read_export([{"id": 1, "data": {"text": TEXT}, "completions": {"id": 1}}])
    assert tasks[0].completions == ()
    assert summary.skipped == {"wrong type": 1}


def test_text_key_and_the_single_string_value_find_the_text():
    raw = [{"id": 1, "data": {"ner": TEXT, "meta": 3}, "annotations": [completion(item(0, 5))]}]
    tasks, _ = read_export(raw)
    assert tasks[0].text == TEXT
    raw[0]["data"]["title"] = "a title"
    tasks, summary = read_export(raw)
    assert tasks == [] and summary.skipped == {"task without text": 1}
    tasks, _ = read_export(raw, text_key="$ner")
    assert (tasks[0].text, tasks[0].title) == (TEXT, "a title")
    tasks, summary = read_export(raw, text_key="text")
    assert tasks == [] and summary.skipped == {"task without text": 1}


def test_a_task_without_id_is_identified_by_its_text():
    raw = [{"data": {"text": TEXT}}, {"data": {"text": TEXT}}, {"data": {"text": "Another text."}}]
    tasks, summary = read_export(raw)
    assert len(tasks) == 2 and tasks[0].source_id != tasks[1].source_id
    assert tasks[0].source_id == read_export(raw[:1])[0][0].source_id
    assert summary.skipped == {"duplicate task id": 1}


def test_a_completion_without_id_gets_a_stable_id_that_follows_its_content():
    without_id = {"created_at": "2024-05-01T10:00:00Z", "result": [item(0, 5)]}
    other = copy.deepcopy(without_id) | {"result": [item(10, 13)]}
    first, _ = read_export([task(without_id, other)])
    again, _ = read_export([task(copy.deepcopy(without_id), copy.deepcopy(other))])
    ids = [c.source_id for c in first[0].completions]
    assert ids == [c.source_id for c in again[0].completions]
    assert len(set(ids)) == 2


# -- completion metadata -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "annotator"),
    [
        ({"created_username": "eric", "completed_by": 3}, "eric"),
        ({"completed_by": {"id": 3, "email": "ann@example.org"}}, "ann@example.org"),
        ({"completed_by": {"id": 3}}, "3"),
        ({"completed_by": 3}, "3"),
        ({}, "unknown"),
    ],
)
def test_annotator(fields, annotator):
    tasks, _ = read_export([task(completion(**fields))])
    assert tasks[0].completions[0].annotator == annotator


@pytest.mark.parametrize(
    ("fields", "submitted"),
    [
        (
            {"submitted_at": "2022-07-27T16:37:26.078", "updated_at": "2023-01-01T00:00:00Z"},
            "2022-07-27T16:37:26.078000+00:00",
        ),
        ({"updated_at": "2021-03-09T22:16:08.728378+02:00"}, "2021-03-09T20:16:08.728378+00:00"),
        ({"created_ago": "2022-10-29T14:42:50.867Z"}, "2022-10-29T14:42:50.867000+00:00"),
        ({"created_at": "2022-10-29 14:07:12"}, "2022-10-29T14:07:12+00:00"),
        ({"submitted_at": "yesterday", "updated_at": "2024-01-02T03:04:05Z"}, "2024-01-02T03:04:05+00:00"),
        ({}, None),
    ],
)
def test_submission_time_falls_back_from_submitted_to_updated_to_created(fields, submitted):
    raw = {"id": 1, "result": [], **fields}
    tasks, _ = read_export([task(raw)])
    record = tasks[0].completions[0]
    assert (record.submitted_at.isoformat() if record.submitted_at else None) == submitted
    assert record.submitted_at is None or record.submitted_at.tzinfo == UTC


def test_unparseable_timestamps_become_none_and_are_counted():
    raw = {"id": 1, "result": [], "created_at": "2 weeks, 6 days", "updated_at": 1700000000}
    tasks, summary = read_export([task(raw)])
    record = tasks[0].completions[0]
    assert (record.created_at, record.submitted_at) == (None, None)
    assert summary.skipped == {"unparseable timestamp": 2}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"honeypot": True}, (True, None, False)),
        ({"ground_truth": True, "was_cancelled": True}, (True, None, True)),
        ({"honeypot": "yes"}, (False, None, False)),
        ({"review_status": "Approved"}, (False, "accepted", False)),
        ({"review_status": "rejected"}, (False, "rejected", False)),
        ({"review_status": {"approved": False, "comment": "wrong"}}, (False, "rejected", False)),
        ({"reviews": [{"accepted": False}, {"accepted": True}]}, (False, "accepted", False)),
        ({"review_status": "pending"}, (False, None, False)),
    ],
)
def test_ground_truth_review_and_cancel_flags(fields, expected):
    tasks, _ = read_export([task(completion(**fields))])
    record = tasks[0].completions[0]
    assert (record.ground_truth, record.review_status, record.cancelled) == expected


# -- sources and top level ------------------------------------------------------------------------


def test_sources_path_str_bytes_and_tasks_object(tmp_path):
    raw = [task(completion(item(0, 5)))]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    results = [
        read_export(path)[0],
        read_export(str(path))[0],
        read_export(json.dumps(raw).encode("utf-8"))[0],
        read_export({"tasks": raw})[0],
    ]
    assert all(result == results[0] for result in results)


@pytest.mark.parametrize("document", [b'{"task": []}', b"42", b'"text"', b'{"tasks": {}}', b"[1,", b""])
def test_anything_but_a_task_list_is_a_clear_value_error(document):
    with pytest.raises(ValueError, match="export|JSON"):
        read_export(document)


def test_summary_as_dict_is_json_friendly():
    _, summary = read_one(item(0, 5), item(99, 100), allowed_labels={"PER"})
    assert json.loads(json.dumps(summary.as_dict())) == {
        "tasks": 1,
        "completions": 1,
        "spans": 1,
        "skipped": {"span out of range": 1},
        "repaired": {},
        "unknown_labels": {},
    }


@pytest.mark.parametrize(("tags", "test"), [(["Test"], True), (["train", "test "], True), (["Train"], False),
                                            ("test", False), (None, False)])
def test_tasks_tagged_test_are_marked_for_the_evaluation_set(tags, test):
    raw = task(completion(item(0, 4)))
    if tags is not None:
        raw["tags"] = tags
    [record], _ = read_export([raw])
    assert record.test is test


def test_nul_characters_are_replaced_one_for_one_and_counted() -> None:
    """PostgreSQL cannot store NUL; a replacement per character keeps every later offset where it was."""
    text = "Al\x00ce met Bob in Paris."
    tasks, summary = read_export([task(completion(item(0, 5, text="Al\x00ce"), item(10, 13), created_username="a\x00na"), text=text)])
    [record] = tasks
    assert record.text == "Al\ufffdce met Bob in Paris." and len(record.text) == len(text)
    assert record.completions[0].spans == (Span(0, 5, "PER"), Span(10, 13, "PER"))
    assert record.completions[0].annotator == "a\ufffdna"
    assert summary.as_dict()["repaired"] == {"NUL characters replaced": 2}


def test_ids_too_long_for_the_stores_indexes_are_skipped_and_counted() -> None:
    tasks, summary = read_export([task(id="t" * 501), task(completion(id="c" * 501), id=2), task(id="t" * 500)])
    assert [(record.source_id, len(record.completions)) for record in tasks] == [("2", 0), ("t" * 500, 0)]
    assert summary.as_dict()["skipped"] == {"id too long": 2}
