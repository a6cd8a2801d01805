"""Checks for the exercises of project p4 (the secure image API): the query-pattern score."""
from __future__ import annotations

import torch

from ..serving import layers
from . import compare


def check_knn_distance(learner_knn_distance, k: int = 3):
    """learner_knn_distance(history (N, D), s (D,), k) -> float must equal ``serving.layers.knn_distance``."""
    def inputs(g):
        n, d = int(torch.randint(k, 12, (1,), generator=g)), int(torch.randint(4, 20, (1,), generator=g))
        history = torch.rand(n, d, generator=g)
        s = history[0] + 0.01 * torch.randn(d, generator=g)  # one near-duplicate among the rows
        return history, s

    compare(f"knn_distance k={k}", lambda h, s: torch.as_tensor(float(learner_knn_distance(h, s, k))),
            lambda h, s: torch.as_tensor(layers.knn_distance(h, s, k)), inputs, tol=1e-5)
