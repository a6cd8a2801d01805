"""Bad arguments raise a ValueError naming the argument (issue 17, item 7).

Each test reproduces a defect of the probe: a NaN pixel passed ``check_images`` (attacks returned
NaN, ``Smooth.certify`` certified an all-NaN image); labels were not range-checked (y = 10: a torch
IndexError; y = -100: PGD a silent no-op, since cross-entropy ignores that label; y = -1: silently
the last class); ``evaluate`` scored out-of-range labels as wrong and divided by zero at
``batch_size=0``; ``Smooth`` accepted ``sigma=inf``; alpha was not checked where it enters.
"""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import attacks, certify, evaluation, validation
from course_utils.attacks import AttackConfig

NUM_CLASSES = 10
BAD_LABELS = [NUM_CLASSES, -100, -1]  # one past the end, cross-entropy's ignore_index, a wrap-around index
NON_FINITE = [float("nan"), float("inf"), -float("inf")]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 4, 4, generator=g), torch.tensor([0, 3, NUM_CLASSES - 1, 1])


def with_label(y, value):
    y = y.clone()
    y[1] = value
    return y


def with_pixel(x, value):
    x = x.clone()
    x[2, 0, 1, 1] = value
    return x


# ---------------------------------------------------------------- validation helpers

@pytest.mark.parametrize("value", NON_FINITE)
def test_check_images_rejects_non_finite_pixels(batch, value):
    x, _ = batch
    with pytest.raises(ValueError, match="^x must be finite"):
        validation.check_images(with_pixel(x, value))
    with pytest.raises(ValueError, match="^x_clean "):
        validation.check_images(with_pixel(x, value), "x_clean")
    assert validation.check_images(x) is x  # valid input unchanged


@pytest.mark.parametrize("bad", BAD_LABELS)
def test_label_range_is_checked_by_the_one_helper(batch, bad):
    x, y = batch
    assert torch.equal(validation.check_labels(y, x, num_classes=NUM_CLASSES), y)  # 0 and K - 1 are fine
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
        validation.check_labels(with_label(y, bad), x, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="^targets "):
        validation.check_label_range(with_label(y, bad), NUM_CLASSES, "targets")
    validation.check_labels(with_label(y, bad), x)  # without num_classes only type and shape are checked
    with pytest.raises(ValueError, match="num_classes"):
        validation.check_label_range(y, 0)


@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, float("nan"), True, "0.05"])
def test_check_probability(value):
    with pytest.raises(ValueError, match="^alpha must be a number in"):
        validation.check_probability(value, "alpha")


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, None])
def test_check_positive(value):
    with pytest.raises(ValueError, match="^sigma must be a finite number > 0"):
        validation.check_positive(value, "sigma")
    assert validation.check_positive(0.25, "sigma") == 0.25


# ---------------------------------------------------------------- attacks

ATTACKS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.1),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.05, 3),
    "pgd restarts": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.05, 2, restarts=2, norm="l2"),
    "pgd targeted": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.05, 3, targeted=True),
    "AttackConfig pgd": AttackConfig(0.1, steps=3),
    "AttackConfig fgsm": AttackConfig.fgsm(0.1),
    "AttackConfig fgsm_rs": AttackConfig(0.1, kind="fgsm_rs"),
    "AttackConfig eps=0": AttackConfig(0.0),
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("bad", BAD_LABELS)
def test_attacks_reject_out_of_range_labels(model, batch, name, bad):
    x, y = batch
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
        ATTACKS[name](model, x, with_label(y, bad))


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_reject_nan_pixels_and_accept_valid_input(model, batch, name):
    x, y = batch
    with pytest.raises(ValueError, match="^x must be finite"):
        ATTACKS[name](model, with_pixel(x, float("nan")), y)
    x_adv = ATTACKS[name](model, x, y)  # labels 0 and K - 1 are valid
    assert torch.isfinite(x_adv).all() and x_adv.shape == x.shape


def test_pgd_checks_the_labels_once(model, batch, monkeypatch):
    calls = []
    real = attacks.check_label_range
    monkeypatch.setattr(attacks, "check_label_range", lambda *a, **k: calls.append(1) or real(*a, **k))
    attacks.pgd(model, *batch, 0.1, 0.05, steps=4, restarts=2)
    assert len(calls) == 1  # after the first forward pass, not at every step


# ---------------------------------------------------------------- evaluation

@pytest.mark.parametrize("bad", BAD_LABELS)
def test_evaluate_rejects_out_of_range_labels(model, batch, bad):
    x, y = batch
    y_bad = with_label(y, bad)
    for data in [(x, y_bad), DataLoader(TensorDataset(x, y_bad), batch_size=2), TensorDataset(x, y_bad)]:
        with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
            evaluation.evaluate(model, data, progress=False)
    with pytest.raises(ValueError, match="^y must hold"):
        evaluation.evaluate(model, (x, y_bad), AttackConfig(0.1, steps=2), progress=False)
    with pytest.raises(ValueError, match="^y must hold"):
        evaluation.gradient_masking_checks(model, x, y_bad, AttackConfig(0.1, steps=4), restarts=2)
    assert evaluation.evaluate(model, (x, y), progress=False).n == len(y)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, None])
def test_evaluate_rejects_bad_batch_size(model, batch, batch_size):
    with pytest.raises(ValueError, match="^batch_size must be an integer >= 1"):
        evaluation.evaluate(model, batch, batch_size=batch_size, progress=False)


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.05, float("nan")])
def test_evaluate_and_eval_result_reject_bad_alpha(model, batch, alpha):
    with pytest.raises(ValueError, match="^alpha must be a number in"):
        evaluation.evaluate(model, batch, alpha=alpha, progress=False)
    with pytest.raises(ValueError, match="^alpha must be a number in"):
        evaluation.EvalResult(3, 4, alpha=alpha)


def test_eval_result_counts_and_its_printed_level():
    for correct, n, name in [(5, 4, "correct"), (-1, 4, "correct"), (1, -2, "n"), (1.5, 4, "correct")]:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            evaluation.EvalResult(correct, n)
    r = evaluation.EvalResult(37, 50, alpha=0.1)
    assert "90% CI" in str(r) and "95% CI" in str(evaluation.EvalResult(37, 50))
    lo, hi = r.ci
    assert lo < 37 / 50 < hi


@pytest.mark.parametrize("bad", BAD_LABELS)
def test_per_class_accuracy_rejects_out_of_range_labels(bad):
    y = with_label(torch.tensor([0, 1, 2, 9]), bad)
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
        evaluation.per_class_accuracy(torch.tensor([0, 1, 2, 9]), y, num_classes=10)


# ---------------------------------------------------------------- certify: IBP

@pytest.mark.parametrize("ends_in_linear", [True, False])
@pytest.mark.parametrize("bad", BAD_LABELS)
def test_ibp_rejects_out_of_range_labels(batch, bad, ends_in_linear):
    x, y = batch
    layers = [nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES)]
    net = nn.Sequential(*layers, *([] if ends_in_linear else [nn.ReLU()]))
    y_bad = with_label(y, bad)
    calls = {
        "margin_lower_bounds": lambda: certify.margin_lower_bounds(net, x, y_bad, 0.05),
        "verified": lambda: certify.verified(net, x, y_bad, 0.05),
        "verified without elision": lambda: certify.verified(net, x, y_bad, 0.05, elide=False),
        "verified_accuracy": lambda: certify.verified_accuracy(net, x, y_bad, 0.05, batch_size=2),
        "verified_by ibp": lambda: certify.verified_by("ibp", net, x, y_bad, 0.05),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
            call()
    assert certify.verified(net, x, y, 0.0).shape == (len(x),)


def test_ibp_rejects_nan_pixels_and_bad_batch_size(batch):
    x, y = batch
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, NUM_CLASSES))
    with pytest.raises(ValueError, match="^x must be finite"):
        certify.interval_bounds(net, with_pixel(x, float("nan")), 0.1)
    with pytest.raises(ValueError, match="^batch_size must be an integer >= 1"):
        certify.verified_accuracy(net, x, y, 0.1, batch_size=0)


@pytest.mark.parametrize("method", ["crown", "lp"])
@pytest.mark.parametrize("bad", BAD_LABELS)
def test_relaxation_rejects_out_of_range_labels(batch, method, bad):
    x, y = batch
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, NUM_CLASSES))
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
        certify.margin_lower_bounds_by(method, net, x[:2], with_label(y[:2], bad), 0.05)


# ---------------------------------------------------------------- certify: randomized smoothing

@pytest.mark.parametrize("sigma", [float("inf"), float("nan"), 0.0, -0.25, True, None])
def test_smooth_rejects_non_finite_or_non_positive_sigma(model, sigma):
    with pytest.raises(ValueError, match="^sigma must be a finite number > 0"):
        certify.Smooth(model, NUM_CLASSES, sigma)
    with pytest.raises(ValueError, match="^sigma must be a finite number > 0"):
        certify.certified_radius(0.9, sigma)


def test_other_sigmas_reject_nan_and_inf(model):
    for sigma in [float("nan"), float("inf"), -1.0]:
        with pytest.raises(ValueError, match="^sigma must be a finite number >= 0"):
            certify.NoisySoftmax(model, sigma)
        with pytest.raises(ValueError, match="^sigma must be a finite number >= 0"):
            certify.noise_augment(sigma)
    with pytest.raises(ValueError, match="^sigma "):
        certify.max_certifiable_radius(100, 0.001, float("inf"))


@pytest.mark.parametrize("value", NON_FINITE)
def test_smooth_refuses_non_finite_images(model, value):
    smooth = certify.Smooth(model, NUM_CLASSES, 0.25, generator=torch.Generator().manual_seed(0))
    all_bad = torch.full((1, 4, 4), value)
    with pytest.raises(ValueError, match="^x must be finite"):
        smooth.certify(all_bad, 10, 100, 0.001, 50)
    with pytest.raises(ValueError, match="^x must be finite"):
        smooth.predict(with_pixel(torch.rand(4, 1, 4, 4), value)[2], 100, 0.001, 50)


@pytest.mark.parametrize("alpha", [0, 1, 2.0, float("nan")])
def test_smooth_rejects_bad_alpha(model, alpha):
    smooth = certify.Smooth(model, NUM_CLASSES, 0.25)
    x = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="^alpha must be a number in"):
        smooth.certify(x, 10, 100, alpha, 50)
    with pytest.raises(ValueError, match="^alpha must be a number in"):
        smooth.predict(x, 100, alpha, 50)


@pytest.mark.parametrize("bad", BAD_LABELS)
def test_certify_dataset_rejects_out_of_range_labels(model, batch, bad):
    x, y = batch
    smooth = certify.Smooth(model, NUM_CLASSES, 0.25, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^y must hold class indices in \[0, 9\]"):
        certify.certify_dataset(smooth, x, with_label(y, bad), 10, 20, 0.001, progress=False)
    df = certify.certify_dataset(smooth, x, y, 10, 20, 0.001, progress=False)
    assert list(df["label"]) == y.tolist() and df["radius"].map(math.isfinite).all()
