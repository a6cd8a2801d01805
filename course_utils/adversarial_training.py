"""Adversarial training (notebooks 04 and 05, project p1): training attacks, curricula, early stopping.

Madry et al. (2018) train on the saddle-point problem ``min_theta E_(x,y) max_{||delta||<=eps} L(f_theta(x + delta), y)``:
the inner maximization is an attack from ``course_utils.attacks``, the outer one SGD
(``training.train_step``). This module adds what a real run needs:

- ``TrainingAttack(kind, eps, alpha, steps)``: ``"fgsm"`` (one step from x, Goodfellow et al. 2015),
  ``"fgsm_rs"`` (random start, then one step of alpha, "fast" adversarial training of Wong, Rice &
  Kolter 2020) and ``"pgd"`` (steps of alpha from a random start, Madry et al. 2018).
- ``curriculum(epochs, eps, steps, ramp_epochs)``: per-epoch eps and steps growing from weak to
  full strength (curriculum adversarial training, Cai et al. 2018).
- ``adversarial_fit``: epochs of mixed clean/adversarial batches with a PGD check on held-out images
  after each epoch, early stopping (patience, or a sudden drop = catastrophic overfitting, Wong et
  al. 2020), restoring the best epoch (robust overfitting, Rice, Wong & Kolter 2020) and checkpoints.
- ``robustness_ladder``: weak PGD, strong PGD with restarts and AutoAttack (Croce & Hein 2020, via
  torchattacks) on the same images (the gradient-masking checks are ``evaluation.gradient_masking_checks``).

x: (B, C, H, W) in [0, 1]; eps and alpha in pixel units (0.3 on MNIST, 8/255 on CIFAR-10).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import attacks
from .evaluation import evaluate, threat_string
from .training import make_optimizer, save_checkpoint, train_epoch
from .validation import check_nonnegative, check_positive_int

TRAINING_ATTACKS = ("fgsm", "fgsm_rs", "pgd")


@dataclass
class TrainingAttack:
    """An attack used inside training: ``attack(model, x, y) -> x_adv`` in the eps-ball, in [0, 1].

    alpha defaults: eps for ``fgsm``, 1.25 eps for ``fgsm_rs`` (Wong et al. 2020), 2.5 eps / steps
    for ``pgd`` (Madry et al. 2018). eps = 0 returns x unchanged (standard training).
    """

    kind: str
    eps: float
    alpha: float | None = None
    steps: int = 1
    norm: str = "linf"
    generator: torch.Generator | None = None

    def __post_init__(self):
        if self.kind not in TRAINING_ATTACKS:
            raise ValueError(f"kind must be one of {TRAINING_ATTACKS}, got {self.kind!r}")
        check_nonnegative(self.eps, "eps")
        self.steps = check_positive_int(self.steps if self.kind == "pgd" else 1, "steps")
        if self.alpha is None:
            self.alpha = {"fgsm": self.eps, "fgsm_rs": 1.25 * self.eps, "pgd": 2.5 * self.eps / self.steps}[self.kind]
        check_nonnegative(self.alpha, "alpha")

    def __call__(self, model, x, y):
        if self.eps == 0:
            return x
        if self.kind == "fgsm" and self.alpha == self.eps:
            return attacks.fgsm(model, x, y, self.eps, self.norm)
        return attacks.pgd(model, x, y, self.eps, self.alpha, self.steps, self.norm,
                           random_start=self.kind != "fgsm", generator=self.generator)

    def __str__(self):
        return threat_string(self.kind.upper().replace("_RS", "-RS"), norm=self.norm, eps=self.eps,
                             alpha=round(self.alpha, 6), steps=self.steps)


def curriculum(epochs: int, eps: float, steps: int = 1, ramp_epochs: int | None = None,
               eps_start: float = 0.0, steps_start: int = 1) -> list[dict]:
    """Per-epoch attack strength, ramped linearly to (eps, steps) over ``ramp_epochs``, then held.

    Epoch e (0-based) gets ``eps_start + (eps - eps_start) * min(1, (e + 1) / ramp_epochs)`` and the
    steps rounded the same way. ``ramp_epochs=None`` ramps over the first half; ``ramp_epochs=0`` is
    no curriculum (full strength from the start). Returns ``[{"epoch", "eps", "steps"}, ...]``.
    """
    epochs = check_positive_int(epochs, "epochs")
    ramp = max(epochs // 2, 1) if ramp_epochs is None else int(ramp_epochs)
    if ramp < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs!r}")
    out = []
    for e in range(epochs):
        t = 1.0 if ramp == 0 else min(1.0, (e + 1) / ramp)
        out.append({"epoch": e + 1, "eps": eps_start + (eps - eps_start) * t,
                    "steps": max(1, int(round(steps_start + (steps - steps_start) * t)))})
    return out


@dataclass
class FitResult:
    """What ``adversarial_fit`` did: a per-epoch history (DataFrame), the epoch kept and why it stopped."""

    history: "object"  # pandas DataFrame: epoch, eps, steps, loss, train_acc, val_clean, val_robust, seconds
    best_epoch: int | None
    stopped: str
    seconds: float

    @property
    def robust_overfitting(self) -> float:
        """Best minus last held-out robust accuracy (Rice et al. 2020): > 0 means the end got worse."""
        h = self.history
        if "val_robust" not in h or h["val_robust"].isna().all():
            return float("nan")
        return float(h["val_robust"].max() - h["val_robust"].iloc[-1])


def adversarial_fit(model, loader, epochs: int, eps: float, kind: str = "pgd", alpha: float | None = None,
                    steps: int = 10, ratio: float = 1.0, schedule=None, lr: float = 0.1, optimizer: str = "sgd",
                    lr_schedule: str = "onecycle", weight_decay: float = 5e-4, val=None, val_steps: int = 10,
                    val_alpha: float | None = None, patience: int | None = None, drop: float | None = None,
                    restore_best: bool = True, checkpoint=None, generator=None, progress: bool = True) -> FitResult:
    """Adversarial training with a held-out PGD check after every epoch.

    Each batch: the first ``ratio`` of it is replaced by ``TrainingAttack(kind, eps_e, alpha, steps_e)``
    examples (eps_e, steps_e from ``schedule``, a ``curriculum(...)`` list, else constant), then
    one optimizer step. ``val=(x, y)``: held-out images checked with PGD-``val_steps`` at eps (step
    ``val_alpha``, default eps/4, random start). Stops when ``patience`` epochs pass without a new
    best, or when robust accuracy falls more than ``drop`` below the best (catastrophic overfitting);
    the best epoch's weights are restored (``restore_best``) and saved to ``checkpoint`` (a path).
    """
    import pandas as pd

    epochs = check_positive_int(epochs, "epochs")
    schedule = schedule or curriculum(epochs, eps, steps, ramp_epochs=0)
    if len(schedule) < epochs:
        raise ValueError(f"schedule has {len(schedule)} entries for {epochs} epochs")
    opt, sched = make_optimizer(model, lr, epochs * len(loader), weight_decay=weight_decay, optimizer=optimizer,
                                schedule=lr_schedule)
    val_alpha = eps / 4 if val_alpha is None else val_alpha
    rows, best, best_epoch, best_state, stopped = [], -1.0, None, None, "completed"
    start = time.perf_counter()
    for e in tqdm(range(epochs), desc="epochs", disable=not progress):
        s = schedule[e]
        a = alpha * s["eps"] / eps if alpha is not None and eps > 0 else alpha  # same alpha/eps through a curriculum
        attack = TrainingAttack(kind, s["eps"], a, s["steps"], generator=generator)
        t0 = time.perf_counter()
        r = train_epoch(model, loader, opt, attack, sched, progress=progress, desc=f"epoch {e + 1}/{epochs}", ratio=ratio)
        row = {"epoch": e + 1, "eps": s["eps"], "steps": attack.steps, "loss": r["loss"], "train_acc": r["accuracy"],
               "seconds": time.perf_counter() - t0}
        if val is not None:
            row["val_clean"] = evaluate(model, val, progress=False).accuracy
            pgd = lambda m, x, y: attacks.pgd(m, x, y, eps, val_alpha, val_steps, generator=generator)  # noqa: E731
            row["val_robust"] = evaluate(model, val, pgd, progress=False).accuracy
            if row["val_robust"] > best:
                best, best_epoch, best_state = row["val_robust"], e + 1, copy.deepcopy(model.state_dict())
        rows.append(row)
        if val is not None and drop is not None and row["val_robust"] < best - drop:
            stopped = f"robust accuracy fell {best - row['val_robust']:.2f} below its best (catastrophic overfitting)"
            break
        if val is not None and patience is not None and e + 1 - best_epoch >= patience:
            stopped = f"no better held-out robust accuracy for {patience} epochs"
            break
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None:
        save_checkpoint(model, checkpoint, {"best_epoch": best_epoch, "kind": kind, "eps": eps, "stopped": stopped})
    model.eval()
    return FitResult(pd.DataFrame(rows), best_epoch, stopped, time.perf_counter() - start)


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """Accuracy per true class: (classes,) float, NaN for a class absent from y. pred, y: (N,) ints."""
    pred, y = torch.as_tensor(pred).flatten(), torch.as_tensor(y).flatten()
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    hits = torch.zeros(classes, dtype=torch.float64).index_add_(0, y, (pred == y).double())
    counts = torch.bincount(y, minlength=classes).double()
    return torch.where(counts > 0, hits / counts.clamp_min(1), torch.tensor(float("nan"), dtype=torch.float64))


def autoattack(eps: float, norm: str = "Linf", version: str = "standard", n_classes: int = 10, seed: int = 0):
    """``attack(model, x, y)`` running torchattacks' AutoAttack (Croce & Hein 2020) on [0, 1] inputs."""
    import torchattacks

    cache = {}

    def attack(model, x, y):
        if id(model) not in cache:
            cache[id(model)] = torchattacks.AutoAttack(model, norm=norm, eps=eps, version=version,
                                                       n_classes=n_classes, seed=seed)
        return cache[id(model)](x, y).detach()

    return attack


def robustness_ladder(model, data, eps: float, weak=(20, None, 1), strong=(50, None, 10), auto: bool = True,
                      n_classes: int = 10, batch_size: int = 250, progress: bool = True, generator=None):
    """Clean, weak PGD, strong PGD and AutoAttack accuracy on the same images: a list of ``EvalResult``.

    weak / strong: ``(steps, alpha, restarts)``; alpha None means eps/4. Each result carries its
    threat model (norm, eps, steps, step, restarts, n images) and a 95% Clopper-Pearson interval.
    """
    out = [evaluate(model, data, threat="clean", batch_size=batch_size, progress=False)]
    for name, (steps, alpha, restarts) in (("PGD (weak)", weak), ("PGD (strong)", strong)):
        a = eps / 4 if alpha is None else alpha
        pgd = lambda m, x, y, a=a, s=steps, r=restarts: attacks.pgd(m, x, y, eps, a, s, restarts=r, generator=generator)  # noqa: E731
        threat = threat_string(name, norm="linf", eps=eps, steps=steps, step=a, restarts=restarts)
        out.append(evaluate(model, data, pgd, threat=threat, batch_size=batch_size, progress=progress))
    if auto:
        out.append(evaluate(model, data, autoattack(eps, n_classes=n_classes), batch_size=batch_size, progress=progress,
                            threat=threat_string("AutoAttack (standard)", norm="linf", eps=eps)))
    return out
