"""Clean and robust accuracy with honest reporting (threat model, n, confidence interval).

``evaluate(model, data, attack=...)`` runs over a DataLoader, a Dataset or an ``(x, y)`` pair with a
tqdm progress bar and returns an ``EvalResult``; ``epsilon_sweep`` does it across radii; and
``results_table`` lays results out as a DataFrame with the threat model beside every number.
Confidence intervals are Clopper-Pearson (exact binomial) intervals from statsmodels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from statsmodels.stats.proportion import proportion_confint
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .validation import check_images, check_labels, eval_mode


@dataclass
class EvalResult:
    """Accuracy over ``n`` examples with a (1 - alpha) Clopper-Pearson interval, and its threat model."""

    correct: int
    n: int
    threat: str = "clean"
    alpha: float = 0.05
    details: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        lo, hi = proportion_confint(self.correct, self.n, alpha=self.alpha, method="beta")
        return float(lo), float(hi)

    def row(self) -> dict:
        lo, hi = self.ci
        return {"threat model": self.threat, "images": self.n, "accuracy": self.accuracy, "ci_low": lo, "ci_high": hi, **self.details}

    def __str__(self):
        lo, hi = self.ci
        return f"{self.threat}: {100 * self.accuracy:.1f}% ({self.correct}/{self.n}; 95% CI {100 * lo:.1f}-{100 * hi:.1f})"


def _batches(data, batch_size):
    if isinstance(data, DataLoader):
        return data, len(data)
    if isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return loader, len(loader)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        check_images(x)
        check_labels(y, x)
        n = (len(x) + batch_size - 1) // batch_size
        return ((x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]) for i in range(n)), n
    raise ValueError(f"data must be a DataLoader, a Dataset or an (x, y) pair of tensors, got {type(data).__name__}")


def threat_string(attack_name: str = "clean", **params) -> str:
    """``threat_string("PGD", norm="linf", eps=0.3, steps=40, restarts=1)`` -> ``"PGD linf eps=0.3 steps=40 restarts=1"``."""
    if attack_name == "clean":
        return "clean"
    return " ".join([attack_name] + [f"{k}={_fmt(v)}" if k != "norm" else str(v) for k, v in params.items()])


def _fmt(v):
    """0.0313725 -> '8/255' (CIFAR-style radii), 0.3 -> '0.3'."""
    if isinstance(v, float) and 0 < v < 1 and abs(v * 255 - round(v * 255)) < 1e-6 and v * 255 >= 1:
        return f"{round(v * 255)}/255" if round(v * 255) % 51 else f"{v:g}"
    return f"{v:g}" if isinstance(v, float) else str(v)


@torch.no_grad()
def _predict(model, x):
    return model(x).argmax(1)


def evaluate(model, data, attack=None, threat: str | None = None, batch_size: int = 256, device=None,
             progress: bool = True, alpha: float = 0.05) -> EvalResult:
    """Accuracy of ``model`` on ``data``, clean or under ``attack(model, x, y) -> x_adv``.

    data: DataLoader, Dataset or ``(x, y)`` with x (N, C, H, W) in [0, 1]. Examples move to
    ``device`` (default: the model's). The model is evaluated in eval mode and restored.
    """
    device = device or next(iter(model.parameters())).device
    batches, total = _batches(data, batch_size)
    correct = n = 0
    with eval_mode(model):
        bar = tqdm(batches, total=total, disable=not progress, desc=threat or ("attack" if attack else "clean"), leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            if attack is not None:
                x = attack(model, x, y)
            correct += (_predict(model, x) == y).sum().item()
            n += len(y)
            bar.set_postfix(acc=f"{correct / n:.3f}")
    return EvalResult(correct, n, threat or ("attack" if attack else "clean"), alpha)


def epsilon_sweep(model, data, epsilons, make_attack, name: str = "PGD", progress: bool = True, **kwargs):
    """Robust accuracy for each eps: ``make_attack(eps)`` returns an ``attack(model, x, y)``.

    Returns a DataFrame with columns eps, accuracy, ci_low, ci_high, images (eps = 0 is clean).
    """
    import pandas as pd

    rows = []
    for eps in tqdm(list(epsilons), desc=f"{name} sweep", disable=not progress):
        attack = None if eps == 0 else make_attack(eps)
        r = evaluate(model, data, attack, threat=f"{name} eps={eps:g}", progress=False, **kwargs)
        rows.append({"eps": eps, **{k: v for k, v in r.row().items() if k != "threat model"}})
    return pd.DataFrame(rows)


def results_table(results, **columns):
    """A DataFrame of ``EvalResult`` rows; extra keyword columns (e.g. ``model="standard"``) are added."""
    import pandas as pd

    df = pd.DataFrame([r.row() for r in results])
    for k, v in columns.items():
        df.insert(0, k, v)
    return df


def gradient_masking_checks(model, x, y, eps: float, alpha: float, steps: int = 40, restarts: int = 5,
                            norm: str = "linf", large_eps: float | None = None, seed: int = 0):
    """The sanity checks of notebook 03 (Athalye et al. 2018; Carlini et al. 2019, "On Evaluating
    Adversarial Robustness"), on one batch ``x`` (B, C, H, W) in [0, 1]:

    1. iterative beats single-step: PGD accuracy <= FGSM accuracy;
    2. more steps never help the model: PGD with ``steps`` <= PGD with ``steps // 4``;
    3. restarts never help the model: PGD with ``restarts`` <= PGD with one;
    4. unbounded attacks win: accuracy at ``large_eps`` (default: 0.5 for linf, 10 for l2)
       is at most 2% (the image can be turned into another class).

    Every PGD run starts from the same seeded random start, so the first restart of (3) is the
    single run. Returns a DataFrame with one row per check: what was compared, the two accuracies, passed.
    A failed row is a sign of gradient masking or a broken attack, not of robustness.
    """
    import pandas as pd

    from . import attacks

    large_eps = large_eps if large_eps is not None else (0.5 if norm == "linf" else 10.0)

    def acc(x_adv):
        return evaluate(model, (x_adv, y), progress=False).accuracy

    pgd = lambda e, s, r: attacks.pgd(model, x, y, e, alpha if e == eps else 2.5 * e / s, s, norm=norm,  # noqa: E731
                                      restarts=r, generator=torch.Generator().manual_seed(seed))
    few = max(steps // 4, 1)
    a_fgsm = acc(attacks.fgsm(model, x, y, eps, norm=norm))
    a_few, a_pgd, a_restarts = acc(pgd(eps, few, 1)), acc(pgd(eps, steps, 1)), acc(pgd(eps, steps, restarts))
    a_large = acc(pgd(large_eps, steps, 1))
    rows = [
        ("iterative beats single-step", f"FGSM vs PGD-{steps}", a_fgsm, a_pgd, a_pgd <= a_fgsm),
        ("more steps never help the model", f"PGD-{few} vs PGD-{steps}", a_few, a_pgd, a_pgd <= a_few),
        ("restarts never help the model", f"PGD-{steps} x1 vs x{restarts}", a_pgd, a_restarts, a_restarts <= a_pgd),
        ("accuracy reaches 0 as eps grows", f"PGD-{steps} at eps={large_eps:g}", float("nan"), a_large, a_large <= 0.02),
    ]
    return pd.DataFrame(rows, columns=["check", "comparison", "weaker attack", "stronger attack", "passed"])
