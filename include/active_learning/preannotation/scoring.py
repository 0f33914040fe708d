"""A spaCy NER model's entities for a text, and how sure it is of them: one number per task in [0, 1]
(1: sure; the queue puts the lowest first). Which number is the *scorer*'s, by name:

| scorer | confidence | entities | cost against bare ``nlp.pipe`` |
|---|---|---|---|
| ``margin`` (default) | the best analysis's probability against the runner-up's in a beam of width 2 | the best of the two | 0.95x-1.15x |
| ``mnlp`` | the geometric mean of the per-token probability of the greedy analysis | the greedy analysis (``nlp.pipe``'s) | about 1x |
| ``entity`` | the most doubtful candidate entity's ``abs(2p - 1)``, ``p`` from a beam of width 16 | the best analysis | width 16 |
| ``dropout`` | the most disputed entity's ``abs(2f - 1)``, ``f`` the share of 8 dropout passes that find it | the greedy analysis | 9 passes |

**margin** weighs the model's best analysis of the *whole* text against its runner-up: the entity
recogniser's transition scores sum to a score per complete analysis (every token inside or outside an
entity, with a label); a beam search of width :data:`BEAM_WIDTH` keeps the two best, and a softmax over
them gives the best one's probability. 1.0: no other reading came close; 0.5: the model could as well have
read the text the other way. A text where the model sees no entity has a score too (the all-outside
analysis against the runner-up). The margin shrinks with length: a long text has more places to hesitate.

**mnlp** (maximum normalized log-probability, Shen et al. 2018, *Deep Active Learning for Named Entity
Recognition*): the log-probability of the greedy analysis, as the model was trained to give it (each
transition a softmax over every action: spaCy's loss), divided by the number of tokens (one transition
each), then exponentiated. A long text is not less sure only for its length.

**entity** (as Prodigy's ``ner.teach``): a beam of width :data:`ENTITY_BEAM_WIDTH` (density
:data:`ENTITY_BEAM_DENSITY`) keeps that many analyses; each candidate entity's probability ``p`` is the summed
probability of the analyses that hold it (spaCy's ``scored_ents``). The text is as sure as its most
doubtful entity: ``min abs(2p - 1)`` (0: a coin flip, 1: every candidate sure either way; a text with no
candidate: 1).

**dropout** (a committee by Monte Carlo dropout: Gal & Ghahramani 2016; for NER, Shen et al. 2018 and
Siddhant & Lipton 2018): :data:`COMMITTEE` greedy passes with dropout at :data:`DROPOUT_RATE` (``ner.cfg``'s
training dropout) in the NER's layers (its encoder's too, when it has its own), each a committee member's analysis; an entity
found by a share ``f`` of them, or by the model's own greedy analysis, is as sure as ``abs(2f - 1)``, and the
text as its most disputed entity (1: no member found any).

One model and one text always give the same entities and score with ``margin``, ``mnlp`` and ``entity``
(no sampling). ``dropout`` samples, from a seed made of the batch's texts: the same batch gives the same
scores, a text in another batch may score a little differently.
Width 2 costs what spaCy's greedy ``nlp.pipe`` costs (0.95x on a WNUT-17 model, 3,000 tweets: the tok2vec
layer, shared by both analyses, dominates); width 4 cost 1.21-1.27x and width 8 1.65x
(``bench/preannotation.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from active_learning.exports import Span
from active_learning.preannotation.strategies import DROPOUT, ENTITY, MARGIN, MNLP

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

log = logging.getLogger(__name__)

BEAM_WIDTH = 2
ENTITY_BEAM_WIDTH, ENTITY_BEAM_DENSITY = 16, 0.0001  # Prodigy's ner.teach
NER_PIPE = "ner"
COMMITTEE, DROPOUT_RATE = 8, 0.1  # dropout passes, at ner.cfg's training.dropout


@dataclass(frozen=True)
class ScoredText:
    spans: tuple[Span, ...]  # character offsets into the text
    score: float


def predict(nlp: Language, texts: Sequence[str], *, batch_size: int = 256, scorer: str = MARGIN) -> Iterator[ScoredText | None]:
    """One :class:`ScoredText` per text, in order; None for a text the model cannot process (logged)."""
    score = SCORERS[scorer]
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        try:
            yield from _predict_batch(nlp, batch, score)
        except Exception:  # one bad text must not cost the batch: find it, score the rest one by one
            for text in batch:
                try:
                    yield from _predict_batch(nlp, [text], score)
                except Exception as error:
                    log.warning("could not pre-annotate a text of %d characters: %s", len(text), error)
                    yield None


def _predict_batch(nlp: Language, texts: Sequence[str], score: Scorer) -> Iterator[ScoredText]:
    ner = nlp.get_pipe(NER_PIPE)
    with nlp.select_pipes(disable=[NER_PIPE]):
        docs: list[Doc] = list(nlp.pipe(texts, batch_size=len(texts)))
    for doc, confidence in zip(docs, score(ner, docs), strict=True):
        yield ScoredText(_spans(doc.ents), min(max(confidence, 0.0), 1.0))


# A scorer sets the entities of its best analysis on the docs and returns each doc's confidence.
Scorer = Callable[[Any, list["Doc"]], list[float]]


def _margin(ner: Any, docs: list[Doc]) -> list[float]:
    beams = ner.beam_parse(docs, beam_width=BEAM_WIDTH)
    ner.set_annotations(docs, beams)
    return [float(max(getattr(beam, "probs", ()) or (1.0,))) for beam in beams]


def _mnlp(ner: Any, docs: list[Doc]) -> list[float]:
    import numpy
    from spacy.pipeline._parser_internals._beam_utils import BeamBatch

    # A beam of width 1 is the greedy parse, and keeps the sum of the raw scores of the actions taken; the
    # log-partition of each step, summed per doc beside it, turns that sum into the analysis's log-probability.
    batch = BeamBatch(ner.moves, ner.moves.init_batch(docs), None, 1)
    step_model = ner.model.predict(docs)
    log_partition = numpy.zeros(len(docs))
    while not batch.is_done:
        states, owners = _unfinished(batch)
        if not states:
            break
        scores = step_model.predict(states)
        numpy.add.at(log_partition, owners, _logsumexp(numpy.asarray(scores, dtype="float64")))
        batch.advance(scores)
    step_model.clear_memory()
    beams = list(batch)
    ner.set_annotations(docs, beams)
    return [math.exp((beam.score - log_z) / len(doc)) if len(doc) else 1.0
            for doc, beam, log_z in zip(docs, beams, log_partition, strict=True)]


def _unfinished(batch: Any) -> tuple[list[Any], list[int]]:
    """The unfinished states, as :meth:`BeamBatch.get_unfinished_states` lists them, and each one's doc."""
    states, unfinished, owners, at = batch.get_states(), [], [], 0
    for index, beam in enumerate(batch.beams):
        for state in states[at : at + len(beam)]:
            if not state.is_final():
                unfinished.append(state)
                owners.append(index)
        at += len(beam)
    return unfinished, owners


def _logsumexp(scores: Any) -> Any:
    import numpy

    top = scores.max(axis=1, keepdims=True)
    return (top + numpy.log(numpy.exp(scores - top).sum(axis=1, keepdims=True)))[:, 0]


def _entity(ner: Any, docs: list[Doc]) -> list[float]:
    beams = ner.beam_parse(docs, beam_width=ENTITY_BEAM_WIDTH, beam_density=ENTITY_BEAM_DENSITY)
    ner.set_annotations(docs, beams)
    return [min((abs(2 * p - 1) for p in scores.values()), default=1.0) for scores in ner.scored_ents(beams)]


def _dropout(ner: Any, docs: list[Doc]) -> list[float]:
    import hashlib
    from collections import Counter

    import numpy

    analyses = ner.predict(docs)
    ner.set_annotations(docs, analyses)
    greedy = [_entities(doc) for doc in docs]
    votes: list[Counter[tuple[int, int, str]]] = [Counter() for _ in docs]
    from thinc.api import set_dropout_rate

    set_dropout_rate(ner.model, DROPOUT_RATE)  # the greedy parse just set it to 0
    seed = int.from_bytes(hashlib.sha256("\0".join(doc.text for doc in docs).encode()).digest()[:4], "little")
    saved = numpy.random.get_state()  # spaCy draws its dropout masks from numpy's global generator
    numpy.random.seed(seed)
    try:
        for _ in range(COMMITTEE):
            for doc in docs:  # entities a doc holds bind the parse: each member starts from none
                doc.set_ents([], default="missing")
            step_model, _ = ner.model.begin_update(docs)  # in training mode: dropout on
            states = ner.moves.init_batch(docs)
            unfinished = [state for state in states if not state.is_final()]
            while unfinished:
                scores, _ = step_model.begin_update(unfinished)
                unfinished = ner.transition_states(unfinished, scores)
            ner.set_annotations(docs, states)
            for counted, doc in zip(votes, docs, strict=True):
                counted.update(_entities(doc))
    finally:
        numpy.random.set_state(saved)
        set_dropout_rate(ner.model, 0.0)
        ner.set_annotations(docs, analyses)  # the greedy analysis is the one kept
    return [min((abs(2 * counted[entity] / COMMITTEE - 1) for entity in set(counted) | found), default=1.0)
            for counted, found in zip(votes, greedy, strict=True)]


def _entities(doc: Doc) -> set[tuple[int, int, str]]:
    return {(ent.start, ent.end, ent.label_) for ent in doc.ents}


SCORERS: dict[str, Scorer] = {MARGIN: _margin, MNLP: _mnlp, ENTITY: _entity, DROPOUT: _dropout}


def _spans(ents: Iterable[object]) -> tuple[Span, ...]:
    return tuple(Span(ent.start_char, ent.end_char, ent.label_) for ent in ents)  # type: ignore[attr-defined]
