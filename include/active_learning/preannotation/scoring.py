"""A spaCy NER model's entities for a text, and how sure it is of them: one number per task in [0, 1].

**The score** weighs the model's best analysis of the *whole* text against its runner-up: the entity
recogniser's transition scores sum to a score per complete analysis (every token inside or outside an
entity, with a label); a beam search of width :data:`BEAM_WIDTH` keeps the two best, and a softmax over
them gives the best one's probability. 1.0: no other reading came close; 0.5: the model could as well
have read the text the other way. A text where the model sees no entity has a score too (the all-outside
analysis against the runner-up). The entities are those of the best analysis. One model and one text
always give the same entities and score (no sampling, no dropout at inference).

Width 2 costs what spaCy's greedy ``nlp.pipe`` costs (0.95x on a WNUT-17 model, 3,000 tweets; the tok2vec
layer, shared by both analyses, dominates); width 4 cost 1.21-1.27x and width 8 1.65x, which put
pre-annotation below 0.8x of ``nlp.pipe``'s throughput (``bench/preannotation.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from active_learning.exports import Span

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

log = logging.getLogger(__name__)

BEAM_WIDTH = 2
NER_PIPE = "ner"


@dataclass(frozen=True)
class ScoredText:
    spans: tuple[Span, ...]  # character offsets into the text
    score: float


def predict(nlp: Language, texts: Sequence[str], *, batch_size: int = 256) -> Iterator[ScoredText | None]:
    """One :class:`ScoredText` per text, in order; None for a text the model cannot process (logged)."""
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        try:
            yield from _predict_batch(nlp, batch)
        except Exception:  # one bad text must not cost the batch: find it, score the rest one by one
            for text in batch:
                try:
                    yield from _predict_batch(nlp, [text])
                except Exception as error:
                    log.warning("could not pre-annotate a text of %d characters: %s", len(text), error)
                    yield None


def _predict_batch(nlp: Language, texts: Sequence[str]) -> Iterator[ScoredText]:
    ner = nlp.get_pipe(NER_PIPE)
    with nlp.select_pipes(disable=[NER_PIPE]):
        docs: list[Doc] = list(nlp.pipe(texts, batch_size=len(texts)))
    beams = ner.beam_parse(docs, beam_width=BEAM_WIDTH)
    ner.set_annotations(docs, beams)  # the best analysis of each beam
    for doc, beam in zip(docs, beams, strict=True):
        yield ScoredText(_spans(doc.ents), _best_probability(beam))


def _best_probability(beam: object) -> float:
    probs: Iterable[float] = getattr(beam, "probs", ()) or (1.0,)
    return min(max(float(max(probs)), 0.0), 1.0)


def _spans(ents: Iterable[object]) -> tuple[Span, ...]:
    return tuple(Span(ent.start_char, ent.end_char, ent.label_) for ent in ents)  # type: ignore[attr-defined]
