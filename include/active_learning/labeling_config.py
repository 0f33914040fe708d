"""Read, check and update Label Studio / Annotation Lab labeling configs (XML).

A ``<Label value="PER" model="..."/>`` inside ``<Labels name=... toName=...>`` may name the model that
pre-annotates that label: either a pretrained model (listed in ``include/configs/pretrained_models.yaml``)
or a model this project trained and registered in MLflow.

Configs come from users, so parsing is defensive: no DTDs or entities, no file or network access,
and limits on size and nesting depth.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from typing import Any
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import yaml
from lxml import etree

MAX_CONFIG_BYTES = 1_000_000
MAX_DEPTH = 64

DEFAULT_PRETRAINED_MODELS_PATH = Path(__file__).resolve().parents[1] / "configs" / "pretrained_models.yaml"

_MAX_SUGGESTIONS = 3
_SUGGESTION_CUTOFF = 0.5

# Whatever may precede a DOCTYPE: whitespace, the XML declaration, processing instructions, comments.
_PROLOG_ITEM = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
# libxml2 appends the position to its messages; we report the line separately.
_LIBXML_POSITION = re.compile(r", line \d+, column (\d+)$")
# Markup of a well-formed document without DOCTYPE, in document order; only start tags are named.
_MARKUP = re.compile(
    r"""<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|</[^>]*>|(?P<start_tag><(?:[^>"']|"[^"]*"|'[^']*')*>)""",
    re.DOTALL,
)
_TAG_NAME = re.compile(r"<[^\s/>]+")
_ATTRIBUTE = re.compile(r"""(?P<name>[^\s=/>]+)\s*=\s*(?P<quote>["'])(?P<value>.*?)(?P=quote)""", re.DOTALL)


class LabelingConfigError(ValueError):
    """The XML cannot be used at all (malformed, DTD/entities, too big, too deep, not UTF-8...)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = " ".join(reason.split())
        self.line = line
        super().__init__(f"line {line}: {self.reason}" if line else self.reason)


@dataclass(frozen=True)
class LabelSpec:
    """One ``<Label>`` of a ``<Labels>`` element."""

    value: str
    model: str | None
    labels_name: str
    line: int | None
    assertion: bool = False  # Annotation Lab assertion label (assertion="true"): a status of an entity, not NER
    to_name: str = ""  # the <Text> the <Labels> point at (its first toName): a result item's to_name


@dataclass(frozen=True)
class ConfigProblem:
    """Something a person must fix in a config that otherwise parses."""

    message: str
    label: str | None = None
    model: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


# --- parsing -------------------------------------------------------------------------------------


def parse_config(xml: str | bytes) -> etree._ElementTree:
    """Parse a labeling config safely; raise LabelingConfigError if it cannot be used."""
    return _parse(xml)[1]


def _parse(xml: str | bytes) -> tuple[str, etree._ElementTree]:
    text, data = _read_input(xml)
    _reject_doctype(text)
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError as error:
        raise _syntax_error(error) from None
    tree = root.getroottree()
    _reject_dtd_remnants(tree)
    _check_depth(root)
    return text, tree


def _read_input(xml: str | bytes) -> tuple[str, bytes]:
    """Return the config as text and as UTF-8 bytes, enforcing size, encoding and non-emptiness."""
    if isinstance(xml, str):
        _check_size(len(xml))  # cheap lower bound before encoding a huge string
        try:
            data = xml.encode("utf-8")
        except UnicodeEncodeError as error:
            raise LabelingConfigError(
                f"the labeling config contains a character that cannot be encoded as UTF-8 at position {error.start}"
            ) from None
        _check_size(len(data))
        text = xml
    elif isinstance(xml, (bytes, bytearray)):
        data = bytes(xml)
        _check_size(len(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise LabelingConfigError(
                f"the labeling config is not valid UTF-8: invalid byte at offset {error.start}",
                line=data.count(b"\n", 0, error.start) + 1,
            ) from None
    else:
        raise TypeError(f"a labeling config must be str or bytes, not {type(xml).__name__}")
    if not text.strip():
        raise LabelingConfigError("the labeling config is empty")
    return text, data


def _check_size(size: int) -> None:
    if size > MAX_CONFIG_BYTES:
        raise LabelingConfigError(
            f"the labeling config is larger than {MAX_CONFIG_BYTES:,} bytes; "
            "a labeling config should be a few kilobytes"
        )


def _reject_doctype(text: str) -> None:
    """Refuse a DOCTYPE before libxml2 sees it, so entity bombs never reach the parser."""
    position = 1 if text.startswith("\ufeff") else 0
    while item := _PROLOG_ITEM.match(text, position):
        position = item.end()
    if text.startswith("<!DOCTYPE", position):
        raise _dtd_error(text.count("\n", 0, position) + 1)


def _dtd_error(line: int | None) -> LabelingConfigError:
    return LabelingConfigError("DTDs and entity declarations are not allowed in a labeling config", line=line)


def _safe_parser() -> etree.XMLParser:
    # encoding="utf-8" overrides any encoding in the XML declaration: the bytes are always UTF-8 here.
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _syntax_error(error: etree.XMLSyntaxError) -> LabelingConfigError:
    reason = error.msg or str(error)
    if error.code == etree.ErrorTypes.ERR_RESOURCE_LIMIT and "depth" in reason.lower():
        return _too_deep(error.lineno)
    if position := _LIBXML_POSITION.search(reason):
        reason = f"{reason[: position.start()]} (column {position.group(1)})"
    return LabelingConfigError(f"the labeling config is not well-formed XML: {reason}", line=error.lineno)


def _reject_dtd_remnants(tree: etree._ElementTree) -> None:
    """Second line of defence behind _reject_doctype: nothing DTD-like may survive parsing."""
    docinfo = tree.docinfo
    if docinfo.internalDTD is not None or docinfo.doctype or docinfo.system_url or docinfo.public_id:
        raise _dtd_error(None)
    entity = next(tree.getroot().iter(etree.Entity), None)
    if entity is not None:
        raise _dtd_error(entity.sourceline)


def _check_depth(root: etree._Element) -> None:
    depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > MAX_DEPTH:
            raise _too_deep(element.sourceline)


def _too_deep(line: int | None) -> LabelingConfigError:
    return LabelingConfigError(f"elements are nested more than {MAX_DEPTH} levels deep", line=line)


# --- labels and structure ------------------------------------------------------------------------


def list_labels(xml: str | bytes) -> list[LabelSpec]:
    """Every ``<Label>`` inside a ``<Labels>`` (NER labels), in document order."""
    return _label_specs(parse_config(xml))


def _label_elements(tree: etree._ElementTree) -> Iterator[tuple[etree._Element, etree._Element]]:
    """Yield (label, enclosing <Labels>) pairs; <Choice>, <Relation> and stray <Label>s are not NER labels."""
    for label in tree.getroot().iter("Label"):
        labels = next(label.iterancestors("Labels"), None)
        if labels is not None:
            yield label, labels


def _label_specs(tree: etree._ElementTree) -> list[LabelSpec]:
    return [
        LabelSpec(
            value=label.get("value", ""),
            model=label.get("model"),
            labels_name=labels.get("name", ""),
            line=label.sourceline,
            assertion=label.get("assertion", "").lower() == "true",
            to_name=labels.get("toName", "").split(",")[0].strip(),
        )
        for label, labels in _label_elements(tree)
    ]


def text_key(xml: str | bytes) -> str:
    """The task data key holding the text that the NER labels point at (``<Text value="$text">`` -> ``text``)."""
    tree = parse_config(xml)
    targets = {name.strip() for _, labels in _label_elements(tree) for name in labels.get("toName", "").split(",")}
    for element in tree.getroot().iter("Text", "HyperText"):
        value = element.get("value", "")
        if element.get("name") in targets and value.startswith("$"):
            return value[1:]
    return "text"


def check_structure(xml: str | bytes) -> list[ConfigProblem]:
    """Problems with labels and their ``<Labels>`` elements, independent of models."""
    return _structure_problems(parse_config(xml))


def _structure_problems(tree: etree._ElementTree) -> list[ConfigProblem]:
    root = tree.getroot()
    all_labels = list(root.iter("Labels"))
    if not all_labels:
        message = "the config has no <Labels> element, so there is nothing to annotate"
        return [ConfigProblem(message, line=root.sourceline)]
    target_names = {element.get("name") for element in root.iter(etree.Element) if element.tag != "Labels"}
    problems = [problem for labels in all_labels for problem in _labels_element_problems(labels, target_names)]
    return problems + _label_value_problems(tree)


def _labels_element_problems(labels: etree._Element, target_names: set[str | None]) -> list[ConfigProblem]:
    name = labels.get("name")
    described = f"<Labels name={name!r}>" if name else "a <Labels> element"
    line = labels.sourceline
    problems = []
    if not name:
        problems.append(ConfigProblem(f"{described} has no name attribute; annotations refer to it by name", line=line))
    to_names = [to_name.strip() for to_name in labels.get("toName", "").split(",") if to_name.strip()]
    if not to_names:
        problems.append(ConfigProblem(f"{described} has no toName attribute, so it labels no text", line=line))
    problems += [
        ConfigProblem(
            f"{described} has toName={to_name!r} but no element is named {to_name!r} "
            f"(expected e.g. <Text name={to_name!r} value=\"$text\"/>)",
            line=line,
        )
        for to_name in to_names
        if to_name not in target_names
    ]
    return problems


def _label_value_problems(tree: etree._ElementTree) -> list[ConfigProblem]:
    first_lines: dict[etree._Element, dict[str, int | None]] = {}
    problems = []
    for label, labels in _label_elements(tree):
        value = label.get("value")
        within = f"<Labels name={labels.get('name', '')!r}>"
        if value is None or not value.strip():
            state = "no value attribute" if value is None else "an empty value"
            problems.append(
                ConfigProblem(f"a <Label> in {within} has {state}; every label needs a name", line=label.sourceline)
            )
            continue
        seen = first_lines.setdefault(labels, {})
        if value in seen:
            problems.append(
                ConfigProblem(
                    f"label {value!r} appears more than once in {within} (first on line {seen[value]}); "
                    "label values must be unique",
                    label=value,
                    line=label.sourceline,
                )
            )
        else:
            seen[value] = label.sourceline
    return problems


# --- models --------------------------------------------------------------------------------------


def validate_models(
    xml: str | bytes,
    *,
    pretrained: Collection[str],
    registered: Collection[str],
    project_models: Collection[str] | None = None,
) -> list[ConfigProblem]:
    """Problems with the ``model`` attributes of labels.

    A model must be pretrained or registered; with ``project_models`` (the registered models of the
    project this config belongs to) a registered model must also be one of those.
    """
    return _model_problems(_label_specs(parse_config(xml)), pretrained, registered, project_models)


def _model_problems(
    specs: list[LabelSpec],
    pretrained: Collection[str],
    registered: Collection[str],
    project_models: Collection[str] | None,
) -> list[ConfigProblem]:
    pretrained, registered = set(pretrained), set(registered)
    usable_registered = registered if project_models is None else registered & set(project_models)
    candidates = sorted(pretrained | usable_registered)
    problems = []
    for spec in specs:
        model = spec.model
        if model is None or model in pretrained or model in usable_registered:
            continue
        if not model.strip():
            message = (
                f"label {spec.value!r} has an empty model attribute; "
                "name a pretrained or registered model, or remove the attribute"
            )
        elif model in registered:
            message = (
                f"label {spec.value!r}: model {model!r} belongs to another project; "
                f"{_suggestions(model, candidates)}"
            )
        else:
            message = (
                f"label {spec.value!r}: model {model!r} is neither a pretrained model nor a registered model; "
                f"{_suggestions(model, candidates)}"
            )
        problems.append(ConfigProblem(message, label=spec.value, model=model, line=spec.line))
    return problems


def _suggestions(model: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(model, candidates, n=_MAX_SUGGESTIONS, cutoff=_SUGGESTION_CUTOFF)
    if not close:
        return "no similar names exist"
    return "closest existing names: " + ", ".join(repr(name) for name in close)


def validate_config(
    xml: str | bytes,
    *,
    pretrained: Collection[str],
    registered: Collection[str],
    project_models: Collection[str] | None = None,
) -> list[ConfigProblem]:
    """All problems of a config; an unusable config yields one problem instead of an exception."""
    try:
        tree = parse_config(xml)
    except LabelingConfigError as error:
        return [ConfigProblem(error.reason, line=error.line)]
    return _structure_problems(tree) + _model_problems(_label_specs(tree), pretrained, registered, project_models)


# --- assigning a trained model -------------------------------------------------------------------


def assign_model(
    xml: str | bytes,
    *,
    model_name: str,
    trained_labels: Collection[str],
    pretrained: Collection[str],
) -> str:
    """Set ``model=model_name`` on every trained label that is not tied to a pretrained model.

    Only those model attributes change; everything else in the text (attribute order, quoting,
    comments, whitespace, CRLF line endings, the XML declaration) is kept byte for byte, which is
    why the text is edited in place rather than re-serialised by lxml.
    """
    if not model_name or model_name != model_name.strip() or not model_name.isprintable():
        raise ValueError(
            f"model_name must be a non-empty printable name without surrounding whitespace, got {model_name!r}"
        )
    text, tree = _parse(xml)
    trained, pretrained = set(trained_labels), set(pretrained)
    to_assign = {
        label
        for label, _ in _label_elements(tree)
        if label.get("value") in trained and label.get("model") not in pretrained and label.get("model") != model_name
    }
    elements = tree.getroot().iter(etree.Element)
    # In a well-formed document without DOCTYPE the n-th start tag in the text is the n-th element.
    start_tags = (match.span("start_tag") for match in _MARKUP.finditer(text) if match.group("start_tag"))
    edits = [
        _model_attribute_edit(text, tag_start, tag_end, model_name)
        for element, (tag_start, tag_end) in zip(elements, start_tags, strict=True)
        if element in to_assign
    ]
    for start, end, replacement in reversed(edits):
        text = text[:start] + replacement + text[end:]
    return text


def _model_attribute_edit(text: str, tag_start: int, tag_end: int, model_name: str) -> tuple[int, int, str]:
    """(start, end, replacement) that sets the model attribute in the start tag at text[tag_start:tag_end]."""
    name_end = _TAG_NAME.match(text, tag_start, tag_end).end()
    attributes = {match.group("name"): match for match in _ATTRIBUTE.finditer(text, name_end, tag_end)}
    if "model" in attributes:
        model = attributes["model"]
        quote = model.group("quote")
        return model.start("value"), model.end("value"), _escape_attribute(model_name, quote)
    after_value = attributes["value"].end()
    return after_value, after_value, f' model="{_escape_attribute(model_name, chr(34))}"'


def _escape_attribute(value: str, quote: str) -> str:
    return escape(value, {quote: "&quot;" if quote == '"' else "&apos;"})


# --- pretrained models ---------------------------------------------------------------------------


def load_pretrained_models(path: str | Path | None = None) -> frozenset[str]:
    """Names of pretrained models, from ``pretrained_models.yaml`` (``pretrained_models: [...]``)."""
    path = Path(path) if path is not None else DEFAULT_PRETRAINED_MODELS_PATH
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = content.get("pretrained_models") if isinstance(content, dict) else None
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{path}: expected 'pretrained_models:' followed by a list of model names")
    return frozenset(names)


def label_studio_label_problems(xml: str, parsed: dict[str, Any] | None, used: dict[str, dict[str, int]]) -> list[str]:
    """Where a Label Studio project's labels and this config's disagree, one line each: a label this parser
    reads that Label Studio's own parse of the config (``parsed_label_config``; None: the server sent none)
    lacks, and a label the project's annotations hold (its summary's ``created_labels``) that the config
    lacks, whose spans no training would learn."""
    ours: dict[str, set[str]] = {}
    for label in list_labels(xml):
        ours.setdefault(label.labels_name, set()).add(label.value)
    problems = []
    for control, values in ours.items() if parsed is not None else ():
        theirs = set((parsed.get(control) or {}).get("labels") or ())
        problems += [f"label {value!r} of <Labels name={control!r}> is not among Label Studio's labels of that control "
                     f"({', '.join(sorted(theirs)) or 'none'}): check the config in Label Studio" for value in sorted(values - theirs)]
    for control, counts in used.items():
        if control in ours:
            problems += [f"label {value!r} of <Labels name={control!r}> is held by {count} of the project's annotations in "
                         f"Label Studio but is not in its config: add it, or relabel those regions" for value, count in
                         sorted(counts.items()) if value not in ours[control] and count]
    return problems
