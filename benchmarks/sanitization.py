"""Benchmark of notebook 06 (input sanitization) on MNIST; prints markdown tables for the README.

Run: COURSE_DATA_DIR=../shared/data COURSE_PROFILE=quick python benchmarks/sanitization.py

Targets (quick profile, MNIST, L-infinity eps = 0.3), reported here and never asserted:
- the feature-squeezing detector (1-bit depth + 2x2 median, Xu et al. 2018) calibrated at 5%
  false positives detects >= 90% of successful non-adaptive PGD examples;
- the adaptive attack (BPDA + detector-aware PGD, Carlini & Wagner 2017) brings detection to
  <= 10% while still fooling the classifier on >= 90% of the examples it was run on.
Models are the cached ones of notebooks 03 (standard) and 06 (FGSM-RS), trained here if missing.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from course_utils import data, interop, models, sanitization, training
from course_utils.attacks import AttackConfig
from course_utils.config import describe, get_device, get_profile, seed_everything

EPS = 0.3  # L-infinity radius (pixels), MNIST standard
ALPHA = 0.01  # PGD step
FPR = 0.05  # detector false-positive rate on clean calibration images


def load_models(P, device, train_set, robust=False):
    n_train, epochs = P.pick(smoke=2_000, quick=60_000, full=60_000), P.pick(smoke=1, quick=2, full=10)

    def train_standard(model):  # the recipe of notebook 03 (shared cache entry)
        training.fit(model, data.make_loader(train_set, 128, n=n_train, seed=0), epochs=epochs, lr=0.05)

    def train_fgsm_rs(model):  # FGSM with random start (Wong et al. 2020), as in notebook 06
        training.fit(model, data.make_loader(train_set, P.batch_size, n=P.n_train, seed=0), epochs=P.epochs, lr=5e-3,
                     optimizer="adam", weight_decay=0, attack=AttackConfig(EPS, kind="fgsm_rs"))  # alpha = 1.25 EPS

    if not robust:
        return training.cached_model(f"mnist_small_cnn_standard_{P.name}_{n_train}_{epochs}", models.mnist_small_cnn, train_standard,
                                     meta={"recipe": "SGD one-cycle lr 0.05", "epochs": epochs}, device=device).eval()
    return training.cached_model(f"mnist_fgsm_rs_{P.name}", models.mnist_small_cnn, train_fgsm_rs,
                                meta={"recipe": "FGSM-RS eps 0.3 alpha 0.375, Adam one-cycle lr 5e-3",
                                      "epochs": P.epochs, "n_train": P.n_train}, device=device).eval()


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def timed(rows, name, fn):
    t0 = time.time()
    out = fn()
    rows.append({"step": name, "seconds": round(time.time() - t0, 1)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-adaptive", type=int, default=None, help="images for the adaptive attacks")
    parser.add_argument("--skip-cw", action="store_true", help="skip ART's Carlini-Wagner attacks (slow on CPU)")
    args = parser.parse_args()
    seed_everything(0)
    P, device = get_profile(), get_device()
    print(describe(), "| timings depend on what else runs on the machine; say so when you quote them")
    times = []
    train_set, test_set = data.load_dataset("mnist", "train"), data.load_dataset("mnist", "test")
    std = timed(times, "standard model (train or load)", lambda: load_models(P, device, train_set))
    n_cal, n_eval = P.pick(smoke=128, quick=1_000, full=5_000), P.n_test
    x_all, y_all = data.subset_tensors(test_set, n_cal + n_eval, seed=1)
    x_cal, (x, y) = x_all[:n_cal].to(device), (x_all[n_cal:].to(device), y_all[n_cal:].to(device))
    n_ad = args.n_adaptive or P.pick(smoke=16, quick=100, full=1_000)
    n_cw = P.pick(smoke=4, quick=20, full=200)
    steps, ad_steps, n_targets = P.attack_steps, P.pick(smoke=5, quick=50, full=200), P.pick(smoke=1, quick=1, full=3)
    pgd = AttackConfig(EPS, steps=steps, alpha=ALPHA, restarts=P.restarts)  # the non-adaptive attack
    threat = str(pgd)
    print(f"calibration images {n_cal}, evaluation images {n_eval}, adaptive images {n_ad}, CW images {n_cw}; {threat}")

    squeezers = sanitization.paper_squeezers("mnist")
    det = timed(times, "calibrate squeezing detector", lambda: sanitization.SqueezeDetector(std, squeezers).fit_threshold(x_cal, FPR))
    fpr_eval = det.detect(x).float().mean().item()
    rows = []
    x_fgsm = timed(times, "FGSM", lambda: AttackConfig.fgsm(EPS)(std, x, y))
    rows.append(sanitization.detection_report(std, det, x, y, x_fgsm, "FGSM eps=0.3"))
    x_pgd = timed(times, f"PGD-{steps}", lambda: pgd(std, x, y))
    rows.append(sanitization.detection_report(std, det, x, y, x_pgd, f"PGD-{steps} eps=0.3"))
    auc = sanitization.roc_points(det.score(x), det.score(x_pgd))[2]
    if not args.skip_cw:  # ART's CW-L2 (CW-Linf is too slow on this CPU: > 10 min for 20 images)
        kw = dict(max_iter=P.pick(smoke=3, quick=20, full=100), binary_search_steps=P.pick(smoke=1, quick=3, full=9),
                  learning_rate=0.1, initial_const=1.0, batch_size=n_cw)
        x_cw = timed(times, "CW-L2 (ART)", lambda: interop.carlini_wagner(std, x[:n_cw], "l2", **kw))
        rows.append(sanitization.detection_report(std, det, x[:n_cw], y[:n_cw], x_cw, f"CW-L2 (ART, {kw['max_iter']} it.)"))

    # ART's FeatureSqueezing computes the same 1-bit squeezer
    from art.defences.preprocessor import FeatureSqueezing
    art_bits = torch.from_numpy(FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=1)(x_pgd.numpy(force=True))[0])
    art_gap = (art_bits.to(x_pgd.device) - sanitization.bit_depth(x_pgd, 1)).abs().max().item()

    # adaptive attacks, on the first n_ad evaluation images
    xa, ya = x[:n_ad], y[:n_ad]
    bpda_model = sanitization.BPDAModel(std, squeezers["bit depth 1"])
    x_bpda = timed(times, "BPDA-PGD vs 1-bit squeezed classifier",
                   lambda: AttackConfig(EPS, steps=ad_steps, alpha=ALPHA)(bpda_model, xa, ya))
    with torch.no_grad():
        acc_squeezed_pgd = (bpda_model(x_pgd[:n_ad]).argmax(1) == ya).float().mean().item()
        acc_squeezed_bpda = (bpda_model(x_bpda).argmax(1) == ya).float().mean().item()
    x_ad = timed(times, f"adaptive PGD-{ad_steps} vs detector (standard model)",
                 lambda: sanitization.adaptive_pgd(std, det, xa, ya, EPS, ALPHA, ad_steps, n_targets=n_targets))
    rows.append(sanitization.detection_report(std, det, xa, ya, x_ad, f"adaptive PGD-{ad_steps} x{n_targets} eps=0.3"))
    big = 0.5  # the budget at which 1-bit squeezing no longer holds (pixels can cross 0.5)
    x_pgd_big = AttackConfig(big, steps=steps, alpha=big / 30)(std, xa, ya)
    rows.append(sanitization.detection_report(std, det, xa, ya, x_pgd_big, f"PGD-{steps} eps={big}"))
    x_ad_big = timed(times, f"adaptive PGD-{ad_steps} eps={big}",
                     lambda: sanitization.adaptive_pgd(std, det, xa, ya, big, big / 30, ad_steps, n_targets=n_targets))
    rows.append(sanitization.detection_report(std, det, xa, ya, x_ad_big, f"adaptive PGD-{ad_steps} x{n_targets} eps={big}"))

    # defense in depth: FGSM-RS model + its own squeezing detector
    rob = timed(times, "FGSM-RS model (train or load)", lambda: load_models(P, device, train_set, robust=True))
    det_rob = sanitization.SqueezeDetector(rob, squeezers).fit_threshold(x_cal, FPR)
    x_pgd_rob = timed(times, "PGD vs FGSM-RS model", lambda: pgd(rob, x, y))
    rob_rows = [sanitization.detection_report(rob, det_rob, x, y, x_pgd_rob, f"[FGSM-RS model] PGD-{steps}")]
    x_ad_rob = timed(times, "adaptive PGD vs FGSM-RS + detector",
                     lambda: sanitization.adaptive_pgd(rob, det_rob, xa, ya, EPS, ALPHA, ad_steps, n_targets=n_targets))
    rob_rows.append(sanitization.detection_report(rob, det_rob, xa, ya, x_ad_rob, f"[FGSM-RS model] adaptive PGD-{ad_steps}"))

    # MagNet-style autoencoder detector on the standard model
    ae = sanitization.magnet_autoencoder(1).to(device)
    timed(times, "train autoencoder", lambda: sanitization.train_autoencoder(
        ae, data.make_loader(train_set, 128, n=P.pick(smoke=2_000, quick=20_000, full=60_000), seed=0),
        epochs=P.pick(smoke=1, quick=3, full=20), progress=False))
    det_ae = sanitization.ReconstructionDetector(ae).fit_threshold(x_cal, FPR)
    ae_rows = [sanitization.detection_report(std, det_ae, x, y, x_pgd, f"[MagNet detector] PGD-{steps}")]
    x_ad_ae = timed(times, "adaptive PGD vs MagNet detector",
                    lambda: sanitization.adaptive_pgd(std, det_ae, xa, ya, EPS, ALPHA, ad_steps, n_targets=n_targets))
    ae_rows.append(sanitization.detection_report(std, det_ae, xa, ya, x_ad_ae, f"[MagNet detector] adaptive PGD-{ad_steps}"))

    pd.set_option("display.width", 200)
    print(f"\nclean accuracy: standard {(std(x).argmax(1) == y).float().mean():.3f}, FGSM-RS {(rob(x).argmax(1) == y).float().mean():.3f}"
          f" ({n_eval} images)")
    print(f"squeezing detector: threshold {det.threshold:.3f} for {FPR:.0%} FPR on {n_cal} calibration images; "
          f"FPR on {n_eval} held-out clean images {fpr_eval:.3f}; ROC AUC vs PGD {auc:.3f}")
    print(f"ART FeatureSqueezing(bit_depth=1) vs sanitization.bit_depth: max |difference| {art_gap:.1e}")
    print(f"1-bit squeezed classifier accuracy ({n_ad} images): vs PGD transferred from the bare model {acc_squeezed_pgd:.3f}, "
          f"vs BPDA-PGD-{ad_steps} {acc_squeezed_bpda:.3f}")
    print("\n" + markdown(pd.DataFrame(rows + rob_rows + ae_rows)))
    pgd_row = rows[1]
    print("\ntargets (quick profile): detection of PGD at 5% FPR >= 0.90: "
          f"{pgd_row['detected (of fooled)']:.3f} -> {'met' if pgd_row['detected (of fooled)'] >= 0.9 else 'MISSED'}")
    for ad_row in (r for r in rows if r["attack"].startswith("adaptive")):
        ok = ad_row["detected (of fooled)"] <= 0.1 and ad_row["fooled"] >= 0.9
        print(f"  {ad_row['attack']}: detection <= 0.10: {ad_row['detected (of fooled)']:.3f}, fooled >= 0.90: "
              f"{ad_row['fooled']:.3f} -> {'met' if ok else 'MISSED'}")
    print("\n" + markdown(pd.DataFrame(times)))


if __name__ == "__main__":
    main()
