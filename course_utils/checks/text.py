"""Checks for the exercises of notebooks/projects/p2_sentiment_api_layered_defense (text attacks, IBP, OOD threshold).

The interval rule for a Linear layer is checked by ``checks.certify.check_interval_linear`` (notebook 08)."""
from __future__ import annotations

import torch
from torch import nn

from . import call_learner, compare
from ..sanitization import threshold_for_fpr
from ..text import attacks, ibp

WORDS = ("movie", "boring", "a", "ok", "terrific", "aab", "see")


def check_swap_typos(learner_swap_typos):
    """learner_swap_typos(word) must list every adjacent-character swap, in position order, no repeats, not the word."""
    worst = 0
    for word in WORDS:
        got = call_learner("swap_typos", learner_swap_typos, word)
        expected = attacks.swap_typos(word)
        if list(got) != expected:
            print(f"[swap_typos] {word!r}: got {got}, expected {expected}: FAILED")
            worst += 1
    if worst:
        raise AssertionError(f"swap_typos: {worst} of {len(WORDS)} words wrong")
    print(f"[swap_typos] {len(WORDS)} words, exact match: PASSED")


def _box_inputs(g, vocab=11, dim=5, batch=3, length=4, k=3):
    weight = torch.randn(vocab, dim, generator=g)
    sub_ids = torch.randint(0, vocab, (batch, length, k + 1), generator=g)
    return weight, sub_ids


def check_embedding_box(learner_box, eps: float = 0.5):
    """learner_box(weight (V, d), sub_ids (B, L, K+1), eps) -> (lo, hi) (B, L, d) must equal ``ibp.embedding_box``."""
    compare("embedding_box", lambda w, s: torch.stack(learner_box(w, s, eps)),
            lambda w, s: torch.stack(ibp.embedding_box(nn.Embedding.from_pretrained(w), s, eps)), _box_inputs)


def check_similarity_threshold(learner_threshold, fprs=(0.05, 0.2)):
    """learner_threshold(similarities (N,), fpr) -> tau with at most a fraction fpr of the clean
    similarities below it: the course's rule ``sanitization.threshold_for_fpr`` (high = suspicious)
    applied to the negated score, ``-threshold_for_fpr(-s, fpr)``; for each fpr in ``fprs``."""
    def inputs(g):
        return (torch.rand(200, generator=g, dtype=torch.float64),)

    for fpr in fprs:
        compare(f"similarity_threshold fpr={fpr}", lambda s: torch.as_tensor(float(learner_threshold(s, fpr))),
                lambda s: torch.as_tensor(-threshold_for_fpr(-s, fpr)), inputs, tol=1e-6)
