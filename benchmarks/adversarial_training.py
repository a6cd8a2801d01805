"""Benchmark of notebooks 04, 05 and project p1 (adversarial training), quick profile by default.

    COURSE_DATA_DIR=../shared/data python benchmarks/adversarial_training.py [speed] [mnist] [cifar10] [art]
        [--aa-images N] [--restarts R]

- speed:   CPU time per training image of each recipe, extrapolated to its training run (an estimate
           of the unloaded training time that a shared machine cannot measure directly). On a GPU
           the CPU columns measure only the host side: read the wall column.

- mnist:   the robust MNIST model of ``zoo.robust_model("mnist")`` (trained and cached): clean,
           weak PGD-20 (alpha 0.01, 1 start), PGD-50 (alpha 0.01) x R restarts and AutoAttack (standard;
           the official pyautoattack when installed, else torchattacks: the row says which) at eps = 0.3 on 1,000 test images; the gradient-masking checks. Target
           (quick, 2-core CPU): >= 98% clean, >= 88% PGD-50 x 10, trained in < 10 minutes.
- cifar10: the same for ``zoo.robust_model("cifar10")`` at eps = 8/255 (PGD-20 alpha 2/255).
           Target (quick): >= 55% clean, >= 32% PGD-20, trained in < 10 minutes.
- art:     project p1: ART's AdversarialTrainer (ratio 0.5) and AdversarialTrainerMadryPGD against the
           course's trainer on the shipped ResNet-20 (zoo.pretrained), with p1's data, attack, epochs and schedule.

Everything runs on ``get_device()`` (``COURSE_DEVICE`` overrides). Wall time and process CPU time
are both printed: on a shared machine wall time is inflated, while CPU time (one thread)
approximates the unloaded single-core time; on a GPU, compare wall times. Results go to stdout and
``cache_dir()/benchmarks/adversarial_training_<part>_<profile>.json``; nothing is asserted.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from course_utils import interop, training, zoo
from course_utils.attacks import AttackConfig
from course_utils.config import cache_dir, describe, get_device, get_profile, seed_everything
from course_utils.data import load_dataset, make_loader, subset_tensors
from course_utils.evaluation import evaluate, gradient_masking_checks, results_table, robustness_ladder


class Timer:
    """Wall and process CPU seconds of a block (CUDA work is waited for at the end)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def _save(part, payload):
    path = cache_dir() / "benchmarks" / f"adversarial_training_{part}_{get_profile().name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    print("saved", path)


def robust_part(dataset, aa_images, restarts):
    P, device = get_profile(), get_device()
    eps, alpha = (0.3, 0.01) if dataset == "mnist" else (8 / 255, 2 / 255)
    gen = torch.Generator().manual_seed(0)
    weak = AttackConfig(eps, steps=20, alpha=alpha, generator=gen)
    strong = AttackConfig(eps, steps=50, alpha=alpha, restarts=restarts, generator=gen)
    with Timer() as t:
        model, history, r = zoo.robust_model(dataset, device=device)
    trained_now = history is not None and t.wall > 5
    print(f"\n## {dataset} on {device}: {({k: v for k, v in r.items() if k != 'train'})}; training: {r['train']}")
    if history is not None:
        print(history.to_string())
    print(f"training (this run{'' if trained_now else ', loaded from cache'}): wall {t.wall:.0f} s, CPU {t.cpu:.0f} s;"
          f" sum of epoch times in history: {history['seconds'].sum() if history is not None else float('nan'):.0f} s")
    test = load_dataset(dataset, "test")
    x, y = subset_tensors(test, P.n_test, seed=0)
    with Timer() as te:
        ladder = robustness_ladder(model, (x, y), eps, weak=weak, strong=strong, auto=False)
    with Timer() as ta:
        n_aa = min(aa_images, len(y))
        aa = evaluate(model, (x[:n_aa], y[:n_aa]), interop.autoattack(eps), batch_size=250)  # its str() names the implementation
        same = evaluate(model, (x[:n_aa], y[:n_aa]), strong, progress=False)
        same.threat = f"{ladder[2].threat} (AutoAttack's {n_aa} images)"
    results = ladder + [same, aa]
    table = results_table(results)
    print(table.to_string())
    print(f"evaluation wall {te.wall:.0f} s (CPU {te.cpu:.0f} s); AutoAttack + matched PGD wall {ta.wall:.0f} s")
    masking = gradient_masking_checks(model, x[:256], y[:256], strong, restarts=3)
    print(masking.to_string())
    _save(dataset, {"describe": describe(), "recipe": json.loads(zoo.recipe_json(r)), "train_wall_s": t.wall, "train_cpu_s": t.cpu,
                    "trained_now": trained_now, "history": None if history is None else history.to_dict("list"),
                    "results": table.to_dict("records"), "masking": masking.to_dict("records"),
                    "eval_wall_s": te.wall, "autoattack_wall_s": ta.wall})


def art_part(epochs=1, n_ft=None, n_test=None):
    """ART's trainers against the course's, same start, data, attack (PGD, eps 8/255), ratio, epochs, optimizer."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainer, AdversarialTrainerMadryPGD

    P, device = get_profile(), get_device()
    eps, alpha, steps = 8 / 255, 2 / 255, P.pick(smoke=1, quick=2, full=7)  # p1's budget: its first cell
    train_alpha = P.pick(smoke=eps, quick=5 / 255, full=2 / 255)
    n_ft, lr, batch = n_ft or P.pick(smoke=256, quick=12_000, full=50_000), 0.05, 128
    train_attack = AttackConfig(eps, steps=steps, alpha=train_alpha)  # the course's side of the same threat model
    base = zoo.pretrained("resnet20_cifar10", device=device)  # the shipped ResNet-20 (issue 15)
    total_steps = epochs * -(-n_ft // batch)  # batches in all: the one-cycle schedule's length
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    xtr, ytr = subset_tensors(train, n_ft, seed=7)
    x, y = subset_tensors(test, n_test or P.n_test, seed=0)

    def art_clf(model):  # on the model's device
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        return interop.art_classifier(model, (3, 32, 32), optimizer=opt)

    runs = {}
    seed_everything(0)
    m = copy.deepcopy(base)
    clf = art_clf(m)
    pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=train_alpha, max_iter=steps, num_random_init=1,
                                   batch_size=batch, verbose=False)
    sched = training.make_scheduler(clf.optimizer, "onecycle", lr, total_steps)
    with Timer() as t:
        AdversarialTrainer(clf, pgd, ratio=0.5).fit(xtr.numpy(), ytr.numpy(), batch_size=batch, nb_epochs=epochs,
                                                    scheduler=sched)
    runs["ART AdversarialTrainer (ratio 0.5)"] = (m, t)
    seed_everything(0)
    m = copy.deepcopy(base)
    clf = art_clf(m)
    madry = AdversarialTrainerMadryPGD(clf, nb_epochs=epochs, batch_size=batch, eps=eps, eps_step=train_alpha,
                                       max_iter=steps)
    madry.attack.set_params(batch_size=batch, verbose=False)
    sched = training.make_scheduler(clf.optimizer, "onecycle", lr, total_steps)
    with Timer() as t:
        madry.fit(xtr.numpy(), ytr.numpy(), scheduler=sched)
    runs["ART AdversarialTrainerMadryPGD (ratio 1)"] = (m, t)
    for ratio in (0.5, 1.0):
        seed_everything(0)
        m = copy.deepcopy(base)
        loader = make_loader(torch.utils.data.TensorDataset(xtr, ytr), batch, shuffle=True, seed=0)
        with Timer() as t:
            training.fit(m, loader, epochs, lr=lr, attack=train_attack, schedule="onecycle", ratio=ratio, progress=False)
        runs[f"course training.fit (ratio {ratio:g})"] = (m, t)
    rows = []
    pgd20 = AttackConfig(eps, steps=20, alpha=alpha, generator=torch.Generator().manual_seed(0))
    for name, (model, t) in [("pretrained ResNet-20 (standard)", (base, None))] + list(runs.items()):
        model.eval()
        c, r = evaluate(model, (x, y), progress=False), evaluate(model, (x, y), pgd20, progress=False)
        rows.append({"trainer": name, "wall_s": None if t is None else round(t.wall, 1),
                     "cpu_s": None if t is None else round(t.cpu, 1), "clean": c.accuracy, "clean_ci": c.ci,
                     f"{r.threat} ({r.n} images)": r.accuracy, "robust_ci": r.ci})
    import pandas as pd

    df = pd.DataFrame(rows)
    timed = "wall_s" if device.type == "cuda" else "cpu_s"  # CPU time says little about GPU work
    ref = df.loc[df.trainer == "course training.fit (ratio 0.5)", timed].item()
    df[f"{timed[:-2]} time / course (ratio 0.5)"] = df[timed] / ref
    print(f"\n## p1 on {device}: {n_ft} training images, {epochs} epoch(s), training attack {train_attack},"
          f" SGD one-cycle lr {lr} momentum 0.9, batch {batch}")
    print(df.to_string())
    _save("art", {"describe": describe(), "n_train": n_ft, "epochs": epochs, "steps": steps, "table": df.to_dict("records")})


def speed_part(batches=10):
    """CPU seconds per training image of each quick recipe, extrapolated to its full training run.

    On a shared machine wall time says little; the process CPU time of one thread does not depend on
    the other jobs (much). Unloaded 2-core wall time is estimated as CPU time / 1.6 (the small MNIST
    CNN trains ~1.6x faster on 2 threads than on one, unloaded).
    """
    import pandas as pd

    device = get_device()
    rows = []
    for dataset, shape in (("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        r = zoo.recipe(dataset)
        cfg = r["train"]  # the AdversarialTrainingConfig: attack, epochs, optimizer, lr
        model = zoo.build(r).to(device)
        opt, _ = training.make_optimizer(model, cfg.lr, optimizer=cfg.optimizer, schedule="constant")
        attack = cfg.attack
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(r["batch"], *shape, generator=g), torch.randint(0, 10, (r["batch"],), generator=g)
        x, y = x.to(device), y.to(device)
        training.train_step(model, opt, x, y, attack)  # warm-up
        with Timer() as t:
            for _ in range(batches):
                training.train_step(model, opt, x, y, attack)
        per_image = t.cpu / (batches * r["batch"]) / torch.get_num_threads()
        total = per_image * r["n_train"] * cfg.epochs
        rows.append({"recipe": f"{dataset} {get_profile().name}: {r['model']} {attack}", "device": str(device),
                     "images x epochs": r["n_train"] * cfg.epochs, "CPU ms / image (1 thread)": 1e3 * per_image,
                     "est. training CPU s": total, "est. unloaded 2-core wall s": total / 1.6,
                     "wall ms / image here": 1e3 * t.wall / (batches * r["batch"])})
    df = pd.DataFrame(rows)
    print(df.round(2).to_string())
    _save("speed", {"describe": describe(), "table": df.to_dict("records")})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", help="speed, mnist, cifar10 and/or art (default: all four)")
    ap.add_argument("--aa-images", type=int, default=None, help="images for AutoAttack (default: smoke 64, quick 100, full 1000)")
    ap.add_argument("--restarts", type=int, default=10, help="restarts of the strong PGD-50")
    ap.add_argument("--ft-images", type=int, default=None, help="art: training images (default: smoke 256, quick 12000, as p1)")
    ap.add_argument("--test-images", type=int, default=None, help="art: test images (default: the profile's n_test)")
    args = ap.parse_args()
    parts = args.parts or ["speed", "mnist", "cifar10", "art"]
    if set(parts) - {"speed", "mnist", "cifar10", "art"}:
        ap.error(f"parts must be among speed, mnist, cifar10, art; got {parts}")
    seed_everything(0)
    print(describe())
    for part in parts:
        if part == "speed":
            speed_part()
        elif part == "art":
            art_part(n_ft=args.ft_images, n_test=args.test_images)
        else:
            robust_part(part, args.aa_images or get_profile().pick(smoke=64, quick=100, full=1000), args.restarts)


if __name__ == "__main__":
    main()
