"""Deep Partition Aggregation (notebook 06b): a certificate against poisoning.

Levine & Feizi (2021), "Deep partition aggregation: provable defenses against general poisoning
attacks" (ICLR). The training set is split into k disjoint partitions by a hash of each image
alone; base model i is trained on partition i only (seeded by i); the ensemble predicts the class
with the most votes. Inserting, deleting or changing one training image changes one partition, so
at most one vote. With n_c votes for the predicted class c, the prediction cannot change while at
most

    rho = floor((n_c - max_{c' != c} (n_c' + 1[c' < c])) / 2)

training images are poisoned (ties go to the smaller class index, hence the 1[c' < c]).

- ``partition_ids(x, k)``: SHA-256 of the image's uint8 pixels, modulo k: deterministic, depends on
  the image only, balanced for any k. ART's ``DeepPartitionEnsemble`` default, ``int(sum(x)) % k``
  over [0, 1] floats, takes about 100 distinct values on MNIST, so most partitions stay empty at
  large k (the paper's code sums uint8 pixels).
- ``train_partitions``: k base models through the course's loop (``training.fit``), model i seeded i.
- ``votes`` (N, num_classes) counts and ``dpa_certificate(votes)``: predicted class and rho, (N,) each.
- ``certified_accuracy``: the share of test images predicted correctly with rho >= r, for each r.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from ..data import make_loader
from ..training import fit
from ..validation import check_images, check_labels, check_positive_int
from .attacks import predict


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """The stored pixel values of x (N, C, H, W) in [0, 1] as uint8 (round(255 x))."""
    check_images(x)
    return (x.detach().cpu() * 255).round().to(torch.uint8).numpy()


def image_hash(x_uint8: np.ndarray) -> int:
    """SHA-256 of one image's uint8 pixels (C, H, W), as an integer."""
    return int.from_bytes(hashlib.sha256(np.ascontiguousarray(x_uint8).tobytes()).digest()[:8], "big")


def partition_ids(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) partition of each image in [0, k): its ``image_hash`` modulo k."""
    k = check_positive_int(k, "k")
    return torch.tensor([image_hash(img) % k for img in to_uint8(x)], dtype=torch.long)


def sum_partition_ids(x: torch.Tensor, k: int) -> torch.Tensor:
    """ART's default partition (``int(np.sum(x)) % k`` over [0, 1] floats), for comparison only."""
    return torch.tensor([int(np.sum(img)) % k for img in x.detach().cpu().numpy()], dtype=torch.long)


def train_partitions(x: torch.Tensor, y: torch.Tensor, k: int, build, epochs: int, lr: float = 1e-3,
                     batch_size: int = 64, device=None, progress: bool = True, parts: torch.Tensor | None = None,
                     first_seed: int = 0):
    """Train k base models, model i on the images of partition i only (``partition_ids``), each seeded by i,
    with ``training.fit`` (Adam, one-cycle). ``build()`` returns a fresh model; an empty partition's
    model is left untrained (it still votes). ``parts``: precomputed partitions; model i is seeded
    ``first_seed + i`` (retraining partition j alone: ``k=1, first_seed=j``). Returns the k models (eval mode)."""
    check_images(x)
    y = check_labels(y, x)
    k = check_positive_int(k, "k")
    parts = partition_ids(x, k) if parts is None else parts
    models = []
    for i in tqdm(range(k), desc=f"DPA k={k}", disable=not progress):
        torch.manual_seed(first_seed + i)
        model = build()
        if device is not None:
            model = model.to(device)
        rows = torch.nonzero(parts == i).flatten()
        if len(rows):
            loader = make_loader(TensorDataset(x[rows], y[rows]), batch_size=batch_size, shuffle=True,
                                 seed=first_seed + i)
            fit(model, loader, epochs, lr=lr, optimizer="adam", weight_decay=0.0, progress=False)
        models.append(model.eval())
    return models


def votes(models, x: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(N, num_classes) int64: how many base models predict each class for each image of x."""
    counts = torch.zeros(len(x), num_classes, dtype=torch.long)
    for m in models:
        counts[torch.arange(len(x)), predict(m, x)] += 1
    return counts


def dpa_certificate(votes: torch.Tensor):
    """Levine & Feizi's certificate from vote counts (N, K) integers: ``(prediction, rho)``, each (N,) int64.

    prediction: the class with the most votes, ties to the smaller index; rho: the number of
    poisoned training images (insertions, deletions or changes) that provably cannot change it,
    floor((n_c - max_{c' != c} (n_c' + 1[c' < c])) / 2), never negative."""
    votes = torch.as_tensor(votes)
    if votes.ndim != 2 or votes.shape[1] < 2 or votes.dtype.is_floating_point or (votes < 0).any():
        raise ValueError(f"votes must be (N, K >= 2) non-negative integer counts, got {votes.dtype} {tuple(votes.shape)}")
    votes = votes.long()
    pred = votes.argmax(1)  # torch.argmax returns the first maximal index: ties to the smaller class
    n_c = votes.gather(1, pred[:, None])  # (N, 1)
    rivals = votes + (torch.arange(votes.shape[1])[None, :] < pred[:, None]).long()  # n_c' + 1[c' < c]
    rivals.scatter_(1, pred[:, None], -1)  # exclude c itself
    rho = torch.div(n_c[:, 0] - rivals.amax(1), 2, rounding_mode="floor").clamp_min(0)
    return pred, rho


def certified_accuracy(pred: torch.Tensor, rho: torch.Tensor, y: torch.Tensor, radii) -> list[dict]:
    """For each r in ``radii``: the images with pred == y and rho >= r, counted (``k`` of ``n``)."""
    ok = torch.as_tensor(pred) == torch.as_tensor(y)
    return [{"poisoned images r": int(r), "certified": int((ok & (rho >= r)).sum()), "n": len(ok)} for r in radii]


def flip_search(votes_row: torch.Tensor, budget: int) -> bool:
    """Brute force: can moving at most ``budget`` votes (each poisoned image changes one base model's vote
    to any class) change the ``dpa_certificate`` prediction of one vote vector (K,)? For small k only."""
    votes_row = torch.as_tensor(votes_row).long()
    pred0 = int(dpa_certificate(votes_row[None])[0][0])
    k = votes_row.shape[0]
    seen = {tuple(votes_row.tolist())}
    frontier = [votes_row.tolist()]
    for _ in range(budget):
        nxt = []
        for v in frontier:
            for a in range(k):
                if v[a] == 0:
                    continue
                for b in range(k):
                    if a == b:
                        continue
                    w = list(v)
                    w[a] -= 1
                    w[b] += 1
                    if tuple(w) in seen:
                        continue
                    seen.add(tuple(w))
                    if int(dpa_certificate(torch.tensor([w]))[0][0]) != pred0:
                        return True
                    nxt.append(w)
        frontier = nxt
    return False
