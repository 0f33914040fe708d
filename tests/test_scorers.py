"""The pre-annotation scorers (preannotation/scoring.py), each on constructed cases, with a small spaCy
pipeline trained in the tests (tests/base_pipelines.py): what each one's confidence is, and how it orders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from active_learning.preannotation.queue import least_confident
from active_learning.preannotation.scoring import COMMITTEE, ENTITY_BEAM_DENSITY, ENTITY_BEAM_WIDTH, SCORERS, predict
from base_pipelines import train_base

KNOWN = "Alice lives in Paris and works for Acme ."  # one of the training sentences' forms
NOVEL = "Zorblax lives in Quuxville and works for Frobozz ."  # the same form, names never seen
DOUBTFUL = "Maria met Tom at the station in Lyon ."  # another form, names never seen


@pytest.fixture(scope="module")
def nlp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import spacy

    return spacy.load(train_base(tmp_path_factory.mktemp("scorers") / "pipeline"))


def before_ner(nlp: Any, text: str) -> Any:
    """The doc as the NER component receives it: every other component run."""
    with nlp.select_pipes(disable=["ner"]):
        return nlp(text)


def scores(nlp: Any, texts: list[str], scorer: str) -> list[float]:
    return [scored.score for scored in predict(nlp, texts, scorer=scorer)]  # type: ignore[union-attr]


@pytest.mark.parametrize("scorer", ["margin", "mnlp", "entity"])
def test_a_deterministic_scorer_gives_the_same_entities_and_scores_for_the_same_text_in_any_batch(nlp: Any, scorer: str) -> None:
    texts = [KNOWN, NOVEL, DOUBTFUL, "the weather is nice today", ""]
    alone = [next(predict(nlp, [text], scorer=scorer)) for text in texts]
    together = list(predict(nlp, texts, scorer=scorer))
    assert together == alone
    assert all(scored is not None and 0.0 <= scored.score <= 1.0 for scored in together)
    assert together[-1] is not None and together[-1].spans == ()


def test_mnlp_keeps_the_greedy_analysis_and_scores_it_as_the_model_was_trained_to(nlp: Any) -> None:
    """Its entities are nlp.pipe's; on one token, its confidence is that transition's softmax probability
    over every action (spaCy's loss normalises over all of them)."""
    for text, scored in zip([KNOWN, NOVEL, DOUBTFUL], predict(nlp, [KNOWN, NOVEL, DOUBTFUL], scorer="mnlp"), strict=True):
        assert [(s.start, s.end, s.label) for s in scored.spans] == [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]

    ner, doc = nlp.get_pipe("ner"), before_ner(nlp, "Alice")
    [state] = ner.moves.init_batch([doc])
    step_scores = ner.model.predict([doc]).predict([state])[0].astype("float64")
    valid = [i for i in range(ner.moves.n_moves) if ner.moves.is_valid(state, ner.moves.get_class_name(i))]
    chosen = max(valid, key=lambda i: step_scores[i])
    probability = math.exp(step_scores[chosen]) / sum(math.exp(v) for v in step_scores)
    assert scores(nlp, ["Alice"], "mnlp") == [pytest.approx(probability, rel=1e-5)]


def test_mnlp_does_not_prefer_a_long_text_only_for_its_length(nlp: Any) -> None:
    """A text repeated 16 times is as sure per token as once; the whole analysis's probability (not
    normalised by length) would rank the long text first, MNLP ranks the short doubtful one first."""
    long_sure = " ".join([NOVEL] * 16)
    once, long_, doubtful = scores(nlp, [NOVEL, long_sure, DOUBTFUL], "mnlp")
    assert long_ == pytest.approx(once, abs=0.005)
    tokens = [len(nlp.make_doc(text)) for text in (long_sure, DOUBTFUL)]
    assert long_ ** tokens[0] < doubtful ** tokens[1]  # by the whole analysis's probability: the long one first
    assert least_confident(["long", "doubtful"], {"long": long_, "doubtful": doubtful}) == ["doubtful", "long"]


def test_entity_confidence_is_the_most_doubtful_entity_of_a_wide_beam(nlp: Any) -> None:
    """min abs(2p - 1) over the candidate entities, p the summed probability of the analyses holding each:
    known names are sure, new names doubtful, and the text without any candidate is 1."""
    known, novel, doubtful, plain = scores(nlp, [KNOWN, NOVEL, DOUBTFUL, "the the the"], "entity")
    ner = nlp.get_pipe("ner")
    for text, score in ((DOUBTFUL, doubtful), (NOVEL, novel)):
        doc = before_ner(nlp, text)
        [entities] = ner.scored_ents(ner.beam_parse([doc], beam_width=ENTITY_BEAM_WIDTH, beam_density=ENTITY_BEAM_DENSITY))
        assert score == pytest.approx(min(abs(2 * p - 1) for p in entities.values()))
    assert known > novel > doubtful and doubtful < 0.9
    assert plain > doubtful


def test_dropout_is_a_committee_of_dropout_passes_the_same_for_the_same_batch(nlp: Any) -> None:
    """The greedy analysis's entities; the confidence of the most disputed entity among 8 dropout passes; the
    same batch twice gives the same scores, and numpy's global generator is left as it was."""
    import numpy

    texts = [KNOWN, NOVEL, DOUBTFUL, "the the the"]
    numpy.random.seed(7)
    expected_draw = numpy.random.random()
    numpy.random.seed(7)
    first = list(predict(nlp, texts, scorer="dropout"))
    assert numpy.random.random() == expected_draw
    assert list(predict(nlp, texts, scorer="dropout")) == first
    for text, scored in zip(texts, first, strict=True):
        assert [(s.start, s.end, s.label) for s in scored.spans] == [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]
    known, novel, doubtful, plain = (scored.score for scored in first)
    assert known == 1.0 and plain == 1.0  # every pass agrees
    assert doubtful < 1.0 and all(abs(score * COMMITTEE - round(score * COMMITTEE)) < 1e-9 for score in (novel, doubtful))


def test_a_text_the_scorer_cannot_process_is_skipped_and_the_rest_scored(nlp: Any, tmp_path: Path) -> None:
    nlp.max_length = 20
    try:
        for scorer in SCORERS:
            assert [scored is None for scored in predict(nlp, ["A short one.", "x" * 40, "Another."], scorer=scorer)] == [False, True, False]
    finally:
        nlp.max_length = 1_000_000
