"""The refit: once the split training has picked how long to train, train once more on every task the
evaluation set does not hold back, and deploy that model.

The split training (train part, early-stopped on the dev part) says how far training should go: its
best checkpoint's step. The refit trains on train + dev, from the same start (same seed, same warm-start
base), for as many passes over the data: that step scaled by how much more data there is, in words.
Nothing stops it early, since no held-out data is left to stop on; spaCy still needs a dev corpus, so it
gets the dev part, which it trains on, and scores it only at its first and last step (meaningless scores,
not reported). The refit model never scores itself: its split-trained twin, which never saw the dev
part, is logged beside it and is the model the deploy gate scores (:mod:`active_learning.deploy.gate`).

A project whose evaluation set is tagged (tasks tagged Test) trains on every untagged task already:
there is nothing to refit on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: spaCy's overrides that turn a training into the refit: its length alone decides when it ends.
NO_EARLY_STOP = {"training.patience": 0, "training.max_epochs": 0}


@dataclass(frozen=True)
class RefitPlan:
    steps: int  # the refit's max_steps
    split_best_step: int  # the split training's best checkpoint
    train_words: int
    all_words: int

    def overrides(self, split_overrides: dict[str, Any]) -> dict[str, Any]:
        """The split training's overrides, with the refit's length and no early stop: one evaluation at
        its end (and spaCy's at step 0)."""
        return split_overrides | NO_EARLY_STOP | {"training.max_steps": self.steps, "training.eval_frequency": self.steps}

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def plan_refit(split_best_step: int, train_words: int, dev_words: int) -> RefitPlan:
    """As many passes over train + dev as the split training made over train by its best checkpoint
    (at least one step: spaCy's max_steps 0 means no limit)."""
    if train_words <= 0:
        raise ValueError("the split training had no words to train on")
    all_words = train_words + dev_words
    steps = max(1, math.ceil(split_best_step * all_words / train_words))
    return RefitPlan(steps, split_best_step, train_words, all_words)
