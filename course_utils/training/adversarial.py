"""Adversarial training (notebooks 04 and 05, project p1): curricula, early stopping, the recipe as a value.

Madry et al. (2018) train on the saddle-point problem ``min_theta E_(x,y) max_{||delta||<=eps} L(f_theta(x + delta), y)``:
the inner maximization is an ``attacks.AttackConfig`` (``kind`` ``"fgsm"``, ``"fgsm_rs"`` or
``"pgd"``), the outer one the course's training loop (``training.train_epoch``). This module adds
what a real run needs:

- ``curriculum(epochs, eps, steps, ramp_epochs)``: per-epoch eps and steps growing from weak to
  full strength (curriculum adversarial training, Cai et al. 2018).
- ``AdversarialTrainingConfig``: the whole recipe (attack, epochs, mixing ratio, curriculum,
  optimizer, held-out check, early stopping) as one frozen value, printed and hashed as a recipe.
- ``adversarial_fit(model, loader, config, val=...)``: epochs of mixed clean/adversarial batches
  with a PGD check on held-out images after each epoch, early stopping (patience, or a sudden drop
  = catastrophic overfitting, Wong et al. 2020), restoring the best epoch (robust overfitting,
  Rice, Wong & Kolter 2020) and checkpoints.

Robust evaluation (``robustness_ladder``, ``gradient_masking_checks``) lives in ``evaluation``.
x: (B, C, H, W) in [0, 1]; eps and alpha in pixel units (0.3 on MNIST, 8/255 on CIFAR-10).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..attacks import AttackConfig, WorstOf
from ..evaluation import evaluate
from ..validation import check_nonnegative, check_positive_int
from .checkpoints import save_checkpoint
from .loop import make_optimizer, train_epoch


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

    history: "object"  # pandas DataFrame: epoch, eps, steps, loss, train_acc, [train_clean, train_robust,] val_clean, val_robust, seconds
    best_epoch: int | None
    stopped: str
    seconds: float
    best_state: dict | None = dataclasses.field(default=None, repr=False)  # the best epoch's weights (state_dict copy)

    @property
    def robust_overfitting(self) -> float:
        """Best minus last held-out robust accuracy (Rice et al. 2020): > 0 means the end got worse."""
        h = self.history
        if "val_robust" not in h or h["val_robust"].isna().all():
            return float("nan")
        return float(h["val_robust"].max() - h["val_robust"].iloc[-1])


@dataclass(frozen=True)
class AdversarialTrainingConfig:
    """An adversarial-training recipe: ``adversarial_fit(model, loader, config)``.

    attack: the training attack at full strength (``AttackConfig``; its eps and steps are ramped by
    ``ramp_epochs``, see ``curriculum``, keeping alpha / eps fixed). ratio: adversarial fraction of
    each batch (ART's ``ratio``; 0.5 = Goodfellow et al.'s mixing). val_attack: the held-out check
    after every epoch (default: PGD-10 at the attack's eps with the default step). patience /
    drop: early stopping (epochs without a new best; a fall of more than ``drop`` below the best =
    catastrophic overfitting). restore_best: keep the best held-out epoch (Rice et al. 2020).
    union: more threat models trained on at once (``AttackConfig`` values, e.g. an L2 ball beside an
    L-infinity ``attack``): each example is then trained on the worst of ``attack`` and these
    (``attacks.WorstOf``: the "max" strategy of Tramer & Boneh 2019 / Maini et al. 2020), all ramped
    by the same fraction; the default held-out check is then the worst of every default check.
    """

    attack: AttackConfig
    epochs: int = 10
    ratio: float = 1.0
    ramp_epochs: int = 0
    lr: float = 0.1
    optimizer: str = "sgd"
    lr_schedule: str = "onecycle"
    weight_decay: float = 5e-4
    val_attack: AttackConfig | None = None
    patience: int | None = None
    drop: float | None = None
    restore_best: bool = True
    union: tuple = ()

    def __post_init__(self):
        check_positive_int(self.epochs, "epochs")
        object.__setattr__(self, "union", tuple(self.union))
        if not all(isinstance(a, AttackConfig) and not a.targeted for a in self.union):
            raise ValueError(f"union must hold untargeted AttackConfig values, got {self.union!r}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"ratio (adversarial fraction of each batch) must be in [0, 1], got {self.ratio!r}")
        if self.val_attack is None:
            object.__setattr__(self, "val_attack", self.default_val_attack())
        if self.drop is not None:
            check_nonnegative(self.drop, "drop")

    def replace(self, **changes) -> "AdversarialTrainingConfig":
        """A copy with some fields changed. A new ``attack`` also resets the held-out check to its
        default for the new attack, unless this config's check was chosen by hand or ``val_attack`` is given."""
        if ({"attack", "union"} & set(changes) and "val_attack" not in changes
                and self.val_attack == self.default_val_attack()):
            changes["val_attack"] = None
        return dataclasses.replace(self, **changes)

    def default_val_attack(self):
        """``default_check(attack)``, or with a ``union`` the ``WorstOf`` of every member's default check."""
        if not self.union:
            return self.default_check(self.attack)
        return WorstOf(tuple(self.default_check(a) for a in (self.attack, *self.union)))

    @staticmethod
    def default_check(attack: AttackConfig) -> AttackConfig:
        """The default held-out check: PGD-10 at the attack's eps and norm with the default step."""
        return AttackConfig(attack.eps, steps=10, norm=attack.norm)

    def schedule(self) -> list[dict]:
        """The per-epoch attack strength: ``curriculum(epochs, eps, steps, ramp_epochs)``."""
        return curriculum(self.epochs, self.attack.eps, self.attack.steps, ramp_epochs=self.ramp_epochs)

    def epoch_attack(self, entry: dict, generator=None) -> AttackConfig:
        """The training attack of one ``schedule()`` entry: its eps and steps, the same alpha / eps."""
        a = self.attack
        alpha = a.alpha * entry["eps"] / a.eps if a.eps > 0 else a.alpha
        attack = dataclasses.replace(a, eps=entry["eps"], steps=entry["steps"], alpha=alpha,
                                     generator=generator if generator is not None else a.generator)
        if not self.union:
            return attack
        t = entry["eps"] / a.eps if a.eps > 0 else 1.0  # the ramp's fraction, applied to every member
        return WorstOf((attack, *(dataclasses.replace(u, eps=u.eps * t, alpha=u.alpha * t,
                                                      steps=max(1, int(round(1 + (u.steps - 1) * t))),
                                                      generator=generator if generator is not None else u.generator)
                                  for u in self.union)))

    def to_dict(self) -> dict:
        """A JSON-ready dict (attacks as their fields, without generators): for recipes and cache keys."""
        def plain(c):
            return {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name != "generator"}
        def value(c):
            return {"worst_of": [plain(a) for a in c.attacks]} if isinstance(c, WorstOf) else plain(c)
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["attack"], d["val_attack"] = plain(self.attack), value(self.val_attack)
        if self.union:
            d["union"] = [plain(a) for a in self.union]
        else:
            del d["union"]  # recipes without a union keep the keys (and cache names) they always had
        return d

    def __str__(self):
        attack = str(self.attack) if not self.union else str(WorstOf((self.attack, *self.union)))
        return (f"{attack} x {self.epochs} epochs, ratio={self.ratio:g}, ramp={self.ramp_epochs}, "
                f"{self.optimizer} lr={self.lr:g} ({self.lr_schedule}); check: {self.val_attack}")


def adversarial_fit(model, loader, config: AdversarialTrainingConfig, val=None, schedule=None, checkpoint=None,
                    generator=None, progress: bool = True, train_probe=None) -> FitResult:
    """Adversarial training with a held-out PGD check after every epoch.

    Each batch: the first ``config.ratio`` of it is replaced by adversarial examples of the epoch's
    attack (``config.epoch_attack``; eps and steps from ``schedule``, default ``config.schedule()``),
    then one optimizer step. ``val=(x, y)``: held-out images checked with ``config.val_attack``.
    ``train_probe=(x, y)``: training images checked the same way after every epoch (columns
    ``train_clean``, ``train_robust``): the training side of robust overfitting (Rice et al. 2020),
    measured like the held-out side instead of read from the batches as they were trained.
    Stops when ``patience`` epochs pass without a new best, or when robust accuracy falls more than
    ``drop`` below the best (catastrophic overfitting); the best epoch's weights are restored
    (``restore_best``) and saved to ``checkpoint`` (a path).
    """
    import pandas as pd

    c = config
    schedule = schedule or c.schedule()
    if len(schedule) < c.epochs:
        raise ValueError(f"schedule has {len(schedule)} entries for {c.epochs} epochs")
    total = c.epochs * len(loader)
    opt, sched = make_optimizer(model, c.lr, total, weight_decay=c.weight_decay, optimizer=c.optimizer,
                                schedule=c.lr_schedule)
    val_attack = dataclasses.replace(c.val_attack, generator=generator) if generator is not None else c.val_attack
    rows, best, best_epoch, best_state, stopped = [], -1.0, None, None, "completed"
    start = time.perf_counter()
    for e in tqdm(range(c.epochs), desc="epochs", disable=not progress):
        attack = c.epoch_attack(schedule[e], generator)
        t0 = time.perf_counter()
        r = train_epoch(model, loader, opt, attack, sched, progress=progress, desc=f"epoch {e + 1}/{c.epochs}",
                        ratio=c.ratio, step=e * len(loader), total_steps=total)
        row = {"epoch": e + 1, "eps": schedule[e]["eps"], "steps": schedule[e]["steps"], "loss": r["loss"], "train_acc": r["accuracy"],
               "seconds": time.perf_counter() - t0}
        if train_probe is not None:
            row["train_clean"] = evaluate(model, train_probe, progress=False).accuracy
            row["train_robust"] = evaluate(model, train_probe, val_attack, progress=False).accuracy
        if val is not None:
            row["val_clean"] = evaluate(model, val, progress=False).accuracy
            row["val_robust"] = evaluate(model, val, val_attack, progress=False).accuracy
            if row["val_robust"] > best:
                best, best_epoch, best_state = row["val_robust"], e + 1, copy.deepcopy(model.state_dict())
        rows.append(row)
        if val is not None and c.drop is not None and row["val_robust"] < best - c.drop:
            stopped = f"robust accuracy fell {best - row['val_robust']:.2f} below its best (catastrophic overfitting)"
            break
        if val is not None and c.patience is not None and e + 1 - best_epoch >= c.patience:
            stopped = f"no better held-out robust accuracy for {c.patience} epochs"
            break
    if c.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None:
        save_checkpoint(model, checkpoint, {"best_epoch": best_epoch, "recipe": c.to_dict(), "stopped": stopped})
    model.eval()
    return FitResult(pd.DataFrame(rows), best_epoch, stopped, time.perf_counter() - start, best_state)


def robust_overfitting_verdict(history, n_val: int, n_probe: int | None = None, final=None,
                               decay_epoch: int | None = None, window: int = 5):
    """Did this run show robust overfitting as Rice, Wong & Kolter (2020) describe it? Read from an
    ``adversarial_fit`` history with ``val_robust`` (held-out) and ``train_robust`` (``train_probe``).
    Returns an ``evaluation.Verdict``.

    Rice et al.'s phenomenon has three parts, all required for "shown":
    (1) the held-out robust accuracy peaks right after the first learning-rate decay: with
        ``decay_epoch`` (the first epoch trained at the decayed rate, 1-based) the best epoch must lie
        in ``[decay_epoch, decay_epoch + window)``; a best epoch before the decay on a flat curve is a
        lucky checkpoint, not the phenomenon (without ``decay_epoch`` this part is not checked and the
        sentence says so);
    (2) the last epoch is less robust than the best beyond noise: ``final=(best_correct, last_correct)``,
        per-image robust correctness of the two checkpoints on the same test images, McNemar p < 0.05
        (the paper's best-versus-final comparison); without it, the history's numbers on ``n_val``
        images whose 95% Clopper-Pearson intervals must not overlap (conservative);
    (3) training robust accuracy went on rising after the best epoch (the train - test gap widened).
    Contradicted when the last checkpoint is more robust than the best beyond noise (``final``); else
    not resolved (non-significance is not evidence that nothing fell).
    """
    from statsmodels.stats.proportion import proportion_confint

    from ..evaluation import CONTRADICTED, NOT_RESOLVED, SHOWN, Verdict, format_p, paired_comparison

    for col in ("val_robust", "train_robust"):
        if col not in history or history[col].isna().all():
            raise ValueError(f"history needs a {col!r} column (adversarial_fit with val= and train_probe=)")
    n_probe = n_probe or n_val
    v, t = history["val_robust"].to_numpy(), history["train_robust"].to_numpy()
    b = int(v.argmax())
    ci = lambda k, n: proportion_confint(k, n, alpha=0.05, method="beta")  # noqa: E731
    rose_back = False
    if final is None:
        (best_lo, best_hi), (last_lo, last_hi) = ci(round(v[b] * n_val), n_val), ci(round(v[-1] * n_val), n_val)
        fell = last_hi < best_lo
        test = "held-out intervals do not overlap" if fell else "the last held-out number is within noise of the best (intervals overlap)"
        final_text = ""
    else:
        try:
            pair = paired_comparison(*final)
        except ValueError:
            raise ValueError("final needs two per-image bool arrays of the same non-zero length") from None
        n, only_best, only_last, p = pair["n"], pair["only_a"], pair["only_b"], pair["p"]
        best_ok, last_ok = round(pair["a"] * n), round(pair["b"] * n)
        fell = last_ok < best_ok and p < 0.05
        rose_back = last_ok > best_ok and p < 0.05
        (bl, bh), (ll, lh) = ci(best_ok, n), ci(last_ok, n)
        final_text = (f"; on {n} test images the best checkpoint is robust on {best_ok / n:.1%} ({bl:.1%}-{bh:.1%}), "
                      f"the last on {last_ok / n:.1%} ({ll:.1%}-{lh:.1%}), McNemar {format_p(p)} "
                      f"({only_best} images only the best gets right, {only_last} only the last)")
        test = "" if fell else "the last checkpoint is not less robust than the best beyond noise (McNemar p >= 0.05)"
    rose = t[-1] > t[b]
    gap_best, gap_last = t[b] - v[b], t[-1] - v[-1]
    numbers = (f"held-out robust accuracy best {v[b]:.3f} at epoch {b + 1}, last {v[-1]:.3f} (epoch {len(v)}; "
               f"{n_val} images); training robust accuracy {t[b]:.3f} at the best epoch, {t[-1]:.3f} at the last "
               f"({n_probe} training images); train - test robust gap {gap_best:+.3f} -> {gap_last:+.3f}{final_text}")
    if decay_epoch is None:
        after_decay, where = True, "the learning-rate decay was not given, so the peak's timing was not checked"
    else:
        after_decay = decay_epoch <= b + 1 < decay_epoch + window
        where = (f"the best epoch ({b + 1}) {'follows' if after_decay else 'does not follow'} the first decay "
                 f"(epoch {decay_epoch}) within {window} epochs")
    lacks = ([] if after_decay else [where]) + ([] if fell else [test]) + \
            ([] if rose else ["training robust accuracy did not keep rising after the best epoch (an underfit model)"])
    if rose and not fell and gap_last - gap_best >= 0.1:
        lacks.append(f"the train - test gap did widen by {gap_last - gap_best:.2f} (the memorization behind robust "
                     "overfitting), but its cost on held-out images was not resolved")
    name = "ROBUST OVERFITTING (Rice et al. 2020)"
    if after_decay and fell and rose:
        return Verdict(name, SHOWN, f"{numbers}; {where}", "Keep the best epoch, not the last (early stopping).")
    if rose_back:
        return Verdict(name, CONTRADICTED, "; ".join([numbers] + lacks),
                       "The last checkpoint is MORE robust than the best one beyond noise: held-out robustness was "
                       "still improving (undertrained), the opposite of robust overfitting.")
    lucky = (" A best epoch before the decay on a curve that did not fall is a lucky checkpoint, not the phenomenon."
             if decay_epoch is not None and b + 1 < decay_epoch else "")
    return Verdict(name, NOT_RESOLVED, "; ".join([numbers] + lacks),
                   "It needs a model that fits its training set under attack: more epochs after the learning-rate "
                   "decay, fewer training images or a wider model (the full profile), or more test images to resolve "
                   "a small fall." + lucky)


def catastrophic_overfitting(history, became: float = 0.3, floor: float = 0.1, drop: float = 0.2) -> tuple[str, str]:
    """The outcome of one single-step training run, read from its ``adversarial_fit`` history
    (``val_robust``: held-out PGD accuracy per epoch; ``train_acc``: accuracy on the training attack's
    batches). One of

    - ``"collapsed"``: catastrophic overfitting (Wong, Rice & Kolter 2020): the run first *became*
      robust (held-out PGD accuracy reached ``became``) and then fell: more than ``drop`` below its best,
      or to ``floor`` or less;
    - ``"underfit"``: held-out PGD accuracy never reached ``became``: the run never became robust, so
      it cannot have collapsed (whatever it does on its own single-step attack);
    - ``"robust"``: it became robust and kept it.

    Returns (outcome, a sentence with the numbers).
    """
    for col in ("val_robust", "train_acc"):
        if col not in history or history[col].isna().all():
            raise ValueError(f"history needs a {col!r} column (adversarial_fit with val=)")
    v, t = history["val_robust"].to_numpy(), history["train_acc"].to_numpy()
    b = int(v.argmax())
    numbers = (f"held-out PGD best {v[b]:.3f} (epoch {b + 1}), last {v[-1]:.3f}; accuracy on the training attack "
               f"{t[-1]:.3f} at the last epoch")
    if v[b] < became:
        return "underfit", f"underfit: {numbers}; held-out PGD accuracy never reached {became:g}: it never became robust"
    if v[b] - v[-1] > drop or v[-1] <= floor:
        return "collapsed", f"collapsed: {numbers}; it became robust, then PGD accuracy fell {v[b] - v[-1]:.2f} below its best"
    return "robust", f"robust: {numbers}"


def tradeoff_verdict(clean_std, robust_std, clean_adv, robust_adv, margin: float = 0.01):
    """Did adversarial training trade clean accuracy for robustness here? Four per-image bool vectors
    on the same test images (``evaluation.correct``): the standard model clean and attacked, the
    adversarially trained one clean and attacked. Returns an ``evaluation.Verdict``:

    - shown: robust accuracy rose and clean accuracy fell, each beyond test-set noise (McNemar,
      p < 0.05); only then is the ratio "clean points per robust point" a measurement;
    - contradicted: robust accuracy rose while clean accuracy rose beyond noise, or stayed within
      ``margin`` of the standard model's (TOST, 90% Newcombe interval): robustness cost no clean accuracy;
    - not resolved: otherwise (with the images that would resolve it)."""
    from ..evaluation import (CONTRADICTED, NOT_RESOLVED, SHOWN, Verdict, format_p, paired_comparison,
                              paired_difference_interval)

    clean, robust = paired_comparison(clean_std, clean_adv), paired_comparison(robust_std, robust_adv)
    d_clean, d_robust = 100 * (clean["a"] - clean["b"]), 100 * (robust["b"] - robust["a"])
    _, lo90, hi90 = paired_difference_interval(clean_std, clean_adv, alpha=0.10)
    numbers = (f"clean {clean['a']:.1%} -> {clean['b']:.1%} ({format_p(clean['p'])}, 90% CI of the cost "
               f"{100 * lo90:+.1f} to {100 * hi90:+.1f} points), robust {robust['a']:.1%} -> {robust['b']:.1%} "
               f"({format_p(robust['p'])}) on {clean['n']} images")
    gained, lost = d_robust > 0 and robust["p"] < 0.05, d_clean > 0 and clean["p"] < 0.05
    name = "TRADE-OFF"
    if gained and lost:
        return Verdict(name, SHOWN, numbers + f": {d_clean:.1f} clean points for {d_robust:.1f} robust points, "
                       f"{d_clean / d_robust:.2f} clean points per robust point")
    if not gained:
        return Verdict(name, NOT_RESOLVED, numbers, "Robust accuracy did not rise beyond noise: is the adversarially "
                       "trained model robust? There is nothing to trade yet.")
    if d_clean < 0 and clean["p"] < 0.05:
        return Verdict(name, CONTRADICTED, numbers, "Clean accuracy ROSE beyond noise: on this task and budget "
                       "adversarial training acted as a regularizer (check that the standard model is fully trained).")
    if -margin < lo90 and hi90 < margin:
        return Verdict(name, CONTRADICTED, numbers, f"Clean accuracy stayed within {100 * margin:g} point of the "
                       "standard model's (TOST): robustness cost no clean accuracy here, so no ratio is printed.")
    return Verdict(name, NOT_RESOLVED, numbers, f"Clean accuracy did not fall beyond noise ({d_clean:+.1f} points) "
                   f"and was not shown to stay within {100 * margin:g} point either: more test images, or a harder task "
                   "(CIFAR-10), would resolve the cost; a ratio would be noise.")


def single_step_verdict(outcomes: dict, became: float = 0.3):
    """Catastrophic overfitting counted over seeds: ``outcomes`` maps a training attack's label to the
    ``catastrophic_overfitting`` outcomes of its runs ("collapsed", "robust", "underfit"). Returns an
    ``evaluation.Verdict`` for the claim "single-step training collapses (catastrophic overfitting)":

    - shown: at least one run became robust and then collapsed (counts per setting, with Clopper-Pearson
      intervals over the seeds);
    - not resolved: no run collapsed. When no run even became robust (held-out PGD never reached
      ``became``), the budget cannot show the phenomenon at all: a run that never rose cannot fall.
    Nothing here can contradict the claim (collapse is random: robust runs do not show it cannot happen).
    """
    from statsmodels.stats.proportion import proportion_confint

    from ..evaluation import NOT_RESOLVED, SHOWN, Verdict

    parts, collapsed, became_robust, runs = [], 0, 0, 0
    for label, outs in outcomes.items():
        outs = list(outs)
        k = sum(o == "collapsed" for o in outs)
        r = sum(o in ("collapsed", "robust") for o in outs)
        lo, hi = proportion_confint(k, len(outs), method="beta")
        parts.append(f"{label}: {k} of {len(outs)} collapsed (95% CI {lo:.0%}-{hi:.0%}), {r} became robust")
        collapsed, became_robust, runs = collapsed + k, became_robust + r, runs + len(outs)
    evidence = "; ".join(parts)
    name = "CATASTROPHIC OVERFITTING"
    if collapsed:
        return Verdict(name, SHOWN, evidence, f"{collapsed} of {runs} runs rose above {became:g} held-out PGD accuracy "
                       "and then fell: keep the best epoch (early stopping on the held-out check).")
    if not became_robust:
        return Verdict(name, NOT_RESOLVED, evidence, f"No run became robust (held-out PGD never reached {became:g}), so "
                       "none could collapse: this budget cannot show the phenomenon, whatever the runs do on their own "
                       "single-step attack. Wong et al.'s MNIST setting trains on all 60,000 images for 10 epochs (the "
                       "full profile).")
    return Verdict(name, NOT_RESOLVED, evidence, f"{became_robust} runs became robust and none collapsed: collapse is "
                   "random, so more seeds (CO_SEEDS) or a larger step would be needed to see it.")
