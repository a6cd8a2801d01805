"""Every exercise check rejects the classic mistakes (STYLE.md: "a check must fail on the mistake it is
about").

For each ``check_*`` in ``course_utils.checks``: the reference answer passes, and at least two
plausible wrong answers, written as a learner would get them wrong (off-by-one, a two-sided bound,
selection from the wrong sample, a missing clip or projection, a sign error, an ignored argument,
a wrong reduction, ...), fail with an ``AssertionError`` whose message says what is off (the
check's name and the failing case). ``test_every_check_has_mutants`` keeps the table complete when
a check is added.
"""
import copy
import dataclasses
import functools
import inspect
import itertools
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta, binomtest, norm

from course_utils import attacks, certify, checks, fraud, interop, models, sanitization, training
from course_utils.serving import layers
from course_utils.text import attacks as text_attacks

ROOT = Path(__file__).parents[1]


def _grad(model, x, y):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def _per_example(v, like):
    return v.view(-1, *[1] * (like.ndim - 1))


# ---------------------------------------------------------------- notebook 00, 02: foundations
def norms_ref(x, x_adv):
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1), d.norm(p=2, dim=1)


def norms_l2_squared(x, x_adv):
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1), d.pow(2).sum(1)


def norms_linf_without_abs(x, x_adv):
    d = (x_adv - x).flatten(1)
    return d.amax(1), d.norm(p=2, dim=1)


def norms_per_channel(x, x_adv):
    d = (x_adv - x).flatten(2)  # (B, C, H*W): one norm per channel
    return d.abs().amax(2), d.norm(p=2, dim=2)


def norms_whole_batch(x, x_adv):
    d = x_adv - x
    return d.abs().max(), d.norm()


def worst_case_linear_ref(w, eps):
    return eps * torch.sign(w)


def success_counts_clean_mistakes(y, pred_clean, pred_adv):  # every wrong adversarial prediction, over all images
    return (pred_adv != y).sum(), len(y)


def success_counts_flips(y, pred_clean, pred_adv):  # "the attack changed the prediction", over all images
    return (pred_adv != pred_clean).sum(), len(y)


def success_wrong_denominator(y, pred_clean, pred_adv):  # the right k, divided among all images
    return ((pred_clean == y) & (pred_adv != y)).sum(), len(y)


# ---------------------------------------------------------------- notebooks 02, 03: attacks
def fgsm_no_clip(model, x, y, eps):
    return x + eps * _grad(model, x, y).sign()


def fgsm_descent(model, x, y, eps):
    return (x - eps * _grad(model, x, y).sign()).clamp(0, 1)


def fgsm_raw_gradient(model, x, y, eps):
    return (x + eps * _grad(model, x, y)).clamp(0, 1)


def fgsm_predicted_label(model, x, y, eps):
    return (x + eps * _grad(model, x, model(x).argmax(1)).sign()).clamp(0, 1)


def fgm_sign_step(model, x, y, eps):
    return fgsm_descent(model, x, y, -eps)


def fgm_batch_norm(model, x, y, eps):
    g = _grad(model, x, y)
    return (x + eps * g / g.norm()).clamp(0, 1)


def fgm_per_channel_norm(model, x, y, eps):
    g = _grad(model, x, y)
    return (x + eps * g / g.norm(p=2, dim=(2, 3), keepdim=True)).clamp(0, 1)


def fgm_no_clip(model, x, y, eps):
    g = _grad(model, x, y)
    return x + eps * g / _per_example(g.flatten(1).norm(dim=1), g)


def project_l2_ref(delta, eps):
    norms = _per_example(delta.flatten(1).norm(p=2, dim=1), delta)
    return delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)


def project_l2_always_to_sphere(delta, eps):
    return eps * delta / _per_example(delta.flatten(1).norm(p=2, dim=1), delta)


def project_l2_whole_batch(delta, eps):
    return delta * min(1.0, eps / float(delta.norm()))


def project_linf_always_to_boundary(delta, eps):
    return eps * delta / _per_example(delta.flatten(1).abs().amax(1), delta)


def project_linf_one_sided(delta, eps):
    return delta.clamp(0, eps)


def pgd_ref(model, x, y, eps, alpha, steps):
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta = (delta + alpha * _grad(model, x + delta, y).sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return x + delta


def pgd_project_only_at_end(model, x, y, eps, alpha, steps):
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta = delta + alpha * _grad(model, x + delta, y).sign()
    return (x + delta.clamp(-eps, eps)).clamp(0, 1)


def pgd_no_box_clip(model, x, y, eps, alpha, steps):
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta = (delta + alpha * _grad(model, x + delta, y).sign()).clamp(-eps, eps)
    return x + delta


def pgd_no_eps_projection(model, x, y, eps, alpha, steps):
    x_adv = x
    for _ in range(steps):
        x_adv = (x_adv + alpha * _grad(model, x_adv, y).sign()).clamp(0, 1)
    return x_adv


def pgd_gradient_once(model, x, y, eps, alpha, steps):
    g, delta = _grad(model, x, y).sign(), torch.zeros_like(x)
    for _ in range(steps):
        delta = ((delta + alpha * g).clamp(-eps, eps) + x).clamp(0, 1) - x
    return x + delta


def pgd_one_step_short(model, x, y, eps, alpha, steps):
    return pgd_ref(model, x, y, eps, alpha, steps - 1)


def targeted_ref(model, x, target, eps):
    return (x - eps * _grad(model, x, target).sign()).clamp(0, 1)


def targeted_ascent(model, x, target, eps):
    return (x + eps * _grad(model, x, target).sign()).clamp(0, 1)


def targeted_no_clip(model, x, target, eps):
    return x - eps * _grad(model, x, target).sign()


def targeted_ignores_target(model, x, target, eps):
    return fgsm_predicted_label(model, x, target, eps)


# ---------------------------------------------------------------- notebooks 04, 05, p1: training
def step_ref(model, optimizer, x, y, eps, alpha, steps):
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, random_start=False)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_clean_batch(model, optimizer, x, y, eps, alpha, steps):
    return step_ref(model, optimizer, x, y, 0.0, alpha, steps)


def step_no_zero_grad(model, optimizer, x, y, eps, alpha, steps):
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, random_start=False)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    loss.backward()  # gradients of the previous step are still there
    optimizer.step()
    return loss.item()


def step_update_in_eval_mode(model, optimizer, x, y, eps, alpha, steps):
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, random_start=False)
    loss = F.cross_entropy(model(x_adv), y)  # model.train() forgotten: batch norm uses running stats
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_gradient_ascent(model, optimizer, x, y, eps, alpha, steps):
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, random_start=False)
    model.train()
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    (-loss).backward()
    optimizer.step()
    return loss.item()


def _mixed_update(model, optimizer, x_mixed, y, train=True, zero_grad=True):
    if train:
        model.train()
    loss = F.cross_entropy(model(x_mixed), y)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def mixed_step_ref(model, optimizer, x, y, attack, ratio=0.5):
    k = int(round(ratio * len(y)))
    return _mixed_update(model, optimizer, torch.cat([attack(model, x[:k], y[:k]), x[k:]]), y)


def mixed_step_via_mix_batch(model, optimizer, x, y, attack, ratio=0.5):  # also right: attack all, keep the first k
    return _mixed_update(model, optimizer, training.mix_batch(x, attack(model, x, y), ratio), y)


def mixed_step_no_mixing(model, optimizer, x, y, attack, ratio=0.5):
    return _mixed_update(model, optimizer, attack(model, x, y), y)


def mixed_step_adversarial_last(model, optimizer, x, y, attack, ratio=0.5):
    k = len(y) - int(round(ratio * len(y)))
    return _mixed_update(model, optimizer, torch.cat([x[:k], attack(model, x[k:], y[k:])]), y)


def mixed_step_floor(model, optimizer, x, y, attack, ratio=0.5):
    k = int(ratio * len(y))
    return _mixed_update(model, optimizer, torch.cat([attack(model, x[:k], y[:k]), x[k:]]), y)


def mixed_step_adversarial_half_only(model, optimizer, x, y, attack, ratio=0.5):
    k = int(round(ratio * len(y)))
    return _mixed_update(model, optimizer, attack(model, x[:k], y[:k]), y[:k])


def mixed_step_no_zero_grad(model, optimizer, x, y, attack, ratio=0.5):
    k = int(round(ratio * len(y)))
    return _mixed_update(model, optimizer, torch.cat([attack(model, x[:k], y[:k]), x[k:]]), y, zero_grad=False)


def mixed_step_update_in_eval_mode(model, optimizer, x, y, attack, ratio=0.5):
    k = int(round(ratio * len(y)))
    return _mixed_update(model, optimizer, torch.cat([attack(model, x[:k], y[:k]), x[k:]]), y, train=False)


def mixed_step_crafted_in_train_mode(model, optimizer, x, y, attack, ratio=0.5):  # own PGD, model in train mode
    k = int(round(ratio * len(y)))
    model.train()
    x_adv = x[:k].clone()
    for _ in range(attack.steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y[:k]), x_adv)
        x_adv = (x[:k] + (x_adv.detach() + attack.alpha * g.sign() - x[:k]).clamp(-attack.eps, attack.eps)).clamp(0, 1)
    return _mixed_update(model, optimizer, torch.cat([x_adv, x[k:]]), y)


def safe_alpha_ref(curves, drop=0.2):
    safe = []
    for alpha, accs in curves.items():
        if np.all(np.asarray(accs) >= np.maximum.accumulate(np.asarray(accs, dtype=float)) - drop):
            safe.append(alpha)
    return max(safe) if safe else None


def safe_alpha_ignores_drop(curves, drop=0.2):
    return safe_alpha_ref(curves)  # the default 0.2, whatever drop is asked


def safe_alpha_first_epoch_baseline(curves, drop=0.2):
    safe = [a for a, accs in curves.items() if min(accs) >= accs[0] - drop]
    return max(safe) if safe else None


def safe_alpha_overall_max_baseline(curves, drop=0.2):
    safe = [a for a, accs in curves.items() if min(accs) >= max(accs) - drop]
    return max(safe) if safe else None


def safe_alpha_before_first_collapse(curves, drop=0.2):
    last = None
    for alpha in sorted(curves):  # assumes that once an alpha collapses, every larger one does
        if safe_alpha_ref({alpha: curves[alpha]}, drop) is None:
            return last
        last = alpha
    return last


def safe_alpha_final_epoch_only(curves, drop=0.2):
    safe = [a for a, accs in curves.items() if accs[-1] >= max(accs) - drop]
    return max(safe) if safe else None


def tradeoff_ref(clean_std, robust_std, clean_adv, robust_adv):
    return (clean_std - clean_adv) / (robust_adv - robust_std)


def per_class_ref(pred, y, num_classes):
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        if (y == c).any():
            out[c] = (pred[y == c] == c).double().mean()
    return out


def per_class_zero_for_absent(pred, y, num_classes):
    return torch.nan_to_num(per_class_ref(pred, y, num_classes), nan=0.0)


def per_class_precision(pred, y, num_classes):
    return per_class_ref(y, pred, num_classes)  # divides by the predicted count


def per_class_last_class_skipped(pred, y, num_classes):
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes - 1):
        if (y == c).any():
            out[c] = (pred[y == c] == c).double().mean()
    return out


def per_class_overall_accuracy(pred, y, num_classes):
    return torch.full((num_classes,), float((pred == y).double().mean()), dtype=torch.float64)


def best_epoch_ref(val_robust):
    return int(np.argmax(val_robust)) + 1


def best_epoch_last_best(val_robust):
    return len(val_robust) - int(np.argmax(val_robust[::-1]))


def mix_ref(x, x_adv, ratio):
    k = int(round(ratio * x.shape[0]))
    return torch.cat([x_adv[:k], x[k:]])


def mix_floor(x, x_adv, ratio):
    k = int(ratio * x.shape[0])
    return torch.cat([x_adv[:k], x[k:]])


def mix_adversarial_last(x, x_adv, ratio):
    k = int(round(ratio * x.shape[0]))
    return torch.cat([x[:x.shape[0] - k], x_adv[x.shape[0] - k:]])


def mix_ratio_as_clean_fraction(x, x_adv, ratio):
    k = int(round(ratio * x.shape[0]))
    return torch.cat([x[:k], x_adv[k:]])


def art_ref(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return interop.art_classifier(model, (3, 32, 32), num_classes=10, optimizer=optimizer)


def _art(model, **kwargs):
    from art.estimators.classification import PyTorchClassifier

    args = dict(loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    return PyTorchClassifier(model, **{**args, **kwargs})


def art_no_optimizer(model):
    return _art(model, optimizer=None)


def art_clip_0_255(model):
    return _art(model, clip_values=(0.0, 255.0))


def art_normalises_twice(model):
    return _art(model, preprocessing=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))


def art_nll_loss_on_logits(model):
    return _art(model, loss=torch.nn.NLLLoss())


def art_optimizer_of_a_copy(model):
    return _art(model, optimizer=torch.optim.SGD(copy.deepcopy(model).parameters(), lr=0.01))


# ---------------------------------------------------------------- notebook 06: sanitization
def bit_depth_ref(x, bits):
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


def _detected(z, extra):
    return torch.cat([z, extra[:, None]], 1)


def detector_logits_ref(z, d, tau, kappa):
    return _detected(z, z.amax(1) + kappa * (d - tau) / tau)


def detector_logits_sign_error(z, d, tau, kappa):
    return _detected(z, z.amax(1) + kappa * (tau - d) / tau)


def detector_logits_hinge(z, d, tau, kappa):  # C&W's loss-style max(0, D - tau): no pull below the threshold
    return _detected(z, z.amax(1) + kappa * (d - tau).clamp_min(0) / tau)


def detector_logits_kappa_on_score(z, d, tau, kappa):
    return _detected(z, z.amax(1) + (kappa * d - tau) / tau)


def detector_logits_not_normalised(z, d, tau, kappa):
    return _detected(z, z.amax(1) + kappa * (d - tau))


def detector_logits_penalty_only(z, d, tau, kappa):
    return _detected(z, kappa * (d - tau) / tau)


def detector_logits_detached_max(z, d, tau, kappa):
    return _detected(z, z.amax(1).detach() + kappa * (d - tau) / tau)


def threshold_ref(scores, fpr):
    k = int(np.floor(fpr * len(scores)))
    return float(torch.sort(torch.as_tensor(scores), descending=True).values[k])


def threshold_off_by_one(scores, fpr):
    k = int(np.floor(fpr * len(scores)))
    return float(torch.sort(torch.as_tensor(scores), descending=True).values[k + 1])


def threshold_wrong_tail(scores, fpr):
    k = int(np.floor(fpr * len(scores)))
    return float(torch.sort(torch.as_tensor(scores)).values[k])


def threshold_ignores_fpr(scores, fpr):
    return threshold_ref(scores, 0.05)


def threshold_interpolated_quantile(scores, fpr):
    return float(torch.quantile(torch.as_tensor(scores), 1 - fpr))


# ---------------------------------------------------------------- notebooks 07, 08, p3: certify
def radius_ref(n_a, n, alpha, sigma):
    pa_lower = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
    return sigma * norm.ppf(pa_lower) if pa_lower > 0.5 else 0.0


def radius_two_sided(n_a, n, alpha, sigma):
    return radius_ref(n_a, n, alpha / 2, sigma)


def radius_point_estimate(n_a, n, alpha, sigma):
    p = min(n_a / n, 1 - 1e-12)
    return sigma * norm.ppf(p) if p > 0.5 else 0.0


def radius_no_sigma(n_a, n, alpha, sigma):
    return radius_ref(n_a, n, alpha, 1.0)


def radius_normal_approximation(n_a, n, alpha, sigma):
    p = n_a / n
    lower = p - norm.ppf(1 - alpha) * math.sqrt(p * (1 - p) / n)
    return sigma * norm.ppf(lower) if lower > 0.5 else 0.0


def certify_ref(counts0, counts, alpha, sigma):
    c_a = int(np.argmax(counts0))
    pa_lower = certify.lower_confidence_bound(int(counts[c_a]), int(np.sum(counts)), alpha)
    return (-1, 0.0) if pa_lower < 0.5 else (c_a, sigma * norm.ppf(pa_lower))


def certify_selects_from_estimation(counts0, counts, alpha, sigma):
    return certify_ref(counts, counts, alpha, sigma)


def certify_two_sided(counts0, counts, alpha, sigma):
    return certify_ref(counts0, counts, alpha / 2, sigma)


def certify_never_abstains(counts0, counts, alpha, sigma):
    c_a = int(np.argmax(counts0))
    return c_a, certify.certified_radius(certify.lower_confidence_bound(int(counts[c_a]), int(np.sum(counts)), alpha), sigma)


def _smooth_counts(model, x, sigma, num, generator, batch):
    """Class counts of model(x + sigma * noise) with the noise drawn as Smooth.sample_counts draws it."""
    counts = torch.zeros(3, dtype=torch.long)
    for start in range(0, num, batch):
        noise = torch.randn((min(batch, num - start), *x.shape), generator=generator)
        counts += torch.bincount(model(x + sigma * noise).argmax(1), minlength=3)
    return counts.numpy()


def smooth_certify_ref(model, x, sigma, n0, n, alpha, generator, batch, select="selection", bound_alpha=None,
                       abstain=True, noise_scale=None):
    with torch.no_grad():
        c0 = _smooth_counts(model, x, sigma if noise_scale is None else noise_scale, n0, generator, batch)
        c = _smooth_counts(model, x, sigma if noise_scale is None else noise_scale, n, generator, batch)
    c_a = int(np.argmax(c0 if select == "selection" else c))
    pa_lower = certify.lower_confidence_bound(int(c[c_a]), n, alpha if bound_alpha is None else bound_alpha(alpha))
    if pa_lower < 0.5 and abstain:
        return -1, 0.0
    return c_a, certify.certified_radius(pa_lower, sigma)


def smooth_certify_same_samples(model, x, sigma, n0, n, alpha, generator, batch):
    with torch.no_grad():
        c = _smooth_counts(model, x, sigma, n, generator, batch)  # one sample to select and to estimate
    return certify_ref(c, c, alpha, sigma)


def smooth_predict_ref(model, x, sigma, n, alpha, generator, batch, test="two-sided", abstain=True, noise_scale=None):
    with torch.no_grad():
        c = _smooth_counts(model, x, sigma if noise_scale is None else noise_scale, n, generator, batch)
    top = np.argsort(c, kind="stable")[::-1][:2]
    n1, n2 = int(c[top[0]]), int(c[top[1]])
    p = {"two-sided": lambda: binomtest(n1, n1 + n2, 0.5).pvalue, "one-sided": lambda: binomtest(n1, n1 + n2, 0.5, alternative="greater").pvalue,
         "against n": lambda: binomtest(n1, n, 0.5).pvalue}[test]()
    return -1 if p > alpha and abstain else int(top[0])


def ibp_margin_ref(model, x, y, eps, radius_weight=torch.abs, elide=True, skip_normalize=False, clip=True):
    lower, upper = ((x - eps).clamp(0, 1), (x + eps).clamp(0, 1)) if clip else (x - eps, x + eps)
    layers = list(model)
    for layer in layers[:-1] if elide else layers:
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
            mu, r, w = layer((upper + lower) / 2), (upper - lower) / 2, radius_weight(layer.weight)
            r = F.linear(r, w) if isinstance(layer, torch.nn.Linear) else F.conv2d(r, w, None, layer.stride, layer.padding)
            lower, upper = mu - r, mu + r
        elif not (skip_normalize and isinstance(layer, models.Normalize)):
            lower, upper = layer(lower), layer(upper)
    if not elide:
        return (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 0.0)  # l_y - u_j
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    w = layers[-1].weight[y][:, None, :] - layers[-1].weight[None]  # (B, K, H): w_y - w_j
    b = layers[-1].bias[y][:, None] - layers[-1].bias[None]
    return (w @ mu[:, :, None]).squeeze(-1) + b - (w.abs() @ r[:, :, None]).squeeze(-1)


def interval_linear_ref(W, b, lower, upper):
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    return mu @ W.T + b - r @ W.abs().T, mu @ W.T + b + r @ W.abs().T


def interval_linear_signed_radius(W, b, lower, upper):
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    return mu @ W.T + b - r @ W.T, mu @ W.T + b + r @ W.T


def interval_linear_endpoints(W, b, lower, upper):
    return lower @ W.T + b, upper @ W.T + b


def interval_linear_bias_on_radius(W, b, lower, upper):
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    return mu @ W.T - (r @ W.abs().T + b), mu @ W.T + r @ W.abs().T + b


def verified_ref(lower, upper, y):
    margin = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], 1.0)
    return (margin > 0).all(1)


def verified_includes_true_class(lower, upper, y):
    return (lower.gather(1, y[:, None]) - upper > 0).all(1)


def verified_wrong_bounds(lower, upper, y):
    margin = (upper.gather(1, y[:, None]) - lower).scatter(1, y[:, None], 1.0)  # u_y > l_j: optimistic
    return (margin > 0).all(1)


def verified_any(lower, upper, y):
    margin = (lower.gather(1, y[:, None]) - upper).scatter(1, y[:, None], -1.0)
    return (margin > 0).any(1)


def crown_ref(W1, b1, W2, b2, xl, xu, l, u, c, swap=False, drop_t=False, alpha0=False, box="signs", drop_b1=False):
    alpha, s, t = certify.relu_relaxation(l, u)
    if alpha0:
        alpha = torch.where((l < 0) & (u > 0), torch.zeros_like(alpha), alpha)  # h >= 0 only
    a = W2.T @ c
    lo_line, up_line = (s, alpha) if swap else (alpha, s)
    lam = a.clamp(min=0) * lo_line + a.clamp(max=0) * up_line
    c0 = (0 if drop_t else ((a.clamp(min=0) if swap else a.clamp(max=0)) * t).sum()) + c @ b2 + (0 if drop_b1 else lam @ b1)
    A = lam @ W1
    return (A @ xl if box == "lower" else A.clamp(min=0) @ xl + A.clamp(max=0) @ xu) + c0


def crown_swapped_lines(*args):  # positive coefficients take the upper line
    return crown_ref(*args, swap=True)


def crown_no_intercept(*args):  # the upper line's t forgotten
    return crown_ref(*args, drop_t=True)


def crown_lower_line_zero(*args):  # h >= 0 for every unstable ReLU instead of the adaptive alpha
    return crown_ref(*args, alpha0=True)


def crown_box_at_lower_corner(*args):  # A x evaluated at xl instead of minimised over the box
    return crown_ref(*args, box="lower")


def crown_no_first_bias(*args):  # lam . b1 forgotten
    return crown_ref(*args, drop_b1=True)


def alpha_crown_ref(W1, b1, W2, b2, xl, xu, l, u, c, steps=100, lr=0.1, sign=1.0, clip=True, upper=False, keep=True):
    alpha0, s, t = certify.relu_relaxation(l, u)
    unstable = (l < 0) & (u > 0)
    a = W2.T @ c

    def bound(v):  # upper=True: the learner optimises the upper line's slope (with t = -s l) instead of alpha
        al, sl, tl = (alpha0, v, -v * l.clamp(max=0)) if upper else (v, s, t)
        lam = a.clamp(min=0) * al + a.clamp(max=0) * sl
        A = lam @ W1
        return A.clamp(min=0) @ xl + A.clamp(max=0) @ xu + (a.clamp(max=0) * tl).sum() + c @ b2 + lam @ b1

    v0 = s if upper else alpha0
    v = v0.clone().requires_grad_(True)
    best = bound(v).detach()
    for _ in range(steps):
        g, = torch.autograd.grad(bound(v), v)
        with torch.no_grad():
            step = v + sign * lr * g
            v = torch.where(unstable, step.clamp(0, 1) if clip else step, v0)
        v.requires_grad_(True)
        best = torch.maximum(best, bound(v).detach()) if keep else bound(v).detach()
    return best


def alpha_crown_descent(*args):  # the step goes down the gradient
    return alpha_crown_ref(*args, sign=-1.0)


def alpha_crown_no_projection(*args):  # slopes leave [0, 1]
    return alpha_crown_ref(*args, clip=False)


def alpha_crown_upper_line(*args):  # the upper line's slope optimised instead of the lower one
    return alpha_crown_ref(*args, upper=True)


def alpha_crown_descent_last(*args):  # descent, and the last iterate returned instead of the best
    return alpha_crown_ref(*args, sign=-1.0, keep=False)


def radii_ref(scales, tolerance):
    return np.array([tolerance.get(f, 0.0) / scales[f] for f in fraud.FEATURES], dtype=np.float32)


def radii_multiplies_scale(scales, tolerance):
    return np.array([tolerance.get(f, 0.0) * scales[f] for f in fraud.FEATURES], dtype=np.float32)


def radii_tolerance_order(scales, tolerance):
    return np.array([d / scales[f] for f, d in tolerance.items()], dtype=np.float32)


def radii_one_for_missing(scales, tolerance):
    return np.array([tolerance.get(f, 1.0) / scales[f] for f in fraud.FEATURES], dtype=np.float32)



# ---------------------------------------------------------------- notebook 05: early stopping on robust accuracy
def early_stop_ref(model, train_one_epoch, evaluate, epochs, patience=None, key=1, tie=False, restore="copy",
                   zero_based=False, patience_slack=0):
    best, best_epoch, best_state, history = -1.0, None, None, []
    for epoch in range(1, epochs + 1):
        train_one_epoch(model)
        accs = evaluate(model)
        history.append(accs[1])
        if accs[key] > best or (tie and accs[key] == best):
            best, best_epoch = accs[key], epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()} if restore == "copy" else model.state_dict()
        if patience is not None and epoch - best_epoch >= patience + patience_slack:
            break
    if restore != "none":
        model.load_state_dict(best_state)
    return best_epoch - 1 if zero_based else best_epoch, history


def early_stop_evaluate_first(model, train_one_epoch, evaluate, epochs, patience=None):
    history = []
    for epoch in range(1, epochs + 1):
        history.append(evaluate(model)[1])
        train_one_epoch(model)
    return int(np.argmax(history)) + 1, history



def gate_ref(pred, certified, own_pred, y, min_accuracy, min_recall, cmp=lambda v, t: v >= t, recall_over=None,
             clean_rule=True, need_correct=True, nan_passes=False):
    fr = y == 1 if recall_over is None else torch.ones_like(y, dtype=torch.bool)  # "all": recall = accuracy
    ok = certified & (pred == y) if need_correct else certified

    def rate(hits, over):
        return float(hits[over].double().mean()) if over.any() else float("nan")

    values = {"certified accuracy": (rate(ok, torch.ones_like(fr)), min_accuracy),
              "certified recall": (rate(ok, fr), min_recall)}
    if clean_rule:
        values.update({"clean accuracy": (rate(own_pred == y, torch.ones_like(fr)), min_accuracy),
                       "clean recall": (rate(own_pred == y if recall_over else own_pred == 1, fr), min_recall)})
    reasons = [f"{m} {v:.4f} < {t}" for m, (v, t) in values.items()
               if not (cmp(v, t) or (nan_passes and math.isnan(v)))]
    return not reasons, reasons



# ---------------------------------------------------------------- notebook 01: threat model
def _notebook_solution(notebook: str, grade_id: str):
    """The reference solution of an exercise, executed after the notebook's first code cell."""
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    cell = next(c for c in code if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    namespace = {"__name__": "__mutants__"}
    for src in (code[0].source, cell.source):
        exec(compile(src, notebook, "exec"), namespace)
    return namespace[grade_id]


def threat_model_ref():
    return _notebook_solution("01_threat_modeling.ipynb", "build_mobile_api_threat_model")()


def _without(attack=None, stride=None):
    tm = threat_model_ref()
    keep = [t for t in tm.threats if t.attack != attack and t.stride != stride]
    return dataclasses.replace(tm, threats=keep)


def threat_model_no_extraction():
    return _without(attack="extraction")


def threat_model_no_repudiation():
    return _without(stride="Repudiation")


def threat_model_untested_threat():
    tm = threat_model_ref()
    return dataclasses.replace(tm, threats=[dataclasses.replace(tm.threats[0], test="TODO")] + tm.threats[1:])


def threat_model_one_per_category_too_few():
    tm = threat_model_ref()
    return dataclasses.replace(tm, threats=tm.threats[:5])


# ---------------------------------------------------------------- project p2: text
def swap_typos_includes_word(word):
    return [word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)]


def swap_typos_skips_last_pair(word):
    swaps = [word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 2)]
    return list(dict.fromkeys(w for w in swaps if w != word))


def swap_typos_sorted(word):
    return sorted(text_attacks.swap_typos(word))


def embedding_box_ref(weight, sub_ids, eps):
    e = weight[sub_ids]
    e = e[:, :, :1] + eps * (e - e[:, :, :1])
    return e.min(2).values, e.max(2).values


def embedding_box_no_eps(weight, sub_ids, eps):
    e = weight[sub_ids]
    return e.min(2).values, e.max(2).values


def embedding_box_without_original(weight, sub_ids, eps):
    e = weight[sub_ids]
    e = e[:, :, :1] + eps * (e[:, :, 1:] - e[:, :, :1])
    return e.min(2).values, e.max(2).values


def embedding_box_scales_embeddings(weight, sub_ids, eps):
    e = eps * weight[sub_ids]
    return e.min(2).values, e.max(2).values


def similarity_ref(scores, fpr):
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().sort().values
    return float(s[math.floor(fpr * len(s) + 1e-9)])


def similarity_upper_tail(scores, fpr):
    return sanitization.threshold_for_fpr(scores, fpr)


def similarity_ignores_fpr(scores, fpr):
    return similarity_ref(scores, 0.05)


def similarity_off_by_one(scores, fpr):
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().sort().values
    return float(s[math.floor(fpr * len(s)) + 1])


def similarity_interpolated_quantile(scores, fpr):
    return float(torch.quantile(torch.as_tensor(scores), fpr))


# ---------------------------------------------------------------- project p4: serving
def knn_euclidean(history, s, k):
    return float((history - s).norm(dim=1).topk(k, largest=False).values.mean())


def knn_farthest(history, s, k):
    return float((history - s).pow(2).mean(1).sqrt().topk(k).values.mean())


def knn_ignores_k(history, s, k):
    return float((history - s).pow(2).mean(1).sqrt().min())


def knn_all_rows(history, s, k):
    return float((history - s).pow(2).mean(1).sqrt().mean())


# ---------------------------------------------------------------- notebook 09: interview answers
def cost_sign_error(clean_std, clean_rob, robust_std, robust_rob):
    return None if robust_rob <= robust_std else (clean_rob - clean_std) / (robust_rob - robust_std)


def cost_inverted(clean_std, clean_rob, robust_std, robust_rob):
    return None if robust_rob <= robust_std else (robust_rob - robust_std) / max(clean_std - clean_rob, 1e-12)


def cost_negative_when_clean_rose(clean_std, clean_rob, robust_std, robust_rob):
    return None if robust_rob <= robust_std else (clean_std - clean_rob) / (robust_rob - robust_std)


def cost_no_gain_guard(clean_std, clean_rob, robust_std, robust_rob):
    return max(clean_std - clean_rob, 0.0) / (robust_rob - robust_std)


def cost_guard_only_equal(clean_std, clean_rob, robust_std, robust_rob):
    return None if robust_rob == robust_std else max(clean_std - clean_rob, 0.0) / (robust_rob - robust_std)


def pay_sign_error(std, rob, k):
    drops = [(r - s, c) for c, (s, r) in enumerate(zip(std, rob))]
    return [c for d, c in sorted(drops, key=lambda t: (-t[0], t[1]))][:k]


def pay_ties_by_largest_index(std, rob, k):
    drops = [(s - r, c) for c, (s, r) in enumerate(zip(std, rob))]
    return [c for d, c in sorted(drops, reverse=True) if d > 0][:k]


def pay_includes_not_dropped(std, rob, k):
    return sorted(range(len(std)), key=lambda c: rob[c] - std[c])[:k]


def pay_ignores_k(std, rob, k):
    drops = [(s - r, c) for c, (s, r) in enumerate(zip(std, rob))]
    return [c for d, c in sorted(drops, key=lambda t: (-t[0], t[1])) if d > 0]


def order_point_estimates(results):
    items = list(results.items())
    return [(a, b) for i, (a, ra) in enumerate(items) for b, rb in items[i + 1:] if ra.accuracy > rb.accuracy]


def order_reversed(results):
    items = list(results.items())
    return [(a, b) for i, (a, ra) in enumerate(items) for b, rb in items[i + 1:] if rb.ci[0] > ra.ci[1]]


def order_neighbours_only(results):
    items = list(results.items())
    return [(a, b) for (a, ra), (b, rb) in zip(items, items[1:]) if ra.ci[0] > rb.ci[1]]


def order_lower_ends(results):
    items = list(results.items())
    return [(a, b) for i, (a, ra) in enumerate(items) for b, rb in items[i + 1:] if ra.ci[0] > rb.ci[0]]


def pairs_with_diagonal(y, pred_clean, num_classes):  # the true class kept as a target
    return (pred_clean == y)[:, None].expand(-1, num_classes)


def pairs_with_clean_mistakes(y, pred_clean, num_classes):  # misclassified images kept
    return torch.arange(num_classes)[None, :] != y[:, None]


def pairs_exclude_predicted(y, pred_clean, num_classes):  # the predicted class dropped instead of the true one
    return torch.arange(num_classes)[None, :] != pred_clean[:, None]


# ---------------------------------------------------------------- notebook 06b: poisoning
def spectral_ref(r):
    m = r - r.mean(0)
    v = torch.linalg.svd(m, full_matrices=False).Vh[0]
    return (m @ v) ** 2


def spectral_not_centred(r):  # ART's and the authors' score: the projection of r, not of r - mean
    v = torch.linalg.svd(r - r.mean(0), full_matrices=False).Vh[0]
    return (r @ v) ** 2


def spectral_svd_not_centred(r):  # the direction itself from the uncentred matrix (the mean dominates it)
    v = torch.linalg.svd(r, full_matrices=False).Vh[0]
    return ((r - r.mean(0)) @ v) ** 2


def spectral_wrong_side(r):  # a column of Vh (the first coordinate of every right singular vector)
    m = r - r.mean(0)
    v = torch.linalg.svd(m, full_matrices=False).Vh[:, 0]
    return (m @ v) ** 2


def spectral_smallest_vector(r):  # the last row of Vh: the direction of least variance
    m = r - r.mean(0)
    v = torch.linalg.svd(m, full_matrices=False).Vh[-1]
    return (m @ v) ** 2


def remove_top_ref(scores, labels, expected_poison, suspect):
    rows = torch.nonzero(labels == suspect).flatten()
    out = torch.zeros(len(labels), dtype=torch.bool)
    out[rows[scores[rows].argsort(descending=True)[:round(1.5 * expected_poison)]]] = True
    return out


def remove_top_every_class(scores, labels, expected_poison, suspect):
    out = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        out |= remove_top_ref(scores, labels, expected_poison, int(c))
    return out


def remove_top_whole_set(scores, labels, expected_poison, suspect):  # ignores the class
    out = torch.zeros(len(labels), dtype=torch.bool)
    out[scores.argsort(descending=True)[:round(1.5 * expected_poison)]] = True
    return out


def remove_top_no_multiplier(scores, labels, expected_poison, suspect):
    return remove_top_ref(scores, labels, expected_poison / 1.5, suspect)


def remove_top_lowest(scores, labels, expected_poison, suspect):
    return remove_top_ref(-scores, labels, expected_poison, suspect)


def dpa_ref(votes):
    pred = votes.argmax(1)
    n_c = votes.gather(1, pred[:, None])[:, 0]
    rivals = votes + (torch.arange(votes.shape[1])[None] < pred[:, None]).long()
    rivals.scatter_(1, pred[:, None], -1)
    return pred, torch.div(n_c - rivals.amax(1), 2, rounding_mode="floor").clamp_min(0)


def dpa_two_sided_margin(votes):  # charges the tie term to every rival, whatever its index
    pred = votes.argmax(1)
    n_c = votes.gather(1, pred[:, None])[:, 0]
    rivals = (votes + 1).scatter(1, pred[:, None], -1)
    return pred, torch.div(n_c - rivals.amax(1), 2, rounding_mode="floor").clamp_min(0)


def dpa_ties_to_larger(votes):  # argmax from the end; the tie term for rivals with a larger index
    k = votes.shape[1]
    pred = k - 1 - votes.flip(1).argmax(1)
    n_c = votes.gather(1, pred[:, None])[:, 0]
    rivals = votes + (torch.arange(k)[None] > pred[:, None]).long()
    rivals.scatter_(1, pred[:, None], -1)
    return pred, torch.div(n_c - rivals.amax(1), 2, rounding_mode="floor").clamp_min(0)


def dpa_not_halved(votes):  # one poisoned image moves one vote but closes the gap by 2
    pred, _ = dpa_ref(votes)
    n_c = votes.gather(1, pred[:, None])[:, 0]
    rivals = votes + (torch.arange(votes.shape[1])[None] < pred[:, None]).long()
    rivals.scatter_(1, pred[:, None], -1)
    return pred, (n_c - rivals.amax(1)).clamp_min(0)


def dpa_no_tie_term(votes):
    pred = votes.argmax(1)
    n_c = votes.gather(1, pred[:, None])[:, 0]
    rivals = votes.scatter(1, pred[:, None], -1)
    return pred, torch.div(n_c - rivals.amax(1), 2, rounding_mode="floor").clamp_min(0)


# ---------------------------------------------------------------- the table
# check -> (reference, {mutant id: (wrong answer, regex its failure message must match)})
C = checks
TABLE = {
    C.foundations.check_perturbation_norms: (norms_ref, {
        "l2_squared": (norms_l2_squared, "perturbation_norms: relative error"),
        "linf_without_abs": (norms_linf_without_abs, "perturbation_norms: relative error"),
        "per_channel": (norms_per_channel, "shape mismatch"),
        "whole_batch": (norms_whole_batch, "shape mismatch"),
    }),
    C.foundations.check_worst_case_linear: (worst_case_linear_ref, {
        "gradient_not_sign": (lambda w, eps: eps * w, "worst_case_linear: relative error"),
        "l2_direction": (lambda w, eps: eps * w / w.norm(), "worst_case_linear: relative error"),
        "sign_error": (lambda w, eps: -eps * torch.sign(w), "worst_case_linear: relative error"),
    }),
    C.foundations.check_attack_success: (C.foundations.reference_attack_success, {
        "counts_clean_mistakes": (success_counts_clean_mistakes, "attack_success: relative error"),
        "counts_flips": (success_counts_flips, "attack_success: relative error"),
        "wrong_denominator": (success_wrong_denominator, "attack_success: relative error"),
    }),
    C.attacks.check_targeted_pairs: (C.attacks.reference_targeted_pairs, {
        "diagonal_kept": (pairs_with_diagonal, "targeted_pairs: relative error"),
        "clean_mistakes_kept": (pairs_with_clean_mistakes, "targeted_pairs: relative error"),
        "predicted_class_dropped": (pairs_exclude_predicted, "targeted_pairs: relative error"),
    }),
    C.attacks.check_fgsm: (lambda m, x, y, eps: attacks.fgsm(m, x, y, eps), {
        "no_clip": (fgsm_no_clip, "fgsm: relative error"),
        "descent": (fgsm_descent, "fgsm: relative error"),
        "raw_gradient": (fgsm_raw_gradient, "fgsm: relative error"),
        "predicted_label": (fgsm_predicted_label, "fgsm: relative error"),
    }),
    C.attacks.check_fgm_l2: (lambda m, x, y, eps: attacks.fgsm(m, x, y, eps, norm="l2"), {
        "sign_step": (fgm_sign_step, "fgm_l2: relative error"),
        "whole_batch_norm": (fgm_batch_norm, "fgm_l2: relative error"),
        "per_channel_norm": (fgm_per_channel_norm, "fgm_l2: relative error"),
        "no_clip": (fgm_no_clip, "fgm_l2: relative error"),
    }),
    C.attacks.check_pgd: (pgd_ref, {
        "project_only_at_end": (pgd_project_only_at_end, "pgd: relative error"),
        "no_box_clip": (pgd_no_box_clip, "pgd: relative error"),
        "no_eps_projection": (pgd_no_eps_projection, "pgd: relative error"),
        "gradient_once": (pgd_gradient_once, "pgd: relative error"),
        "one_step_short": (pgd_one_step_short, "pgd: relative error"),
    }),
    C.attacks.check_targeted_fgsm: (targeted_ref, {
        "ascent_on_target": (targeted_ascent, "targeted_fgsm: relative error"),
        "no_clip": (targeted_no_clip, "targeted_fgsm: relative error"),
        "ignores_target": (targeted_ignores_target, "targeted_fgsm: relative error"),
    }),
    C.training.check_adversarial_step: (step_ref, {
        "clean_batch": (step_clean_batch, "adversarial_step: relative error"),
        "no_zero_grad": (step_no_zero_grad, "adversarial_step: relative error"),
        "update_in_eval_mode": (step_update_in_eval_mode, "adversarial_step: relative error"),
        "gradient_ascent": (step_gradient_ascent, "adversarial_step: relative error"),
    }),
    C.training.check_mixed_adversarial_step: (mixed_step_ref, {
        "no_mixing": (mixed_step_no_mixing, r"rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]; expected the first"),
        "adversarial_last": (mixed_step_adversarial_last, r"ratio=0.5.*rows \[5, 6, 7, 8, 9\]; expected the first"),
        "floor_not_round": (mixed_step_floor, r"ratio=0.66.*expected the first round\(ratio \* B\) = 7 rows"),
        "adversarial_half_only": (mixed_step_adversarial_half_only, "the loss must be on the whole mixed batch"),
        "no_zero_grad": (mixed_step_no_zero_grad, r"after two steps differ .*optimizer.zero_grad\(\)"),
        "update_in_eval_mode": (mixed_step_update_in_eval_mode, r"no forward pass in train mode .*call model.train\(\)"),
        "crafted_in_train_mode": (mixed_step_crafted_in_train_mode, "forward passes in train mode in one step"),
    }),
    C.training.check_safe_alpha: (safe_alpha_ref, {
        "ignores_drop": (safe_alpha_ignores_drop, r"drop=0.08: got .* \(right with drop=0.2: does your rule use drop\?\)"),
        "first_epoch_baseline": (safe_alpha_first_epoch_baseline, "safe_alpha: curves .* expected"),
        "overall_max_baseline": (safe_alpha_overall_max_baseline, "safe_alpha: curves .* expected"),
        "before_first_collapse": (safe_alpha_before_first_collapse, "safe_alpha: curves .* expected"),
        "final_epoch_only": (safe_alpha_final_epoch_only, "safe_alpha: curves .* expected"),
    }),
    C.training.check_tradeoff: (tradeoff_ref, {
        "inverted": (lambda cs, rs, ca, ra: (ra - rs) / (cs - ca), "tradeoff: relative error"),
        "sign_error": (lambda cs, rs, ca, ra: (ca - cs) / (ra - rs), "tradeoff: relative error"),
        "wrong_pairing": (lambda cs, rs, ca, ra: (cs - rs) / (ca - ra), "tradeoff: relative error"),
    }),
    C.training.check_per_class_accuracy: (per_class_ref, {
        "zero_for_absent": (per_class_zero_for_absent, "per_class_accuracy: relative error"),
        "precision_not_recall": (per_class_precision, "per_class_accuracy: relative error"),
        "last_class_skipped": (per_class_last_class_skipped, "per_class_accuracy: relative error"),
        "overall_accuracy": (per_class_overall_accuracy, "per_class_accuracy: relative error"),
    }),
    C.training.check_early_stopping: (early_stop_ref, {
        "keeps_last_epoch": (functools.partial(early_stop_ref, restore="none"), "early_stopping: .*holds epoch"),
        "state_dict_not_copied": (functools.partial(early_stop_ref, restore="reference"), "keep a copy of the state_dict"),
        "best_by_clean_accuracy": (functools.partial(early_stop_ref, key=0), "the best clean accuracy: keep the best robust"),
        "ties_to_later_epoch": (functools.partial(early_stop_ref, tie=True), "ties: keep the first best"),
        "zero_based_epoch": (functools.partial(early_stop_ref, zero_based=True), "epochs are 1-based"),
        "patience_one_late": (functools.partial(early_stop_ref, patience_slack=1), "patience=2: history .*stop once 2 epochs"),
        "evaluates_before_training": (early_stop_evaluate_first, "evaluate called on a model trained for 0 epochs"),
    }),
    C.training.check_best_epoch: (best_epoch_ref, {
        "zero_based": (lambda v: int(np.argmax(v)), "best_epoch: relative error"),
        "last_of_tied_best": (best_epoch_last_best, "best_epoch: relative error"),
        "last_epoch": (lambda v: len(v), "best_epoch: relative error"),
    }),
    C.training.check_mix_batch: (mix_ref, {
        "floor_not_round": (mix_floor, "mix_batch ratio=0.75: relative error"),
        "adversarial_last": (mix_adversarial_last, "mix_batch ratio=0.5: relative error"),
        "ratio_as_clean_fraction": (mix_ratio_as_clean_fraction, "mix_batch ratio=0.5: relative error"),
    }),
    C.training.check_art_classifier: (art_ref, {
        "no_optimizer": (art_no_optimizer, "no optimizer: ART's fit and the trainers of Task 4 need one"),
        "clip_0_255": (art_clip_0_255, "art_classifier clip_values"),
        "normalises_twice": (art_normalises_twice, "art_classifier predictions"),
        "nll_loss_on_logits": (art_nll_loss_on_logits, "art_classifier loss gradient"),
        "optimizer_of_a_copy": (art_optimizer_of_a_copy, "fit did not change the model's weights"),
    }),
    C.sanitization.check_bit_depth: (bit_depth_ref, {
        "levels_2_pow_bits": (lambda x, b: torch.round(x * 2 ** b) / 2 ** b, "bit_depth bits=1: relative error"),
        "floor": (lambda x, b: torch.floor(x * (2 ** b - 1)) / (2 ** b - 1), "bit_depth bits=1: relative error"),
        "no_rescale": (lambda x, b: torch.round(x * (2 ** b - 1)), "bit_depth bits=3: relative error"),
    }),
    C.sanitization.check_threshold: (threshold_ref, {
        "off_by_one": (threshold_off_by_one, "threshold fpr=0.05: relative error"),
        "wrong_tail": (threshold_wrong_tail, "threshold fpr=0.05: relative error"),
        "ignores_fpr": (threshold_ignores_fpr, "threshold fpr=0.2: relative error"),
        "interpolated_quantile": (threshold_interpolated_quantile, "threshold fpr=0.05: relative error"),
    }),
    C.sanitization.check_bpda: (lambda x, t: x + (t(x) - x).detach(), {
        "true_zero_gradient": (lambda x, t: t(x), "bpda: relative error"),
        "identity_forward": (lambda x, t: x, "bpda: relative error"),
        "all_detached": (lambda x, t: (t(x) - x).detach() + x.detach(), "bpda: relative error"),
    }),
    C.sanitization.check_detector_logits: (detector_logits_ref, {
        "sign_error": (detector_logits_sign_error, "must win exactly where D > tau.*sign of D - tau"),
        "hinge": (detector_logits_hinge, "below the threshold .* not max Z"),
        "kappa_on_score": (detector_logits_kappa_on_score, "at D = tau the detected logit must equal max_j Z_j"),
        "not_normalised": (detector_logits_not_normalised, "must grow by kappa / tau .* divided by tau"),
        "penalty_only": (detector_logits_penalty_only, "at D = tau the detected logit must equal max_j Z_j"),
        "detached_max": (detector_logits_detached_max, "gradient off .*no detach"),
    }),
    C.certify.check_radius: (radius_ref, {
        "two_sided_bound": (radius_two_sided, "certified_radius: got"),
        "point_estimate": (radius_point_estimate, "certified_radius: got"),
        "no_sigma": (radius_no_sigma, "certified_radius: got"),
        "normal_approximation": (radius_normal_approximation, "certified_radius: got"),
    }),
    C.certify.check_certify_counts: (certify_ref, {
        "c_a_from_estimation_counts": (certify_selects_from_estimation, "chosen from the estimation counts"),
        "two_sided_bound": (certify_two_sided, "certify_counts radius"),
        "never_abstains": (certify_never_abstains, r"certify_counts: counts0=.* label \d != -1"),
    }),
    C.certify.check_certify: (smooth_certify_ref, {
        "c_a_from_estimation_counts": (functools.partial(smooth_certify_ref, select="estimation"), "chosen from the estimation counts"),
        "two_sided_bound": (functools.partial(smooth_certify_ref, bound_alpha=lambda a: a / 2), "two-sided interval"),
        "never_abstains": (functools.partial(smooth_certify_ref, abstain=False), "CERTIFY must abstain"),
        "noise_not_scaled": (functools.partial(smooth_certify_ref, noise_scale=1.0), "not scaled by sigma"),
        "same_samples": (smooth_certify_same_samples, "used the same samples"),
    }),
    C.certify.check_predict: (smooth_predict_ref, {
        "one_sided_test": (functools.partial(smooth_predict_ref, test="one-sided"), r"p = 0.097 > alpha = 0.07: PREDICT must abstain"),
        "top_against_n": (functools.partial(smooth_predict_ref, test="against n"), "test top-1 against top-2, not against n"),
        "never_abstains": (functools.partial(smooth_predict_ref, abstain=False), "PREDICT must abstain"),
        "noise_not_scaled": (functools.partial(smooth_predict_ref, noise_scale=1.0), "the model must see x \\+ sigma \\* noise"),
    }),
    C.certify.check_ibp_margin: (ibp_margin_ref, {
        "signed_weight_radius": (functools.partial(ibp_margin_ref, radius_weight=lambda w: w), "above the package's"),
        "no_elision": (functools.partial(ibp_margin_ref, elide=False), "without elision"),
        "normalize_ignored": (functools.partial(ibp_margin_ref, skip_normalize=True), "Normalize layer was skipped"),
        "box_not_clipped": (functools.partial(ibp_margin_ref, clip=False), "clipped to \\[0, 1\\]"),
    }),
    C.certify.check_interval_linear: (interval_linear_ref, {
        "signed_weight_radius": (interval_linear_signed_radius, "interval_linear: relative error"),
        "endpoint_propagation": (interval_linear_endpoints, "interval_linear: relative error"),
        "bias_on_radius": (interval_linear_bias_on_radius, "interval_linear: relative error"),
    }),
    C.certify.check_is_verified: (verified_ref, {
        "includes_true_class": (verified_includes_true_class, "is_verified: relative error"),
        "upper_y_against_lower_j": (verified_wrong_bounds, "is_verified: relative error"),
        "any_not_all": (verified_any, "is_verified: relative error"),
    }),
    C.certify.check_crown_margin: (crown_ref, {
        "swapped_lines": (crown_swapped_lines, "crown_margin"),
        "no_intercept": (crown_no_intercept, "crown_margin"),
        "lower_line_zero": (crown_lower_line_zero, "crown_margin"),
        "box_at_lower_corner": (crown_box_at_lower_corner, "crown_margin"),
        "no_first_bias": (crown_no_first_bias, "crown_margin"),
    }),
    C.certify.check_alpha_crown_margin: (alpha_crown_ref, {
        "descent": (alpha_crown_descent, "alpha_crown_margin: case 0: .* closes 0% of the gap"),
        "no_projection": (alpha_crown_no_projection, "alpha_crown_margin: .*above the LP.*keep alpha in \\[0, 1\\]"),
        "upper_line": (alpha_crown_upper_line, "alpha_crown_margin: .*above the LP.*unsound"),
        "descent_last_iterate": (alpha_crown_descent_last, "alpha_crown_margin: case 0: .*(below CROWN|closes 0% of the gap)"),
    }),
    C.certify.check_gate_decision: (gate_ref, {
        "strict_threshold": (functools.partial(gate_ref, cmp=lambda v, t: v > t), "gate_decision: exactly at both"),
        "recall_over_all": (functools.partial(gate_ref, recall_over="all"),
                            r"gate_decision: one certified transaction short.*expected .*'certified recall'"),
        "ignores_clean_rule": (functools.partial(gate_ref, clean_rule=False),
                               r"gate_decision: the accuracy trap.*naming \['certified recall'\]; expected"),
        "certified_but_wrong_counts": (functools.partial(gate_ref, need_correct=False),
                                       r"gate_decision: the accuracy trap.*naming \['clean recall'\]; expected"),
        "nan_recall_passes": (functools.partial(gate_ref, nan_passes=True), "gate_decision: no fraud case"),
    }),
    C.certify.check_threat_radii: (radii_ref, {
        "multiplies_scale": (radii_multiplies_scale, "threat_radii: got"),
        "tolerance_order": (radii_tolerance_order, "shape mismatch"),
        "one_for_missing": (radii_one_for_missing, "threat_radii: got"),
    }),
    C.threats.check_threat_model: (threat_model_ref, {
        "no_extraction": (threat_model_no_extraction, "no threat with attack='extraction'"),
        "no_repudiation": (threat_model_no_repudiation, "STRIDE category 'Repudiation'"),
        "untested_threat": (threat_model_untested_threat, "has no test"),
        "too_few_threats": (threat_model_one_per_category_too_few, "only 5 threats"),
    }),
    C.text.check_swap_typos: (text_attacks.swap_typos, {
        "includes_word": (swap_typos_includes_word, "swap_typos: 3 of 7 words wrong"),
        "skips_last_pair": (swap_typos_skips_last_pair, "swap_typos: .* words wrong"),
        "sorted": (swap_typos_sorted, "swap_typos: .* words wrong"),
    }),
    C.text.check_embedding_box: (embedding_box_ref, {
        "no_eps_scaling": (embedding_box_no_eps, "embedding_box: relative error"),
        "without_original": (embedding_box_without_original, "embedding_box: relative error"),
        "scales_embeddings": (embedding_box_scales_embeddings, "embedding_box: relative error"),
    }),
    C.text.check_similarity_threshold: (similarity_ref, {
        "upper_tail": (similarity_upper_tail, "similarity_threshold fpr=0.05: relative error"),
        "ignores_fpr": (similarity_ignores_fpr, "similarity_threshold fpr=0.2: relative error"),
        "off_by_one": (similarity_off_by_one, "similarity_threshold fpr=0.05: relative error"),
        "interpolated_quantile": (similarity_interpolated_quantile, "similarity_threshold fpr=0.05: relative error"),
    }),
    C.serving.check_knn_distance: (lambda h, s, k: layers.knn_distance(h, s, k), {
        "euclidean_not_rms": (knn_euclidean, "knn_distance k=3: relative error"),
        "farthest": (knn_farthest, "knn_distance k=3: relative error"),
        "ignores_k": (knn_ignores_k, "knn_distance k=3: relative error"),
        "all_rows": (knn_all_rows, "knn_distance k=3: relative error"),
    }),
    C.poisoning.check_spectral_signature: (spectral_ref, {
        "not_centred": (spectral_not_centred, "spectral_signature: relative error"),
        "svd_of_uncentred": (spectral_svd_not_centred, "spectral_signature: relative error"),
        "wrong_singular_vector_side": (spectral_wrong_side, "spectral_signature: relative error"),
        "smallest_singular_vector": (spectral_smallest_vector, "spectral_signature: relative error"),
    }),
    C.poisoning.check_remove_top: (remove_top_ref, {
        "every_class": (remove_top_every_class, r"remove_top: .*outside class"),
        "whole_set": (remove_top_whole_set, r"remove_top: .*outside class"),
        "no_multiplier": (remove_top_no_multiplier, "remove_top: .*1.5 x expected_poison"),
        "lowest_scores": (remove_top_lowest, "remove_top: .*highest scores"),
    }),
    C.poisoning.check_dpa_certificate: (dpa_ref, {
        "two_sided_margin": (dpa_two_sided_margin, r"dpa_certificate: votes .*rho"),
        "ties_to_larger_index": (dpa_ties_to_larger, r"dpa_certificate: votes .*ties to the smaller index"),
        "not_halved": (dpa_not_halved, r"dpa_certificate: votes .*rho"),
        "no_tie_term": (dpa_no_tie_term, r"dpa_certificate: votes .*rho"),
    }),
    C.interview.check_cost_per_robust_point: (C.interview.cost_per_robust_point_reference, {
        "sign_error": (cost_sign_error, r"sign error: clean loss = clean_std - clean_rob"),
        "inverted_ratio": (cost_inverted, "robust points per clean point"),
        "negative_when_clean_rose": (cost_negative_when_clean_rose, "MORE accurate.*a negative cost"),
        "no_gain_guard": (cost_no_gain_guard, "did not rise.*divided by zero"),
        "guard_only_equal": (cost_guard_only_equal, r"robust accuracy fell .* expected None.*got -0\.36"),
    }),
    C.interview.check_classes_that_pay: (C.interview.classes_that_pay_reference, {
        "sign_error": (pay_sign_error, "clean accuracy did not drop"),
        "ties_by_largest_index": (pay_ties_by_largest_index, "ties by the smaller class index"),
        "includes_not_dropped": (pay_includes_not_dropped, "only class 2 dropped.*class 1's clean accuracy did not drop"),
        "ignores_k": (pay_ignores_k, "4 classes: at most k=2"),
    }),
    C.interview.check_order_violations: (C.interview.order_violations_reference, {
        "point_estimates": (order_point_estimates, r"intervals overlap \(noise\).*flagged \('verified', 'PGD'\)"),
        "reversed": (order_reversed, "scores lower, as it should"),
        "neighbours_only": (order_neighbours_only, r"compare every pair.*missed \('verified', 'clean'\)"),
        "lower_ends": (order_lower_ends, r"flagged \('verified', 'PGD'\), whose intervals overlap"),
    }),
}
PROJECTIONS = {  # check_projection takes the norm: one row per norm
    "l2": (project_l2_ref, {
        "always_to_sphere": (project_l2_always_to_sphere, "project_l2, deltas shorter than eps: must come back unchanged"),
        "elementwise_clamp": (lambda d, eps: d.clamp(-eps, eps), "project_l2, deltas longer than eps"),
        "whole_batch_norm": (project_l2_whole_batch, "project_l2, deltas shorter than eps"),
    }),
    "linf": (lambda d, eps: d.clamp(-eps, eps), {
        "always_to_boundary": (project_linf_always_to_boundary, "project_linf, deltas shorter than eps: must come back unchanged"),
        "one_sided": (project_linf_one_sided, "project_linf, deltas shorter than eps"),
        "l2_ball": (lambda d, eps: attacks.project(d, eps, "l2"), "project_linf, deltas shorter than eps"),
    }),
}


def _name(check):
    return f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__}"


CASES = [pytest.param(check, ref, id=_name(check)) for check, (ref, _) in TABLE.items()]
CASES += [pytest.param(lambda fn, n=n: checks.attacks.check_projection(fn, n), ref, id=f"attacks.check_projection[{n}]")
          for n, (ref, _) in PROJECTIONS.items()]
MUTANTS = [pytest.param(check, fn, match, id=f"{_name(check)}:{mid}")
           for check, (_, mutants) in TABLE.items() for mid, (fn, match) in mutants.items()]
MUTANTS += [pytest.param(lambda fn, n=n: checks.attacks.check_projection(fn, n), fn, match,
                         id=f"attacks.check_projection[{n}]:{mid}")
            for n, (_, mutants) in PROJECTIONS.items() for mid, (fn, match) in mutants.items()]


@pytest.mark.parametrize("check,reference", CASES)
def test_reference_passes(check, reference):
    check(reference)


@pytest.mark.parametrize("check,mutant,match", MUTANTS)
def test_mutant_is_rejected(check, mutant, match):
    with pytest.raises(AssertionError, match=match):
        check(mutant)


def test_every_check_has_mutants():
    """A new ``check_*`` needs its row in TABLE (CONTRIBUTING.md: "Writing an exercise and its check")."""
    modules = [getattr(checks, name) for name in ("foundations", "attacks", "training", "sanitization", "certify",
                                                  "threats", "text", "serving", "interview", "poisoning")]
    found = {f for m in modules for name, f in inspect.getmembers(m, inspect.isfunction)
             if name.startswith("check_") and f.__module__ == m.__name__}
    covered = set(TABLE) | {checks.attacks.check_projection}
    assert found - covered == set(), f"checks without mutants: {sorted(_name(f) for f in found - covered)}"
    assert all(len(mutants) >= 2 for _, mutants in itertools.chain(TABLE.values(), PROJECTIONS.values()))


def test_gate_decision_reference_is_run_gates_rule(tmp_path):
    """check_gate_decision's reference decides as ``fraud.gate.run_gate`` does (the gate's rule is inline
    there): same metrics and same decision on a real IBP candidate over a grid of thresholds, and at
    thresholds exactly at the candidate's own rates (both compare exact fractions, thresholds inclusive)."""
    df = fraud.make_transactions(3000, seed=0)
    scaler = fraud.FeatureScaler().fit(df)
    x, y = torch.from_numpy(scaler.transform(df)), torch.from_numpy(df["is_fraud"].to_numpy().copy()).long()
    torch.manual_seed(0)
    model = fraud.fraud_mlp(hidden=16)
    sampler = torch.utils.data.WeightedRandomSampler(torch.where(y == 1, 10.0, 1.0), len(y),  # oversample fraud
                                                     generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128, sampler=sampler)
    training.fit(model, loader, 5, lr=1e-2, optimizer="adam", weight_decay=0, progress=False)
    path = tmp_path / "cand.pt"
    training.save_checkpoint(model.eval(), path, {"architecture": "fraud_mlp", "architecture_kwargs": {"hidden": 16},
                                                  "scaler": scaler.to_dict(), "certifier": "ibp", "name": "cand"})
    n, seed, radius = 1000, 2024, 0.02
    test = fraud.make_transactions(n, seed=seed)
    xt, yt = torch.from_numpy(scaler.transform(test)), torch.from_numpy(test["is_fraud"].to_numpy().copy()).long()
    with torch.no_grad():
        pred = model(xt).argmax(1)
        proved = certify.verified_by("ibp", model, xt, yt, radius * torch.from_numpy(fraud.controlled_mask()))
    assert 0 < int((proved & (pred == yt)).sum()) < n and (pred[yt == 1] == 1).any()
    decided = set()
    fraud_cases = int((yt == 1).sum())
    at_rates = [(int((proved & (pred == yt)).sum()) / n, int((proved & (pred == yt))[yt == 1].sum()) / fraud_cases)]
    for acc, rec in at_rates + list(itertools.product((0.0, 0.5, 0.9, 0.95, 0.99, 1.0), (0.0, 0.1, 0.3, 0.5, 0.8, 1.0))):
        code, report = fraud.gate.run_gate(path, radius, acc, rec, out=tmp_path / "out", n=n, seed=seed)
        passed, short = checks.certify.gate_decision_reference(pred, proved, pred, yt, acc, rec)
        assert (passed, len(short)) == (report["passed"], len(report["reasons"])), (acc, rec, values, short)
        decided.add(passed)
    assert decided == {True, False}


def test_mixed_step_accepts_attacking_the_whole_batch():
    """Attacking all of x and keeping the first round(ratio B) rows (training.mix_batch) is right too."""
    checks.training.check_mixed_adversarial_step(mixed_step_via_mix_batch)
