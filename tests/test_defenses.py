"""Unit tests of input sanitization (course_utils.sanitization: squeeze, autoencoder, adaptive; notebook 06)."""
import functools

import numpy as np
import pytest
import torch
from scipy.ndimage import median_filter
from torch import nn

from course_utils import attacks, interop, sanitization
from course_utils.checks import sanitization as sanitization_checks
from course_utils.checks import strip_solutions


def tiny_cnn(seed=0, channels=1, classes=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, classes)).eval()


def images(n=16, channels=1, seed=0):
    return torch.rand(n, channels, 8, 8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- squeezers
@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_bit_depth_idempotent_in_range_and_on_grid(bits):
    x = images()
    s = sanitization.bit_depth(x, bits)
    assert torch.equal(sanitization.bit_depth(s, bits), s)
    assert s.min() >= 0 and s.max() <= 1
    assert len(torch.unique(s)) <= 2 ** bits
    assert (s - x).abs().max() <= 0.5 / (2 ** bits - 1) + 1e-6


@pytest.mark.parametrize("bits", [1, 4, 5])
def test_bit_depth_matches_art_feature_squeezing(bits):
    from art.defences.preprocessor import FeatureSqueezing

    x = images(channels=3)
    ours = sanitization.bit_depth(x, bits).numpy()
    art, _ = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)(x.numpy())
    np.testing.assert_allclose(ours, art, atol=1e-6)


@pytest.mark.parametrize("bad", [0, 9, -1, 2.0, True])
def test_bit_depth_rejects_bad_bits(bad):
    with pytest.raises(ValueError, match="bits"):
        sanitization.bit_depth(images(), bad)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_median_matches_scipy_and_keeps_range(size):
    x = images(n=3, channels=2)
    ours = sanitization.median_smooth(x, size)
    ref = median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-7)
    assert ours.min() >= 0 and ours.max() <= 1 and ours.shape == x.shape


def test_median_idempotent_on_smooth_images():
    const = torch.full((2, 1, 8, 8), 0.3)
    assert torch.equal(sanitization.median_smooth(const, 2), const)
    assert torch.equal(sanitization.median_smooth(images(), 1), images())


@pytest.mark.parametrize("bad", [0, -3, 2.5, None])
def test_median_rejects_bad_size(bad):
    with pytest.raises(ValueError, match="size"):
        sanitization.median_smooth(images(), bad)


def test_squeezers_reject_images_outside_unit_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sanitization.median_smooth(images() * 2, 2)


def test_non_local_means_shape_range_and_constant():
    x = images(n=2, channels=3)
    out = sanitization.non_local_means(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    const = torch.full((1, 3, 8, 8), 0.6)
    assert torch.allclose(sanitization.non_local_means(const), const, atol=1e-5)
    with pytest.raises(ValueError, match="search"):
        sanitization.non_local_means(x, search=4)


# ---------------------------------------------------------------- calibration and detectors
@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.2])
def test_threshold_gives_requested_fpr_on_calibration_set(fpr):
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    tau = sanitization.threshold_for_fpr(scores, fpr)
    assert (scores > tau).float().mean().item() == pytest.approx(np.floor(fpr * 1000) / 1000)


def test_threshold_keeps_the_false_positive_rate_on_held_out_scores():
    g = torch.Generator().manual_seed(3)
    calib, held_out = torch.randn(2000, generator=g), torch.randn(20000, generator=g)
    for fpr in (0.01, 0.05, 0.2):
        tau = sanitization.threshold_for_fpr(calib, fpr)
        tol = 4 * (fpr * (1 - fpr) / len(calib)) ** 0.5  # 4 sd of the calibration quantile's coverage
        assert abs((held_out > tau).float().mean().item() - fpr) < tol  # high score = suspicious
        low_tau = -sanitization.threshold_for_fpr(-calib, fpr)  # a similarity: low = suspicious
        assert abs((held_out < low_tau).float().mean().item() - fpr) < tol


def test_threshold_uses_only_clean_and_rejects_bad_calibration():
    scores = torch.tensor([0.1, 0.2, 0.3, 5.0])
    assert sanitization.threshold_for_fpr(scores, 0.0, is_adversarial=[0, 0, 0, 1]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no clean examples"):
        sanitization.threshold_for_fpr(scores, 0.05, is_adversarial=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="no clean examples"):
        sanitization.threshold_for_fpr(torch.tensor([]), 0.05)
    with pytest.raises(ValueError, match="fpr"):
        sanitization.threshold_for_fpr(scores, 1.5)


def test_squeeze_detector_calibrated_fpr_and_interface():
    model = tiny_cnn()
    det = sanitization.SqueezeDetector(model, sanitization.paper_squeezers("mnist"))
    x = images(n=200)
    with pytest.raises(ValueError, match="fit_threshold"):
        det.detect(x)
    det.fit_threshold(x, fpr=0.1)
    flags = det.detect(x)
    assert flags.dtype == torch.bool and flags.shape == (200,)
    assert flags.float().mean().item() <= 0.1 + 1e-6
    s = det.score(x)
    assert s.shape == (200,) and s.min() >= 0 and s.max() <= 2 + 1e-6
    with pytest.raises(ValueError, match="clean"):
        det.fit_threshold(x[:0])


def test_stream_flag_rate_tracks_attack_share():
    df = sanitization.stream_flag_rate(torch.zeros(10, dtype=torch.bool), torch.ones(10, dtype=torch.bool),
                                   [0.0, 0.5, 1.0], batch=64, generator=torch.Generator().manual_seed(0))
    assert list(df.flagged) == list(df.attack_share) and df.flagged.iloc[0] == 0 and df.flagged.iloc[2] == 1


def test_flippable_pixels_exact_on_hand_made_pixels():
    x = torch.tensor([0.0, 0.25, 0.45, 0.55, 1.0]).view(1, 1, 1, 5)
    # 1 bit, eps 0.1: only 0.45 (up) and 0.55 (down) can cross 0.5; a one-sided check misses 0.55
    assert sanitization.flippable_pixels(x, 0.1, 1).item() == pytest.approx(2 / 5)
    assert sanitization.flippable_pixels(x, 0.0, 1).item() == 0
    assert sanitization.flippable_pixels(x, 0.3, 1).item() == pytest.approx(3 / 5)  # 0.25 + 0.3 crosses too
    with pytest.raises(ValueError, match="eps"):
        sanitization.flippable_pixels(x, -0.1, 1)


@pytest.mark.parametrize("bits,eps", [(1, 0.3), (5, 8 / 255), (3, 0.05)])
def test_flippable_pixels_matches_brute_force_search(bits, eps):
    x = images(4, channels=3, seed=2)
    deltas = torch.linspace(-eps, eps, 201)
    s = sanitization.bit_depth(x, bits)
    moved = torch.zeros_like(x, dtype=torch.bool)
    for d in deltas:  # every change on a fine grid of [-eps, eps], clipped to the image range
        moved |= sanitization.bit_depth((x + d).clamp(0, 1), bits) != s
    assert torch.allclose(sanitization.flippable_pixels(x, eps, bits), moved.flatten(1).float().mean(1))


class _Fixed(nn.Module):
    """A 'model' that returns fixed logits per example, whatever the input (for counting tests)."""

    def __init__(self, pred_clean, pred_adv):
        super().__init__()
        self.clean, self.adv = pred_clean, pred_adv

    def forward(self, x):
        pred = torch.where(x[:, 0, 0, 0] > 0.5, self.adv, self.clean)
        return nn.functional.one_hot(pred, 3).float()


class _Flags(sanitization.Detector):
    def __init__(self, flags):
        self.flags, self.threshold = flags, 0.5

    def differentiable_score(self, x, through=None):
        return self.flags.float()


def test_detection_report_counts_and_intervals():
    y = torch.zeros(10, dtype=torch.long)
    pred_clean = torch.tensor([0] * 8 + [1, 1])  # 8 correctly classified
    pred_adv = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 1, 1])  # 6 of those 8 fooled
    flags = torch.tensor([1, 1, 0, 0, 0, 0, 1, 0, 1, 1], dtype=torch.bool)  # 2 of the 6 flagged
    x, x_adv = torch.zeros(10, 1, 2, 2), torch.ones(10, 1, 2, 2)
    r = sanitization.detection_report(_Fixed(pred_clean, pred_adv), _Flags(flags), x, y, x_adv, "t")
    assert (r["n"], r["fooled"], r["detected (of fooled)"], r["evaded"]) == (8, 6 / 8, 2 / 6, 4 / 8)
    from statsmodels.stats.proportion import proportion_confint
    lo, hi = proportion_confint(2, 6, alpha=0.05, method="beta")  # over the fooled, not over n
    assert r["detected 95% CI"] == f"{lo:.2f}-{hi:.2f}"


def _row(fooled, detected, n=200):
    evaded = fooled * (1 - detected)
    return {"attack": "a", "n": n, "fooled": fooled, "detected (of fooled)": detected, "detected 95% CI": "x-y",
            "evaded": evaded, "evaded 95% CI": "x-y"}


def test_bypass_verdict_needs_both_fooling_and_evading():
    ok, text = sanitization.bypass_verdict(_row(0.97, 0.03))
    assert ok and text.startswith("BYPASS: SHOWN")
    for row, why in ((_row(0.97, 0.5), "detected 50.0% > 20%"), (_row(0.5, 0.0), "fooled 50.0% < 90%")):
        ok, text = sanitization.bypass_verdict(row)
        assert not ok and why in text and "strengthen the attack" in text
    ok, text = sanitization.bypass_verdict(_row(0.0, float("nan")))
    assert not ok and "fooled nothing" in text
    assert sanitization.bypass_verdict(_row(0.95, 0.15), max_detected=0.1)[0] is False


# ---------------------------------------------------------------- adaptive attacks
def test_bpda_forward_is_squeezer_and_gradient_is_identity():
    x = images().requires_grad_(True)
    w = torch.randn_like(x)
    squeeze = functools.partial(sanitization.bit_depth, bits=1)
    out = sanitization.bpda(x, squeeze)
    assert torch.equal(out, squeeze(x))
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.equal(grad, w)  # the identity's gradient, not round()'s zero


def test_detector_aware_model_predicts_extra_class_exactly_when_flagged():
    model = tiny_cnn()
    det = sanitization.SqueezeDetector(model, sanitization.paper_squeezers("mnist")).fit_threshold(images(100), fpr=0.3)
    x = images(50, seed=3)
    joint = sanitization.DetectorAwareModel(model, det)
    with torch.no_grad():
        pred = joint(x).argmax(1)
    assert torch.equal(pred == 4, det.detect(x))


def test_adaptive_attacks_stay_in_ball_and_box():
    model = tiny_cnn()
    x, y = images(20), torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(0))
    det = sanitization.SqueezeDetector(model, sanitization.paper_squeezers("mnist")).fit_threshold(images(100, seed=5))
    for x_adv in (attacks.pgd(sanitization.BPDAModel(model, det.squeezers["bit depth 1"]), x, y, 0.1, 0.02, 5),
                  sanitization.adaptive_pgd(model, det, x, y, 0.1, 0.02, 5)):
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with pytest.raises(ValueError, match="threshold"):
        sanitization.DetectorAwareModel(model, sanitization.ConfidenceDetector(model))


def test_carlini_wagner_via_art_runs():
    x = images(4)
    x_adv = interop.carlini_wagner(tiny_cnn(), x, "l2", num_classes=4, max_iter=2, binary_search_steps=1, batch_size=4)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1


# ---------------------------------------------------------------- MagNet
def test_magnet_autoencoder_detector_and_purifier():
    ae = sanitization.magnet_autoencoder(channels=1)
    x = images(8)
    assert ae(x).shape == x.shape
    loader = [(images(16, seed=s), torch.zeros(16)) for s in range(3)]
    hist = sanitization.train_autoencoder(ae, loader, epochs=2, lr=1e-2, progress=False)
    assert len(hist) == 2
    det = sanitization.ReconstructionDetector(ae).fit_threshold(images(50), fpr=0.1)
    assert det.detect(images(50)).float().mean() <= 0.1 + 1e-6
    assert sanitization.Purified(tiny_cnn(), ae)(x).shape == (8, 4)
    with pytest.raises(ValueError, match="p must"):
        sanitization.ReconstructionDetector(ae, p=3)


# ---------------------------------------------------------------- exercise checks can fail
def test_checks_pass_reference_and_fail_wrong_answers():
    sanitization_checks.check_bit_depth(sanitization.bit_depth)
    sanitization_checks.check_threshold(sanitization.threshold_for_fpr)
    sanitization_checks.check_bpda(sanitization.bpda)
    with pytest.raises(AssertionError):
        sanitization_checks.check_bit_depth(lambda x, b: torch.floor(x * 2 ** b) / 2 ** b)
    with pytest.raises(AssertionError):
        sanitization_checks.check_threshold(lambda s, f: float(torch.quantile(s, 1 - f)))
    with pytest.raises(AssertionError):
        sanitization_checks.check_bpda(lambda x, t: t(x))  # the true (zero) gradient of rounding
    assert "NotImplementedError" in strip_solutions("def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n")
