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
                    generator=None, progress: bool = True, train_probe=None, run=None) -> FitResult:
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

    ``run`` (``training.distributed.Run``): the same loop across torchrun's processes (DDP; the loader
    is this rank's shard, its sampler's ``set_epoch`` is called every epoch; the checks run on rank 0
    and are broadcast), with a precision policy and a resumable state written after every epoch
    (``run.resume`` continues from it). ``generator`` defaults to the run's per-rank one.
    """
    import pandas as pd

    c = config
    schedule = schedule or c.schedule()
    if len(schedule) < c.epochs:
        raise ValueError(f"schedule has {len(schedule)} entries for {c.epochs} epochs")
    total = c.epochs * len(loader)
    if run is not None and generator is None:
        generator = run.generator
    trained = run.wrap(model) if run is not None else model  # DDP when distributed; attacks and checks use ``model``
    opt, sched = make_optimizer(model, c.lr, total, weight_decay=c.weight_decay, optimizer=c.optimizer,
                                schedule=c.lr_schedule)
    val_attack = dataclasses.replace(c.val_attack, generator=generator) if generator is not None else c.val_attack
    rows, best, best_epoch, best_state, stopped, first = [], -1.0, None, None, "completed", 0
    state = run.load_state(model, opt, sched) if run is not None else None
    if state is not None:  # resumed: the loop continues after the saved epoch, exactly where it stopped
        rows, best, best_epoch, best_state, stopped = (state["history"], state["best"], state["best_epoch"],
                                                       state["best_state"], state["stopped"])
        first = c.epochs if stopped != "completed" else state["epoch"]
    main = run is None or run.is_main
    start = time.perf_counter()
    for e in tqdm(range(first, c.epochs), desc="epochs", disable=not progress or not main):
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(e)  # DistributedSampler: a new shuffle every epoch, the same on every rank
        attack = c.epoch_attack(schedule[e], generator)
        t0 = time.perf_counter()
        r = train_epoch(trained, loader, opt, attack, sched, progress=progress and main, desc=f"epoch {e + 1}/{c.epochs}",
                        ratio=c.ratio, step=e * len(loader), total_steps=total,
                        precision=run.precision if run is not None else None)
        if run is not None and run.distributed:  # every rank trained as many images (DistributedSampler pads)
            r["loss"], r["accuracy"] = (v / run.world_size for v in run.sum([r["loss"], r["accuracy"]]))
        row = {"epoch": e + 1, "eps": schedule[e]["eps"], "steps": schedule[e]["steps"], "loss": r["loss"], "train_acc": r["accuracy"],
               "seconds": time.perf_counter() - t0}
        if main:  # the checks run on rank 0 only; their numbers are broadcast below
            if train_probe is not None:
                row["train_clean"] = evaluate(model, train_probe, progress=False).accuracy
                row["train_robust"] = evaluate(model, train_probe, val_attack, progress=False).accuracy
            if val is not None:
                row["val_clean"] = evaluate(model, val, progress=False).accuracy
                row["val_robust"] = evaluate(model, val, val_attack, progress=False).accuracy
        if run is not None:
            row = run.broadcast(row)
        if val is not None and row["val_robust"] > best:
            best, best_epoch, best_state = row["val_robust"], e + 1, copy.deepcopy(model.state_dict())
        rows.append(row)
        if val is not None and c.drop is not None and row["val_robust"] < best - c.drop:
            stopped = f"robust accuracy fell {best - row['val_robust']:.2f} below its best (catastrophic overfitting)"
        elif val is not None and c.patience is not None and e + 1 - best_epoch >= c.patience:
            stopped = f"no better held-out robust accuracy for {c.patience} epochs"
        if run is not None:
            run.save_state(model, opt, sched, e + 1, {"history": rows, "best": best, "best_epoch": best_epoch,
                                                     "best_state": best_state, "stopped": stopped})
            if run.on_epoch is not None:
                run.on_epoch(e + 1, run)
        if stopped != "completed":
            break
    if c.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None and main:
        save_checkpoint(model, checkpoint, {"best_epoch": best_epoch, "recipe": c.to_dict(), "stopped": stopped})
    model.eval()
    return FitResult(pd.DataFrame(rows), best_epoch, stopped, time.perf_counter() - start, best_state)


def robust_overfitting_verdict(history, n_val: int, n_probe: int | None = None, final=None) -> tuple[bool, str]:
    """Did this run show robust overfitting as Rice, Wong & Kolter (2020) describe it? Read from an
    ``adversarial_fit`` history with ``val_robust`` (held-out) and ``train_robust`` (``train_probe``).

    It appeared when (1) the last epoch is less robust than the best one beyond noise and (2) training
    robust accuracy went on rising after the best epoch (last above best-epoch value), so the
    train-test robust gap widened. For (1), ``final=(best_correct, last_correct)``: per-image
    robust correctness (bool, same test images and attack) of the best and the last checkpoints, the
    paper's best-versus-final comparison, tested with McNemar's exact test (p < 0.05, paired);
    without it, the history's held-out numbers on ``n_val`` images, whose 95% Clopper-Pearson
    intervals must not overlap (conservative: the best is a maximum over epochs). Returns (appeared,
    a sentence with the numbers and, when it did not appear, what the run lacked).
    """
    from statsmodels.stats.proportion import proportion_confint

    for col in ("val_robust", "train_robust"):
        if col not in history or history[col].isna().all():
            raise ValueError(f"history needs a {col!r} column (adversarial_fit with val= and train_probe=)")
    n_probe = n_probe or n_val
    v, t = history["val_robust"].to_numpy(), history["train_robust"].to_numpy()
    b = int(v.argmax())
    ci = lambda k, n: proportion_confint(k, n, alpha=0.05, method="beta")  # noqa: E731
    if final is None:
        (best_lo, _), (_, last_hi) = ci(round(v[b] * n_val), n_val), ci(round(v[-1] * n_val), n_val)
        fell = last_hi < best_lo
        test = "held-out intervals do not overlap" if fell else "the last held-out number is within noise of the best (intervals overlap)"
        final_text = ""
    else:
        from ..evaluation import paired_comparison

        try:
            pair = paired_comparison(*final)
        except ValueError:
            raise ValueError("final needs two per-image bool arrays of the same non-zero length") from None
        n, only_best, only_last, p = pair["n"], pair["only_a"], pair["only_b"], pair["p"]
        best_ok, last_ok = round(pair["a"] * n), round(pair["b"] * n)
        fell = last_ok < best_ok and p < 0.05
        (bl, bh), (ll, lh) = ci(best_ok, n), ci(last_ok, n)
        final_text = (f"; on {n} test images the best checkpoint is robust on {best_ok / n:.3f} ({bl:.3f}-{bh:.3f}), "
                      f"the last on {last_ok / n:.3f} ({ll:.3f}-{lh:.3f}), McNemar p = {p:.2g} "
                      f"({only_best} images only the best gets right, {only_last} only the last)")
        test = "" if fell else "the last checkpoint is not less robust than the best beyond noise (McNemar p >= 0.05)"
    rose = t[-1] > t[b]
    gap_best, gap_last = t[b] - v[b], t[-1] - v[-1]
    numbers = (f"held-out robust accuracy best {v[b]:.3f} at epoch {b + 1}, last {v[-1]:.3f} (epoch {len(v)}; "
               f"{n_val} images); training robust accuracy {t[b]:.3f} at the best epoch, {t[-1]:.3f} at the last "
               f"({n_probe} training images); train - test robust gap {gap_best:+.3f} -> {gap_last:+.3f}{final_text}")
    from ..evaluation import phenomenon

    lacks = ([] if fell else [test]) + \
            ([] if rose else ["training robust accuracy did not keep rising after the best epoch (an underfit model)"])
    if rose and not fell and gap_last - gap_best >= 0.1:
        lacks.append(f"the train - test gap did widen by {gap_last - gap_best:.2f} (the memorization behind robust "
                     "overfitting), but its cost on held-out images was not resolved")
    return phenomenon("ROBUST OVERFITTING", fell and rose, "; ".join([numbers] + lacks),
                      "It needs a model that fits its training set under attack: more epochs after the learning-rate "
                      "decay, fewer training images or a wider model (the full profile), or more test images to resolve "
                      "a small fall.", if_so="Keep the best epoch, not the last (early stopping).")


def catastrophic_overfitting(history, floor: float = 0.1, fitted: float = 0.5, drop: float = 0.2) -> tuple[str, str]:
    """The outcome of one single-step training run, read from its ``adversarial_fit`` history
    (``val_robust``: held-out PGD accuracy per epoch; ``train_acc``: accuracy on the training attack's
    batches). One of

    - ``"collapsed"``: catastrophic overfitting (Wong, Rice & Kolter 2020): held-out PGD accuracy fell
      more than ``drop`` below its best, or the model beats its own training attack (last
      ``train_acc`` >= ``fitted``) while its held-out PGD accuracy ends at or below ``floor``;
    - ``"underfit"``: it does not even beat its training attack (``train_acc`` < ``fitted``): it never
      learned, which is not the phenomenon;
    - ``"robust"``: otherwise (held-out PGD accuracy ends above ``floor`` without such a fall).

    Returns (outcome, a sentence with the numbers).
    """
    for col in ("val_robust", "train_acc"):
        if col not in history or history[col].isna().all():
            raise ValueError(f"history needs a {col!r} column (adversarial_fit with val=)")
    v, t = history["val_robust"].to_numpy(), history["train_acc"].to_numpy()
    b = int(v.argmax())
    numbers = (f"held-out PGD best {v[b]:.3f} (epoch {b + 1}), last {v[-1]:.3f}; accuracy on the training attack "
               f"{t[-1]:.3f} at the last epoch")
    if v[b] - v[-1] > drop:
        return "collapsed", f"collapsed: {numbers}; PGD accuracy fell {v[b] - v[-1]:.2f} below its best"
    if t[-1] < fitted:
        return "underfit", f"underfit: {numbers}; the model does not even beat its own training attack"
    if v[-1] <= floor:
        return "collapsed", f"collapsed: {numbers}; it beats the single-step attack but not PGD"
    return "robust", f"robust: {numbers}"


def tradeoff_verdict(clean_std, robust_std, clean_adv, robust_adv) -> tuple[bool, str]:
    """Did adversarial training trade clean accuracy for robustness here? Four per-image bool vectors
    on the same test images (``evaluation.correct``): the standard model clean and attacked, the
    adversarially trained one clean and attacked. The trade-off appeared when robust accuracy rose and
    clean accuracy fell, each beyond test-set noise (McNemar, p < 0.05); only then is the ratio
    "clean points per robust point" a measurement. Returns (appeared, a sentence with the numbers)."""
    from ..evaluation import paired_comparison, phenomenon

    clean, robust = paired_comparison(clean_std, clean_adv), paired_comparison(robust_std, robust_adv)
    d_clean, d_robust = 100 * (clean["a"] - clean["b"]), 100 * (robust["b"] - robust["a"])
    numbers = (f"clean {clean['a']:.3f} -> {clean['b']:.3f} (McNemar p = {clean['p']:.2g}), robust {robust['a']:.3f} -> "
               f"{robust['b']:.3f} (p = {robust['p']:.2g}) on {clean['n']} images")
    gained, lost = d_robust > 0 and robust["p"] < 0.05, d_clean > 0 and clean["p"] < 0.05
    if gained and lost:
        numbers += (f": {d_clean:.1f} clean points for {d_robust:.1f} robust points, "
                    f"{d_clean / d_robust:.3f} clean points per robust point")
    why = [] if gained else ["robust accuracy did not rise beyond noise (is the adversarially trained model robust?)"]
    if not lost:
        why.append(f"clean accuracy did not fall beyond noise ({d_clean:+.1f} points): robustness cost no measurable "
                   "clean accuracy here, so a ratio would be noise (more test images, or a harder task: CIFAR-10)")
    if_not = "; ".join(why) + "."
    return phenomenon("TRADE-OFF", gained and lost, numbers, if_not[0].upper() + if_not[1:] if why else "")
