"""Training loops: standard and adversarial (the attack is a parameter), checkpoints with checksums.

``train_step(model, optimizer, x, y, attack=None, ratio=1.0)`` is one SGD step on clean inputs or
on ``attack(model, x, y)`` outputs (adversarial training, Madry et al. 2018; notebook 04), with
a chosen fraction ``ratio`` of the batch adversarial (``mix_batch``). ``train_epoch`` runs it over a
loader with a tqdm progress bar; ``fit`` runs several epochs with an optional per-batch LR
schedule (``make_optimizer``). ``save_checkpoint`` / ``load_checkpoint`` store a state dict with a
SHA-256 sidecar and load it with ``torch.load(..., weights_only=True)``; a tampered file is refused.
Attacks, curricula and early stopping for adversarial training: ``adversarial_training.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def mix_batch(x: torch.Tensor, x_adv: torch.Tensor, ratio: float) -> torch.Tensor:
    """The first ``round(ratio * B)`` examples from ``x_adv``, the rest from ``x`` (clean).

    x, x_adv: (B, C, H, W) in [0, 1]. ``ratio`` is the adversarial fraction of the batch, as in
    ART's ``AdversarialTrainer(ratio=...)`` (Goodfellow et al. 2015 used 0.5); loaders shuffle, so
    taking the first examples is a random choice.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (adversarial fraction of each batch) must be in [0, 1], got {ratio!r}")
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    k = int(round(ratio * x.shape[0]))
    return torch.cat([x_adv[:k], x[k:]])


def train_step(model, optimizer, x, y, attack=None, ratio: float = 1.0):
    """One step of SGD on ``CE(model(x'), y)``: x' = x, or ``attack(model, x, y)`` mixed by ``ratio``.

    The outer minimization of Madry et al. (2018), ``min_theta E[max_{||delta|| <= eps} L]``, with
    the inner maximization done by ``attack``. Only the first ``round(ratio * B)`` examples are
    attacked (the rest stay clean). Returns ``(loss, logits)`` of the trained-on batch.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (adversarial fraction of each batch) must be in [0, 1], got {ratio!r}")
    k = int(round(ratio * x.shape[0])) if attack is not None else 0
    if k == x.shape[0]:
        x = attack(model, x, y)
    elif k > 0:  # same as mix_batch(x, attack(model, x, y), ratio), without attacking the clean part
        x = torch.cat([attack(model, x[:k], y[:k]), x[k:]])
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_epoch(model, loader, optimizer, attack=None, scheduler=None, device=None, progress=True, desc="train",
                ratio: float = 1.0):
    """One epoch of ``train_step`` over ``loader``; ``ratio``: adversarial fraction of each batch.

    Returns ``{"loss": mean loss, "accuracy": accuracy on the trained-on inputs}``. The attack
    runs the model in eval mode (see ``attacks``); training mode is restored for the update.
    ``scheduler.step()`` is called after every batch when given.
    """
    device = device or next(model.parameters()).device
    total_loss = correct = n = 0
    bar = tqdm(loader, disable=not progress, desc=desc, leave=False)
    for x, y in bar:
        x, y = x.to(device), y.to(device)
        loss, logits = train_step(model, optimizer, x, y, attack, ratio)
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
        bar.set_postfix(loss=f"{total_loss / n:.3f}", acc=f"{correct / n:.3f}")
    model.eval()
    return {"loss": total_loss / max(n, 1), "accuracy": correct / max(n, 1)}


def make_optimizer(model, lr=0.1, total_steps=None, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
                   schedule="onecycle"):
    """``(optimizer, per-batch scheduler or None)``. schedule ``"onecycle"``: LR linearly up to ``lr``
    over 40% of ``total_steps`` batches, then down to 0 (Wong et al. 2020); ``"constant"``: none."""
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if schedule == "onecycle":
        if not total_steps or total_steps < 1:
            raise ValueError(f"schedule='onecycle' needs total_steps >= 1 (batches in all epochs), got {total_steps!r}")
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.4,
                                                    anneal_strategy="linear")
    elif schedule == "constant":
        sched = None
    else:
        raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
    return opt, sched


def fit(model, loader, epochs, lr=0.1, attack=None, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
        schedule="onecycle", progress=True, ratio: float = 1.0):
    """Train ``epochs`` epochs; returns the list of per-epoch ``train_epoch`` results.

    optimizer: ``"sgd"`` (momentum, weight decay) or ``"adam"``; schedule: ``"onecycle"``
    (linear up then down over all batches, as in Wong et al. 2020) or ``"constant"``.
    """
    opt, sched = make_optimizer(model, lr, epochs * len(loader), momentum, weight_decay, optimizer, schedule)
    history = []
    for epoch in tqdm(range(epochs), desc="epochs", disable=not progress or epochs == 1):
        history.append(train_epoch(model, loader, opt, attack, sched, progress=progress,
                                   desc=f"epoch {epoch + 1}/{epochs}", ratio=ratio))
    return history


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_checkpoint(model, path, meta: dict | None = None) -> str:
    """Save ``model.state_dict()`` atomically to ``path`` and its SHA-256 (+ ``meta``) to ``path.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    digest = _sha256(path)
    Path(str(path) + ".json").write_text(json.dumps({"sha256": digest, **(meta or {})}, indent=2))
    return digest


def load_checkpoint(model, path, expected_sha256: str | None = None, map_location="cpu"):
    """Load a state dict saved by ``save_checkpoint`` into ``model``, after checking its SHA-256.

    The expected digest is ``expected_sha256`` or the one in ``path.json``. A missing sidecar, a
    mismatch or a file that is not a plain state dict raises ``ValueError``; loading uses
    ``weights_only=True``, so a checkpoint cannot run code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if expected_sha256 is None:
        sidecar = Path(str(path) + ".json")
        if not sidecar.exists():
            raise ValueError(f"checkpoint {path} has no checksum file {sidecar.name}; refusing to load it")
        expected_sha256 = json.loads(sidecar.read_text())["sha256"]
    digest = _sha256(path)
    if digest != expected_sha256:
        raise ValueError(f"checkpoint {path} has SHA-256 {digest[:16]}..., expected {expected_sha256[:16]}...: "
                         "the file was modified or damaged; refusing to load it")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # unpickling refused, wrong architecture
        raise ValueError(f"checkpoint {path} could not be loaded into {type(model).__name__}: {e}") from e
    return model


def cached_model(name: str, build, train, meta: dict | None = None, device=None):
    """Load model ``name`` from ``cache_dir()/models`` if present and intact, else ``train`` and save it.

    build(): a fresh model; train(model): trains it in place. The cache key should include the
    profile and the recipe (e.g. ``"mnist_standard_quick"``) so different runs never mix.
    """
    from .config import cache_dir

    path = cache_dir() / "models" / f"{name}.pt"
    model = build()
    if path.exists():
        try:
            load_checkpoint(model, path)
            return model.to(device) if device is not None else model
        except ValueError as e:
            print(f"cached {path.name} refused ({e}); training again")
    if device is not None:
        model = model.to(device)
    train(model)
    save_checkpoint(model, path, meta)
    return model
