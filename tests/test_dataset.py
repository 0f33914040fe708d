import random
import subprocess
import sys
from collections import Counter

import pytest
import spacy
from spacy.tokens import DocBin

from active_learning.training.dataset import (
    ConversionReport,
    dataset_digest,
    evaluation_set_origin,
    is_dev,
    split_examples,
    to_docs,
    write_docbin,
)
from active_learning.exports import Span
from active_learning.selection import TrainingExample


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def example(task_id="1", text="Alice moved to New York City last May.", *spans):
    return TrainingExample(task_id=task_id, text=text, spans=tuple(spans))


def entities(doc):
    return [(e.text, e.label_) for e in doc.ents]


# -- to_docs ----------------------------------------------------------------------------------------


def test_aligned_spans_become_entities(nlp):
    text = "Alice moved to New York City last May."
    docs, report = to_docs(nlp, [example("1", text, Span(0, 5, "PER"), Span(15, 28, "LOC"))])
    assert entities(docs[0]) == [("Alice", "PER"), ("New York City", "LOC")]
    assert (report.examples, report.entities) == (1, 2)
    assert report.labels == Counter({"PER": 1, "LOC": 1})
    assert report.skipped == Counter()


def test_a_span_that_cuts_a_token_is_snapped_to_the_token(nlp):
    text = "Alice moved to New York City last May."
    spans = (Span(1, 5, "PER"), Span(16, 25, "LOC"), Span(28, 36, "DATE"))  # "lice", "ew York C", " last Ma"
    docs, report = to_docs(nlp, [example("1", text, *spans)])
    assert entities(docs[0]) == [("Alice", "PER"), ("New York City", "LOC"), ("last May", "DATE")]
    assert report.skipped == Counter({"misaligned span snapped": 3, "whitespace trimmed": 1})


def test_no_entity_starts_or_ends_with_whitespace(nlp):
    text = "Ask Bob  Smith  today"  # double spaces become whitespace tokens
    assert [t.text for t in nlp.make_doc(text)] == ["Ask", "Bob", " ", "Smith", " ", "today"]
    docs, report = to_docs(nlp, [example("1", text, Span(7, 16, "PER")), example("2", text, Span(4, 15, "PER"))])
    assert [entities(doc) for doc in docs] == [[("Smith", "PER")], [("Bob  Smith", "PER")]]
    assert report.skipped == Counter({"whitespace trimmed": 2})


def test_a_whitespace_only_span_is_skipped(nlp):
    docs, report = to_docs(nlp, [example("1", "Alice  moved", Span(5, 7, "PER"), Span(0, 5, "PER"))])
    assert entities(docs[0]) == [("Alice", "PER")]
    assert report.skipped == Counter({"whitespace-only span": 1})


def test_overlapping_and_nested_spans_keep_the_longer_then_the_earlier(nlp):
    text = "Alice moved to New York City last May."
    spans = (
        Span(19, 23, "LOC"),  # "York", nested in the city
        Span(15, 28, "LOC"),  # "New York City"
        Span(15, 23, "GPE"),  # "New York", nested too
        Span(0, 5, "PER"),
        Span(0, 5, "PROBLEM"),  # the same tokens as an earlier span: the earlier wins
        Span(29, 38, "DATE"),  # "last May."
        Span(34, 37, "DATE"),
    )
    docs, report = to_docs(nlp, [example("1", text, *spans)])
    assert entities(docs[0]) == [("Alice", "PER"), ("New York City", "LOC"), ("last May.", "DATE")]
    assert report.skipped == Counter({"overlapping span dropped": 4})
    assert report.labels == Counter({"PER": 1, "LOC": 1, "DATE": 1})


def test_spans_that_snap_onto_the_same_tokens_are_merged(nlp):
    docs, report = to_docs(nlp, [example("1", "Alice moved.", Span(0, 5, "PER"), Span(1, 4, "PER"))])
    assert entities(docs[0]) == [("Alice", "PER")]
    assert report.skipped == Counter({"misaligned span snapped": 1, "duplicate span merged": 1})


def test_empty_texts_and_out_of_range_spans_are_skipped(nlp):
    examples = [example("1", "  "), example("2", "", Span(0, 1, "X")), example("3", "Bob", Span(0, 9, "PER"))]
    docs, report = to_docs(nlp, examples)
    assert len(docs) == 1 and docs[0].ents == ()
    assert report.skipped == Counter({"empty text": 2, "span out of range": 1})
    assert report.as_dict() == {
        "examples": 1,
        "entities": 0,
        "skipped": {"empty text": 2, "span out of range": 1},
        "labels": {},
    }


def test_docbin_round_trip(nlp, tmp_path):
    docs, _ = to_docs(nlp, [example("1", "Alice moved to Paris.", Span(0, 5, "PER"), Span(15, 20, "LOC"))])
    path = write_docbin(docs, tmp_path / "corpus" / "train.spacy")
    assert path == tmp_path / "corpus" / "train.spacy"
    assert [p.name for p in path.parent.iterdir()] == ["train.spacy"]
    (doc,) = DocBin().from_disk(path).get_docs(nlp.vocab)
    assert entities(doc) == [("Alice", "PER"), ("Paris", "LOC")]


def test_importing_the_module_does_not_import_spacy():
    code = "import sys, active_learning.training.dataset; print('spacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- split ------------------------------------------------------------------------------------------


def test_is_dev_is_a_stable_hash_of_the_task_id():
    assert [is_dev(str(i)) for i in range(12)] == [is_dev(str(i)) for i in range(12)]
    assert is_dev("task-1", 100) and not is_dev("task-1", 0)
    share = sum(is_dev(f"task-{i}") for i in range(5000)) / 5000
    assert 0.18 < share < 0.22


def test_a_task_never_leaves_dev_when_the_dev_share_grows():
    ids = [f"t{i}" for i in range(500)]
    for smaller, larger in [(10, 20), (20, 30)]:
        assert {i for i in ids if is_dev(i, smaller)} <= {i for i in ids if is_dev(i, larger)}


@pytest.mark.parametrize("percent", [-1, 101])
def test_dev_percent_out_of_range_is_refused(percent):
    with pytest.raises(ValueError):
        is_dev("1", percent)


def test_split_is_deterministic_and_independent_of_order():
    examples = [example(f"task-{i}", f"text {i}") for i in range(200)]
    train, dev = split_examples(examples)
    shuffled = examples[:]
    random.Random(7).shuffle(shuffled)
    assert split_examples(shuffled) == (train, dev)
    assert len(train) + len(dev) == 200 and 20 < len(dev) < 60
    assert all(is_dev(e.task_id) for e in dev) and not any(is_dev(e.task_id) for e in train)
    assert [e.task_id for e in train] == sorted(e.task_id for e in train)


def test_a_small_split_never_leaves_a_side_empty():
    examples = [example(f"task-{i}") for i in range(3)]
    for percent in (0, 100):
        train, dev = split_examples(examples, percent)
        assert len(train) >= 1 and len(dev) >= 1 and len(train) + len(dev) == 3
    assert split_examples(examples[:1], 0) == (examples[:1], [])
    assert split_examples([], 20) == ([], [])


def test_the_example_moved_to_an_empty_dev_is_always_the_same():
    examples = [example(f"task-{i}") for i in range(5)]
    _, dev = split_examples(examples, 0)
    _, dev_again = split_examples(list(reversed(examples)), 0)
    assert dev == dev_again and len(dev) == 1


# -- digest -----------------------------------------------------------------------------------------


def test_digest_ignores_order_but_not_content():
    a = example("1", "Alice met Bob.", Span(0, 5, "PER"), Span(10, 13, "PER"))
    b = example("2", "Paris.", Span(0, 5, "LOC"))
    digest = dataset_digest([a, b])
    assert len(digest) == 64
    assert dataset_digest([b, a]) == digest
    assert dataset_digest([b, example("1", a.text, *reversed(a.spans))]) == digest
    assert dataset_digest([a, example("2", "Paris.", Span(0, 5, "GPE"))]) != digest
    assert dataset_digest([a, example("3", "Paris.", Span(0, 5, "LOC"))]) != digest
    assert dataset_digest([a]) != digest


def test_conversion_report_starts_empty():
    assert ConversionReport().as_dict() == {"examples": 0, "entities": 0, "skipped": {}, "labels": {}}


def test_tasks_tagged_test_are_the_evaluation_set_whatever_their_hash() -> None:
    examples = [TrainingExample(task_id=f"t{i}", text="Ann", spans=(), test=i < 3) for i in range(40)]
    train, dev = split_examples(examples)
    assert [e.task_id for e in dev] == ["t0", "t1", "t2"]
    assert len(train) == 37
    untagged = [TrainingExample(task_id=e.task_id, text=e.text, spans=()) for e in examples]
    assert {e.task_id for e in split_examples(untagged)[1]} == {e.task_id for e in untagged if is_dev(e.task_id)}
    assert dataset_digest(examples) != dataset_digest(untagged)  # a re-tag is a new dataset
    assert evaluation_set_origin(examples, 20) == "tasks tagged Test"
    assert evaluation_set_origin(untagged, 15) == "15 % of tasks, by task id hash"
