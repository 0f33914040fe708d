"""Which N tasks a round of annotation gets: not the N least confident, but a diverse batch of doubtful ones.

Taking the top N of one uncertainty score often picks N near-copies of one doubtful text (retweets,
boilerplate) or N texts of one kind, and is then no better than random (Settles 2009, *Active Learning
Literature Survey*, 5.1). So :func:`choose_batch` works in three steps:

1. **Near-duplicates out.** Texts equal once lower-cased, without a leading ``RT @user:``, links,
   @-mentions and punctuation are one text: only the least confident of them can be picked, and none
   whose twin is labelled already.
2. **The doubtful ones.** The :data:`PREFILTER` x N least confident of the rest (ties in the pool's order).
3. **Spread over them** (Zhdanov 2019, *Diverse mini-batch Active Learning*): k-means with N clusters over
   their TF-IDF word vectors, each text weighted by its doubt (1 - confidence), and from each cluster the
   text nearest its centre. Then the batch is listed least confident first.

The same inputs always give the same batch (k-means is seeded). With ``spread=False`` step 3 is the plain
top N of step 2. When fewer than N distinct texts are left, duplicates fill the batch, least confident first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PREFILTER = 10  # Zhdanov's beta: k-means runs over the 10 x N least confident texts
_RETWEET = re.compile(r"^\s*rt\s+@\w+:?\s*", re.IGNORECASE)
_NOISE = re.compile(r"https?://\S+|www\.\S+|@\w+", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Candidate:
    task_id: str
    text: str
    confidence: float  # the scorer's: lower is more doubtful


def duplicate_key(text: str) -> str:
    """What near-copies share: the words of the text, lower-cased, without a retweet's prefix, links and mentions."""
    return " ".join(_WORD.findall(_NOISE.sub(" ", _RETWEET.sub("", text)).lower()))


def choose_batch(candidates: Sequence[Candidate], n: int, *, labelled: Iterable[str] = (), spread: bool = True) -> list[str]:
    """The ids of the ``n`` tasks to annotate next, least confident first (see the module's docstring);
    ``labelled``: texts annotated already, whose near-copies are not picked while others are left."""
    ranked = sorted(range(len(candidates)), key=lambda i: (candidates[i].confidence, i))
    seen = {duplicate_key(text) for text in labelled}
    distinct, copies = [], []
    for i in ranked:
        key = duplicate_key(candidates[i].text)
        (copies if key in seen else distinct).append(i)
        seen.add(key)
    doubtful = distinct[: PREFILTER * n]
    picked = _spread(candidates, doubtful, n) if spread and len(doubtful) > n else doubtful[:n]
    picked += copies[: n - len(picked)]
    return [candidates[i].task_id for i in sorted(picked, key=lambda i: (candidates[i].confidence, i))]


def _spread(candidates: Sequence[Candidate], doubtful: list[int], n: int) -> list[int]:
    """From each of ``n`` doubt-weighted k-means clusters of ``doubtful``'s TF-IDF vectors, the text nearest its centre."""
    import numpy
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [duplicate_key(candidates[i].text) or "_" for i in doubtful]
    vectors = TfidfVectorizer(token_pattern=r"\w+", sublinear_tf=True).fit_transform(texts)
    weights = numpy.array([1.0 - candidates[i].confidence for i in doubtful]) + 1e-6
    kmeans = KMeans(n_clusters=n, n_init=3, random_state=0).fit(vectors, sample_weight=weights)
    distances = kmeans.transform(vectors)  # to every centre
    picked: list[int] = []
    for cluster in range(n):
        members = numpy.flatnonzero(kmeans.labels_ == cluster)
        if len(members):
            picked.append(doubtful[int(members[numpy.argmin(distances[members, cluster])])])
    taken = set(picked)
    rest = [i for i in doubtful if i not in taken]  # an empty cluster: the next most doubtful
    return picked + rest[: n - len(picked)]
