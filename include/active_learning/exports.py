"""Read Annotation Lab and Label Studio JSON exports into plain, validated records.

Both tools share one task schema: ``{"id", "data": {...}, "completions" | "annotations": [...]}``
with result items ``{"type": "labels", "value": {"start", "end", "text", "labels"}}``.
Nothing here trusts the export: a bad item is skipped and counted in the :class:`ImportSummary`,
the rest of the export is kept, and a span is never kept at offsets that disagree with its text.
Overlapping spans are kept as they are; :mod:`active_learning.training.dataset` resolves them.
NUL characters, which PostgreSQL cannot store, are replaced and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

NER_RESULT_TYPE = "labels"
COMPLETION_KEYS = ("completions", "annotations")  # Annotation Lab, Label Studio >= 1.0
#: How far (in characters) from its offsets a span's value.text may be found for the span to be moved there.
REPAIR_WINDOW = 3
#: One for one, so that span offsets still point at the same characters.
NUL, NUL_REPLACEMENT = "\x00", "\ufffd"
#: The store's unique indexes on ids are bounded on PostgreSQL (about 2,700 bytes): longer ids are skipped.
MAX_ID_LENGTH = 500

_REVIEW_DECISIONS = {"accepted": "accepted", "approved": "accepted", "rejected": "rejected"}


@dataclass(frozen=True)
class Span:
    """An entity: code-point offsets into the task text and one label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class CompletionRecord:
    source_id: str
    annotator: str
    created_at: datetime | None
    submitted_at: datetime | None  # None: a draft, never trained on
    ground_truth: bool
    review_status: str | None  # "accepted" | "rejected" | None
    cancelled: bool
    spans: tuple[Span, ...]
    skipped_spans: int


@dataclass(frozen=True)
class TaskRecord:
    source_id: str
    text: str
    title: str | None
    completions: tuple[CompletionRecord, ...]
    test: bool = False  # tagged "test" (Annotation Lab task tags): part of the fixed evaluation set


@dataclass
class ImportSummary:
    """What an import kept, and what it skipped or repaired and why (reason -> count)."""

    tasks: int = 0
    completions: int = 0
    spans: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    unknown_labels: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "completions": self.completions,
            "spans": self.spans,
            "skipped": _plain(self.skipped),
            "repaired": _plain(self.repaired),
            "unknown_labels": _plain(self.unknown_labels),
        }


def read_export(
    source: str | Path | bytes | list[Any] | dict[str, Any] | Iterator[Any],
    *,
    text_key: str | None = None,
    allowed_labels: Collection[str] | None = None,
    ner_from_names: Collection[str] | None = None,
) -> tuple[list[TaskRecord], ImportSummary]:
    """Read an export: a path (``str`` or ``Path``), the JSON as bytes, the already parsed JSON, or an
    iterator of parsed tasks (a streamed export, e.g. Label Studio's: read one task at a time).

    ``text_key`` names the data field holding the text (the ``$name`` of the config's ``<Text>``);
    without it the text is ``data.text``, else the only string in ``data``.  ``allowed_labels``
    (the config's labels) and ``ner_from_names`` (the names of its ``<Labels>`` controls) restrict
    what counts as an entity when given.  Raises ``ValueError`` when the top level is not a task list.
    """
    reader = _ExportReader(
        text_key=text_key.removeprefix("$") if text_key else None,
        allowed_labels=None if allowed_labels is None else frozenset(allowed_labels),
        ner_from_names=None if ner_from_names is None else frozenset(ner_from_names),
    )
    tasks = source if isinstance(source, Iterator) else _task_list(_load(source))
    return reader.read_tasks(tasks), reader.summary


class _Skipped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Text:
    value: str

    @cached_property
    def code_point_at_utf16(self) -> dict[int, int]:
        """UTF-16 offset -> code-point offset, for texts where the two differ (characters beyond the BMP).

        Browser UIs count offsets in UTF-16 code units, so an emoji moves every later offset by one.
        """
        if len(self.value.encode("utf-16-le")) == 2 * len(self.value):
            return {}
        mapping, utf16 = {}, 0
        for code_point, char in enumerate(self.value):
            mapping[utf16] = code_point
            utf16 += 2 if ord(char) > 0xFFFF else 1
        mapping[utf16] = len(self.value)
        return mapping


def _tagged_test(tags: Any) -> bool:
    """Annotation Lab tags tasks "Test" (held out for evaluation) or "Train"; any case, a list of names."""
    return isinstance(tags, list) and any(isinstance(tag, str) and tag.strip().lower() == "test" for tag in tags)


@dataclass
class _ExportReader:
    text_key: str | None
    allowed_labels: frozenset[str] | None
    ner_from_names: frozenset[str] | None
    summary: ImportSummary = field(default_factory=ImportSummary)

    def read_tasks(self, raw_tasks: Iterable[Any]) -> list[TaskRecord]:
        tasks: list[TaskRecord] = []
        seen_ids: set[str] = set()
        for raw in raw_tasks:
            try:
                task = self._task(raw, seen_ids)
            except _Skipped as skip:
                self.summary.skipped[skip.reason] += 1
                continue
            seen_ids.add(task.source_id)
            tasks.append(task)
            self.summary.tasks += 1
        return tasks

    def _task(self, raw: Any, seen_ids: set[str]) -> TaskRecord:
        data = _required(raw, "data", Mapping)
        text = self._task_text(data)
        # Label Studio import files may have no ids: the text then identifies the task.
        task_id = self._without_nul(_external_id(raw["id"])) if raw.get("id") is not None else _stable_hash(["task", text])
        if task_id in seen_ids:
            raise _Skipped("duplicate task id")
        title = data.get("title")
        return TaskRecord(
            source_id=task_id,
            text=text,
            title=self._without_nul(title) if isinstance(title, str) else None,
            completions=self._completions(raw, task_id, _Text(text)),
            test=_tagged_test(raw.get("tags")),
        )

    def _task_text(self, data: Mapping[str, Any]) -> str:
        if self.text_key is not None:
            value = data.get(self.text_key)
        elif "text" in data:
            value = data["text"]
        else:
            strings = [v for v in data.values() if isinstance(v, str)]
            value = strings[0] if len(strings) == 1 else None
        if not isinstance(value, str) or not value.strip():
            raise _Skipped("task without text")
        return self._without_nul(value)

    def _without_nul(self, value: str) -> str:
        if NUL not in value:
            return value
        self.summary.repaired["NUL characters replaced"] += value.count(NUL)
        return value.replace(NUL, NUL_REPLACEMENT)

    def _completions(self, raw_task: Mapping[str, Any], task_id: str, text: _Text) -> tuple[CompletionRecord, ...]:
        predictions = raw_task.get("predictions")
        if isinstance(predictions, list) and predictions:
            self.summary.skipped["prediction ignored"] += len(predictions)
        completions: dict[str, CompletionRecord] = {}
        for index, raw in enumerate(self._raw_completions(raw_task)):
            try:
                source_id = self._without_nul(_completion_id(raw, task_id, index))
                if source_id in completions:
                    raise _Skipped("duplicate completion id")
                completion = self._completion(raw, source_id, text)
            except _Skipped as skip:
                self.summary.skipped[skip.reason] += 1
                continue
            completions[source_id] = completion
            self.summary.completions += 1
            self.summary.spans += len(completion.spans)
        return tuple(completions.values())

    def _raw_completions(self, raw_task: Mapping[str, Any]) -> list[Any]:
        found: list[Any] = []
        for key in COMPLETION_KEYS:
            value = raw_task.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                found.extend(value)
            else:
                self.summary.skipped["wrong type"] += 1
        return found

    def _completion(self, raw: Mapping[str, Any], source_id: str, text: _Text) -> CompletionRecord:
        result = _required(raw, "result", list)
        spans, skipped_spans = self._spans(result, text)
        created_at = self._first_time(raw, ("created_at", "created_ago"))
        return CompletionRecord(
            source_id=source_id,
            annotator=self._without_nul(_annotator(raw)),
            created_at=created_at,
            submitted_at=self._first_time(raw, ("submitted_at", "updated_at")) or created_at,
            ground_truth=raw.get("honeypot") is True or raw.get("ground_truth") is True,
            review_status=_review_status(raw),
            cancelled=raw.get("was_cancelled") is True,
            spans=spans,
            skipped_spans=skipped_spans,
        )

    def _first_time(self, raw: Mapping[str, Any], keys: Sequence[str]) -> datetime | None:
        for key in keys:
            value = raw.get(key)
            if value is None:
                continue
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
            self.summary.skipped["unparseable timestamp"] += 1
        return None

    def _spans(self, result: list[Any], text: _Text) -> tuple[tuple[Span, ...], int]:
        spans: dict[Span, None] = {}  # a dict keeps the first of duplicates, in order
        skipped = 0
        for item in result:
            if isinstance(item, Mapping) and not self._is_ner(item):
                self.summary.skipped["non-NER result item"] += 1
                continue
            try:
                span = self._span(item, text)
            except _Skipped as skip:
                self.summary.skipped[skip.reason] += 1
                skipped += 1
                continue
            if span in spans:
                self.summary.skipped["duplicate span"] += 1
            else:
                spans[span] = None
        return tuple(spans), skipped

    def _is_ner(self, item: Mapping[str, Any]) -> bool:
        return item.get("type") == NER_RESULT_TYPE and (
            self.ner_from_names is None or item.get("from_name") in self.ner_from_names
        )

    def _span(self, item: Any, text: _Text) -> Span:
        value = _required(item, "value", Mapping)
        label = self._label(value)
        start, end = self._offsets(value, text)
        start, end = self._trimmed(text.value, start, end)
        return Span(start, end, label)

    def _label(self, value: Mapping[str, Any]) -> str:
        labels = _required(value, "labels", list)
        if not all(isinstance(label, str) for label in labels):
            raise _Skipped("wrong type")
        labels = list(dict.fromkeys(self._without_nul(label) for label in labels))
        if not labels:
            raise _Skipped("span without label")
        known = labels if self.allowed_labels is None else [x for x in labels if x in self.allowed_labels]
        if not known:
            self.summary.unknown_labels.update(labels)
            raise _Skipped("label not in config")
        if len(labels) > 1:
            self.summary.skipped["extra label on span"] += len(labels) - 1
        return known[0]

    def _offsets(self, value: Mapping[str, Any], text: _Text) -> tuple[int, int]:
        start, end = _required(value, "start", int), _required(value, "end", int)
        if start < 0 or end < 0:
            raise _Skipped("span out of range")
        if start > end:
            raise _Skipped("reversed offsets")
        if start == end:
            raise _Skipped("empty span")
        expected = value.get("text")
        if expected is None:
            if end > len(text.value):
                raise _Skipped("span out of range")
            return start, end
        if not isinstance(expected, str):
            raise _Skipped("wrong type")
        return self._aligned(text, start, end, expected.replace(NUL, NUL_REPLACEMENT))  # as in the text

    def _aligned(self, text: _Text, start: int, end: int, expected: str) -> tuple[int, int]:
        """Offsets whose text is ``expected``: as given, read as UTF-16, or moved to the one clear occurrence."""
        if end <= len(text.value) and text.value[start:end] == expected:
            return start, end
        utf16 = text.code_point_at_utf16
        if start in utf16 and end in utf16 and text.value[utf16[start] : utf16[end]] == expected:
            self.summary.repaired["UTF-16 offsets converted"] += 1
            return utf16[start], utf16[end]
        if end > len(text.value):
            raise _Skipped("span out of range")
        found = _unambiguous_occurrence(text.value, expected, near=start)
        if found is None:
            raise _Skipped("offsets disagree with value.text")
        self.summary.repaired["offsets repaired"] += 1
        return found, found + len(expected)

    def _trimmed(self, text: str, start: int, end: int) -> tuple[int, int]:
        content = content_bounds(text, start, end)
        if content is None:
            raise _Skipped("whitespace-only span")
        if content != (start, end):
            self.summary.repaired["whitespace trimmed"] += 1
        return content


def content_bounds(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``text[start:end]`` without leading and trailing whitespace, as offsets; None if only whitespace is left."""
    covered = text[start:end]
    if not covered.strip():
        return None
    return start + len(covered) - len(covered.lstrip()), end - (len(covered) - len(covered.rstrip()))


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string as an aware UTC datetime (no zone means UTC); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _load(source: str | Path | bytes | list[Any] | dict[str, Any]) -> Any:
    if isinstance(source, list | dict):
        return source
    if isinstance(source, bytes):
        origin, raw = "the export", source
    elif isinstance(source, str | Path):
        origin, raw = str(source), Path(source).read_bytes()
    else:
        raise TypeError(f"cannot read an export from {type(source).__name__}: pass a path, bytes or parsed JSON")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{origin} is not valid JSON: {error}") from error


def _task_list(document: Any) -> list[Any]:
    if isinstance(document, dict) and "tasks" in document:
        document = document["tasks"]
    if not isinstance(document, list):
        raise ValueError(
            "an export must be a JSON list of tasks or an object with a 'tasks' list, "
            f"not {type(document).__name__}"
        )
    return document


def _required(container: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(container, Mapping):
        raise _Skipped("wrong type")
    value = container.get(key)
    if value is None:
        raise _Skipped("missing key")
    if not isinstance(value, kind) or isinstance(value, bool):  # bool is an int, never an offset
        raise _Skipped("wrong type")
    return value


def _external_id(value: Any) -> str:
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text:
        raise _Skipped("wrong type")
    if len(text) > MAX_ID_LENGTH:
        raise _Skipped("id too long")
    return text


def _completion_id(raw: Any, task_id: str, index: int) -> str:
    if not isinstance(raw, Mapping):
        raise _Skipped("wrong type")
    if raw.get("id") is not None:
        return _external_id(raw["id"])
    return _stable_hash(["completion", task_id, index, raw])


def _stable_hash(parts: list[Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _unambiguous_occurrence(text: str, needle: str, *, near: int) -> int | None:
    """The only occurrence of ``needle``, else the single nearest one within REPAIR_WINDOW of ``near``."""
    positions = list(_occurrences(text, needle))
    if len(positions) == 1:
        return positions[0]
    close = [p for p in positions if abs(p - near) <= REPAIR_WINDOW]
    if not close:
        return None
    nearest = min(abs(p - near) for p in close)
    tied = [p for p in close if abs(p - near) == nearest]
    return tied[0] if len(tied) == 1 else None


def _occurrences(text: str, needle: str) -> Iterable[int]:
    if not needle:
        return
    position = text.find(needle)
    while position != -1:
        yield position
        position = text.find(needle, position + 1)


def _annotator(raw: Mapping[str, Any]) -> str:
    name = raw.get("created_username")
    if isinstance(name, str) and name.strip():
        return name.strip()
    author = raw.get("completed_by")
    if isinstance(author, Mapping):
        author = author.get("email") or author.get("id")
    if isinstance(author, int | str) and not isinstance(author, bool) and str(author).strip():
        return str(author).strip()
    return "unknown"


def _review_status(raw: Mapping[str, Any]) -> str | None:
    """``review_status`` as a word or an object with an approved/accepted flag, else the latest of ``reviews``."""
    status = raw.get("review_status")
    reviews = raw.get("reviews")
    if status is None and isinstance(reviews, list) and reviews:
        status = reviews[-1]
    if isinstance(status, str):
        return _REVIEW_DECISIONS.get(status.strip().lower())
    if isinstance(status, Mapping):
        for flag in ("accepted", "approved"):
            if isinstance(status.get(flag), bool):
                return "accepted" if status[flag] else "rejected"
    return None


def _plain(counter: Counter[str]) -> dict[str, int]:
    return {key: count for key, count in sorted(counter.items()) if count}
