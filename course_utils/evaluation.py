"""Clean and robust accuracy with honest reporting (threat model, n, confidence interval).

``evaluate(model, data, attack=...)`` runs over a DataLoader, a Dataset or an ``(x, y)`` pair with a
tqdm progress bar and returns an ``EvalResult``; ``epsilon_sweep`` does it across radii; and
``results_table`` lays results out as a DataFrame with the threat model beside every number.
An ``attacks.AttackConfig`` passed as ``attack`` names its own result (``str(cfg)``).
Confidence intervals are Clopper-Pearson (exact binomial) intervals from statsmodels.

Also here: ``gradient_masking_checks`` (the gradient-masking checklist of notebooks 03 and 04:
fair restarts, more steps, Square, transfer and unbounded-eps checks), ``robustness_ladder`` (clean,
weak PGD, strong PGD with restarts and AutoAttack on the same images; notebooks 04, 05),
``per_class_accuracy``, ``correct`` (per-image correctness), ``paired_table`` (several models against
a reference on the same images) and ``Ledger``: one seeded evaluation per model and attack on fixed
images, reused, with the headline robust accuracy as the per-image worst case over the attacks run.

The lessons' guards come from ``verdicts`` and are re-exported here: ``Verdict`` (shown /
contradicted / not resolved), ``paired_verdict`` (one setting more accurate than another on the same
images), ``equivalence_verdict`` (two settings agree within a margin: TOST), ``rate_verdict`` (a rate
past a threshold), ``verdict`` (anything else), ``paired_comparison`` (McNemar's exact test).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import torch
from statsmodels.stats.proportion import proportion_confint
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .attacks import AttackConfig, format_number
from .interop import AutoAttack, autoattack, square
from .verdicts import (CONTRADICTED, NOT_RESOLVED, SHOWN, Verdict, equivalence_verdict, format_p,  # noqa: F401
                       paired_comparison, paired_difference_interval, paired_verdict, phenomenon, rate_interval,
                       rate_verdict, verdict)
from .validation import (check_images, check_label_range, check_labels, check_positive_int,
                         check_probability, eval_mode)


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

    def percent(self) -> str:
        """The accuracy for people: "93.2% (91.5-94.6), n=1000"."""
        lo, hi = self.ci
        return f"{100 * self.accuracy:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}), n={self.n}"

    def row(self) -> dict:
        lo, hi = self.ci
        details = {k: v for k, v in self.details.items() if not isinstance(v, torch.Tensor)}  # per-image vectors stay out
        return {"threat model": self.threat, "images": self.n, "accuracy": self.accuracy, "ci_low": lo, "ci_high": hi, **details}

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
    """The threat-model string of ``attack``: ``str(attack)`` for an ``AttackConfig`` or an
    ``interop.AutoAttack`` (which names the implementation that ran), else "attack"."""
    if attack is None:
        return "clean"
    return str(attack) if isinstance(attack, (AttackConfig, AutoAttack)) else "attack"


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


def correct(model, x, y, attack=None, batch_size: int | None = None) -> torch.Tensor:
    """Per-example correctness (B,) bool, on the CPU, of ``model`` on ``attack(model, x, y)`` (or on x when
    attack is None): the paired data behind two results on the same images (McNemar; notebook 05).
    batch_size: attack and classify in consecutive batches of this many images (memory); None: all at once."""
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
        return torch.cat([correct(model, xb, yb, attack) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
    with eval_mode(model):
        x_in = x if attack is None else attack(model, x, y)
        return (_predict(model, x_in, y) == y).cpu()


def paired_table(correct_by_name: dict, reference: str, threat: str = ""):
    """One row per entry of ``correct_by_name`` (name -> per-image bool correctness on the same images):
    accuracy, 95% interval, difference from ``reference`` in points, McNemar p and whether that
    difference is beyond test-set noise (p < 0.05). A DataFrame indexed by name."""
    import pandas as pd

    if reference not in correct_by_name:
        raise ValueError(f"reference {reference!r} is not one of {list(correct_by_name)}")
    rows = {}
    for name, ok in correct_by_name.items():
        pair = paired_comparison(ok, correct_by_name[reference])
        r = EvalResult(round(pair["a"] * pair["n"]), pair["n"], threat or "accuracy")
        rows[name] = {"accuracy": r.accuracy, "95% CI": tuple(round(v, 3) for v in r.ci),
                      f"minus {reference} (points)": round(100 * (pair["a"] - pair["b"]), 1),
                      "McNemar p": pair["p"], "beyond noise": name != reference and pair["p"] < 0.05}
    return pd.DataFrame.from_dict(rows, orient="index")


def _fmt(r: EvalResult) -> str:
    lo, hi = r.ci
    return f"{100 * r.accuracy:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def gradient_masking_checks(model, x, y, attack: AttackConfig, restarts: int = 5, large_eps: float | None = None,
                            seed: int = 0, surrogate=None, square_queries: int = 1000, more_steps: int | None = None,
                            tolerance: float = 0.03, verbose: bool = True):
    """The gradient-masking checklist of notebooks 03 and 04: can the white-box number be trusted?

    A defense can look robust because gradient attacks fail on it (zero, shattered or noisy
    gradients: *gradient masking*, named by Papernot et al. 2017; *obfuscated gradients*, Athalye,
    Carlini & Wagner 2018), not because it is. Following
    Carlini et al. (2019, "On Evaluating Adversarial Robustness"), on one batch ``x``
    (B, C, H, W) in [0, 1], ``y`` (B,), under ``attack`` (a PGD ``AttackConfig``: the white-box
    attack whose number is being checked, run once, i.e. one restart, seeded by ``seed``):

    1. iterative beats single-step: PGD accuracy <= FGSM accuracy (+ tolerance);
    2. more steps: PGD with ``more_steps`` steps (default 4 x steps) and the step scaled to the
       path, alpha = 2.5 eps / more_steps (``attacks.default_alpha``: the rule of the MadryLab
       ``robustness`` library, not Madry et al.'s paper setting), from an independent start,
       must not lower accuracy by more than the tolerance (else the attack had not converged);
    3. restarts: ``restarts`` restarts with seeds independent of the single run must not lower
       accuracy by more than the tolerance (else one run is luck-dependent and cannot be trusted);
    4. gradient-free: torchattacks' Square attack (Andriushchenko et al. 2020; ``square_queries``
       queries, margin loss) must not beat the worst case of the PGD runs of rows 1-3 (an image
       counts as robust only if it survives all of them) by more than the tolerance;
    5. transfer: PGD (the same ``attack``) run on ``surrogate`` (a model trained on the same data,
       passed by the caller; None skips the row and says so) and evaluated on ``model`` must not
       beat the white-box worst case by more than the tolerance;
    6. unbounded attacks win: PGD at ``large_eps`` (default 0.5 for linf, 10 for l2; the image can
       be turned into another class; alpha = 2.5 large_eps / steps) leaves accuracy <= tolerance.

    tolerance: accuracy difference (a fraction, default 3 points) treated as the noise of random
    starts. Every accuracy is printed with its 95% Clopper-Pearson interval over the B images; the
    attacks run on the same images, so their difference is less noisy than the intervals, but a
    FLAG whose difference lies inside them deserves a rerun on more images. A FLAG is a sign of gradient
    masking or a weak attack, not of robustness: strengthen the attack (or use an adaptive one)
    before reporting the number. ``verbose`` prints every row (threat model, numbers with
    intervals, PASS / FLAG / SKIP, what a flag means). Returns a DataFrame with one row per check
    (``passed``: True / False, None when skipped); ``df.attrs["threat model"]`` is the white-box attack.
    """
    import pandas as pd

    check_images(x)
    check_labels(y, x)
    if not isinstance(attack, AttackConfig) or attack.kind != "pgd":
        raise ValueError(f"attack must be a PGD AttackConfig (kind 'pgd'), got {attack!r}")
    restarts = check_positive_int(restarts, "restarts")
    square_queries = check_positive_int(square_queries, "square_queries")
    tolerance = check_probability(tolerance, "tolerance")
    steps, norm, eps = attack.steps, attack.norm, attack.eps
    more_steps = check_positive_int(more_steps if more_steps is not None else 4 * steps, "more_steps")
    large_eps = large_eps if large_eps is not None else (0.5 if norm == "linf" else 10.0)
    n = len(y)

    def seeded(cfg, offset):  # independent random starts per row
        return cfg.replace(generator=torch.Generator().manual_seed(seed + offset))

    def result(ok, threat):
        return EvalResult(int(ok.sum()), n, threat)

    single = seeded(attack.replace(restarts=1), 0)
    fgsm_cfg = AttackConfig.fgsm(eps, norm)
    more = seeded(attack.replace(restarts=1, steps=more_steps), 1)  # alpha = default_alpha(eps, more_steps)
    many = seeded(attack.replace(restarts=restarts), 2)
    large = seeded(attack.replace(restarts=1, eps=large_eps), 3)
    c_fgsm, c_pgd = correct(model, x, y, fgsm_cfg), correct(model, x, y, single)
    c_more, c_many = correct(model, x, y, more), correct(model, x, y, many)
    r_fgsm, r_pgd, r_more, r_many = (result(c, str(cfg)) for c, cfg in
                                     ((c_fgsm, fgsm_cfg), (c_pgd, single), (c_more, more), (c_many, many)))
    r_white = result(c_pgd & c_more & c_many, "worst case of the PGD runs of rows 1-3")

    square_attack = square(eps, norm, n_queries=square_queries, seed=seed)
    square_threat = threat_string("Square", norm=norm, eps=eps, queries=square_queries)
    r_square = result(correct(model, x, y, square_attack), square_threat)
    r_large = result(correct(model, x, y, large), str(large))

    rows = []

    def add(check, ref, r, passed, flag_means):
        rows.append({"check": check, "reference": None if ref is None else ref.threat,
                     "reference accuracy": float("nan") if ref is None else ref.accuracy,
                     "reference CI": None if ref is None else tuple(round(v, 3) for v in ref.ci),
                     "checked attack": None if r is None else r.threat,
                     "checked accuracy": float("nan") if r is None else r.accuracy,
                     "checked CI": None if r is None else tuple(round(v, 3) for v in r.ci),
                     "verdict": "SKIP" if passed is None else "PASS" if passed else "FLAG", "passed": passed,
                     "a flag means": flag_means, "_ref": ref, "_r": r})

    add("iterative beats single-step", r_fgsm, r_pgd, r_pgd.accuracy <= r_fgsm.accuracy + tolerance,
        "one FGSM step does better than many PGD steps: the gradient misleads the iterations (masking) "
        "or PGD is broken")
    add(f"more steps ({more_steps}, alpha scaled to the path) do not lower accuracy", r_pgd, r_more,
        r_more.accuracy >= r_pgd.accuracy - tolerance,
        f"PGD-{steps} had not converged: its number overstates robustness; report the longer attack")
    add(f"{restarts} independent restarts do not lower accuracy", r_pgd, r_many,
        r_many.accuracy >= r_pgd.accuracy - tolerance,
        "one run depends on its random start: single-run numbers cannot be trusted (noisy or shattered gradients)")
    add("gradient-free (Square) does not beat the white-box attack", r_white, r_square,
        r_square.accuracy >= r_white.accuracy - tolerance,
        "an attack without gradients finds what the gradient attacks miss: the gradients are masked")
    transfer_means = ("examples crafted on another model fool this one more often than its own gradients do: "
                      "masked gradients")
    if surrogate is None:
        add("transfer from a surrogate does not beat the white-box attack", r_white, None, None, transfer_means)
    else:
        transfer_cfg = seeded(attack.replace(restarts=1), 4)

        def transfer(m, xb, yb):  # crafted on the surrogate, evaluated on the model
            return transfer_cfg(surrogate, xb, yb)

        r_transfer = result(correct(model, x, y, transfer), f"{transfer_cfg} on the surrogate, transferred")
        add("transfer from a surrogate does not beat the white-box attack", r_white, r_transfer,
            r_transfer.accuracy >= r_white.accuracy - tolerance, transfer_means)
    add(f"accuracy reaches ~0 at eps={format_number(large_eps)}", None, r_large, r_large.accuracy <= tolerance,
        "an attack that cannot win with an unbounded budget is not finding adversarial examples: masking or a bug")

    if verbose:
        print(f"Gradient-masking checklist on {n} images; white-box attack: {single}; tolerance "
              f"{100 * tolerance:g} points; accuracies with 95% Clopper-Pearson intervals")
        for i, row in enumerate(rows, 1):
            ref, r = row["_ref"], row["_r"]
            print(f"{i}. {row['verdict']}  {row['check']}")
            if r is None:
                print("     transfer check skipped: no surrogate model was passed (pass surrogate=, e.g. a standard "
                      "model trained on the same data)")
            else:
                versus = f"{ref.threat}: {_fmt(ref)}  vs  " if ref is not None else ""
                print(f"     {versus}{r.threat}: {_fmt(r)}")
            print(f"     a FLAG here means: {row['a flag means']}")
    df = pd.DataFrame([{k: v for k, v in row.items() if not k.startswith("_")} for row in rows])
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
                      generator=None, autoattack_impl: str | None = None):
    """Clean, weak PGD, strong PGD and AutoAttack accuracy on the same images: a list of ``EvalResult``.

    weak / strong: ``AttackConfig``s (default: PGD-20 and PGD-50 x 10 restarts at ``eps`` with the
    default step). Each result carries its threat model and a 95% Clopper-Pearson interval; the
    AutoAttack row names its implementation (``autoattack_impl``: see ``interop.autoattack``).
    """
    weak = weak or AttackConfig(eps, steps=20, generator=generator)
    strong = strong or AttackConfig(eps, steps=50, restarts=10, generator=generator)
    out = [evaluate(model, data, threat="clean", batch_size=batch_size, progress=False)]
    for name, cfg in (("weak", weak), ("strong", strong)):
        r = evaluate(model, data, cfg, batch_size=batch_size, progress=progress)
        r.threat = f"{r.threat} ({name})"
        out.append(r)
    if auto:
        out.append(evaluate(model, data, autoattack(eps, num_classes=num_classes, impl=autoattack_impl),
                            batch_size=batch_size, progress=progress))
    return out


class Ledger:
    """One seeded evaluation per (model, attack) on one fixed set of images, kept and reused.

    ``x`` (N, C, H, W) in [0, 1], ``y`` (N,): the images every number is measured on. ``correct(name,
    model, attack)`` attacks once and remembers the per-image correctness under ``(name, threat)``
    (asking again returns the same vector, so a model never gets two numbers for one attack); an
    ``AttackConfig`` with random starts and no generator gets one seeded by ``seed``. ``worst_case(name)``
    is the headline robust accuracy: an image counts as robust only if it survived every attack run on
    that model (clean excluded), as RobustBench and AutoAttack report. ``table()`` lays out every number
    with its interval; ``winners(name)`` says which attack alone broke how many images.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0, batch_size: int | None = 250):
        check_images(x)
        self.x, self.y = x, check_labels(y, x)
        self.seed, self.batch_size = seed, batch_size
        self._ok: dict[tuple[str, str], torch.Tensor] = {}

    def seeded(self, attack):
        """``attack`` with its random start seeded (an ``AttackConfig`` without a generator), else as is."""
        if isinstance(attack, AttackConfig) and attack.random_start and attack.generator is None:
            return attack.replace(generator=torch.Generator().manual_seed(self.seed))
        return attack

    def correct(self, name: str, model, attack=None, threat: str | None = None) -> torch.Tensor:
        """Per-image correctness (N,) bool of model ``name`` under ``attack`` (None: clean), computed once."""
        threat = threat or describe_attack(attack)
        key = (name, threat)
        if key not in self._ok:
            device = next(iter(model.parameters())).device
            x, y = self.x.to(device), self.y.to(device)
            self._ok[key] = correct(model, x, y, self.seeded(attack), batch_size=self.batch_size)
        return self._ok[key]

    def record(self, name: str, threat: str, ok) -> torch.Tensor:
        """Store a per-image correctness vector measured elsewhere (e.g. AutoAttack's own run)."""
        ok = torch.as_tensor(getattr(ok, "cpu", lambda: ok)(), dtype=torch.bool).flatten()
        if ok.numel() != len(self.y):
            raise ValueError(f"{threat}: {ok.numel()} results for {len(self.y)} images")
        self._ok[(name, threat)] = ok
        return ok

    def threats(self, name: str) -> list[str]:
        return [t for (m, t) in self._ok if m == name]

    def result(self, name: str, threat: str = "clean") -> EvalResult:
        ok = self._ok[(name, threat)]
        return EvalResult(int(ok.sum()), ok.numel(), threat)

    def worst_case_correct(self, name: str) -> torch.Tensor:
        attacked = [t for t in self.threats(name) if t != "clean"]
        if not attacked:
            raise ValueError(f"no attack has been run on {name!r}")
        ok = torch.ones(len(self.y), dtype=torch.bool)
        for t in attacked:
            ok &= self._ok[(name, t)]
        return ok

    def worst_case(self, name: str) -> EvalResult:
        """Robust accuracy of ``name`` when each image faces the strongest of the attacks run on it."""
        attacked = [t for t in self.threats(name) if t != "clean"]
        ok = self.worst_case_correct(name)
        return EvalResult(int(ok.sum()), ok.numel(), f"worst case over {len(attacked)} attacks")

    def winners(self, name: str) -> dict:
        """For each attack on ``name``: how many images it alone broke (every other attack failed on them)."""
        attacked = [t for t in self.threats(name) if t != "clean"]
        out = {}
        for t in attacked:
            others = torch.ones(len(self.y), dtype=torch.bool)
            for u in attacked:
                if u != t:
                    others &= self._ok[(name, u)]
            out[t] = int((others & ~self._ok[(name, t)]).sum())
        return out

    def table(self, names=None):
        """Every number measured, with its interval, and each model's worst case: a DataFrame for people."""
        import pandas as pd

        rows = []
        for name in names or dict.fromkeys(m for m, _ in self._ok):
            for t in self.threats(name):
                rows.append({"model": name, "threat model": t, "accuracy": self.result(name, t).percent()})
            if any(t != "clean" for t in self.threats(name)):
                rows.append({"model": name, "threat model": "worst case (headline)",
                             "accuracy": self.worst_case(name).percent()})
        return pd.DataFrame(rows)
