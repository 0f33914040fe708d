"""What a transformer base costs on the CPU (the embedded default trains there): training and pre-annotation, side by side.

Three starting points train, one after the other in this process, through the loop's own ``train_ner`` on the
same DocBins (the first N tasks of WNUT-17's ``tasks.json``, converted and split as the loop does):

* ``scratch``: ``include/configs/ner.cfg`` (spaCy's CPU NER: a CNN tok2vec of width 96);
* ``en_core_web_sm``: the base of ``bench/base_model.py`` (its NER and the CNN encoder it carries);
* ``transformer``: ``model.base=transformer:<folder>``, spaCy's transformer NER recipe over a BERT of BERT-base's
  shape (12 layers of width 768, 12 heads, feed-forward 3,072; a WordPiece vocabulary of the corpus's words and
  pieces), randomly initialised: nothing can be downloaded here, and the weights' values do not change what a
  step or a prediction costs.

Each trains one pass over the same training tasks (``training.max_epochs`` 1, no step limit; scored on a small
dev part at its start only), so every side has seen the same words; then the trained model pre-annotates the
same texts with the loop's ``predict`` (beam scores), after a warm-up. Reported: training seconds for the pass,
texts per second pre-annotated, each against ``scratch``.

    python bench/transformer_cost.py            # 300 tasks, 1,000 texts to pre-annotate: about 15 minutes on 2 cores
    python bench/transformer_cost.py --quick    # 60 tasks, 100 texts, a BERT of 2 layers of width 64: about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, load_average, print_table, ratio_line, save_json  # noqa: E402
from base_model import base_pipeline  # noqa: E402

from active_learning.preannotation.scoring import predict  # noqa: E402
from active_learning.preannotation.simulation import load_examples  # noqa: E402
from active_learning.training.base_model import locate, training_config  # noqa: E402
from active_learning.training.dataset import split_examples, to_docs, write_docbin  # noqa: E402
from active_learning.training.spacy_ner import NER_CONFIG_PATH, load_model, train_ner  # noqa: E402

BERT_BASE = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
QUICK_BERT = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}
ONE_PASS = {"training.max_epochs": 1, "training.max_steps": 0, "training.patience": 0, "training.eval_frequency": 100_000}


def random_bert(folder: Path, texts: list[str], shape: dict[str, int]) -> Path:
    """A randomly initialised BERT of ``shape``, with a WordPiece vocabulary of ``texts``' words and every letter
    as a piece, saved as Hugging Face saves a model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    words = sorted({word.lower() for text in texts for word in text.split()})
    pieces = sorted({char.lower() for text in texts for char in text if not char.isspace()})
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces, *(f"##{p}" for p in pieces), *words]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **shape)).save_pretrained(folder)
    return folder


def measure(name: str, config: Path, train: Path, dev: Path, texts: list[str], folder: Path) -> dict[str, Any]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        outcome = train_ner(train, dev, folder / name, config_path=config, overrides=ONE_PASS, keep_last=True)
    seconds = time.perf_counter() - start
    nlp = load_model(outcome.model_dir)
    list(predict(nlp, texts[:20]))  # warm-up
    start = time.perf_counter()
    scored = list(predict(nlp, texts))
    rate = len(texts) / (time.perf_counter() - start)
    assert all(result is not None for result in scored)
    print(f"  {name}: one pass in {seconds:.1f} s (spaCy's own time {outcome.seconds:.1f} s); pre-annotation {rate:,.0f} texts/s",
          flush=True)
    return {"train_seconds": seconds, "texts_per_second": rate, "pipeline": nlp.pipe_names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 tasks, 100 texts, a BERT of 2 layers of width 64")
    parser.add_argument("--tasks", type=int, default=None, help="training tasks (default 300; quick 60)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/transformer_cost.json (full run: bench/results)")
    args = parser.parse_args()
    corpus = SHARED_DATA / "wnut17"
    if not (corpus / "tasks.json").is_file():
        print(f"SKIPPED: {corpus / 'tasks.json'} not found (the team's shared corpora sit beside the repository)")
        return 0
    count = args.tasks or (60 if args.quick else 300)
    shape = QUICK_BERT if args.quick else BERT_BASE
    out = args.out or (None if args.quick else RESULTS)

    import spacy

    examples = load_examples(corpus / "tasks.json", (corpus / "labeling_config.xml").read_text(encoding="utf-8"))
    texts = [example.text for example in load_examples(corpus / "dev_tasks.json", (corpus / "labeling_config.xml").read_text())]
    texts = texts[: 100 if args.quick else 1000]
    random.Random(0).shuffle(examples)
    train_part, dev_part = split_examples(examples[:count], 10)
    print(f"transformer cost on the CPU: WNUT-17, {len(train_part)} training tasks (one pass), {len(dev_part)} dev, "
          f"{len(texts)} texts to pre-annotate; BERT shape {shape}; load average {load_average()}", flush=True)
    results: dict[str, Any] = {"tasks": count, "texts": len(texts), "bert": shape, "sides": {}}
    with tempfile.TemporaryDirectory(prefix="al-bench-trf-") as tmp:
        folder = Path(tmp)
        blank = spacy.blank("en")
        train = write_docbin(to_docs(blank, train_part)[0], folder / "train.spacy")
        dev = write_docbin(to_docs(blank, dev_part)[0], folder / "dev.spacy")
        labels = {span.label for example in train_part for span in example.spans}
        bert = random_bert(folder / "bert", [example.text for example in examples], shape)
        configs = {
            "scratch": NER_CONFIG_PATH,
            "en_core_web_sm": training_config(locate(str(base_pipeline())), labels, NER_CONFIG_PATH, folder / "sm"),
            "transformer": training_config(locate(f"transformer:{bert}"), labels, NER_CONFIG_PATH, folder / "trf"),
        }
        for name, config in configs.items():
            results["sides"][name] = measure(name, config, train, dev, texts, folder / "runs")
    scratch = results["sides"]["scratch"]
    rows = [[name, f"{side['train_seconds']:.1f}", f"{side['train_seconds'] / scratch['train_seconds']:.2f}x",
             f"{side['texts_per_second']:,.0f}", f"{side['texts_per_second'] / scratch['texts_per_second']:.2f}x"]
            for name, side in results["sides"].items()]
    print_table(["start", "one pass, s", "vs scratch", "pre-annotation texts/s", "vs scratch"], rows)
    trf = results["sides"]["transformer"]
    print(f"load average {load_average()}")
    save_json("transformer_cost", results, out)
    print(ratio_line("transformer base, CPU training time / from scratch (one pass, same tasks)",
                     trf["train_seconds"] / scratch["train_seconds"], "none: the docs report it", True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
