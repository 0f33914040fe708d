"""Small pretrained spaCy pipelines, made in the tests (nothing is downloaded): bases to start trainings from.

A base made here has what Explosion's ``en_core_web_*`` pipelines have where it matters: a trained ``ner``
with its own encoder, labels the project does not use beside the one it shares (``PERSON``), and a
``tok2vec`` component that the NER does not read. :func:`as_package` lays it out as spaCy's ``spacy
package`` does, so that a folder on ``sys.path`` makes it an installed pipeline package.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

PEOPLE = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack"]
CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Vienna"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella"]
SENTENCES = [  # (text with {p} a person, {c} a city, {o} a company)
    "{p} lives in {c} and works for {o} .",
    "Yesterday {p} flew to {c} .",
    "{o} hired {p} last week .",
    "In {c} , {p} met friends from {o} .",
    "The patient {p} was seen today .",
]


def base_examples(nlp, n: int = 60) -> list:  # type: ignore[no-untyped-def]
    from spacy.training import Example

    examples = []
    for i in range(n):
        names = {"p": PEOPLE[i % len(PEOPLE)], "c": CITIES[i % len(CITIES)], "o": COMPANIES[i % len(COMPANIES)]}
        template = SENTENCES[i % len(SENTENCES)]
        text, spans, at = "", [], 0
        for part in template.split():
            key = part.strip("{}") if part.startswith("{") else None
            word = names[key] if key else part
            if key:
                spans.append((at, at + len(word), {"p": "PERSON", "c": "GPE", "o": "ORG"}[key]))
            text += word + " "
            at += len(word) + 1
        examples.append(Example.from_dict(nlp.make_doc(text.strip()), {"entities": spans}))
    return examples


def train_base(folder: Path, *, steps: int = 30, with_ner: bool = True, ner_model: dict[str, Any] | None = None) -> Path:
    """A pipeline trained on person/city/company sentences: ``tok2vec`` and a ``ner`` with its own encoder
    (spaCy's default NER model, with ``ner_model``'s settings); saved to ``folder``."""
    import spacy

    random.seed(0)
    spacy.util.fix_random_seed(0)  # the same base in every test session, whatever ran before
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    if with_ner:
        nlp.add_pipe("ner", config={"model": ner_model} if ner_model else {})
    examples = base_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps if with_ner else 0):
        random.shuffle(examples)
        nlp.update(examples, sgd=optimizer, drop=0.1)
    nlp.meta.update({"name": "tiny_base", "version": "0.1.0"})
    nlp.to_disk(folder)
    return folder


def as_package(pipeline: Path, destination: Path) -> tuple[str, Path]:
    """``pipeline`` as spaCy's ``spacy package`` lays it out: (package name, folder to put on sys.path)."""
    from spacy.cli.package import package

    destination.mkdir(parents=True, exist_ok=True)
    package(pipeline, destination, name="tiny_base", version="0.1.0", create_sdist=False, silent=True)
    return "en_tiny_base", destination / "en_tiny_base-0.1.0"


def tiny_transformer(folder: Path) -> Path:
    """A randomly initialised BERT of 2 layers of width 32, with a WordPiece tokenizer built from a small
    vocabulary file, saved as Hugging Face saves a model (``save_pretrained``): a transformer base that runs
    on the CPU in seconds, with nothing downloaded."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = {w.lower() for s in SENTENCES for w in s.split() if not w.startswith("{")}
    words |= {w.lower() for w in PEOPLE + CITIES + COMPANIES} | {"patient", "given", "aspirin", "ibuprofen", "insulin", "heparin"}
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words), *letters, *(f"##{c}" for c in letters)]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160)
    BertModel(config).save_pretrained(folder)
    return folder
