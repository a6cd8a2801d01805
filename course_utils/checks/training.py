"""Checks for the adversarial-training exercises of notebooks 04 and 05 and project p1."""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import attacks, training
from ..evaluation import per_class_accuracy
from . import call_learner, check_value, compare, rel_error


def _fail(name: str, message: str):
    print(f"[{name}] FAILED: {message}")
    raise AssertionError(f"{name}: {message}")


def _batchnorm_classifier(generator: torch.Generator, d: int = 12, num_classes: int = 3) -> nn.Module:
    """A seeded MLP with batch norm on flattened (B, C, H, W) images, C * H * W = d: train and eval
    mode give different outputs, so a check sees which mode an update ran in."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, num_classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return model.eval()


def check_adversarial_step(learner_step, eps: float = 0.2, alpha: float = 0.05, steps: int = 5, lr: float = 0.1):
    """learner_step(model, optimizer, x, y, eps, alpha, steps) -> loss must match
    ``training.train_step`` with ``attacks.pgd(..., random_start=False)`` (losses and updated weights).

    Two consecutive steps on a model with batch norm, handed over in eval mode: a missing
    ``optimizer.zero_grad()`` or an update left in eval mode changes the result."""

    def run(step_fn, seed):
        g = torch.Generator().manual_seed(seed)
        model = _batchnorm_classifier(g)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        losses = []
        for _ in range(2):
            x = torch.rand(8, 3, 2, 2, generator=g)
            y = torch.randint(0, 3, (8,), generator=g)
            losses.append(float(step_fn(model, opt, x, y)))
        return torch.cat([torch.tensor(losses)] + [p.detach().flatten() for p in model.parameters()])

    def reference(model, opt, x, y):
        attack = attacks.AttackConfig(eps, steps=steps, alpha=alpha, random_start=False)
        return training.train_step(model, opt, x, y, attack)[0]

    compare("adversarial_step", lambda s: run(lambda *a: learner_step(*a, eps, alpha, steps), s),
            lambda s: run(reference, s), lambda g: (int(torch.randint(0, 2**31, (1,), generator=g)),), tol=1e-5)


def safe_alpha_reference(curves: dict, drop: float):
    """The largest alpha whose accuracy curve never falls more than ``drop`` below its best so far, or None."""
    safe = [a for a, accs in curves.items()
            if all(acc >= best - drop for acc, best in zip(accs, itertools.accumulate(accs, max)))]
    return max(safe) if safe else None


def _collapse_curves(generator):
    """Synthetic per-epoch PGD accuracies for 4 FGSM step sizes (notebook 04). The curves rise; the
    larger alphas collapse to about 0.02; the largest alpha that does not collapse dips 0.12 below its
    best once and recovers (a collapse for drop < 0.12, noise above); in some sets the smallest alpha
    collapses too (catastrophic overfitting is random, so safety need not be monotone in alpha)."""
    alphas = [0.1, 0.2, 0.3, 0.4]
    k = int(torch.randint(1, 4, (1,), generator=generator))  # alphas[k:] collapse, alphas[k - 1] dips
    early = k >= 2 and bool(torch.rand(1, generator=generator) < 0.5)  # alphas[0] collapses too
    curves = {}
    for i, a in enumerate(alphas):
        base = torch.linspace(0.3, 0.6 + 0.05 * i, 6) + 0.01 * torch.rand(6, generator=generator)
        at = int(torch.randint(2, 5, (1,), generator=generator))
        if i >= k or (i == 0 and early):
            base[at:] = 0.02 * torch.rand(6 - at, generator=generator)
        elif i == k - 1:
            base[at] = base[:at].max() - 0.12
        curves[a] = [round(float(v), 4) for v in base]
    return curves


def check_safe_alpha(learner_fn, drops=(0.2, 0.08), trials: int = 4):
    """learner_fn(curves, drop) -> the largest alpha whose PGD-accuracy curve never falls more than
    ``drop`` below its best so far (no catastrophic overfitting), or None. Each set of curves is tried
    with every value in ``drops``: the answers differ, so a rule that ignores ``drop`` fails."""
    for t in range(trials):
        curves = _collapse_curves(torch.Generator().manual_seed(t))
        right = []
        for drop in drops:
            expected = safe_alpha_reference(curves, drop)
            got = call_learner("safe_alpha", learner_fn, curves, drop)
            if (got is None) != (expected is None) or (got is not None and abs(float(got) - expected) > 1e-9):
                hint = f" (right with drop={right[0]}: does your rule use drop?)" if right else ""
                _fail("safe_alpha", f"curves {curves}, drop={drop}: got {got}, expected {expected}{hint}")
            right.append(drop)
    print(f"[safe_alpha] {trials} seeded sets of curves x drop in {tuple(drops)}: PASSED")


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

    compare("tradeoff", as_tensor(learner_fn), as_tensor(tradeoff_reference), inputs, tol=1e-9)


def check_per_class_accuracy(learner_fn, num_classes: int = 10):
    """learner_fn(pred, y, num_classes) -> (num_classes,) float tensor of per-class accuracy (NaN where a class is absent)."""
    def reference(pred, y):
        return per_class_accuracy(pred, y, num_classes)

    def inputs(g):
        absent = int(torch.randint(0, num_classes - 1, (1,), generator=g))  # one class is absent, not the last
        y = torch.randint(0, num_classes, (200,), generator=g)
        y[y == absent] = num_classes - 1
        pred = torch.where(torch.rand(200, generator=g) < 0.6, y, torch.randint(0, num_classes, (200,), generator=g))
        return pred, y

    def both(fn):
        return lambda pred, y: torch.nan_to_num(torch.as_tensor(fn(pred, y), dtype=torch.float64), nan=-1.0)

    compare("per_class_accuracy", both(lambda p, y: learner_fn(p, y, num_classes)), both(reference), inputs, tol=1e-9)


def check_best_epoch(learner_fn):
    """learner_fn(val_robust: list of per-epoch accuracies) -> 1-based epoch to keep (the first best:
    every curve has a tie at its maximum)."""
    def inputs(g):
        n = int(torch.randint(4, 12, (1,), generator=g))
        curve = [round(float(v), 2) for v in 0.9 * torch.rand(n, generator=g)]
        first, second = sorted(torch.randperm(n, generator=g)[:2].tolist())
        curve[first] = curve[second] = 0.95  # two epochs share the best accuracy
        return (curve,)

    def ref(curve):
        return torch.tensor(float(curve.index(max(curve)) + 1))

    compare("best_epoch", lambda c: torch.tensor(float(call_learner("best_epoch", learner_fn, c))), ref, inputs,
            tol=0.0, trials=5)


def check_mix_batch(learner_fn, ratio: float = 0.5):
    """learner_fn(x, x_adv, ratio) must equal ``training.mix_batch`` (first round(ratio B) adversarial).
    Tried with ``ratio``, 0.75 (6.75 of 9 rows: round, not floor), 0 and 1."""
    def inputs(g):
        x = torch.rand(9, 3, 4, 4, generator=g)
        return x, (x + 0.1 * torch.rand(9, 3, 4, 4, generator=g)).clamp(0, 1)

    for r in dict.fromkeys((ratio, 0.75, 0.0, 1.0)):
        compare(f"mix_batch ratio={r}", lambda x, xa: learner_fn(x, xa, r), lambda x, xa: training.mix_batch(x, xa, r),
                inputs, tol=0.0)


class _SpyAttack:
    """``attack`` (its fields readable too), noting when the model runs inside it."""

    def __init__(self, attack):
        self.attack, self.inside = attack, False

    def __getattr__(self, name):
        return getattr(self.attack, name)

    def __call__(self, model, x, y):
        self.inside = True
        try:
            return self.attack(model, x, y)
        finally:
            self.inside = False


def _record_training_forwards(model, attack):
    """(spy attack, records): the inputs of every forward of ``model`` in train mode outside ``attack``."""
    spy, records = _SpyAttack(attack), []

    def hook(module, args, output):
        if module.training and not spy.inside:
            records.append(args[0].detach().clone())

    model.register_forward_hook(hook)
    return spy, records


def check_mixed_adversarial_step(learner_step, ratios=(0.5, 0.66), eps: float = 0.2, lr: float = 0.1):
    """learner_step(model, optimizer, x, y, attack, ratio) -> loss must match ``training.train_step(model,
    optimizer, x, y, attack, ratio)``: the first round(ratio * B) examples replaced by ``attack(model, ...)``
    (an ``attacks.AttackConfig``: PGD, crafted in eval mode), the rest clean, then one optimizer step on
    the cross-entropy of the whole mixed batch in train mode. Checked step by step: which examples
    were trained on, in which mode, then the losses and weights after two steps (B = 10, batch norm)."""
    name = "mixed_adversarial_step"
    attack = attacks.AttackConfig(eps, steps=3, alpha=eps / 2, random_start=False)
    for ratio in ratios:
        for seed in range(2):
            runs = []
            for fn in (lambda *a: call_learner(name, learner_step, *a), lambda *a: training.train_step(*a)[0]):
                g = torch.Generator().manual_seed(seed)
                model = _batchnorm_classifier(g)
                opt = torch.optim.SGD(model.parameters(), lr=lr)
                spy, trained_on = _record_training_forwards(model, attack)
                batches = [(torch.rand(10, 3, 2, 2, generator=g), torch.randint(0, 3, (10,), generator=g))
                           for _ in range(2)]
                losses = [float(fn(model, opt, *batches[0], spy, ratio))]
                first_step = list(trained_on)  # the train-mode forwards of the first step
                losses.append(float(fn(model, opt, *batches[1], spy, ratio)))
                runs.append((losses, torch.cat([p.detach().flatten() for p in model.parameters()]), first_step, batches))
            (losses, weights, trained_on, batches), (ref_losses, ref_weights, ref_trained_on, _) = runs
            x, k, case = batches[0][0], int(round(ratio * 10)), f"ratio={ratio}, B=10"
            if not trained_on:
                _fail(name, f"{case}: no forward pass in train mode outside the attack: call model.train() after "
                      "crafting (the attack leaves the model in eval mode; batch norm needs train mode for the update)")
            if len(trained_on) > 1:
                _fail(name, f"{case}: {len(trained_on)} forward passes in train mode in one step: craft the adversarial "
                      "examples with the given attack (it runs the model in eval mode), then one forward in train mode")
            got = trained_on[0]
            if got.shape[0] != 10:
                _fail(name, f"{case}: the loss must be on the whole mixed batch of 10 examples, got {got.shape[0]} "
                      "(adversarial and clean examples together)")
            attacked = (got - x).flatten(1).abs().amax(1) > 0
            if not torch.equal(attacked, ref_trained_on[0].sub(x).flatten(1).abs().amax(1) > 0):
                _fail(name, f"{case}: trained on adversarial examples at rows {attacked.nonzero().flatten().tolist()}; "
                      f"expected the first round(ratio * B) = {k} rows adversarial and the rest clean")
            if rel_error(got, ref_trained_on[0]) > 1e-5:
                _fail(name, f"{case}: the adversarial rows differ from attack(model, x[:k], y[:k]) (relative "
                      f"{rel_error(got, ref_trained_on[0]):.2e}): craft them with the given attack, before the update")
            err = max(rel_error(torch.tensor(losses), torch.tensor(ref_losses)), rel_error(weights, ref_weights))
            if err > 1e-5:
                _fail(name, f"{case}: losses or weights after two steps differ from training.train_step's (relative "
                      f"{err:.2e}): optimizer.zero_grad() before backward, descend on the mean cross-entropy, one step")
    print(f"[{name}] mixed batches, train mode, losses and weights match training.train_step "
          f"for ratio in {list(ratios)}: PASSED")


def check_art_classifier(learner_fn):
    """learner_fn(model) -> an ART PyTorchClassifier with clip_values (0, 1), 10 classes, that predicts
    the same logits as the model on (B, 3, 8, 8) inputs in [0, 1], whose loss gradient points like the
    cross-entropy's, and that trains the model: ART's ``fit`` (and the trainers of p1's Task 4) need an
    optimizer over ``model.parameters()``."""
    name = "art_classifier"
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x = torch.rand(5, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (5,), generator=g)
    one_hot = F.one_hot(y, 10).numpy().astype(np.float32)  # ART's label format
    clf = call_learner(name, learner_fn, model)
    check_value(f"{name} clip_values", torch.as_tensor([0.0, 0.0] if clf.clip_values is None else list(clf.clip_values), dtype=torch.float64),
                torch.tensor([0.0, 1.0], dtype=torch.float64))
    check_value(f"{name} nb_classes", clf.nb_classes, 10)
    x_grad = x.clone().requires_grad_(True)
    (expected_grad,) = torch.autograd.grad(F.cross_entropy(model(x_grad), y), x_grad)
    with torch.no_grad():
        expected = model(x)
    check_value(f"{name} predictions", torch.as_tensor(clf.predict(x.numpy())), expected, tol=1e-5)
    got_grad = torch.as_tensor(clf.loss_gradient(x.numpy(), one_hot), dtype=torch.float64)
    check_value(f"{name} loss gradient (direction; the loss must be cross-entropy on logits)",
                got_grad / got_grad.norm().clamp_min(1e-12), expected_grad / expected_grad.norm(), tol=1e-4)
    if clf.optimizer is None:
        _fail(name, "no optimizer: ART's fit and the trainers of Task 4 need one "
                    "(optimizer=torch.optim.SGD(model.parameters(), ...))")
    before = [p.detach().clone() for p in model.parameters()]
    clf.fit(x.numpy(), one_hot, batch_size=5, nb_epochs=1)
    if all(torch.equal(b, p.detach()) for b, p in zip(before, model.parameters())):
        _fail(name, "fit did not change the model's weights: the optimizer must update model.parameters()")
    print(f"[{name}] the optimizer trains the model: PASSED")


def early_stopping_reference(robust: list, patience: int | None = None) -> tuple[int, list]:
    """``training.adversarial_fit``'s early-stopping rule on a curve of per-epoch held-out robust
    accuracies: (1-based epoch of the first best, the accuracies of the epochs run). A new best must be
    strictly better; with ``patience`` the run stops once ``patience`` epochs pass without one."""
    best, best_epoch = float("-inf"), None
    for epoch, acc in enumerate(robust, 1):
        if acc > best:
            best, best_epoch = acc, epoch
        if patience is not None and epoch - best_epoch >= patience:
            return best_epoch, list(robust[:epoch])
    return best_epoch, list(robust)


class _EpochCounter(nn.Module):
    """A fake model whose weight counts the epochs trained (updated in place, as an optimizer does)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))

    def epoch(self) -> int:
        return int(round(float(self.weight.detach()[0])))


def _early_stopping_curves(generator, n: int):
    """(clean, robust) per-epoch held-out accuracies: robust rises, peaks (tied at two epochs) and falls
    (robust overfitting); clean keeps rising, so its best is the last epoch."""
    peak = int(torch.randint(1, n - 3, (1,), generator=generator))  # 0-based; the tie is at peak and peak + 2
    robust = [round(0.2 + 0.3 * e / peak + 0.01 * float(torch.rand(1, generator=generator)), 3) if e else 0.1
              for e in range(peak)]
    robust += [0.6, 0.55, 0.6] + [round(0.5 - 0.04 * k, 3) for k in range(n - peak - 3)]
    clean = [round(0.3 + 0.05 * e, 3) for e in range(n)]
    return clean, robust


def check_early_stopping(learner_fit, trials: int = 4):
    """learner_fit(model, train_one_epoch, evaluate, epochs, patience) -> (best_epoch, history), as
    ``training.adversarial_fit`` does it: after every epoch ``train_one_epoch(model)`` then
    ``evaluate(model) -> (clean accuracy, robust accuracy)`` on held-out data; keep a copy of the
    weights of the epoch with the best robust accuracy (the first, if tied); stop once ``patience``
    epochs pass without a new best (None: never); restore the best weights; history = the robust
    accuracies of the epochs run. Tried on scripted curves (a tie at the best, clean accuracy best at
    the end) with a fake model whose weights count the epochs, with patience None, 2 and 3."""
    name = "early_stopping"
    for t in range(trials):
        g = torch.Generator().manual_seed(t)
        n = int(torch.randint(7, 11, (1,), generator=g))
        clean, robust = _early_stopping_curves(g, n)
        for patience in (None, 2, 3):
            case = f"robust accuracies {robust}, clean {clean}, patience={patience}"
            model = _EpochCounter()

            def train_one_epoch(m):
                with torch.no_grad():
                    m.weight.add_(1.0)  # in place, like optimizer.step()

            def evaluate(m):
                e = m.epoch()
                if not 1 <= e <= n:
                    _fail(name, f"{case}: evaluate called on a model trained for {e} epochs (train, then evaluate)")
                return clean[e - 1], robust[e - 1]

            got = call_learner(name, learner_fit, model, train_one_epoch, evaluate, n, patience)
            best, history = early_stopping_reference(robust, patience)
            if not isinstance(got, tuple) or len(got) != 2:
                _fail(name, f"{case}: return (best_epoch, history), got {got!r}")
            if [round(float(v), 6) for v in got[1]] != history:
                _fail(name, f"{case}: history {list(got[1])}, expected {history} (the robust accuracy of each epoch "
                            f"run; with patience, stop once {patience} epochs pass without a new best)")
            if int(got[0]) != best:
                b = int(got[0])
                hint = (" (ties: keep the first best)" if 1 <= b <= len(history) and robust[b - 1] == max(history)
                        else " (epochs are 1-based)" if b == best - 1
                        else " (the last epoch, or the best clean accuracy: keep the best robust one)"
                        if b == len(history) else "")
                _fail(name, f"{case}: best_epoch {got[0]}, expected {best} (1-based, best robust accuracy){hint}")
            if model.epoch() != best:
                _fail(name, f"{case}: after training the model holds epoch {model.epoch()}'s weights, expected the "
                            f"best epoch {best}'s: keep a copy of the state_dict (model.state_dict() alone follows "
                            "the weights as they change) and load it at the end")
    print(f"[{name}] {trials} scripted runs x patience in (None, 2, 3): best epoch, history and restored weights: PASSED")
