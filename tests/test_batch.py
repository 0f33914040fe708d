"""Batch-aware selection (preannotation/batch.py) on constructed cases: near-duplicates out, the batch spread
over the doubtful texts, the same batch for the same inputs."""

from __future__ import annotations

from active_learning.preannotation.batch import PREFILTER, Candidate, choose_batch, duplicate_key

STOCKS = [f"Stocks in {city} fell sharply as markets opened" for city in ("Tokyo", "Seoul", "Taipei", "Manila", "Jakarta")]
FOOTBALL = [f"{team} won the football match on Sunday night" for team in ("Arsenal", "Bayern", "Porto", "Ajax", "Celtic")]


def pool() -> list[Candidate]:
    """Five doubtful texts about stocks (the least confident), five about football a little surer."""
    return ([Candidate(f"s{i}", text, 0.10 + i / 100) for i, text in enumerate(STOCKS)]
            + [Candidate(f"f{i}", text, 0.20 + i / 100) for i, text in enumerate(FOOTBALL)])


def test_a_retweet_of_a_picked_or_labelled_text_is_dropped() -> None:
    candidates = [
        Candidate("tweet", "Big news from Paris today! https://t.co/abc", 0.30),
        Candidate("retweet", "RT @newsdesk: Big news from Paris today! https://t.co/xyz", 0.20),
        Candidate("reply", "@newsdesk big news from Paris today", 0.25),
        Candidate("other", "The cat sat on the mat", 0.40),
        Candidate("copy-of-labelled", "rt @a: The weather in Rome is fine", 0.10),
    ]
    assert duplicate_key(candidates[0].text) == duplicate_key(candidates[1].text) == duplicate_key(candidates[2].text)
    batch = choose_batch(candidates, 2, labelled=["The weather in Rome is fine!"], spread=False)
    assert batch == ["retweet", "other"]  # one of the three copies, the least confident; none of the labelled one's


def test_the_batch_is_spread_over_the_doubtful_texts_not_their_top() -> None:
    assert choose_batch(pool(), 2, spread=False) == ["s0", "s1"]  # two of one kind
    spread = choose_batch(pool(), 2)
    assert {task[0] for task in spread} == {"s", "f"} and spread[0].startswith("s")  # one of each, least confident first


def test_only_the_prefiltered_least_confident_texts_are_candidates() -> None:
    sure = [Candidate(f"sure{i}", f"Completely different topic number {i} here", 0.99) for i in range(30)]
    batch = choose_batch(pool() + sure, 1)  # k-means over the 10 least confident only
    assert len(batch) == 1 and not batch[0].startswith("sure") and PREFILTER * 1 == 10


def test_the_same_inputs_give_the_same_batch_and_duplicates_fill_a_batch_with_too_few_texts() -> None:
    assert choose_batch(pool(), 3) == choose_batch(pool(), 3)
    copies = [Candidate(f"c{i}", "RT @x: the same text", 0.5 - i / 10) for i in range(3)]
    assert choose_batch(copies, 3) == ["c2", "c1", "c0"]  # one distinct text, then its copies, least confident first
    assert choose_batch([], 3) == []
