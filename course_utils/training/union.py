"""The L-infinity trap (notebook 04, ``benchmarks/linf_trap.py``): one recipe, four training threat models.

A model trained for one Lp ball is tested in others (Tramer & Boneh 2019, "Adversarial Training and
Robustness for Multiple Perturbations"; Engstrom et al. 2019 for rotations and translations). To
make the comparison unconfounded, the four MNIST models share the recipe of
``zoo.recipe("mnist", profile)`` (data, held-out split, data order, width, epochs, optimizer, LR
schedule, early stopping); only the training attack differs:

- ``"standard"``: no adversarial example (``ratio=0``); the epoch kept is the best held-out clean one;
- ``"linf"``: the course's robust model itself, ``zoo.robust_model("mnist")`` (L-infinity, eps 0.3);
- ``"l2"``: the same attack in the L2 ball of radius ``L2_EPS`` (alpha scaled by L2_EPS / 0.3);
- ``"union"``: per example the worst of both (``AdversarialTrainingConfig(union=...)``: the "max"
  strategy of Tramer & Boneh 2019 and Maini, Wong & Kolter 2020).

``model(kind)`` trains (or loads from the cache) one of them; ``threat_models()`` are the table's
columns; ``trap_table`` evaluates every model under every threat model (accuracy, n, 95%
Clopper-Pearson interval); ``findings`` reads the table (did the L-inf robustness transfer, what the
union costs), for the notebook and the benchmark alike. x: (B, 1, 28, 28) in [0, 1].
"""
from __future__ import annotations

import hashlib
import json

import torch

from ..attacks import AttackConfig, SpatialGrid, WorstOf
from ..config import get_device, get_profile
from ..evaluation import EvalResult, correct, paired_comparison, threat_string

KINDS = ("standard", "linf", "l2", "union")
LINF_EPS = 0.3  # the trained and tested L-infinity radius (Madry et al. 2018)
L2_EPS = 2.0  # the L2 radius on MNIST of Tramer & Boneh (2019) and Maini et al. (2020)


def to_norm(cfg: AttackConfig, norm: str, eps: float) -> AttackConfig:
    """The same attack (kind, steps, restarts, alpha / eps) in another ball: ``norm`` of radius ``eps``."""
    return cfg.replace(norm=norm, eps=eps, alpha=cfg.alpha * eps / cfg.eps if cfg.eps > 0 else None)


def recipe(kind: str, profile: str | None = None) -> dict:
    """The recipe of model ``kind``: ``zoo.recipe("mnist", profile)`` with only the training attack
    (and the held-out check that follows it) changed."""
    from .. import zoo

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "standard":
        return zoo.twin_recipe("mnist", profile)  # ratio 0, clean held-out check: the robust recipe's standard twin
    r = zoo.recipe("mnist", profile)
    t = r["train"]
    if kind == "l2":
        t = t.replace(attack=to_norm(t.attack, "l2", L2_EPS), val_attack=to_norm(t.val_attack, "l2", L2_EPS))
    elif kind == "union":
        t = t.replace(union=(to_norm(t.attack, "l2", L2_EPS),),
                      val_attack=WorstOf((t.val_attack, to_norm(t.val_attack, "l2", L2_EPS))))
    return {**r, "train": t}


def cache_name(kind: str, profile: str | None = None) -> str:
    """The cache key of model ``kind``: profile and a hash of its recipe (``zoo.cache_name`` for "linf")."""
    from .. import zoo

    profile = profile or get_profile().name
    if kind == "linf":
        return zoo.cache_name("mnist", profile)
    digest = hashlib.sha256(zoo.recipe_json(recipe(kind, profile)).encode()).hexdigest()[:10]
    return f"mnist_trap_{kind}_{profile}_{digest}"


def model(kind: str, profile: str | None = None, device=None, progress: bool = True, source: str = "shipped"):
    """``(model in eval mode, history DataFrame or None, recipe)`` for ``kind`` in ``KINDS``.

    "linf" is ``zoo.robust_model("mnist", profile)`` (whose initial weights come from the global torch
    generator as it stands when it trains). The others are trained once with ``adversarial_fit`` on
    the same ``n_train`` images in the same order (loader seed 0), checked on the same ``n_val``
    held-out images, from initial weights seeded 0, and cached with ``cached_model``;
    the per-epoch history is kept in the checkpoint's sidecar (``None`` when it has none).
    ``source``: ``"shipped"`` loads the course's shipped entry on a first run when there is one
    (``python -m course_utils.zoo ship trap quick``), ``"train"`` trains it yourself (cached as
    ``<name>_yours``), as in ``zoo.robust_model``.
    """
    import pandas as pd

    from .. import zoo
    from ..data import load_dataset, make_loader
    from .adversarial import adversarial_fit
    from .checkpoints import cached_field, cached_model

    profile = profile or get_profile().name
    device = device or get_device()
    if source not in ("shipped", "train"):
        raise ValueError(f"source must be 'shipped' or 'train', got {source!r}")
    if kind == "linf":
        return zoo.robust_model("mnist", profile, device=device, progress=progress, source=source)
    r = recipe(kind, profile)
    name = cache_name(kind, profile) + ("_yours" if source == "train" else "")
    meta = {"recipe": json.loads(zoo.recipe_json(r))}

    def train(m):
        ds = load_dataset("mnist", "train")
        train_idx, val_idx = zoo.split_indices(len(ds), r["n_train"], r["n_val"])  # zoo.robust_model's split
        loader = make_loader(torch.utils.data.Subset(ds, train_idx.tolist()), r["batch"], shuffle=True, seed=0)
        xv, yv = ds.tensors(val_idx)
        res = adversarial_fit(m, loader, r["train"], val=(xv.to(device), yv.to(device)), progress=progress)
        meta["history"] = res.history.to_dict(orient="list")

    def build():
        torch.manual_seed(0)
        return zoo.build(r)

    m = cached_model(name, build, train, meta=meta, device=device)
    history = cached_field(name, meta, "history")
    return m.to(device).eval(), (pd.DataFrame(history) if history else None), r


def threat_models(profile: str | None = None) -> dict:
    """The table's columns, ``{name: (attack(model, x, y) -> x_adv, threat string)}``, sized by the profile.

    L-infinity PGD at eps 0.3 and L2 PGD at ``L2_EPS`` (``P.attack_steps`` steps of the default
    alpha = 2.5 eps / steps, ``P.restarts`` restarts); torchattacks' Square attack in the same L2 ball
    (gradient-free, ``SQUARE_QUERIES`` per profile): L-inf-trained MNIST models are known to mask L2
    gradients (Schott et al. 2019), so L2 PGD alone overstates their L2 robustness; the rotation +
    translation grid of Engstrom et al. (2019) (+-30 degrees, +-3 pixels; 31 x 7 x 7 points, 7 x 3 x 3 in smoke); ART's JSMA
    (Papernot et al. 2016) to a seeded random wrong class, at most 10% of the pixels.
    """
    from ..interop import jsma, square

    P = get_profile(profile)
    linf = AttackConfig(LINF_EPS, steps=P.attack_steps, restarts=P.restarts)
    spatial = SpatialGrid(30.0, 3, angles=P.pick(smoke=7, quick=31, full=31), shifts=P.pick(smoke=3, quick=7, full=7))
    theta, gamma = 1.0, 0.1
    queries = P.pick(smoke=50, quick=1000, full=5000)
    return {"clean": (None, "clean"),
            "L-inf PGD": (linf, str(linf)),
            "L2 PGD": (to_norm(linf, "l2", L2_EPS), str(to_norm(linf, "l2", L2_EPS))),
            "L2 Square": (square(L2_EPS, "l2", n_queries=queries),
                          threat_string("Square (torchattacks, gradient-free)", norm="l2", eps=L2_EPS, queries=queries)),
            "rotation+translation": (spatial, str(spatial)),
            "sparse (JSMA)": (jsma(theta, gamma), threat_string("JSMA (ART) to a random wrong class", norm="l0",
                                                               theta=theta, gamma=gamma))}


def trap_table(models: dict, x, y, threats: dict, progress: bool = False) -> dict:
    """``{(model name, threat name): EvalResult}`` for every model under every threat model, on (x, y); each
    result keeps its per-image correctness (``details["per_image"]``), so that ``below`` pairs the images."""
    results = {}
    for m_name, m in models.items():
        for t_name, (attack, threat) in threats.items():
            ok = correct(m, x, y, attack, batch_size=250)
            results[(m_name, t_name)] = EvalResult(int(ok.sum()), ok.numel(), threat, details={"per_image": ok})
    return results


def cell(r: EvalResult) -> str:
    """``"93.2% (91.0-95.0)"``: accuracy and its 95% interval, in percent."""
    lo, hi = r.ci
    return f"{100 * r.accuracy:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def as_frame(results: dict):
    """The table as a DataFrame of ``cell`` strings: one row per model, one column per threat model."""
    import pandas as pd

    models = list(dict.fromkeys(m for m, _ in results))
    threats = list(dict.fromkeys(t for _, t in results))
    return pd.DataFrame([[cell(results[(m, t)]) for t in threats] for m in models], index=models, columns=threats)


def below(a: EvalResult, b: EvalResult) -> bool:
    """a is below b beyond noise. On the same images (both results carry ``details["per_image"]`` of one
    length): a's accuracy is lower and McNemar's exact test separates them (p < 0.05), the paired test
    the table's cells allow. Otherwise (independent samples): a's 95% interval lies entirely under b's."""
    pa, pb = a.details.get("per_image"), b.details.get("per_image")
    if pa is not None and pb is not None and len(pa) == len(pb):
        pair = paired_comparison(pa, pb)
        return pair["a"] < pair["b"] and pair["p"] < 0.05
    return a.ci[1] < b.ci[0]


def findings(results: dict, reference: str = "L-inf PGD") -> list[str]:
    """Sentences read from ``trap_table``'s results (model names "standard", "linf", "l2", "union"):
    for the L-inf model, whether its robustness under ``reference`` carried over to each other threat
    model (its accuracy there far below, i.e. 95% intervals apart) and whether it beats the standard
    model there (``below``: McNemar on the same images); for every model, whether gradient-free Square beats L2 PGD (gradient masking, so the
    L2 PGD number is not its L2 robustness); then what the union model costs in clean and L-inf accuracy against the L-inf model
    and what it gains in L2. Every sentence carries its numbers."""
    out = []
    threats = list(dict.fromkeys(t for _, t in results))
    ref = results[("linf", reference)]
    for t in threats:
        if t in ("clean", reference):
            continue
        r, s = results[("linf", t)], results[("standard", t)]
        verdict = ("did NOT transfer" if below(r, ref) else "held (not significantly below)")
        vs_std = ("better than the standard model" if below(s, r) else "worse than the standard model"
                  if below(r, s) else "not separable from the standard model on these images")
        out.append(f"L-inf model under {t}: {cell(r)} vs {cell(ref)} under {reference}: robustness {verdict}; "
                   f"{vs_std} ({cell(s)}).")
    for m in dict.fromkeys(m for m, _ in results):  # L2: does the gradient-free attack beat PGD?
        if (m, "L2 PGD") in results and (m, "L2 Square") in results:
            pgd, sq = results[(m, "L2 PGD")], results[(m, "L2 Square")]
            if below(sq, pgd):
                out.append(f"{m} model, L2: gradient-free Square {cell(sq)} is below L2 PGD {cell(pgd)}: PGD's number is "
                           "gradient masking (Schott et al. 2019), read this model's L2 robustness from the lower one.")
    if ("union", "clean") in results:
        for t in ("clean", reference, "L2 PGD", "L2 Square"):
            if ("union", t) not in results:
                continue
            u, li = results[("union", t)], results[("linf", t)]
            diff = 100 * (u.accuracy - li.accuracy)
            sig = "beyond noise" if below(u, li) or below(li, u) else "within noise"
            out.append(f"union vs L-inf model, {t}: {cell(u)} vs {cell(li)} ({diff:+.1f} points, {sig}).")
    return out
