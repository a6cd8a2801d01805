"""The runs of notebook 06b, shared with ``benchmarks/poisoning.py`` (one place for both).

- ``train_model``: one model on (x, y) through ``training.train_classifier`` (the course's loop,
  ``training.fit``), seeded.
- ``attack_runs``: for each trigger, poison rate and seed, a model trained on the poisoned set, with
  its per-image clean correctness and trigger hits on held-out images (the paired data of the
  guards); rate 0 is the attack-free model of that seed.
- ``attack_table``: those runs as a table (rates of the set and of the target class, clean accuracy
  and trigger success pooled over seeds with 95% intervals, and per seed).
- ``defend``: one detector on one run's training set, its recall and clean removal, and the model
  retrained on what it kept with its trigger success.
- ``poison_partitions``: the adaptive attacker of the DPA certificate, who places each poisoned image
  in a partition of its choice.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..evaluation import EvalResult
from .attacks import PoisonedSet, poison_dataset, predict, trigger_hits
from .defenses import detection_report, features
from .dpa import image_hash, to_uint8


def train_model(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int, build, device=None) -> torch.nn.Module:
    """A fresh ``build()`` model trained on (x, y) for ``epochs`` (Adam, one-cycle; seed for init and order)."""
    from ..training import train_classifier  # notebook 01's wrapper of training.fit

    torch.manual_seed(seed)
    model = build()
    if device is not None:
        model, x, y = model.to(device), x.to(device), y.to(device)
    return train_classifier(model, x, y, epochs, seed=seed, progress=False)


def attack_runs(x, y, eval_x, eval_y, triggers: dict, fractions, seeds, target: int, epochs: int, build, device=None,
                progress: bool = True) -> list[dict]:
    """One run per (trigger name, fraction, seed) and one attack-free run per seed (trigger None, fraction 0).

    Each run: ``model``, ``clean_ok`` (M,) bool on (eval_x, eval_y), ``hits`` (bool over eval images with
    y != target) for each trigger in ``triggers`` (name -> trigger), the poisoned ``idx``; the poisoned
    set is rebuilt by ``poisoned_set(run, x, y)`` (seeded, so nothing large is kept)."""
    from tqdm.auto import tqdm

    jobs = [(None, 0.0, s) for s in seeds] + [(t, f, s) for t in triggers for f in fractions for s in seeds]
    runs = []
    for name, fraction, seed in tqdm(jobs, desc="backdoor runs", disable=not progress):
        trigger = triggers[name] if name else None
        if trigger is None:
            xs, ys, idx = x, y, torch.empty(0, dtype=torch.long)
        else:
            p = poison_dataset(x, y, trigger, fraction, target, torch.Generator().manual_seed(seed))
            xs, ys, idx = p.x, p.y, p.idx
        model = train_model(xs, ys, epochs, seed, build, device)
        runs.append({"trigger": name, "fraction": fraction, "seed": seed, "model": model, "idx": idx,
                     "clean_ok": predict(model, eval_x) == eval_y,
                     "hits": {t: trigger_hits(model, eval_x, eval_y, target, trig) for t, trig in triggers.items()}})
    return runs


def poisoned_set(run: dict, x, y, triggers: dict, target: int) -> PoisonedSet:
    """The poisoned training set of ``run`` (rebuilt from its seed)."""
    return poison_dataset(x, y, triggers[run["trigger"]], run["fraction"], target,
                          torch.Generator().manual_seed(run["seed"]))


def pooled(runs: list[dict], key) -> torch.Tensor:
    """The per-image bool vectors ``key(run)`` of several runs, concatenated (seed after seed)."""
    return torch.cat([key(r) for r in runs])


def attack_table(runs: list[dict], n_train: int, target: int, class_size: int) -> pd.DataFrame:
    """Clean accuracy and trigger success per (trigger, fraction), pooled over seeds with 95% intervals.

    class_size: training images of the target class before poisoning (for the rate within the class)."""
    rows = []
    groups = {}
    for r in runs:
        groups.setdefault((r["trigger"], r["fraction"]), []).append(r)
    for (name, fraction), rs in groups.items():
        n_poison = int(round(fraction * n_train))
        clean = pooled(rs, lambda r: r["clean_ok"])
        asr = {t: pooled(rs, lambda r, t=t: r["hits"][t]) for t in rs[0]["hits"]}
        shown = name or next(iter(asr))  # the attack-free row shows its rate for the first trigger
        hits = asr[shown]
        c, a = EvalResult(int(clean.sum()), len(clean)), EvalResult(int(hits.sum()), len(hits))
        rows.append({"trigger": name or "none (attack-free)", "poisoned images": n_poison,
                     "% of training set": round(100 * fraction, 2),
                     "% of target class": round(100 * n_poison / (class_size + n_poison), 1),
                     "seeds": len(rs), "clean accuracy": f"{100 * c.accuracy:.1f}% ({100 * c.ci[0]:.1f}-{100 * c.ci[1]:.1f})",
                     "trigger success": f"{100 * a.accuracy:.1f}% ({100 * a.ci[0]:.1f}-{100 * a.ci[1]:.1f})"
                     + ("" if name else f" [{shown} trigger]"),
                     "trigger success per seed": ", ".join(f"{100 * r['hits'][shown].float().mean():.0f}%" for r in rs)})
    return pd.DataFrame(rows)


def defend(run: dict, pset: PoisonedSet, detector, layer: str, epochs: int, build, eval_x, eval_y, device=None,
           retrain: bool = True, expected_poison: int | None = None, feats: torch.Tensor | None = None) -> dict:
    """Run ``detector(features, labels, expected_poison) -> removed (N,) bool`` on the ``layer`` features of
    ``run``'s model on its poisoned set (``expected_poison``: the defender's guess, default the true count);
    retrain (same seed, same recipe) on what is kept and measure the trigger again. Returns the
    ``detection_report`` plus ``hits_after`` and ``clean_ok_after`` when retrained. ``feats``: the ``layer``
    features when already computed."""
    feats = features(run["model"], pset.x, layer) if feats is None else feats
    removed = detector(feats, pset.y, expected_poison or max(len(pset.idx), 1))
    report = detection_report(removed, pset.is_poison)
    if retrain:
        kept = report["kept"]
        model = train_model(pset.x[kept], pset.y[kept], epochs, run["seed"], build, device)
        report["hits_after"] = trigger_hits(model, eval_x, eval_y, pset.target, pset.trigger)
        report["clean_ok_after"] = predict(model, eval_x) == eval_y
    return report


def pool_reports(reports: list[dict]) -> dict:
    """Several seeds' ``defend`` reports as one: counts summed, per-image vectors concatenated."""
    def total(key):
        return EvalResult(sum(r[key].correct for r in reports), sum(r[key].n for r in reports), reports[0][key].threat)

    out = {"recall": total("recall"), "clean_removed": total("clean_removed"),
           "poison_removed": torch.cat([r["poison_removed"] for r in reports])}
    for key in ("hits_after", "clean_ok_after"):
        if all(key in r for r in reports):
            out[key] = torch.cat([r[key] for r in reports])
    return out


def defense_row(name: str, report: dict, hits_before: torch.Tensor | None = None) -> dict:
    """One row of the detection table: recall, clean removal and trigger success before / after retraining."""
    def fmt(r: EvalResult):
        return f"{100 * r.accuracy:.1f}% ({100 * r.ci[0]:.1f}-{100 * r.ci[1]:.1f})"

    row = {"detector": name, "poison removed (recall)": fmt(report["recall"]),
           "clean images removed": fmt(report["clean_removed"])}
    if hits_before is not None:
        row["trigger success before"] = fmt(EvalResult(int(hits_before.sum()), len(hits_before)))
    if "hits_after" in report:
        h = report["hits_after"]
        row["trigger success after retraining"] = fmt(EvalResult(int(h.sum()), len(h)))
    return row


def place_in_partition(img: torch.Tensor, k: int, wanted: int, max_tries: int = 100_000) -> torch.Tensor:
    """A copy of ``img`` (C, H, W) in [0, 1], changed in as few low pixels by +1/255 as the search needs,
    whose ``partition_ids`` partition is ``wanted``: the attacker who chooses where a poisoned image lands
    (the hash is public; it is not a secret key)."""
    base = to_uint8(img[None])[0].astype("int32")
    flat = base.reshape(-1)
    order = flat.argsort()  # the darkest pixels first: the smallest visible change
    for t in range(max_tries):
        cand = flat.copy()
        j, bump = order[t % len(order)], 1 + t // len(order)
        cand[j] = min(cand[j] + bump, 255)
        u8 = cand.reshape(base.shape).astype("uint8")
        if image_hash(u8) % k == wanted:
            return torch.from_numpy(u8).float() / 255
    raise RuntimeError(f"no nudge of the image reached partition {wanted} in {max_tries} tries")


def attack_certificate(models: list, parts: torch.Tensor, x_train, y_train, x0: torch.Tensor, images: int, build,
                       epochs: int, copies: int = 1, lr: float = 1e-3, batch_size: int = 64, device=None) -> dict:
    """The adaptive attacker of the DPA certificate on one test image ``x0`` (C, H, W).

    The ensemble predicts c with runner-up c2 (``dpa_certificate``). The attacker has ``images`` poisoned
    training images and spends ``copies`` of them in each of ``images // copies`` partitions that vote c
    (each a copy of x0 labelled c2, nudged by ``place_in_partition`` into that partition); those
    partitions are retrained (same seed, same recipe: ``train_partitions``) and the votes counted again.
    Returns the votes, prediction and certificate before and after, and the images spent."""
    from .dpa import dpa_certificate, train_partitions, votes as count_votes

    k = len(models)
    before = count_votes(models, x0[None])
    pred, rho = dpa_certificate(before)
    c = int(pred[0])
    rival = before[0].clone()
    rival[c] = -1
    c2 = int(rival.argmax())
    voting_c = [i for i, m in enumerate(models) if int(predict(m, x0[None])[0]) == c][:images // copies]
    new_models = list(models)
    for i in voting_c:
        poison = torch.stack([place_in_partition(x0 if j == 0 else (x0 + j / 255).clamp(0, 1), k, i)
                              for j in range(copies)])
        rows = torch.nonzero(parts == i).flatten()
        xi = torch.cat([x_train[rows], poison])
        yi = torch.cat([y_train[rows], torch.full((copies,), c2, dtype=torch.long)])
        (new_models[i],) = train_partitions(xi, yi, 1, build, epochs, lr=lr, batch_size=batch_size, device=device,
                                            progress=False,
                                            parts=torch.zeros(len(yi), dtype=torch.long), first_seed=i)
    after = count_votes(new_models, x0[None])
    pred2, rho2 = dpa_certificate(after)
    return {"class": c, "runner-up": c2, "certificate": int(rho[0]), "poisoned partitions": len(voting_c),
            "poisoned images": len(voting_c) * copies, "votes before": before[0].tolist(),
            "votes after": after[0].tolist(), "prediction after": int(pred2[0]), "flipped": int(pred2[0]) != c}


def summary_path(profile: str):
    """Where notebook 06b leaves its numbers for notebook 09: ``cache_dir()/poisoning/summary_<profile>.json``."""
    from ..config import cache_dir

    return cache_dir() / "poisoning" / f"summary_{profile}.json"


def save_summary(summary: dict, profile: str):
    """Write notebook 06b's numbers (plain JSON types) for notebook 09, atomically; returns the path."""
    import json

    from ..config import atomic_write

    path = summary_path(profile)
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return path


def load_summary(profile: str) -> dict | None:
    """Notebook 06b's numbers for ``profile``, or None when 06b has not run in that profile."""
    import json

    path = summary_path(profile)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def counts(ok: torch.Tensor) -> list[int]:
    """[k, n] of a bool vector: the JSON form of a rate."""
    return [int(torch.as_tensor(ok).sum()), int(torch.as_tensor(ok).numel())]


def rate_text(kn) -> str:
    """'93.2% (91.5-94.6; k/n)' from [k, n]."""
    r = EvalResult(int(kn[0]), int(kn[1]))
    return f"{100 * r.accuracy:.1f}% ({100 * r.ci[0]:.1f}-{100 * r.ci[1]:.1f}; {r.correct}/{r.n})"


def bypass_verdict(name: str, detector: str, plain_after: torch.Tensor, adaptive_after: torch.Tensor, bound: float):
    """Did an adaptive attack bypass a detector? ``plain_after`` / ``adaptive_after``: trigger hits (bool) of the
    models retrained on what ``detector`` kept, for the plain and the adaptive attack; ``bound``: the attack-free
    models' trigger rate (the top of its interval). A bypass needs both halves, so the comparison is alive:

    - shown: the detector removed the plain attack's backdoor (its 95% interval below ``bound``) and the
      adaptive backdoor survived (its interval above ``bound``);
    - contradicted: the adaptive backdoor was removed too (its interval below ``bound``);
    - not resolved: otherwise; in particular when the detector did not remove the plain backdoor, there was
      nothing to bypass. Returns an ``evaluation.Verdict``."""
    from ..evaluation import rate_interval, verdict

    def text(h):
        k, n = int(h.sum()), len(h)
        lo, hi = rate_interval(k, n)
        return f"{100 * k / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}; {k}/{n})", lo, hi

    plain, _, plain_hi = text(plain_after)
    adaptive, adaptive_lo, adaptive_hi = text(adaptive_after)
    evidence = (f"trigger success after {detector} and retraining: plain attack {plain}, adaptive attack {adaptive}; "
                f"attack-free bound {100 * bound:.3g}%")
    if adaptive_hi < bound:
        return verdict(name, "contradicted", evidence, "the detector removed the adaptive backdoor as well")
    if plain_hi < bound and adaptive_lo > bound:
        return verdict(name, "shown", evidence, "the detector's number on the plain attack was not a security claim")
    if plain_hi >= bound:
        return verdict(name, "not resolved", evidence, "the detector did not remove the plain attack's backdoor in this "
                       "run, so there was nothing to bypass: a bypass needs a detector that works on the plain attack first")
    return verdict(name, "not resolved", evidence, "the adaptive backdoor's rate straddles the bound: more seeds or images")
