"""Quick-profile numbers of notebooks 07 and 08 and a throughput comparison with ART.

    COURSE_DATA_DIR=../shared/data python benchmarks/certified.py [--images 500] [--n 2000] [--art-images 50]
        [--crown-images 100] [--bab-images 20] [--bab-seconds 5] [--no-old-crown] [--skip smoothing ibp relaxation]

1. Randomized smoothing (Cohen et al. 2019) on MNIST: ``mnist_small_cnn`` trained with Gaussian
   noise sigma = 0.25 (the recipe and cache key of notebook 07), CERTIFY with n0 = 100,
   n = ``--n``, alpha = 0.001 on ``--images`` stratified test images: certified accuracy at L2 radii
   0 ... 1 with 95% Clopper-Pearson intervals. Target: >= 94% at radius 0.5 on >= 500 images
   (reference, n = 100,000: 96.7%, the mean of five runs of a LeNet trained with noise as in Cohen
   et al., computed from the certification logs Jeong & Shin (2020) publish in
   jh-jeong/smoothing-consistency, ``data/certify/mnist/cohen/noise_0.25_*``; Cohen et al. report
   CIFAR-10 and ImageNet only. Hence also the cap R_max(n) printed beside it).
2. Throughput: noise samples per second of ``certify.Smooth`` and of ART's
   ``PyTorchRandomizedSmoothing.certify`` (same model, n0, n, batch size) on ``--art-images``
   images, and how often the two agree on label and radius.
3. IBP (Gowal et al. 2018) on MNIST: the IBP-trained ``mnist_small_cnn`` of notebook 08; clean,
   PGD-40 (L-inf 0.1) and IBP-verified accuracy at eps 0.1 on ``--images`` test images. Target:
   >= 93% verified (published: about 97%, larger model, 100 epochs). Then ART's
   ``PyTorchIBPClassifier`` on the same network and inputs: largest bound difference, verified
   counts, images per second.
4. IBP vs CROWN vs alpha-CROWN vs branch and bound (notebook 08b) on the standard MNIST CNN
   (``zoo.standard_model``) and the IBP-trained one, at eps 0.02 and 0.1, on the same ``--crown-images``
   test images: verified accuracy with 95% intervals and images per second, next to ART's zonotope
   verifier (DeepZ, Singh et al. 2018, ``art.estimators.certification.deep_z.PytorchDeepZ``) on the
   first ``--art-images`` of them (the clipped pixel box handed to ART as a zonotope in the model's
   normalised units), BaB (``certify.bab_verify``, ``--bab-seconds`` per image) on the first
   ``--bab-images`` with its falsified and unknown counts, and CROWN as it was before issue 33
   (``tests/crown_reference.py``: the same bounds, one backward pass over the whole map per unstable
   neuron) for the speed-up. Target (issue 33): CROWN at least DeepZ's images/s on the standard model.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from course_utils import certify, data, interop, models, training, zoo
from course_utils.attacks import AttackConfig
from course_utils.config import cache_dir, get_device, get_profile, seed_everything
from course_utils.evaluation import EvalResult, evaluate

SIGMA, N0, ALPHA, SEED = 0.25, 100, 0.001, 0
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
IBP_EPS = 0.1
PGD40 = AttackConfig(IBP_EPS, steps=40, alpha=0.01)  # the attack against the IBP-trained model


def smoothing_recipe(P):
    """Notebook 07: (epochs, training images) for the Gaussian-augmented base classifier."""
    return P.pick(smoke=1, quick=4, full=20), P.pick(smoke=2048, quick=60_000, full=60_000)


def smoothing_model(sigma, P, device):
    epochs, n_train = smoothing_recipe(P)
    train_set = data.load_dataset("mnist", "train")

    def train(model):
        loader = data.make_loader(train_set, batch_size=128, n=n_train, seed=SEED)
        training.fit(model, loader, epochs=epochs, lr=0.05, attack=certify.noise_augment(sigma))

    return training.cached_model(f"mnist_smooth_sigma{sigma}_{P.name}_{epochs}_{n_train}", models.mnist_small_cnn,
                                 train, device=device).eval()


def art_smoothing(model, n0, sigma):
    """ART's randomized smoothing around ``model``, on the model's device."""
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    return PyTorchRandomizedSmoothing(model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                                      sample_size=n0, scale=sigma, alpha=ALPHA, device_type=interop.art_device_type(model))


class Unrolled(nn.Module):
    """mnist_small_cnn without Normalize / Flatten modules, the form ART's IBP converter accepts."""

    def __init__(self, net):
        super().__init__()
        self.c1, self.r1, self.c2, self.r2 = net[1], nn.ReLU(), net[3], nn.ReLU()
        self.f1, self.r3, self.f2 = net[6], nn.ReLU(), net[8]

    def forward(self, x):
        h = self.r2(self.c2(self.r1(self.c1(x))))
        return self.f2(self.r3(self.f1(h.flatten(1))))


def bench_smoothing(P, device, images, n, art_images):
    test = data.load_dataset("mnist", "test")
    x, y = data.subset_tensors(test, images, seed=SEED)
    model = smoothing_model(SIGMA, P, device)
    smooth = certify.Smooth(model, 10, SIGMA, generator=torch.Generator(device).manual_seed(SEED))
    t0 = time.perf_counter()
    res = certify.certify_dataset(smooth, x.to(device), y, N0, n, ALPHA, batch_size=1000)
    seconds = time.perf_counter() - t0
    curve = certify.certified_accuracy(res, RADII)
    rows = []
    for r, acc in zip(RADII, curve):
        e = EvalResult(int(round(acc * len(res))), len(res), f"smoothing l2 R={r}")
        rows.append({"radius": r, "certified_accuracy": acc, "ci95": e.ci})
    ours = {"samples_per_s": len(res) * (N0 + n) / seconds, "seconds": seconds}
    # ART on the first art_images images, same model / n0 / n / batch size
    k = min(art_images, len(x))
    art = art_smoothing(model, N0, SIGMA)
    np.random.seed(SEED)
    t0 = time.perf_counter()
    art_pred, art_radius = art.certify(x[:k].numpy(), n=n, batch_size=1000)
    art_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_k = certify.certify_dataset(smooth, x[:k].to(device), y[:k], N0, n, ALPHA, batch_size=1000, progress=False)
    ours_k_seconds = time.perf_counter() - t0
    compare = {
        "images": k, "ours_samples_per_s": k * (N0 + n) / ours_k_seconds, "art_samples_per_s": k * (N0 + n) / art_seconds,
        "label_agreement": float((ours_k["predict"].to_numpy() == art_pred).mean()),
        "median_abs_radius_diff": float(np.median(np.abs(ours_k["radius"].to_numpy() - art_radius))),
        "art_certified_accuracy_at_0.5": float(((art_pred == y[:k].numpy()) & (art_radius >= 0.5)).mean()),
        "ours_certified_accuracy_at_0.5": float(certify.certified_accuracy(ours_k, [0.5])[0]),
    }
    return {"images": len(res), "n0": N0, "n": n, "alpha": ALPHA, "sigma": SIGMA,
            "max_radius_for_n": certify.max_certifiable_radius(n, ALPHA, SIGMA),
            "abstain": float((res["predict"] == -1).mean()), "curve": rows, "ours": ours, "vs_art": compare}


def bench_ibp(P, device, images):
    test = data.load_dataset("mnist", "test")
    x, y = data.subset_tensors(test, images, seed=SEED)
    x, y = x.to(device), y.to(device)
    model, _, recipe = zoo.ibp_model(P.name, device)
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum())
    t0 = time.perf_counter()
    ver, _ = certify.verified_accuracy(model, x, y, IBP_EPS)
    ours_s = time.perf_counter() - t0
    ver_naive, _ = certify.verified_accuracy(model, x, y, IBP_EPS, elide=False)
    robust = evaluate(model, (x, y), PGD40, batch_size=250, progress=False)
    out = {"images": len(x), "eps": IBP_EPS, "recipe": {k: recipe[k] for k in ("epochs", "n_train", "eps_train")},
           "clean": EvalResult(clean, len(x)).row(), "pgd40": robust.row(),
           "verified_margin": EvalResult(ver, len(x), "IBP linf 0.1 (elided margins)").row(),
           "verified_naive": EvalResult(ver_naive, len(x), "IBP linf 0.1 (l_y > u_j)").row(),
           "ours_images_per_s": len(x) / ours_s}
    try:  # ART's IBP on the same network and inputs (normalization as ART preprocessing)
        from art.estimators.certification.interval import PyTorchIBPClassifier

        mean, std = models.MNIST_MEAN[0], models.MNIST_STD[0]
        art = PyTorchIBPClassifier(Unrolled(model), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0), preprocessing=(mean, std),
                                   device_type=interop.art_device_type(model))
        t0 = time.perf_counter()
        b = art.predict_intervals(x.numpy(force=True), bounds=IBP_EPS / std, limits=[-mean / std, (1 - mean) / std], batch_size=250)
        art_s = time.perf_counter() - t0
        lower, upper = certify.interval_bounds(model, x, IBP_EPS)
        art_ver = art.certify(b, y.numpy(force=True))
        out["vs_art"] = {"max_abs_bound_diff": float(max(np.abs(b[:, 0] - lower.numpy(force=True)).max(),
                                                         np.abs(b[:, 1] - upper.numpy(force=True)).max())),
                         "art_verified": int(art_ver.sum()), "art_images_per_s": len(x) / art_s}
    except Exception as e:  # report, do not hide
        out["vs_art"] = {"error": f"{type(e).__name__}: {e}"}
    return out


RELAX_EPS = (0.02, 0.1)


def deepz_verified(model, x, y, eps):
    """ART's DeepZ on the pixel box [x - eps, x + eps] n [0, 1]: (number verified, seconds)."""
    from art.estimators.certification.deep_z import PytorchDeepZ

    mean, std = models.MNIST_MEAN[0], models.MNIST_STD[0]

    def box_zonotope(sample):  # sample: (1, 28, 28) in normalised units -> (centre, one generator per pixel)
        pix = sample * std + mean
        lo, hi = np.clip(pix - eps, 0, 1), np.clip(pix + eps, 0, 1)
        radius = ((hi - lo) / 2 / std).reshape(-1)
        return ((lo + hi) / 2 - mean) / std, np.diag(radius).reshape((-1,) + sample.shape)

    art = PytorchDeepZ(Unrolled(model.cpu()), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                       clip_values=(0.0, 1.0), device_type="cpu")
    art.model.eval()
    xn = (x.numpy(force=True) - mean) / std
    t0 = time.perf_counter()
    ok = 0
    with torch.no_grad():
        for sample, label in zip(xn, y.tolist()):
            cent, gens = box_zonotope(sample)
            ok += bool(art.certify(cent=cent[None].astype(np.float32), eps=gens.astype(np.float32), prediction=label))
    return ok, time.perf_counter() - t0


def previous_crown_verified(model, x, y, eps, batch_size=32):
    """Verified count by CROWN as it was before issue 33 (tests/crown_reference.py, one backward pass over the
    whole map per unstable neuron): the "old CROWN" row, same bounds to float rounding, for the speed-up."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import crown_reference

    ok = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        with torch.no_grad():
            _, m = crown_reference.margin_lower_bounds(model, xb, yb, eps)
        ok += int((m.scatter(1, yb[:, None], float("inf")) > 0).all(1).sum())
    return ok, len(x)


def bab_counts(model, x, y, eps, seconds):
    """BaB (``certify.bab_verify``) on every image: (verified, falsified, unknown, seconds in all)."""
    t0 = time.perf_counter()
    res = certify.bab_verify(model, x, y, eps, time_limit=seconds)
    return (*(sum(r.status == s for r in res) for s in certify.STATUSES), time.perf_counter() - t0)


def bench_relaxation(P, device, images, art_images, bab_images=20, bab_seconds=5.0, old=True):
    test = data.load_dataset("mnist", "test")
    x, y = data.subset_tensors(test, images, seed=SEED)
    x, y = x.to(device), y.to(device)
    nets = {"standard": zoo.standard_model("mnist", P.name, device, progress=False)[0],
            "IBP-trained": zoo.ibp_model(P.name, device, progress=False)[0]}
    rows = []
    for name, model in nets.items():
        for eps in RELAX_EPS:
            for method in ("ibp", "crown", "alpha-crown"):
                t0 = time.perf_counter()
                k, n = certify.verified_accuracy_by(method, model, x, y, eps)
                s = time.perf_counter() - t0
                rows.append({"model": name, "eps": eps, "method": method.upper(), **EvalResult(k, n, f"{method.upper()} linf eps={eps}").row(), "images_per_s": n / s})
            if old:
                t0 = time.perf_counter()
                k, n = previous_crown_verified(model, x, y, eps)
                rows.append({"model": name, "eps": eps, "method": "CROWN (before issue 33)",
                             **EvalResult(k, n, f"CROWN linf eps={eps}").row(), "images_per_s": n / (time.perf_counter() - t0)})
            m = min(bab_images, len(x))
            v, f, u, s = bab_counts(model, x[:m], y[:m], eps, bab_seconds)
            rows.append({"model": name, "eps": eps, "method": f"BaB ({bab_seconds:g} s limit; falsified {f}, unknown {u})",
                         **EvalResult(v, m, f"BaB linf eps={eps}").row(), "images_per_s": m / s})
            try:
                m = min(art_images, len(x))
                k, s = deepz_verified(model, x[:m], y[:m], eps)
                rows.append({"model": name, "eps": eps, "method": "ART DeepZ", **EvalResult(k, m, f"DeepZ linf eps={eps}").row(), "images_per_s": m / s})
            except Exception as e:  # report, do not hide
                rows.append({"model": name, "eps": eps, "method": "ART DeepZ", "error": f"{type(e).__name__}: {e}"})
            model.to(device)
    return {"images": len(x), "art_images": min(art_images, len(x)), "bab_images": min(bab_images, len(x)),
            "bab_seconds": bab_seconds, "rows": rows}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    P = get_profile()
    p.add_argument("--images", type=int, default=P.pick(smoke=20, quick=500, full=1000))
    p.add_argument("--n", type=int, default=P.pick(smoke=200, quick=2000, full=100_000))
    p.add_argument("--art-images", type=int, default=P.pick(smoke=5, quick=50, full=100))
    p.add_argument("--crown-images", type=int, default=P.pick(smoke=8, quick=100, full=500))
    p.add_argument("--bab-images", type=int, default=P.pick(smoke=2, quick=20, full=100), help="first images given to BaB")
    p.add_argument("--bab-seconds", type=float, default=P.pick(smoke=2.0, quick=5.0, full=60.0), help="BaB's limit per image")
    p.add_argument("--no-old-crown", action="store_true", help="skip the CROWN of before issue 33 (the speed-up row)")
    p.add_argument("--skip", nargs="*", choices=("smoothing", "ibp", "relaxation"), default=[], help="parts not to run")
    args = p.parse_args()
    seed_everything(SEED)
    device = get_device()
    print(f"profile={P.name} device={device} threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()}")
    result = {"profile": P.name, "device": str(device), "threads": torch.get_num_threads()}
    if "smoothing" not in args.skip:
        s = bench_smoothing(P, device, args.images, args.n, args.art_images)
        result["smoothing"] = s
        print(f"\n## Randomized smoothing, MNIST, sigma={SIGMA}, n0={N0}, n={s['n']}, alpha={ALPHA}, {s['images']} images "
              f"(R_max for this n: {s['max_radius_for_n']:.3f}; abstained {100 * s['abstain']:.1f}%)")
        print("| L2 radius | certified accuracy | 95% CI |\n| --- | --- | --- |")
        for r in s["curve"]:
            print(f"| {r['radius']} | {100 * r['certified_accuracy']:.1f}% | {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f} |")
        c = s["vs_art"]
        print(f"\n| implementation | noise samples/s | certified acc. at 0.5 ({c['images']} images) |\n| --- | --- | --- |")
        print(f"| course_utils.certify.Smooth | {c['ours_samples_per_s']:,.0f} | {100 * c['ours_certified_accuracy_at_0.5']:.1f}% |")
        print(f"| ART PyTorchRandomizedSmoothing | {c['art_samples_per_s']:,.0f} | {100 * c['art_certified_accuracy_at_0.5']:.1f}% |")
        print(f"label agreement {100 * c['label_agreement']:.1f}%, median |radius difference| {c['median_abs_radius_diff']:.4f}")
    if "ibp" not in args.skip:
        b = bench_ibp(P, device, args.images)
        result["ibp"] = b
        print(f"\n## IBP, MNIST, eps={IBP_EPS}, recipe {b['recipe']}, {b['images']} images")
        print("| threat model | accuracy | 95% CI |\n| --- | --- | --- |")
        for k in ("clean", "pgd40", "verified_margin", "verified_naive"):
            r = b[k]
            print(f"| {r['threat model']} | {100 * r['accuracy']:.1f}% | {100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f} |")
        print(f"course_utils IBP: {b['ours_images_per_s']:,.0f} images/s; ART: {b['vs_art']}")
    if "relaxation" not in args.skip:
        r = bench_relaxation(P, device, args.crown_images, args.art_images, args.bab_images, args.bab_seconds,
                             old=not args.no_old_crown)
        result["relaxation"] = r
        print(f"\n## IBP vs CROWN vs alpha-CROWN vs BaB vs ART DeepZ, MNIST, {r['images']} images (DeepZ: the first "
              f"{r['art_images']}, BaB: the first {r['bab_images']}, {r['bab_seconds']:g} s per image at most)")
        print("| model | eps | method | verified | 95% CI | images/s |\n| --- | --- | --- | --- | --- | --- |")
        for row in r["rows"]:
            if "error" in row:
                print(f"| {row['model']} | {row['eps']} | {row['method']} | {row['error']} | | |")
            else:
                print(f"| {row['model']} | {row['eps']} | {row['method']} | {100 * row['accuracy']:.1f}% "
                      f"| {100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f} | {row['images_per_s']:,.1f} |")
    path = cache_dir() / "benchmarks" / f"certified_{P.name}{''.join('_no_' + k for k in args.skip)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
