"""A small bag-of-words sentiment classifier, trainable in seconds on a CPU.

``BagOfWordsClassifier``: ids (B, L) -> embeddings e_i (B, L, d) -> masked mean
h0 = (1/n) sum_i e_i (B, d) -> Linear -> ReLU -> Linear -> logits z (B, C). The same architecture
as the BOW model of Jia et al. (2019), so that interval bounds (``ibp``) stay simple: the mean is
linear, so a box on each e_i gives a box on h0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ..data import make_loader
from ..training import fit
from ..validation import eval_mode


class BagOfWordsClassifier(nn.Module):
    """Embedding mean -> MLP. ``forward(ids, mask)``: ids (B, L) int64, mask (B, L) bool -> logits (B, C)."""

    def __init__(self, vocab_size: int, dim: int = 64, hidden: int = 64, num_classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    @staticmethod
    def pool(e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over positions: e (B, L, d), mask (B, L) -> (B, d). Empty rows give zeros."""
        m = mask.unsqueeze(-1).to(e.dtype)
        return (e * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = ids != 0 if mask is None else mask
        return self.head(self.pool(self.embedding(ids), mask))


def predict_proba(model, vocab, token_lists, batch_size: int = 512, max_len: int = 64) -> torch.Tensor:
    """Class probabilities (N, C) for texts or token lists, in eval mode, without gradients."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(token_lists), batch_size):
            ids, mask = vocab.encode(token_lists[i:i + batch_size], max_len)
            out.append(F.softmax(model(ids.to(device), mask.to(device)), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)


def train_text_model(model, vocab, texts, labels, epochs: int = 5, lr: float = 3e-3, batch_size: int = 64,
                     seed: int = 0, loss_fn=None, progress: bool = True, max_len: int = 64):
    """Adam on cross-entropy (or ``loss_fn(model, ids, mask, y, epoch_fraction)``); returns per-epoch losses.

    The course's training loop (``training.fit``) over (ids, mask, y) batches. ``loss_fn`` lets
    certified training (``ibp.certified_loss``) reuse it; ``epoch_fraction`` runs from 0 to 1 over
    training (for Jia et al.'s epsilon / kappa ramp).
    """
    ids, mask = vocab.encode(texts, max_len)
    y = torch.as_tensor(labels, dtype=torch.int64)
    loader = make_loader(TensorDataset(ids, mask, y), batch_size=batch_size, shuffle=True, seed=seed)
    last = max(epochs * len(loader) - 1, 1)

    def hook(m, x, yb, t):  # the loop's loss hook: (ids, mask) inputs, Jia et al.'s fraction running to 1
        return loss_fn(m, x[0], x[1], yb, t * epochs * len(loader) / last), None

    history = fit(model, loader, epochs, lr=lr, optimizer="adam", weight_decay=0.0, schedule="constant",
                  loss_fn=hook if loss_fn is not None else None, progress=progress)
    return [h["loss"] for h in history]
