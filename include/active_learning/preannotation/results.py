"""Predicted spans as result items, the schema Annotation Lab and Label Studio share for completions,
annotations and predictions: ``{id, from_name, to_name, type: "labels", value: {start, end, text, labels}}``.

Only labels the config ties to the model get items: a label tied to a pretrained model is that model's
to predict, not ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from active_learning.exports import Span
from active_learning.labeling_config import list_labels


@dataclass(frozen=True)
class LabelTarget:
    from_name: str  # the <Labels> element's name
    to_name: str  # the <Text> it labels


def targets_of(xml: str, model_name: str) -> dict[str, LabelTarget]:
    """Label value -> where its result items go, for every NER label the config ties to ``model_name``."""
    return {
        label.value: LabelTarget(label.labels_name, label.to_name)
        for label in list_labels(xml)
        if label.model == model_name and not label.assertion
    }


def result_items(task_id: str, text: str, spans: Iterable[Span], targets: Mapping[str, LabelTarget]) -> list[dict[str, Any]]:
    items = []
    for span in spans:
        target = targets.get(span.label)
        if target is None:
            continue
        items.append({
            "id": _item_id(task_id, span),
            "from_name": target.from_name,
            "to_name": target.to_name,
            "type": "labels",
            "value": {"start": span.start, "end": span.end, "text": text[span.start : span.end], "labels": [span.label]},
        })
    return items


def _item_id(task_id: str, span: Span) -> str:
    """Stable per task and span: the same prediction written twice is the same item."""
    return hashlib.sha256(f"{task_id}\0{span.start}\0{span.end}\0{span.label}".encode()).hexdigest()[:10]
