"""Numbers of notebook 01's two demonstrations (model extraction, BadNets backdoor), quick profile by default.

    COURSE_DATA_DIR=../shared/data python benchmarks/threats.py [--profile quick]

Same data, models, sizes and cache keys as notebook 01 (a victim ``mnist_small_cnn`` trained with
``threats.train_classifier``; the attacker queries half of the MNIST test set, agreement is
measured on the other half). Prints markdown tables with wall and process CPU time; nothing is
asserted. Published for comparison (other models, data and query strategies, so only the shape
compares): Tramer et al. 2016 extract logistic regressions and small networks with near-100%
agreement when the API returns confidence scores; Papernot et al. 2017 trained an MNIST substitute
from label-only queries (150 seed images plus synthetic augmentation) to about 81% test accuracy,
enough for transfer attacks; Gu et al. 2017 (BadNets) report trigger success above 99% on MNIST at
almost unchanged clean error.
"""
from __future__ import annotations

import argparse
import time

import torch

from course_utils import threats
from course_utils.config import describe, get_device, get_profile, seed_everything
from course_utils.data import load_dataset, subset_tensors
from course_utils.models import mnist_small_cnn
from course_utils.training import cached_model


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
    args = ap.parse_args()
    seed_everything(0)
    P, device = get_profile(args.profile), get_device()
    n_victim = P.pick(smoke=512, quick=6_000, full=60_000)
    epochs = P.pick(smoke=1, quick=2, full=5)
    budgets = P.pick(smoke=(32, 128), quick=(100, 300, 1_000, 3_000), full=(100, 300, 1_000, 3_000, 5_000))
    n_eval = P.pick(smoke=256, quick=2_000, full=5_000)
    fractions = (0.0,) + P.pick(smoke=(0.05,), quick=(0.005, 0.02), full=(0.001, 0.005, 0.01, 0.05))
    print(describe(), "| profile", P.name)

    train_set, test_set = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    x_train, y_train = subset_tensors(train_set, n_victim, seed=0)
    x_test, y_test = test_set.tensors(torch.randperm(len(test_set), generator=torch.Generator().manual_seed(1)))
    pool_x, eval_x, eval_y = x_test[: max(budgets)], x_test[-n_eval:], y_test[-n_eval:]

    def build():
        return mnist_small_cnn().to(device)

    torch.manual_seed(0)
    victim, w, c = timed(lambda: cached_model(
        f"threats_victim_{P.name}", build,
        lambda m: threats.train_classifier(m, x_train.to(device), y_train.to(device), epochs, progress=False),
        meta={"n_train": n_victim, "epochs": epochs}).to(device))
    acc = (threats.predict(victim, eval_x) == eval_y).float().mean().item()
    print(f"\nvictim: {n_victim} images x {epochs} epochs, test accuracy {acc:.3f} on {n_eval} images "
          f"(load or train: {w:.1f} s wall, {c:.1f} s CPU)")

    ext, w, c = timed(lambda: threats.extraction_curve(
        victim, build, pool_x, eval_x, eval_y, budgets, epochs=P.pick(smoke=1, quick=3, full=10),
        min_steps=P.pick(smoke=2, quick=60, full=300)))
    print(f"\n### Model extraction, label-only API ({P.name} profile; {w:.1f} s wall, {c:.1f} s CPU)\n")
    print(markdown(ext.round(3)))

    def train_poisoned(xp, yp, fraction):
        if fraction == 0:
            return victim
        torch.manual_seed(0)
        return cached_model(f"threats_backdoor_{fraction:g}_{P.name}", build,
                            lambda m: threats.train_classifier(m, xp.to(device), yp.to(device), epochs, progress=False),
                            meta={"fraction": fraction, "n_train": n_victim}).to(device)

    bd, w, c = timed(lambda: threats.backdoor_table(train_poisoned, x_train, y_train, eval_x, eval_y, fractions))
    print(f"\n### BadNets backdoor, 3x3 trigger -> class 0 ({P.name} profile; {w:.1f} s wall, {c:.1f} s CPU, "
          "cached models are loaded, not retrained)\n")
    print(markdown(bd.round(3)))


if __name__ == "__main__":
    main()
