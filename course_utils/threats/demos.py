"""Small, real demonstrations of two threats from notebook 01: model extraction and a backdoor.

- ``PredictionAPI``: a deployed classifier as an outsider sees it: labels only, a query budget,
  a query count (what the service could log).
- ``extract_model``: train a copy (the "student") on the labels the API returns for the
  attacker's own unlabeled images (Tramer et al. 2016, "Stealing machine learning models via
  prediction APIs"; Papernot et al. 2017; Orekondy et al. 2019, "Knockoff nets").
- ``agreement``: how often two models predict the same class, the fidelity of an extraction.
- ``stamp_trigger`` / ``poison`` / ``trigger_success`` / ``predict``: BadNets (Gu et al. 2017), from
  ``course_utils.poisoning`` (the one place for triggers; notebook 06b detects, removes and certifies
  against them): stamp a small white square on a fraction of the training images, relabel them to a
  target class, and measure how often the trigger turns a test image into the target.

Training goes through ``course_utils.training.fit`` (``train_classifier``); images are
(B, C, H, W) in [0, 1], labels int64 (B,).
"""
from __future__ import annotations

import math

import torch

from ..evaluation import EvalResult
from ..poisoning.attacks import poison, predict, stamp_trigger, trigger_success  # noqa: F401  (notebook 01 calls them through threats)
from ..training import train_classifier  # noqa: F401  (notebook 01 calls it through threats)
from ..validation import check_images, check_positive_int


class PredictionAPI:
    """A classifier behind an API: ``api(x)`` returns labels (N,) and counts queries.

    budget: the most images it will label (``None``: unlimited); a request beyond it raises
    ``PermissionError``, as a rate limit would. ``queries`` is the number of images labelled so far.
    """

    def __init__(self, model, budget: int | None = None):
        if budget is not None:
            check_positive_int(budget, "budget")
        self._model, self.budget, self.queries = model, budget, 0

    @property
    def remaining(self):
        return None if self.budget is None else self.budget - self.queries

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        if self.budget is not None and self.queries + len(x) > self.budget:
            raise PermissionError(f"query budget exhausted: {self.queries} of {self.budget} used, "
                                  f"{len(x)} more asked for")
        self.queries += len(x)
        return predict(self._model, x)


def agreement(model_a, model_b, x: torch.Tensor) -> EvalResult:
    """Fraction of images in x on which both models predict the same class (with a 95% CI)."""
    check_images(x)
    same = (predict(model_a, x) == predict(model_b, x)).sum().item()
    return EvalResult(int(same), len(x), "agreement with victim")


def extract_model(api: PredictionAPI, student, pool_x: torch.Tensor, budget: int, epochs: int = 5,
                  min_steps: int = 0, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True):
    """Query ``api`` on the first ``budget`` images of ``pool_x`` and train ``student`` on its labels.

    pool_x: (N, C, H, W) in [0, 1], the attacker's own unlabeled images (shuffle them first).
    The student trains for ``epochs`` epochs, or more so that it takes at least ``min_steps``
    gradient steps (small budgets would otherwise get too few updates). Returns the student.
    """
    check_images(pool_x, "pool_x")
    budget = check_positive_int(budget, "budget")
    if budget > len(pool_x):
        raise ValueError(f"budget {budget} exceeds the attacker's pool of {len(pool_x)} images")
    x = pool_x[:budget]
    y = torch.cat([api(x[i:i + 256]) for i in range(0, budget, 256)])
    steps_per_epoch = math.ceil(budget / batch_size)
    epochs = max(check_positive_int(epochs, "epochs"), math.ceil(min_steps / steps_per_epoch))
    return train_classifier(student, x, y, epochs, batch_size, lr, seed, progress)


def extraction_curve(victim, build_student, pool_x: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor,
                     budgets, epochs: int = 3, min_steps: int = 0, seed: int = 0, progress: bool = False):
    """Extract a copy at each query budget; a DataFrame with queries, agreement with the victim
    (and its 95% CI) and the copy's test accuracy on (eval_x, eval_y), images disjoint from the pool."""
    import pandas as pd

    rows = []
    for budget in budgets:
        torch.manual_seed(seed + budget)
        api = PredictionAPI(victim, budget=budget)
        student = extract_model(api, build_student(), pool_x, budget, epochs=epochs, min_steps=min_steps,
                                seed=seed, progress=progress)
        agree = agreement(victim, student, eval_x)
        rows.append({"queries": api.queries, "agreement": agree.accuracy, "ci_low": agree.ci[0],
                     "ci_high": agree.ci[1], "copy's test accuracy": (predict(student, eval_x) == eval_y).float().mean().item(),
                     "eval images": agree.n})
    return pd.DataFrame(rows)


def backdoor_table(train_poisoned, x_train, y_train, eval_x, eval_y, fractions, target: int = 0, size: int = 3,
                   seed: int = 0):
    """For each poisoned fraction: ``train_poisoned(x, y, fraction) -> model`` on the poisoned data
    (fraction 0: the clean data), then clean accuracy and trigger success with its 95% CI."""
    import pandas as pd

    rows = []
    for fraction in fractions:
        xp, yp, idx = poison(x_train, y_train, fraction, target, torch.Generator().manual_seed(seed), size=size)
        model = train_poisoned(xp, yp, fraction)
        asr = trigger_success(model, eval_x, eval_y, target, size=size)
        rows.append({"poisoned fraction": fraction, "poisoned images": len(idx),
                     "clean accuracy": (predict(model, eval_x) == eval_y).float().mean().item(),
                     "trigger success": asr.accuracy, "ts_ci_low": asr.ci[0], "ts_ci_high": asr.ci[1],
                     "test images (true class != target)": asr.n})
    return pd.DataFrame(rows)
