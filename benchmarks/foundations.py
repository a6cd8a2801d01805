"""Quick-profile numbers of notebook 03 and an attack-throughput comparison.

    COURSE_DATA_DIR=../shared/data python benchmarks/foundations.py [--images 1000] [--repeats 3]

1. Accuracy: the standard MNIST CNN of notebook 03 (``zoo.standard_model("mnist", "quick")``,
   loaded from the cache the notebook writes, else trained here): clean accuracy and robust accuracy under PGD-40
   (L-inf eps 0.3, step 0.01, one random start) on ``--images`` stratified test images.
   Targets: clean >= 99.0%, PGD-40 < 2%.
2. Throughput of PGD-40 on the same model and images: a bare forward+backward loop (the limit,
   no projection or bookkeeping), course_utils, torchattacks, ART and foolbox, as images per
   second and as a ratio to the limit (median of ``--repeats`` round-robin runs). Target: course_utils >= 0.9
   of the limit and no slower than the three libraries.
Prints markdown tables; the README quotes them with the machine they ran on.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from course_utils import data, evaluation, interop, zoo
from course_utils.attacks import AttackConfig
from course_utils.config import get_device, seed_everything

EPS, ALPHA, STEPS, SEED = 0.3, 0.01, 40, 0
PGD = AttackConfig(EPS, steps=STEPS, alpha=ALPHA)  # one random start


def bare_loop(model, x, y):
    """The limit: STEPS forward+backward passes with respect to the input, nothing else."""
    delta = torch.zeros_like(x)
    for _ in range(STEPS):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y, reduction="sum"), delta)
        delta = delta.detach()
    return x


def runners(model, x, y):
    import foolbox as fb
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent

    clf = interop.art_classifier(model, x.shape[1:])  # on the model's device
    art_pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=STEPS, num_random_init=1,
                                       batch_size=len(x), verbose=False)
    ta_pgd = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fb_pgd = fb.attacks.LinfPGD(abs_stepsize=ALPHA, steps=STEPS, random_start=True)
    x_np, y_np = x.numpy(force=True), y.numpy(force=True)
    return {
        "bare forward+backward (limit)": lambda: bare_loop(model, x, y),
        "course_utils.attacks.pgd": lambda: PGD(model, x, y),
        "torchattacks 3.x PGD": lambda: ta_pgd(x, y),
        "ART ProjectedGradientDescent": lambda: torch.as_tensor(art_pgd.generate(x_np, y=y_np)),
        "foolbox LinfPGD": lambda: fb_pgd(fmodel, x, y, epsilons=EPS)[1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--throughput-images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seed_everything(SEED)
    device = get_device()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, device {device}, torch {torch.__version__}\n")

    t0 = time.time()
    model, r = zoo.standard_model("mnist", "quick", device=device, progress=False)
    t_model = time.time() - t0
    x, y = data.subset_tensors(data.load_dataset("mnist", "test"), args.images, seed=SEED)
    x, y = x.to(device), y.to(device)
    clean = evaluation.evaluate(model, (x, y), threat="clean", progress=False)
    gen = torch.Generator().manual_seed(SEED)
    robust = evaluation.evaluate(model, (x, y), PGD.replace(generator=gen), progress=False)
    print(f"standard CNN, zoo.STANDARD['mnist']['quick'] = {r}; model ready in {t_model:.0f} s (cached or trained)")
    print("| threat model | images | accuracy | 95% CI | target |\n|---|---|---|---|---|")
    for r, target in ((clean, ">= 99.0%"), (robust, "< 2%")):
        lo, hi = r.ci
        print(f"| {r.threat} | {r.n} | {100 * r.accuracy:.1f}% | {100 * lo:.1f}-{100 * hi:.1f} | {target} |")

    xt, yt = x[: args.throughput_images], y[: args.throughput_images]
    runs = runners(model, xt, yt)
    times = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(args.repeats):  # round-robin, so a slow spell of the machine hits every implementation
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            if device.type == "cuda":  # wait for the GPU before reading the clock
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    timings = {name: statistics.median(t) for name, t in times.items()}
    limit = timings["bare forward+backward (limit)"]
    print(f"\n{PGD}, {len(xt)} images, one batch, median of {args.repeats}")
    print("| implementation | seconds | images/s | ratio to the limit |\n|---|---|---|---|")
    for name, t in timings.items():
        print(f"| {name} | {t:.2f} | {len(xt) / t:.0f} | {limit / t:.2f} |")


if __name__ == "__main__":
    main()
