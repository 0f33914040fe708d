import difflib
import re
import time
from pathlib import Path

import pytest

from active_learning.labeling_config import (
    MAX_CONFIG_BYTES,
    ConfigProblem,
    LabelingConfigError,
    LabelSpec,
    assign_model,
    check_structure,
    list_labels,
    load_pretrained_models,
    parse_config,
    text_key,
    validate_config,
    validate_models,
)

from conftest import SHARED_DATA, shared_file

ANNOTATION_LAB = SHARED_DATA / "formats" / "annotation_lab"
SHARED_CONFIGS = [
    "formats/annotation_lab/Config_Preannotations.txt",
    "formats/annotation_lab/NER_Project_config.xml",
    "formats/annotation_lab/Model_Training_config.txt",
    "formats/label_studio/text_named_entity_config.xml",
    "wnut17/labeling_config.xml",
    "ncbi_disease/labeling_config.xml",
]

PRETRAINED = frozenset({"ner_clinical", "assertion_jsl", "re_clinical", "ner_jsl", "en_core_web_sm"})
REGISTERED = frozenset({"wnut17_ner_20261125_143000", "ncbi_ner_20261201_090000"})

WNUT_LIKE = """<View>
  <Labels name="label" toName="text">
    <Label value="person" background="#e6194b"/>
    <Label value="location" model="{model}" background="#3cb44b"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>
"""


def shared_bytes(relative: str) -> bytes:
    return shared_file(relative).read_bytes()


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old, new) line pairs that differ; fails if lines were added or removed."""
    old_lines, new_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    opcodes = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False).get_opcodes()
    pairs = []
    for tag, i1, i2, j1, j2 in opcodes:
        if tag != "equal":
            assert tag == "replace" and i2 - i1 == j2 - j1, tag
            pairs += zip(old_lines[i1:i2], new_lines[j1:j2])
    return pairs


def without_model_attribute(line: str) -> str:
    return re.sub(r"""\s+model\s*=\s*("[^"]*"|'[^']*')""", "", line)


# --- shared configs ------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", SHARED_CONFIGS)
def test_shared_configs_parse_with_labels_and_no_structure_problems(relative):
    data = shared_bytes(relative)

    assert parse_config(data).getroot().tag == "View"
    assert list_labels(data)
    assert check_structure(data) == []


@pytest.mark.shared_data
def test_list_labels_of_config_preannotations():
    labels = list_labels(shared_bytes("formats/annotation_lab/Config_Preannotations.txt"))

    assert labels[0] == LabelSpec(value="PROBLEM", model="ner_clinical", labels_name="label", line=3, to_name="text")
    assert [label.value for label in labels] == [
        "PROBLEM", "TEST", "TREATMENT", "Present", "Absent", "Possible", "Planned",
        "Someoneelse", "Past", "Family", "None", "Hypotetical",
    ]  # fmt: skip
    assert {label.model for label in labels} == {"ner_clinical", "assertion_jsl"}  # no Relation models
    assert [label.value for label in labels if not label.assertion] == ["PROBLEM", "TEST", "TREATMENT"]


@pytest.mark.shared_data
def test_list_labels_of_label_studio_and_wnut17_configs():
    label_studio = list_labels(shared_bytes("formats/label_studio/text_named_entity_config.xml"))
    wnut = list_labels(shared_bytes("wnut17/labeling_config.xml"))

    assert {label.labels_name for label in label_studio} == {"ner"}
    assert len(label_studio) == 11
    assert [label.value for label in wnut] == ["person", "location", "group", "corporation", "creative-work", "product"]
    assert all(label.model is None for label in wnut)


@pytest.mark.shared_data
def test_shared_configs_with_models_validate_against_the_pretrained_list():
    data = shared_bytes("formats/annotation_lab/Config_Preannotations.txt")

    assert validate_config(data, pretrained=load_pretrained_models(), registered=[]) == []


# --- assign_model --------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_assign_model_keeps_pretrained_labels_and_sets_untied_trained_labels():
    data = shared_bytes("formats/annotation_lab/Config_Preannotations.txt")

    updated = assign_model(
        data,
        model_name="clinical_ner_20261125_143000",
        trained_labels={"PROBLEM", "Present", "Absent", "NotInConfig"},
        pretrained={"ner_clinical"},  # assertion_jsl deliberately not pretrained here
    )

    models = {label.value: label.model for label in list_labels(updated)}
    assert models["PROBLEM"] == "ner_clinical"
    assert models["TEST"] == "ner_clinical"
    assert models["Present"] == models["Absent"] == "clinical_ner_20261125_143000"
    assert models["Possible"] == "assertion_jsl"  # not trained
    assert 'model="re_clinical"' in updated  # relations untouched


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", SHARED_CONFIGS)
def test_assign_model_changes_only_model_attributes(relative):
    original = shared_bytes(relative).decode("utf-8")
    trained = {label.value for label in list_labels(original)}

    updated = assign_model(original, model_name="trained_20261125", trained_labels=trained, pretrained=PRETRAINED)

    changes = changed_lines(original, updated)
    untied = [label for label in list_labels(original) if label.model not in PRETRAINED]
    assert len(changes) == len(untied)
    for old, new in changes:
        assert without_model_attribute(old) == without_model_attribute(new)
        assert 'model="trained_20261125"' in new


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["Config_Preannotations.txt", "NER_Project_config.xml", "Model_Training_config.txt"])
def test_assign_model_preserves_crlf_line_endings(name):
    original = shared_bytes(f"formats/annotation_lab/{name}").decode("utf-8")
    trained = {label.value for label in list_labels(original)}

    updated = assign_model(original, model_name="m_1", trained_labels=trained, pretrained=[])

    assert updated != original
    assert updated.count("\r\n") == original.count("\r\n")
    assert "\n" not in updated.replace("\r\n", "")
    assert "&#13;" not in updated


def test_assign_model_keeps_declaration_comments_quoting_and_attribute_order():
    original = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!-- project config -->\n"
        "<View>\n"
        "  <?editor keep?>\n"
        "  <Labels name='label' toName='text'>\n"
        "    <Label value='PER' background='red' model='old_model' />\n"
        '    <Label hotkey="o" value="ORG"   background="blue"/>\n'
        '    <Label value="LOC" model="ner_jsl"/>\n'
        "  </Labels>\n"
        '  <Text name="text" value="$text"/>\n'
        "</View>"
    )

    updated = assign_model(
        original, model_name="new_model", trained_labels=["PER", "ORG", "LOC"], pretrained=PRETRAINED
    )

    assert changed_lines(original, updated) == [
        (
            "    <Label value='PER' background='red' model='old_model' />\n",
            "    <Label value='PER' background='red' model='new_model' />\n",
        ),
        (
            '    <Label hotkey="o" value="ORG"   background="blue"/>\n',
            '    <Label hotkey="o" value="ORG" model="new_model"   background="blue"/>\n',
        ),
    ]


def test_assign_model_accepts_bytes_and_escapes_the_model_name():
    original = WNUT_LIKE.format(model="").encode("utf-8")

    updated = assign_model(original, model_name='a&b"<c', trained_labels=["location"], pretrained=PRETRAINED)

    assert isinstance(updated, str)
    assert 'model="a&amp;b&quot;&lt;c"' in updated
    assert {label.value: label.model for label in list_labels(updated)}["location"] == 'a&b"<c'


@pytest.mark.parametrize("bad_name", ["", "  ", " padded", "line\nbreak"])
def test_assign_model_rejects_unusable_model_names(bad_name):
    with pytest.raises(ValueError, match="model_name"):
        assign_model(WNUT_LIKE.format(model=""), model_name=bad_name, trained_labels=["person"], pretrained=PRETRAINED)


def test_assign_model_raises_for_unusable_xml():
    with pytest.raises(LabelingConfigError):
        assign_model("<View>", model_name="m", trained_labels=["x"], pretrained=PRETRAINED)


# --- validate_models -----------------------------------------------------------------------------


def test_registered_and_pretrained_models_are_valid():
    for model in ["wnut17_ner_20261125_143000", "ner_jsl"]:
        assert validate_models(WNUT_LIKE.format(model=model), pretrained=PRETRAINED, registered=REGISTERED) == []


def test_unknown_model_names_label_bad_model_and_close_names():
    [problem] = validate_models(WNUT_LIKE.format(model="wnut_ner_2026"), pretrained=PRETRAINED, registered=REGISTERED)

    assert (problem.label, problem.model, problem.line) == ("location", "wnut_ner_2026", 4)
    assert str(problem).startswith("line 4: label 'location': model 'wnut_ner_2026' is neither a pretrained model")
    assert "closest existing names: 'wnut17_ner_20261125_143000'" in problem.message


def test_unknown_model_without_similar_names_says_so():
    [problem] = validate_models(WNUT_LIKE.format(model="zzzzzzzz"), pretrained=PRETRAINED, registered=REGISTERED)

    assert "no similar names exist" in problem.message


def test_model_of_another_project_is_flagged():
    config = WNUT_LIKE.format(model="ncbi_ner_20261201_090000")

    [problem] = validate_models(
        config, pretrained=PRETRAINED, registered=REGISTERED, project_models=["wnut17_ner_20261125_143000"]
    )
    assert "'ncbi_ner_20261201_090000' belongs to another project" in problem.message
    assert "'ncbi_ner_20261201_090000'" not in problem.message.split(";", 1)[1]  # not suggested back
    assert validate_models(config, pretrained=PRETRAINED, registered=REGISTERED) == []


def test_empty_model_attribute_is_a_problem():
    [problem] = validate_models(WNUT_LIKE.format(model=""), pretrained=PRETRAINED, registered=REGISTERED)

    assert problem.label == "location" and "empty model attribute" in problem.message


@pytest.mark.parametrize(
    "hostile",
    ["x'; DROP TABLE models; --", "$(rm -rf /)", "../../etc/passwd", "模型_ünï", "it's &quot;quoted&quot;", "a`b|c"],
)
def test_hostile_model_names_are_just_unknown(hostile):
    config = WNUT_LIKE.format(model=hostile.replace("'", "&apos;"))

    [problem] = validate_models(config, pretrained=PRETRAINED, registered=REGISTERED)

    unescaped = hostile.replace("&quot;", '"')
    assert problem.model == unescaped
    assert repr(unescaped) in problem.message


# --- structure -----------------------------------------------------------------------------------


def structure_messages(xml: str) -> list[str]:
    return [str(problem) for problem in check_structure(xml)]


def test_label_without_value_or_with_empty_value():
    messages = structure_messages(
        '<View><Labels name="label" toName="text">\n<Label background="red"/>\n<Label value=" "/>\n</Labels>'
        '<Text name="text" value="$text"/></View>'
    )

    assert messages == [
        "line 2: a <Label> in <Labels name='label'> has no value attribute; every label needs a name",
        "line 3: a <Label> in <Labels name='label'> has an empty value; every label needs a name",
    ]


def test_duplicate_label_value_within_one_labels_element():
    [problem] = check_structure(
        '<View><Labels name="a" toName="text">\n<Label value="PER"/>\n<Label value="PER"/>\n</Labels>'
        '<Labels name="b" toName="text"><Label value="PER"/></Labels><Text name="text" value="$text"/></View>'
    )

    assert problem.label == "PER" and problem.line == 3
    assert "appears more than once" in problem.message and "first on line 2" in problem.message


def test_to_name_must_name_an_element():
    messages = structure_messages('<View><Labels name="label" toName="txt"><Label value="PER"/></Labels></View>')

    assert len(messages) == 1
    assert "toName='txt' but no element is named 'txt'" in messages[0]


def test_config_without_labels():
    [problem] = check_structure('<View><Choices name="c" toName="text"><Choice value="x"/></Choices></View>')

    assert "no <Labels> element" in problem.message


def test_validate_config_combines_structure_and_model_problems():
    config = (
        '<View><Labels name="label" toName="text">'
        '<Label value="A" model="nope"/><Label value="A"/></Labels></View>'
    )

    problems = validate_config(config, pretrained=PRETRAINED, registered=REGISTERED)

    assert len(problems) == 3
    assert all(isinstance(problem, ConfigProblem) for problem in problems)


# --- unusable and hostile input ------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">\n' for level in range(1, 10))
    + "]>\n<View>&lol9;</View>"
)


@pytest.mark.parametrize(
    "hostile",
    [
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><View><Label value="&x;"/>&x;</View>',
        '<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><View>&x;</View>',
        '<?xml version="1.0"?>\n<!-- c -->\n<!DOCTYPE View SYSTEM "http://127.0.0.1:9/config.dtd">\n<View/>',
        BILLION_LAUGHS,
    ],
    ids=["file-entity", "network-entity", "external-dtd", "billion-laughs"],
)
def test_dtds_and_entities_are_rejected_fast(hostile):
    started = time.process_time()  # CPU, not wall time: expanding would burn it; a loaded machine does not

    with pytest.raises(LabelingConfigError, match="DTDs and entity declarations are not allowed") as caught:
        list_labels(hostile)

    assert time.process_time() - started < 1
    assert "root:" not in str(caught.value)
    problems = validate_config(hostile, pretrained=PRETRAINED, registered=REGISTERED)
    assert len(problems) == 1 and "root:" not in str(problems[0])


def test_malformed_xml_reports_line_number():
    with pytest.raises(LabelingConfigError) as caught:
        parse_config('<View>\n  <Labels name="l" toName="t">\n</View>')

    assert caught.value.line == 3
    assert str(caught.value).startswith("line 3: the labeling config is not well-formed XML")
    assert "\n" not in str(caught.value)


def test_validate_config_turns_unusable_xml_into_one_problem():
    [problem] = validate_config("<View>\n<Labels>", pretrained=PRETRAINED, registered=REGISTERED)

    assert "not well-formed XML" in problem.message and problem.line == 2


def test_bytes_that_are_not_utf8_report_the_offset():
    with pytest.raises(LabelingConfigError, match="not valid UTF-8: invalid byte at offset 9"):
        parse_config(b"<View>\n<a\xff/></View>")


@pytest.mark.parametrize(
    "filler",
    [" " * (MAX_CONFIG_BYTES - 12), " " * 2 * MAX_CONFIG_BYTES, "é" * (MAX_CONFIG_BYTES // 2)],
    ids=["one-byte-over", "double", "multibyte-chars-under-limit-bytes-over"],
)
def test_oversized_input_is_rejected(filler):
    big = f"<View>{filler}</View>"

    with pytest.raises(LabelingConfigError, match="larger than"):
        parse_config(big)
    with pytest.raises(LabelingConfigError, match="larger than"):
        parse_config(big.encode())


@pytest.mark.parametrize("depth", [65, 10_000])
def test_deep_nesting_is_rejected(depth):
    with pytest.raises(LabelingConfigError, match="nested more than 64 levels"):
        parse_config("<a>" * depth + "</a>" * depth)


def test_nesting_up_to_the_limit_is_fine():
    assert parse_config("<a>" * 64 + "</a>" * 64) is not None


@pytest.mark.parametrize("empty", ["", "  \n", b""])
def test_empty_input_is_rejected(empty):
    with pytest.raises(LabelingConfigError, match="empty"):
        parse_config(empty)


def test_str_with_encoding_declaration_is_parsed_as_text():
    config = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        '<View><Labels name="l" toName="t"><Label value="Größe"/></Labels></View>'
    )

    assert [label.value for label in list_labels(config)] == ["Größe"]


# --- pretrained model list -----------------------------------------------------------------------


def test_default_pretrained_models_include_common_names():
    names = load_pretrained_models()

    assert {"ner_clinical", "assertion_jsl", "re_clinical", "ner_jsl", "onto_100", "en_core_web_trf"} <= names


def test_pretrained_models_file_must_have_the_expected_shape(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models: [a, b]\n")

    with pytest.raises(ValueError, match="pretrained_models"):
        load_pretrained_models(bad)


@pytest.mark.parametrize(
    ("xml", "key"),
    [
        ('<View><Labels name="ner" toName="t"><Label value="A"/></Labels><Text name="t" value="$ner"/></View>', "ner"),
        ('<View><Text name="other" value="$title"/><Labels name="l" toName="t"><Label value="A"/></Labels>'
         '<Text name="t" value="$body"/></View>', "body"),
        ('<View><Labels name="l" toName="t"><Label value="A"/></Labels><Text name="t" value="plain"/></View>', "text"),
    ],
)
def test_text_key_is_the_data_key_of_the_labelled_text(xml: str, key: str) -> None:
    assert text_key(xml) == key


def test_label_studio_s_labels_and_the_configs_disagreeing_are_one_line_each() -> None:
    from active_learning.labeling_config import label_studio_label_problems

    xml = ('<View><Labels name="label" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>'
           '<Text name="text" value="$text"/></View>')
    parsed = {"label": {"type": "Labels", "to_name": ["text"], "labels": ["PER", "ORG"]}}
    assert label_studio_label_problems(xml, parsed, {"label": {"PER": 3, "ORG": 0}}) == []
    assert label_studio_label_problems(xml, None, {}) == []  # a server that sends no parse of its own: nothing to compare
    problems = label_studio_label_problems(xml, {"label": {"labels": ["PER"]}}, {"label": {"PER": 3, "MISC": 2, "LOC": 0}})
    assert problems == [
        "label 'ORG' of <Labels name='label'> is not among Label Studio's labels of that control (PER): check the config in Label Studio",
        "label 'MISC' of <Labels name='label'> is held by 2 of the project's annotations in Label Studio but is not in its "
        "config: add it, or relabel those regions",
    ]
