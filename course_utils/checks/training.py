"""Checks for the adversarial-training exercises of notebooks 04 and 05 and project p1."""
from __future__ import annotations

import torch
from torch import nn

from .. import attacks, training
from ..evaluation import per_class_accuracy
from . import call_learner, check_value, compare
from .attacks import tiny_classifier


def check_adversarial_step(learner_step, eps: float = 0.2, alpha: float = 0.05, steps: int = 5, lr: float = 0.1):
    """learner_step(model, optimizer, x, y, eps, alpha, steps) -> loss must match
    ``training.train_step`` with ``attacks.pgd(..., random_start=False)`` (loss and updated weights)."""

    def run(step_fn, seed):
        g = torch.Generator().manual_seed(seed)
        model = tiny_classifier(g)
        x = torch.rand(8, 1, 2, 6, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        loss = step_fn(model, opt, x, y)
        return torch.cat([torch.as_tensor(float(loss)).view(1)] + [p.detach().flatten() for p in model.parameters()])

    def reference(model, opt, x, y):
        attack = attacks.AttackConfig(eps, steps=steps, alpha=alpha, random_start=False)
        return training.train_step(model, opt, x, y, attack)[0]

    return compare("adversarial_step", lambda s: run(lambda *a: learner_step(*a, eps, alpha, steps), s),
                   lambda s: run(reference, s), lambda g: (int(torch.randint(0, 2**31, (1,), generator=g)),), tol=1e-5)


def _collapse_curves(generator):
    """Synthetic per-epoch PGD accuracies for 4 FGSM step sizes: the larger ones collapse."""
    alphas = [0.1, 0.2, 0.3, 0.4]
    k = int(torch.randint(1, 4, (1,), generator=generator))  # alphas[k:] collapse
    curves = {}
    for i, a in enumerate(alphas):
        base = torch.linspace(0.3, 0.6 + 0.05 * i, 6) + 0.01 * torch.rand(6, generator=generator)
        if i >= k:
            at = int(torch.randint(2, 5, (1,), generator=generator))
            base[at:] = 0.02 * torch.rand(6 - at, generator=generator)
        curves[a] = [round(float(v), 4) for v in base]
    return curves, alphas[k - 1]


def check_safe_alpha(learner_fn, drop: float = 0.2, trials: int = 4):
    """learner_fn(curves, drop) -> the largest alpha whose PGD-accuracy curve never falls more than
    ``drop`` below its best so far (no catastrophic overfitting)."""
    for t in range(trials):
        curves, expected = _collapse_curves(torch.Generator().manual_seed(t))
        got = call_learner("safe_alpha", learner_fn, curves, drop)
        ok = got is not None and abs(float(got) - expected) < 1e-9
        if not ok:
            print(f"[safe_alpha] curves {curves}: got {got}, expected {expected}: FAILED")
            raise AssertionError(f"safe_alpha: got {got}, expected {expected}")
    print(f"[safe_alpha] {trials} seeded sets of curves: PASSED")


def tradeoff_reference(clean_std, robust_std, clean_adv, robust_adv) -> float:
    """Clean-accuracy points paid per robust-accuracy point gained by adversarial training."""
    return (clean_std - clean_adv) / (robust_adv - robust_std)


def check_tradeoff(learner_fn):
    """learner_fn(clean_std, robust_std, clean_adv, robust_adv) -> points of clean accuracy lost per
    point of robust accuracy gained."""
    def inputs(g):
        v = torch.rand(4, generator=g, dtype=torch.float64)
        return 0.9 + 0.09 * v[0], 0.1 * v[1], 0.6 + 0.2 * v[2], 0.3 + 0.3 * v[3]

    def as_tensor(fn):
        return lambda *a: torch.as_tensor(float(fn(*(float(v) for v in a))))

    return compare("tradeoff", as_tensor(learner_fn), as_tensor(tradeoff_reference), inputs, tol=1e-9)


def check_per_class_accuracy(learner_fn, num_classes: int = 10):
    """learner_fn(pred, y, num_classes) -> (num_classes,) float tensor of per-class accuracy (NaN where a class is absent)."""
    def reference(pred, y):
        return per_class_accuracy(pred, y, num_classes)

    def inputs(g):
        y = torch.randint(0, num_classes - 1, (200,), generator=g)  # the last class is absent
        pred = torch.where(torch.rand(200, generator=g) < 0.6, y, torch.randint(0, num_classes, (200,), generator=g))
        return pred, y

    def both(fn):
        return lambda pred, y: torch.nan_to_num(torch.as_tensor(fn(pred, y), dtype=torch.float64), nan=-1.0)

    return compare("per_class_accuracy", both(lambda p, y: learner_fn(p, y, num_classes)), both(reference), inputs, tol=1e-9)


def check_best_epoch(learner_fn):
    """learner_fn(val_robust: list of per-epoch accuracies) -> 1-based epoch to keep (first best)."""
    def inputs(g):
        n = int(torch.randint(4, 12, (1,), generator=g))
        return ([round(float(v), 2) for v in torch.rand(n, generator=g)],)

    def ref(curve):
        return torch.tensor(float(curve.index(max(curve)) + 1))

    return compare("best_epoch", lambda c: torch.tensor(float(call_learner("best_epoch", learner_fn, c))), ref, inputs,
                   tol=0.0, trials=5)


def check_mix_batch(learner_fn, ratio: float = 0.5):
    """learner_fn(x, x_adv, ratio) must equal ``training.mix_batch`` (first round(ratio B) adversarial)."""
    def inputs(g):
        x = torch.rand(9, 3, 4, 4, generator=g)
        return x, (x + 0.1 * torch.rand(9, 3, 4, 4, generator=g)).clamp(0, 1)

    for r in (ratio, 0.0, 1.0):
        compare(f"mix_batch ratio={r}", lambda x, xa: learner_fn(x, xa, r), lambda x, xa: training.mix_batch(x, xa, r),
                inputs, tol=0.0)


def check_art_classifier(learner_fn):
    """learner_fn(model) -> an ART PyTorchClassifier with clip_values (0, 1), 10 classes, that predicts
    the same logits as the model on (B, 3, 8, 8) inputs in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(5, 3, 8, 8, generator=g)
    clf = call_learner("art_classifier", learner_fn, model)
    check_value("art_classifier clip_values", torch.as_tensor(list(clf.clip_values), dtype=torch.float64),
                torch.tensor([0.0, 1.0], dtype=torch.float64))
    check_value("art_classifier nb_classes", clf.nb_classes, 10)
    with torch.no_grad():
        expected = model(x).numpy()
    return check_value("art_classifier predictions", torch.as_tensor(clf.predict(x.numpy())), torch.as_tensor(expected),
                       tol=1e-5)
