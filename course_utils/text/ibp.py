"""Interval bound propagation over word substitutions, and certified training.

Jia et al. (2019) "Certified robustness to adversarial word substitutions" (EMNLP) and Huang et al.
(2019) "Achieving verified robustness to symbol substitutions via interval bound propagation" (EMNLP).
Threat model: every word w_i may be replaced by any word of S(w_i) (its allowed synonyms), all
positions at once. The embedding of position i then lies in the box spanned by {e(w') : w' in
S(w_i) + {w_i}}, scaled towards e(w_i) by eps in [0, 1] (eps = 1 is the full threat model).
Boxes [l, u] go through the MLP head with ``course_utils.certify.layer_bounds`` (Gowal et al. 2018, notebook 08):
for Linear(W, b), centre mu = (u + l) / 2 and radius r = (u - l) / 2 map to W mu + b and |W| r; ReLU is monotone.

``mode="box"`` is plain IBP from the embedding box. ``mode="vertex"`` bounds the first affine
layer at the substitution vertices instead (min / max of W e(w') per word, then the mean), which is
exact for that layer because the bag-of-words mean is linear; it is never looser than the box.
A prediction is certified when the lower bound of its logit beats the upper bound of every other.
Introduced in notebooks/projects/p2_sentiment_api_layered_defense.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..certify.ibp import layer_bounds

MODES = ("box", "vertex")


def substitution_table(vocab, synonyms: dict) -> torch.Tensor:
    """T (V, K+1) int64: row v = [v, ids of S(v)...], padded by repeating v. ``T[ids]`` -> (B, L, K+1)."""
    k = max((len(s) for s in synonyms.values()), default=0)
    table = torch.arange(len(vocab)).unsqueeze(1).repeat(1, k + 1)
    for w, subs in synonyms.items():
        if w in vocab:
            row = [vocab.id(s) for s in subs if s in vocab]
            table[vocab.id(w), 1:1 + len(row)] = torch.tensor(row, dtype=torch.int64)
    return table


def embedding_box(embedding: nn.Embedding, sub_ids: torch.Tensor, eps: float = 1.0):
    """sub_ids (B, L, K+1) (column 0 = the original word) -> box (lo, hi) (B, L, d) holding
    e(w_i) + eps (e(w') - e(w_i)) for every w' in S(w_i)."""
    e = embedding(sub_ids)  # (B, L, K+1, d)
    e = e[:, :, :1] + eps * (e - e[:, :, :1])
    return e.min(2).values, e.max(2).values


def _masked_mean(v, mask):
    m = mask.unsqueeze(-1).to(v.dtype)
    return (v * m).sum(1) / m.sum(1).clamp_min(1.0)


def logit_bounds(model, ids, mask, sub_ids, eps: float = 1.0, mode: str = "vertex"):
    """Bounds (lo, hi) (B, C) on the logits of ``BagOfWordsClassifier`` over all substitutions.

    ids, mask (B, L); sub_ids (B, L, K+1) (e.g. ``substitution_table(...)[ids]``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    layers = list(model.head)
    if mode == "box":
        lo, hi = embedding_box(model.embedding, sub_ids, eps)
        lo, hi = _masked_mean(lo, mask), _masked_mean(hi, mask)  # positive weights: monotone
    else:
        first, layers = layers[0], layers[1:]
        projected = model.embedding.weight @ first.weight.t()  # (V, h): W e(v) for every word v
        z = F.embedding(sub_ids, projected)  # (B, L, K+1, h): W e(w') at every vertex; bias after the mean
        z = z[:, :, :1] + eps * (z - z[:, :, :1])
        lo = _masked_mean(z.min(2).values, mask) + first.bias
        hi = _masked_mean(z.max(2).values, mask) + first.bias
    for layer in layers:  # the course's one interval rule per layer (notebook 08)
        lo, hi = layer_bounds(layer, lo, hi)
    return lo, hi


def worst_case_logits(lo, hi, y):
    """z_worst (B, C): the upper bound for every wrong class, the lower bound for the true class y."""
    return hi.scatter(1, y.unsqueeze(1), lo.gather(1, y.unsqueeze(1)))


def is_certified(lo, hi, y) -> torch.Tensor:
    """(B,) bool: lo[y] > hi[j] for every j != y, i.e. no allowed substitution changes the label from y."""
    y = y.unsqueeze(1)
    return lo.gather(1, y).squeeze(1) > hi.scatter(1, y, float("-inf")).max(1).values


def certify(model, vocab, table, token_lists, labels=None, mode: str = "vertex", max_len: int = 64):
    """(prediction (N,), certified (N,) bool): certified that every substitution keeps the prediction
    (or, with ``labels``, keeps the label: verified accuracy is its mean)."""
    device = next(model.parameters()).device
    ids, mask = vocab.encode(token_lists, max_len)
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        pred = model(ids, mask).argmax(1)
        lo, hi = logit_bounds(model, ids, mask, table.to(device)[ids], 1.0, mode)
        y = pred if labels is None else torch.as_tensor(labels, device=device)
        return pred.cpu(), is_certified(lo, hi, y).cpu()


def make_certified_loss(table, kappa: float = 0.8, warmup: float = 0.3, mode: str = "vertex"):
    """Loss of Jia et al. (2019): (1 - k) CE(z, y) + k CE(z_worst(eps), y), for ``train_text_model``.

    Clean training for the first ``warmup`` fraction; then eps rises linearly 0 -> 1 and k 0 -> ``kappa``
    over the next half of training, and stays there.
    """
    def loss_fn(model, ids, mask, y, frac):
        clean = F.cross_entropy(model(ids, mask), y)
        ramp = min(1.0, max(0.0, (frac - warmup) / 0.5))
        if ramp == 0.0:
            return clean
        lo, hi = logit_bounds(model, ids, mask, table.to(ids.device)[ids], ramp, mode)
        k = kappa * ramp
        return (1 - k) * clean + k * F.cross_entropy(worst_case_logits(lo, hi, y), y)
    return loss_fn
