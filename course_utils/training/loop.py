"""The course's one training loop: standard, adversarial (the attack is a parameter) or any loss (a hook).

``train_step(model, optimizer, x, y, attack=None, ratio=1.0, loss_fn=None, t=0.0)`` is one
optimizer step on clean inputs or on ``attack(model, x, y)`` outputs (adversarial training, Madry
et al. 2018; notebook 04), with a fraction ``ratio`` of the batch adversarial (``mix_batch``).
``loss_fn(model, x, y, t) -> (loss, logits or None)`` replaces cross-entropy: IBP training
(``certify.ibp``), the denoising autoencoder (``sanitization.autoencoder``) and the text model
(``text.model``) are this loop with their own loss; ``t`` in [0, 1) is the fraction of training
done (for eps / kappa ramps). ``train_epoch`` runs it over a loader with a tqdm bar; ``fit`` runs
epochs with a per-batch LR schedule (``make_optimizer``). A batch is ``(x, y)`` or
``(x_1, ..., x_k, y)``; with k > 1 inputs the model is called as ``model(x_1, ..., x_k)``.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
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


def cross_entropy_loss(model, x, y, t: float = 0.0):
    """The default loss hook: ``(CE(model(x), y), logits)``; x may be a tuple of model inputs."""
    logits = model(*x) if isinstance(x, tuple) else model(x)
    return F.cross_entropy(logits, y), logits


def train_step(model, optimizer, x, y, attack=None, ratio: float = 1.0, loss_fn=None, t: float = 0.0, precision=None):
    """One optimizer step on ``loss_fn(model, x', y, t)`` (default cross-entropy): x' = x, or
    ``attack(model, x, y)`` mixed by ``ratio``.

    The outer minimization of Madry et al. (2018), ``min_theta E[max_{||delta|| <= eps} L]``, with
    the inner maximization done by ``attack``. Only the first ``round(ratio * B)`` examples are
    attacked (the rest stay clean). Returns ``(loss, logits or None)`` of the trained-on batch.
    ``model`` may be wrapped in ``DistributedDataParallel``: the attack then runs on the wrapped
    module (no gradient sync for the inner maximization), the loss through the wrapper.
    ``precision`` (``training.distributed.Precision``): the attack and the loss run under its
    autocast, and the step goes through its ``GradScaler`` when it has one (fp16).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio (adversarial fraction of each batch) must be in [0, 1], got {ratio!r}")
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    cast = precision.autocast(next(inner.parameters()).device.type) if precision is not None else contextlib.nullcontext()
    scaler = getattr(precision, "scaler", None)
    with cast:
        k = int(round(ratio * len(y))) if attack is not None else 0
        if attack is not None and k == len(y):
            x = attack(inner, x, y)
        elif k > 0:  # same as mix_batch(x, attack(model, x, y), ratio), without attacking the clean part
            x = torch.cat([attack(inner, x[:k], y[:k]), x[k:]])
        model.train()
        loss, logits = (loss_fn or cross_entropy_loss)(model, x, y, t)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), None if logits is None else logits.detach()


def _unpack(batch, device):
    *xs, y = batch
    xs = tuple(x.to(device) for x in xs)
    return (xs[0] if len(xs) == 1 else xs), y.to(device)


def train_epoch(model, loader, optimizer, attack=None, scheduler=None, device=None, progress=True, desc="train",
                ratio: float = 1.0, loss_fn=None, step: int = 0, total_steps: int | None = None, precision=None):
    """One epoch of ``train_step`` over ``loader``; ``ratio``: adversarial fraction of each batch.

    Returns ``{"loss": mean loss, "accuracy": accuracy on the trained-on inputs (NaN when the loss
    hook returns no logits)}``. The attack runs the model in eval mode (see ``attacks``); training
    mode is restored for the update. ``scheduler.step()`` is called after every batch when given.
    ``step`` / ``total_steps``: batches done before this epoch and in all, for the hook's ``t``.
    ``precision``: see ``train_step``.
    """
    device = device or next(model.parameters()).device
    total_steps = total_steps or len(loader)
    total_loss = correct = n = 0
    bar = tqdm(loader, disable=not progress, desc=desc, leave=False)
    for i, batch in enumerate(bar):
        x, y = _unpack(batch, device)
        loss, logits = train_step(model, optimizer, x, y, attack, ratio, loss_fn, (step + i) / total_steps, precision)
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item() if logits is not None else 0
        n += len(y)
        bar.set_postfix(loss=f"{total_loss / n:.3f}", **({"acc": f"{correct / n:.3f}"} if logits is not None else {}))
    model.eval()
    return {"loss": total_loss / max(n, 1), "accuracy": correct / max(n, 1) if logits is not None else float("nan")}


def make_optimizer(model, lr=0.1, total_steps=None, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
                   schedule="onecycle"):
    """``(optimizer, per-batch scheduler or None)``: SGD (``momentum``, ``weight_decay``) or Adam, and
    ``make_scheduler(optimizer, schedule, lr, total_steps)``."""
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    return opt, make_scheduler(opt, schedule, lr, total_steps)


def make_scheduler(optimizer, schedule="onecycle", lr=0.1, total_steps=None):
    """The per-batch LR scheduler of ``schedule`` on any torch optimizer (also ART's, project p1), or None.
    ``"onecycle"``: LR linearly up to ``lr`` over 40% of ``total_steps`` batches, then down to 0 (Wong et
    al. 2020); ``"piecewise"``: ``lr``, then ``lr / 10`` for the last 20% of batches (Gowal et al. 2018's
    IBP runs); ``"multistep"``: ``lr``, ``lr / 10`` from 50% and ``lr / 100`` from 75% of the batches
    (the 200-epoch schedule of Madry et al. 2018 and Rice et al. 2020, decays at epochs 100 and 150,
    under which robust overfitting appears); ``"constant"``: none (the optimizer keeps its LR)."""
    if schedule in ("onecycle", "piecewise", "multistep") and (not total_steps or total_steps < 1):
        raise ValueError(f"schedule={schedule!r} needs total_steps >= 1 (batches in all epochs), got {total_steps!r}")
    if schedule == "piecewise":
        for group in optimizer.param_groups:
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 if step >= 0.8 * total_steps else 1.0)
    if schedule == "multistep":
        for group in optimizer.param_groups:
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.01 if step >= 0.75 * total_steps else 0.1 if step >= 0.5 * total_steps else 1.0)
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.4,
                                                   anneal_strategy="linear")
    if schedule == "constant":
        return None
    raise ValueError(f"schedule must be 'onecycle', 'piecewise', 'multistep' or 'constant', got {schedule!r}")


def fit(model, loader, epochs, lr=0.1, attack=None, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
        schedule="onecycle", progress=True, ratio: float = 1.0, loss_fn=None, desc: str = "epoch"):
    """Train ``epochs`` epochs; returns the list of per-epoch ``train_epoch`` results.

    optimizer: ``"sgd"`` (momentum, weight decay) or ``"adam"``; schedule: ``"onecycle"``
    (linear up then down over all batches, as in Wong et al. 2020), ``"piecewise"`` or
    ``"constant"``. loss_fn: the loss hook (see the module docstring; default cross-entropy).
    """
    total = epochs * len(loader)
    opt, sched = make_optimizer(model, lr, total, momentum, weight_decay, optimizer, schedule)
    history = []
    for epoch in tqdm(range(epochs), desc="epochs", disable=not progress or epochs == 1):
        history.append(train_epoch(model, loader, opt, attack, sched, progress=progress, desc=f"{desc} {epoch + 1}/{epochs}",
                                   ratio=ratio, loss_fn=loss_fn, step=epoch * len(loader), total_steps=total))
    return history


def train_classifier(model, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0, progress: bool = True, attack=None):
    """Train ``model`` in place on tensors (x, y) with ``fit`` (Adam, one-cycle); returns it in eval mode.
    The small demonstrations of notebooks 01 and 06b (``threats`` and ``poisoning`` call it)."""
    from torch.utils.data import TensorDataset

    from ..data import make_loader
    from ..validation import check_images, check_labels, check_positive_int

    check_images(x)
    y = check_labels(y, x)
    loader = make_loader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=seed)
    fit(model, loader, check_positive_int(epochs, "epochs"), lr=lr, optimizer="adam", weight_decay=0.0,
        attack=attack, progress=progress)
    return model.eval()
