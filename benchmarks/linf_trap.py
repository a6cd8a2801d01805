"""The L-infinity trap of notebook 04 (issue 12, item 2): threat models x training threat models on MNIST.

    COURSE_DATA_DIR=../shared/data python benchmarks/linf_trap.py [--profile quick] [--n N]

Models (``training.union``: one recipe, ``zoo.recipe("mnist", profile)``, only the training attack
differs): standard (no adversarial example), L-inf (``zoo.robust_model("mnist")``, eps 0.3), L2
(eps 2.0) and union (per example the worst of both: Tramer & Boneh 2019, Maini et al. 2020 "MAX").
Threat models (``training.union.threat_models``): clean, L-inf PGD at 0.3, L2 PGD at 2.0, the
gradient-free Square attack in the same L2 ball (the check on L2 PGD: Schott et al. 2019), the
rotation (+-30 degrees) + translation (+-3 pixels) grid search of Engstrom et al. 2019 and ART's JSMA
(Papernot et al. 2016; at most 10% of the pixels, towards a seeded random wrong class). Models are
trained once and cached (``cached_model``), so notebook 04 loads the same weights.

Prints the table as markdown (accuracy and 95% Clopper-Pearson interval per cell, n test images),
the findings read from it (``training.union.findings``), training and evaluation times (wall and
process CPU: on a shared machine wall time is inflated), and writes
``cache_dir()/benchmarks/linf_trap_<profile>.json``. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from course_utils.config import cache_dir, describe, get_device, get_profile, seed_everything
from course_utils.data import load_dataset, subset_tensors
from course_utils.training import union

NAMES = {"standard": "standard", "linf": "L-inf-trained (eps 0.3)", "l2": f"L2-trained (eps {union.L2_EPS:g})",
         "union": "union-trained (worst of L-inf, L2)"}


def markdown(frame, index_name="model") -> str:
    """A DataFrame of strings as a markdown table, its index as the first column."""
    rows = [[index_name, *map(str, frame.columns)], ["---"] * (len(frame.columns) + 1)]
    rows += [[str(i), *map(str, r)] for i, r in zip(frame.index, frame.itertuples(index=False))]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    ap.add_argument("--n", type=int, default=None, help="test images (default: smoke 64, quick 500, full P.n_test)")
    args = ap.parse_args()
    P, device = get_profile(args.profile), get_device()
    n = args.n or P.pick(smoke=64, quick=500, full=P.n_test)
    print(describe(), "| profile", P.name, "| threads", torch.get_num_threads())
    seed_everything(0)

    models, training_rows = {}, []
    for kind in union.KINDS:
        w, c = time.perf_counter(), time.process_time()
        model, history, r = union.model(kind, P.name, device=device, progress=False)
        models[kind] = model
        training_rows.append({"model": kind, "recipe": str(r["train"]), "n_train": r["n_train"], "width": r.get("width", 1),
                              "train seconds (history, wall)": None if history is None else float(history["seconds"].sum()),
                              "epochs run": None if history is None else len(history),
                              "load or train wall s": time.perf_counter() - w, "load or train CPU s": time.process_time() - c})
        print(f"{kind}: {r['train']} | {training_rows[-1]['load or train wall s']:.0f} s wall")

    x, y = subset_tensors(load_dataset("mnist", "test"), n, seed=0)
    x, y = x.to(device), y.to(device)
    threats = union.threat_models(P.name)
    results, eval_rows = {}, []
    for kind, model in models.items():
        w, c = time.perf_counter(), time.process_time()
        results.update(union.trap_table({kind: model}, x, y, threats))
        eval_rows.append({"model": kind, "eval wall s": time.perf_counter() - w, "eval CPU s": time.process_time() - c})

    frame = union.as_frame(results).rename(index=NAMES)
    print(f"\n### The L-infinity trap ({P.name} profile, {n} MNIST test images, accuracy (95% CI))\n")
    print(markdown(frame))
    print("\nthreat models:")
    for name, (_, threat) in threats.items():
        print(f"- {name}: {threat}")
    print("\nfindings:")
    for line in union.findings(results):
        print("-", line)
    print("\ntimes (this machine):")
    for row in training_rows + eval_rows:
        print("-", {k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()})

    out = {"profile": P.name, "n": n, "device": str(device), "machine": describe(),
           "threat_models": {k: t for k, (_, t) in threats.items()},
           "cells": [{"model": m, "threat": t, "threat_model": r.threat, "correct": r.correct, "n": r.n,
                      "accuracy": r.accuracy, "ci_low": r.ci[0], "ci_high": r.ci[1]} for (m, t), r in results.items()],
           "findings": union.findings(results), "training": training_rows, "evaluation": eval_rows}
    path = cache_dir() / "benchmarks" / f"linf_trap_{P.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    print("\nsaved", path)


if __name__ == "__main__":
    main()
