"""From training examples to spaCy corpora: entities on token boundaries, a stable train/dev split, a digest.

spaCy is imported inside the functions that need it, so importing this module for its dataclasses stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from active_learning.exports import Span, content_bounds
from active_learning.selection import TrainingExample

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.tokens import Doc
    from spacy.tokens import Span as TokenSpan


@dataclass
class ConversionReport:
    """What :func:`to_docs` made of the examples: entities kept per label, spans snapped or dropped and why."""

    examples: int = 0
    entities: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "entities": self.entities,
            "skipped": {reason: n for reason, n in sorted(self.skipped.items()) if n},
            "labels": dict(sorted(self.labels.items())),
        }


def is_dev(task_id: str, dev_percent: int = 20) -> bool:
    """Whether a task belongs to the dev set: decided by its id's hash alone, so a task never changes sides."""
    if not 0 <= dev_percent <= 100:
        raise ValueError(f"dev_percent must be between 0 and 100, not {dev_percent}")
    return _task_hash(task_id) % 100 < dev_percent


def split_examples(
    examples: Iterable[TrainingExample], dev_percent: int = 20
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(train, dev), each sorted by task id; neither is left empty when there are two examples.

    dev - the fixed evaluation set - is the tasks tagged as test when the project has any, else the
    tasks :func:`is_dev` picks by hash. spaCy needs both corpora, so with at least two examples an
    empty side receives the example with the smallest hash from the other side.
    """
    examples = sorted(examples, key=lambda e: e.task_id)
    tagged = has_test_tags(examples)
    train: list[TrainingExample] = []
    dev: list[TrainingExample] = []
    for example in examples:
        (dev if (example.test if tagged else is_dev(example.task_id, dev_percent)) else train).append(example)
    if len(train) + len(dev) >= 2:
        if not dev:
            _move_smallest_hash(train, dev)
        elif not train:
            _move_smallest_hash(dev, train)
    return train, dev


def has_test_tags(examples: Iterable[TrainingExample]) -> bool:
    """Whether the tasks tagged Test are the evaluation set (:func:`split_examples`)."""
    return any(example.test for example in examples)


def evaluation_set_origin(examples: Iterable[TrainingExample], dev_percent: int) -> str:
    """How :func:`split_examples` chose the evaluation set, as a person reads it in the MLflow run."""
    return "tasks tagged Test" if has_test_tags(examples) else f"{dev_percent} % of tasks, by task id hash"


def to_docs(nlp: Language, examples: Iterable[TrainingExample]) -> tuple[list[Doc], ConversionReport]:
    """Tokenize each example and set its entities, snapping misaligned spans and dropping overlaps.

    Whitespace at a span's ends is trimmed; a span that then cuts a token grows to the whole
    tokens its characters touch. Of overlapping spans the longer is kept, then the earlier
    (``spacy.util.filter_spans``).
    """
    from spacy.util import filter_spans

    report = ConversionReport()
    docs = []
    for example in examples:
        if not example.text.strip():
            report.skipped["empty text"] += 1
            continue
        doc = nlp.make_doc(example.text)
        spans = _token_spans(doc, example.spans, report)
        entities = filter_spans(spans)
        report.skipped["overlapping span dropped"] += len(spans) - len(entities)
        doc.ents = entities
        report.labels.update(entity.label_ for entity in entities)
        docs.append(doc)
    report.examples = len(docs)
    report.entities = sum(report.labels.values())
    return docs, report


def write_docbin(docs: Iterable[Doc], path: Path) -> Path:
    """Write a ``.spacy`` corpus. It appears complete or not at all: a retried task never reads half of one."""
    from spacy.tokens import DocBin

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    DocBin(docs=docs, store_user_data=False).to_disk(partial)
    os.replace(partial, path)
    return path


def dataset_digest(examples: Iterable[TrainingExample]) -> str:
    """sha256 of the task ids, texts and spans, independent of the order of examples and of spans."""
    lines = sorted(
        json.dumps(
            [example.task_id, example.text, sorted([s.start, s.end, s.label] for s in example.spans)]
            + (["test"] if example.test else []),
            ensure_ascii=False,
        )
        for example in examples
    )
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _task_hash(task_id: str) -> int:
    return int.from_bytes(hashlib.sha256(task_id.encode("utf-8")).digest()[:8], "big")


def _move_smallest_hash(source: list[TrainingExample], target: list[TrainingExample]) -> None:
    moved = min(source, key=lambda e: (_task_hash(e.task_id), e.task_id))
    source.remove(moved)
    target.append(moved)
    target.sort(key=lambda e: e.task_id)


def _token_spans(doc: Doc, spans: Sequence[Span], report: ConversionReport) -> list[TokenSpan]:
    kept: dict[tuple[int, int, str], TokenSpan] = {}
    for span in spans:
        token_span = _token_span(doc, span, report)
        if token_span is None:
            continue
        key = (token_span.start, token_span.end, token_span.label_)
        if key in kept:
            report.skipped["duplicate span merged"] += 1
        else:
            kept[key] = token_span
    return list(kept.values())


def _token_span(doc: Doc, span: Span, report: ConversionReport) -> TokenSpan | None:
    if not 0 <= span.start < span.end <= len(doc.text):
        report.skipped["span out of range"] += 1
        return None
    content = content_bounds(doc.text, span.start, span.end)
    if content is None:
        report.skipped["whitespace-only span"] += 1
        return None
    if content != (span.start, span.end):
        report.skipped["whitespace trimmed"] += 1
    start, end = content
    exact = doc.char_span(start, end, label=span.label)
    if exact is not None:
        return exact
    # Expanding from non-whitespace ends keeps every token the annotator touched and never puts
    # a whitespace token at an entity's edge, which spaCy's NER cannot learn.
    snapped = doc.char_span(start, end, label=span.label, alignment_mode="expand")
    report.skipped["misaligned span snapped" if snapped else "misaligned span skipped"] += 1
    return snapped or None


def read_docs(nlp: Any, path: Path) -> list[Any]:
    from spacy.tokens import DocBin

    return list(DocBin().from_disk(path).get_docs(nlp.vocab))
