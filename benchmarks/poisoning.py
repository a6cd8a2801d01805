"""The tables of notebook 06b (defending the training data), quick profile by default.

    COURSE_DATA_DIR=../shared/data python benchmarks/poisoning.py [--profile quick] [--parts attacks detect adaptive dpa]

Same data, sizes, seeds and recipes as notebook 06b (``course_utils.poisoning.experiments``): the
backdoor table (trigger success and clean accuracy per trigger and poison rate, pooled over seeds),
the detectors at the highest rate (recall, clean images removed, trigger success after retraining on
what was kept), the adaptive blend against the two detectors, and Deep Partition Aggregation
(clean accuracy, median certificate, certified accuracy per k). Prints markdown tables with wall and
process CPU time; nothing is asserted. Published anchors (other models and sizes, so only the shape
compares): Gu et al. 2017 report BadNets trigger success above 99% on MNIST at almost unchanged clean
error; Tran et al. 2018 remove nearly all poison at 5-10% of a CIFAR-10 class with a ResNet; Levine &
Feizi 2021 (Table 1) certify a median of 448 poisoned images at 95.81% clean accuracy on MNIST with
k = 1,200 Network-in-Network base learners (the full profile's target).
"""
from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch

from course_utils import data, evaluation, models, poisoning
from course_utils.config import describe, get_device, get_profile, seed_everything

PARTS = ("attacks", "detect", "adaptive", "dpa")


def markdown(df) -> str:
    """A DataFrame as a markdown table (no tabulate needed)."""
    rows = [list(map(str, df.columns)), ["---"] * len(df.columns)] + [[f"{v:g}" if isinstance(v, float) else str(v) for v in r]
                                                                     for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = ap.parse_args()
    seed_everything(0)
    P, device = get_profile(args.profile), get_device()
    # the sizes of notebook 06b's first cell
    n_train = P.pick(smoke=600, quick=10_000, full=60_000)
    epochs = P.pick(smoke=1, quick=4, full=10)
    n_eval = P.pick(smoke=200, quick=2_000, full=10_000)
    seeds = P.pick(smoke=(0,), quick=(0, 1, 2), full=(0, 1, 2, 3, 4))
    rates = P.pick(smoke=(0.05,), quick=(0.005, 0.02), full=(0.001, 0.005, 0.01, 0.02))
    target, layer, logits, multiplier, cover = 0, poisoning.PENULTIMATE["mnist_small_cnn"], "8", 1.5, 0.02
    triggers = {"patch": poisoning.Trigger.patch(3), "blend": poisoning.Trigger.blend(0.2)}
    dpa_n_train = P.pick(smoke=1_000, quick=60_000, full=60_000)
    dpa_ks = P.pick(smoke=(5, 10), quick=(50, 250), full=(50, 250, 1_200))
    dpa_build = P.pick(smoke=models.mnist_linear, quick=models.mnist_linear, full=models.mnist_small_cnn)
    dpa_epochs = P.pick(smoke=2, quick=20, full=20)
    dpa_n_eval = P.pick(smoke=100, quick=1_000, full=10_000)
    print(describe(), "| profile", P.name)

    train_set, test_set = data.load_dataset("mnist", "train"), data.load_dataset("mnist", "test")
    x_train, y_train = data.subset_tensors(train_set, n_train, seed=0)
    eval_x, eval_y = data.subset_tensors(test_set, n_eval, seed=1)
    class_size = int((y_train == target).sum())
    build = models.mnist_small_cnn
    exp = poisoning.experiments
    top = max(rates)

    runs = None
    if {"attacks", "detect", "adaptive"} & set(args.parts):
        runs, w, c = timed(lambda: exp.attack_runs(x_train, y_train, eval_x, eval_y, triggers, rates, seeds, target, epochs,
                                                   build, device, progress=False))
        print(f"\n## Backdoors on MNIST ({n_train} training images, {epochs} epochs, seeds {seeds}; "
              f"wall {w:.0f} s, CPU {c:.0f} s)\n")
        print(markdown(exp.attack_table(runs, n_train, target, class_size)))
    free = [r for r in runs or [] if r["trigger"] is None]
    bound = {t: math.ceil(1000 * evaluation.rate_interval(int(h.sum()), len(h))[1]) / 1000
             for t, h in ((t, exp.pooled(free, lambda r, t=t: r["hits"][t])) for t in triggers)} if free else {}

    detectors = {
        "spectral, centred": (layer, lambda f, y, m: poisoning.spectral_filter(f, y, m, multiplier), True),
        "spectral, uncentred (ART's score)": (layer, lambda f, y, m: poisoning.spectral_filter(f, y, m, multiplier, centre=False), False),
        "spectral, every class (ART's rule)": (layer, lambda f, y, m: poisoning.spectral_filter(f, y, m, multiplier, remove_from="every"), False),
        "activation clustering": (layer, lambda f, y, m: poisoning.activation_clustering(f, y), True),
        "activation clustering on the logits": (logits, lambda f, y, m: poisoning.activation_clustering(f, y), False),
    }
    if "detect" in args.parts:
        def detect():
            rows = []
            for t in triggers:
                reports = {name: [] for name in detectors}
                group = [r for r in runs if r["trigger"] == t and r["fraction"] == top]
                for run in group:
                    pset = exp.poisoned_set(run, x_train, y_train, triggers, target)
                    for name, (lay, det, retrain) in detectors.items():
                        reports[name].append(exp.defend(run, pset, det, lay, epochs, build, eval_x, eval_y, device, retrain=retrain))
                hits = exp.pooled(group, lambda r, t=t: r["hits"][t])
                rows += [{"trigger": t, **exp.defense_row(name, exp.pool_reports(reports[name]), hits)} for name in detectors]
            return pd.DataFrame(rows)

        table, w, c = timed(detect)
        print(f"\n## Detection at {100 * top:g}% poison, pooled over seeds; attack-free trigger bound {bound} "
              f"(wall {w:.0f} s, CPU {c:.0f} s)\n")
        print(markdown(table))

    if "adaptive" in args.parts:
        def adaptive():
            hits, reports = [], {"spectral, centred": [], "activation clustering": []}
            for seed in seeds:
                aset = poisoning.adaptive_blend(x_train, y_train, top, cover, target, generator=torch.Generator().manual_seed(seed))
                run = {"seed": seed, "model": exp.train_model(aset.x, aset.y, epochs, seed, build, device)}
                hits.append(poisoning.trigger_hits(run["model"], eval_x, eval_y, target, aset.trigger))
                for name in reports:
                    lay, det, _ = detectors[name]
                    reports[name].append(exp.defend(run, aset, det, lay, epochs, build, eval_x, eval_y, device))
            hits = torch.cat(hits)
            return pd.DataFrame([{"attack": "adaptive blend", **exp.defense_row(name, exp.pool_reports(r), hits)}
                                 for name, r in reports.items()])

        table, w, c = timed(adaptive)
        print(f"\n## Adaptive blend (Qi et al. 2023), {100 * top:g}% poison + {100 * cover:g}% cover (wall {w:.0f} s, "
              f"CPU {c:.0f} s)\n")
        print(markdown(table))

    if "dpa" in args.parts:
        x_dpa, y_dpa = data.subset_tensors(train_set, dpa_n_train, seed=0)
        test_x, test_y = data.subset_tensors(test_set, dpa_n_eval, seed=2)
        radii = sorted({0, 1, 5, 10, 25, 50, 100, 200, 448} | {k // 2 for k in dpa_ks})
        rows = []
        for k in dpa_ks:
            def run_k(k=k):
                ensemble = poisoning.train_partitions(x_dpa, y_dpa, k, dpa_build, dpa_epochs, lr=1e-2, batch_size=128,
                                                      device=device, progress=False)
                return poisoning.dpa_certificate(poisoning.votes(ensemble, test_x))

            (pred, rho), w, c = timed(run_k)
            ok = pred == test_y
            clean = evaluation.EvalResult(int(ok.sum()), len(ok))
            rows.append({"k": k, "base learner": dpa_build.__name__, "wall s": round(w), "CPU s": round(c),
                         "clean accuracy": f"{100 * clean.accuracy:.1f}% ({100 * clean.ci[0]:.1f}-{100 * clean.ci[1]:.1f})",
                         "median rho": int(rho.median()),
                         **{f"certified r={r}": round(float((ok & (rho >= r)).float().mean()), 3) for r in radii}})
        print(f"\n## Deep Partition Aggregation ({dpa_n_train} training images, {dpa_n_eval} test images; the paper: "
              "k = 1,200, median rho 448 at 95.81% clean)\n")
        print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
