"""Clean and robust accuracy with honest reporting (threat model, n, confidence interval).

``evaluate(model, data, attack=...)`` runs over a DataLoader, a Dataset or an ``(x, y)`` pair with a
tqdm progress bar and returns an ``EvalResult``; ``epsilon_sweep`` does it across radii; and
``results_table`` lays results out as a DataFrame with the threat model beside every number.
An ``attacks.AttackConfig`` passed as ``attack`` names its own result (``str(cfg)``).
Confidence intervals are Clopper-Pearson (exact binomial) intervals from statsmodels.

Also here: ``gradient_masking_checks`` (the sanity checklist of notebook 03),
``robustness_ladder`` (clean, weak PGD, strong PGD with restarts and AutoAttack on the same
images; notebooks 04, 05) and ``per_class_accuracy``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import torch
from statsmodels.stats.proportion import proportion_confint
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .attacks import AttackConfig, format_number
from .interop import autoattack
from .validation import (check_images, check_label_range, check_labels, check_positive_int, check_probability,
                         eval_mode)


@dataclass
class EvalResult:
    """Accuracy over ``n`` examples with a (1 - alpha) Clopper-Pearson interval, and its threat model.

    correct, n: integers with 0 <= correct <= n; alpha in (0, 1). Anything else is a ValueError."""

    correct: int
    n: int
    threat: str = "clean"
    alpha: float = 0.05
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, v in (("correct", self.correct), ("n", self.n)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if self.correct > self.n:
            raise ValueError(f"correct must be <= n, got correct={self.correct}, n={self.n}")
        self.alpha = check_probability(self.alpha, "alpha")

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
        return f"{self.threat}: {100 * self.accuracy:.1f}% ({self.correct}/{self.n}; {100 * (1 - self.alpha):g}% CI {100 * lo:.1f}-{100 * hi:.1f})"


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
    """``threat_string("AutoAttack", norm="linf", eps=8/255)`` -> ``"AutoAttack linf eps=8/255"``.

    For attacks that are not an ``attacks.AttackConfig`` (whose ``str()`` is its threat model).
    """
    if attack_name == "clean":
        return "clean"
    return " ".join([attack_name] + [f"{k}={format_number(v)}" if k != "norm" else str(v) for k, v in params.items()])


def describe_attack(attack) -> str:
    """The threat-model string of ``attack``: ``str(attack)`` for an ``AttackConfig``, else "attack"."""
    if attack is None:
        return "clean"
    return str(attack) if isinstance(attack, AttackConfig) else "attack"


@torch.no_grad()
def _predict(model, x, y):
    """Predicted classes (B,); y is range-checked against the model's number of classes (the logits' width)."""
    logits = model(x)
    check_label_range(y, logits.shape[1])
    return logits.argmax(1)


def evaluate(model, data, attack=None, threat: str | None = None, batch_size: int = 256, device=None,
             progress: bool = True, alpha: float = 0.05) -> EvalResult:
    """Accuracy of ``model`` on ``data``, clean or under ``attack(model, x, y) -> x_adv``.

    attack: an ``attacks.AttackConfig`` (its threat model is the result's ``threat``) or any
    callable (then pass ``threat``, the string printed next to the number).
    data: DataLoader, Dataset or ``(x, y)`` with x (N, C, H, W) in [0, 1]. Examples move to
    ``device`` (default: the model's). The model is evaluated in eval mode and restored.
    Labels must lie in [0, num_classes) of the model (checked on every batch); batch_size >= 1;
    alpha in (0, 1) is the significance level of the result's interval.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    alpha = check_probability(alpha, "alpha")
    device = device or next(iter(model.parameters())).device
    batches, total = _batches(data, batch_size)
    threat = threat or describe_attack(attack)
    correct = n = 0
    with eval_mode(model):
        bar = tqdm(batches, total=total, disable=not progress, desc=threat, leave=False)
        for x, y in bar:
            x, y = x.to(device), check_labels(y, x).to(device)
            if attack is not None:
                x = attack(model, x, y)
            correct += (_predict(model, x, y) == y).sum().item()
            n += len(y)
            bar.set_postfix(acc=f"{correct / n:.3f}")
    return EvalResult(correct, n, threat, alpha)


def epsilon_sweep(model, data, epsilons, attack, progress: bool = True, **kwargs):
    """Robust accuracy for each eps under ``attack`` (an ``AttackConfig``) with its eps replaced.

    alpha follows eps (the config's default rule, or the same alpha / eps ratio when alpha was set).
    Returns a DataFrame with columns eps, accuracy, ci_low, ci_high, images, threat model (eps = 0 is clean).
    """
    import pandas as pd

    ratio = attack.alpha / attack.eps if attack.eps > 0 else None
    rows = []
    for eps in tqdm(list(epsilons), desc=f"{attack.label} sweep", disable=not progress):
        cfg = None if eps == 0 else attack.replace(eps=eps, alpha=ratio * eps if ratio is not None else None)
        r = evaluate(model, data, cfg, progress=False, **kwargs)
        rows.append({"eps": eps, **{k: v for k, v in r.row().items() if k != "threat model"}, "threat model": r.threat})
    return pd.DataFrame(rows)


def results_table(results, **columns):
    """A DataFrame of ``EvalResult`` rows; extra keyword columns (e.g. ``model="standard"``) are added."""
    import pandas as pd

    df = pd.DataFrame([r.row() for r in results])
    for k, v in columns.items():
        df.insert(0, k, v)
    return df


def gradient_masking_checks(model, x, y, attack: AttackConfig, restarts: int = 5, large_eps: float | None = None,
                            seed: int = 0):
    """The sanity checks of notebook 03 (Athalye et al. 2018; Carlini et al. 2019, "On Evaluating
    Adversarial Robustness"), on one batch ``x`` (B, C, H, W) in [0, 1] under ``attack`` (a PGD
    ``AttackConfig``, e.g. ``AttackConfig(0.3, steps=40)``):

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

    steps, norm = attack.steps, attack.norm
    large_eps = large_eps if large_eps is not None else (0.5 if norm == "linf" else 10.0)

    def acc(cfg):
        cfg = cfg.replace(generator=torch.Generator().manual_seed(seed)) if cfg.kind == "pgd" else cfg
        return evaluate(model, (x, y), cfg, progress=False).accuracy

    few = max(steps // 4, 1)
    single = attack.replace(restarts=1)
    a_fgsm = acc(AttackConfig.fgsm(attack.eps, norm))
    a_few, a_pgd = acc(single.replace(steps=few, alpha=attack.alpha)), acc(single)
    a_restarts = acc(single.replace(restarts=restarts))
    a_large = acc(single.replace(eps=large_eps))
    rows = [
        ("iterative beats single-step", f"FGSM vs PGD-{steps}", a_fgsm, a_pgd, a_pgd <= a_fgsm),
        ("more steps never help the model", f"PGD-{few} vs PGD-{steps}", a_few, a_pgd, a_pgd <= a_few),
        ("restarts never help the model", f"PGD-{steps} x1 vs x{restarts}", a_pgd, a_restarts, a_restarts <= a_pgd),
        ("accuracy reaches 0 as eps grows", f"PGD-{steps} at eps={large_eps:g}", float("nan"), a_large, a_large <= 0.02),
    ]
    df = pd.DataFrame(rows, columns=["check", "comparison", "weaker attack", "stronger attack", "passed"])
    df.attrs["threat model"] = str(single)
    return df


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Accuracy per true class: (num_classes,) float, NaN for a class absent from y. pred, y: (N,) ints."""
    pred, y = torch.as_tensor(pred).flatten(), torch.as_tensor(y).flatten()
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}")
    y = check_labels(y, pred, num_classes=num_classes)
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, y, (pred == y).double())
    counts = torch.bincount(y, minlength=num_classes).double()
    return torch.where(counts > 0, hits / counts.clamp_min(1), torch.tensor(float("nan"), dtype=torch.float64))


def robustness_ladder(model, data, eps: float, weak: AttackConfig | None = None, strong: AttackConfig | None = None,
                      auto: bool = True, num_classes: int = 10, batch_size: int = 250, progress: bool = True,
                      generator=None):
    """Clean, weak PGD, strong PGD and AutoAttack accuracy on the same images: a list of ``EvalResult``.

    weak / strong: ``AttackConfig``s (default: PGD-20 and PGD-50 x 10 restarts at ``eps`` with the
    default step). Each result carries its threat model and a 95% Clopper-Pearson interval.
    """
    weak = weak or AttackConfig(eps, steps=20, generator=generator)
    strong = strong or AttackConfig(eps, steps=50, restarts=10, generator=generator)
    out = [evaluate(model, data, threat="clean", batch_size=batch_size, progress=False)]
    for name, cfg in (("weak", weak), ("strong", strong)):
        r = evaluate(model, data, cfg, batch_size=batch_size, progress=progress)
        r.threat = f"{r.threat} ({name})"
        out.append(r)
    if auto:
        out.append(evaluate(model, data, autoattack(eps, num_classes=num_classes), batch_size=batch_size, progress=progress,
                            threat=threat_string("AutoAttack (standard)", norm="linf", eps=eps)))
    return out
