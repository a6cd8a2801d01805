"""Checks for the poisoning exercises of notebook 06b: the spectral signature, the removal rule, the DPA certificate."""
from __future__ import annotations

import torch

from .. import poisoning
from . import call_learner, compare


def _fail(name: str, message: str):
    print(f"[{name}] FAILED: {message}")
    raise AssertionError(f"{name}: {message}")


def _class_features(g, n=None, d=None, planted=0):
    """(n, d) float64 features with an offset mean (so centring matters), anisotropic noise and ``planted`` rows
    shifted along one direction (a rank-one poison signal)."""
    n = n or int(torch.randint(30, 80, (1,), generator=g))
    d = d or int(torch.randint(5, 12, (1,), generator=g))
    scale = torch.linspace(1.0, 0.3, d)
    r = 3.0 + torch.randn(n, d, generator=g) * scale  # offset mean 3, so uncentred projections differ
    if planted:
        u = torch.randn(d, generator=g)
        r[:planted] += 4 * u / u.norm()
    return r.double()


def check_spectral_signature(learner_fn):
    """learner_fn(r) -> (n,) scores for the representations r (n, d) of one class must equal
    ``poisoning.spectral_signature`` (centred, top right singular vector, squared projection)."""
    def inputs(g):
        return (_class_features(g, planted=int(torch.randint(0, 6, (1,), generator=g))),)

    compare("spectral_signature", lambda r: torch.as_tensor(learner_fn(r)).double(),
            lambda r: poisoning.spectral_signature(r), inputs, tol=1e-6, trials=4)


def check_remove_top(learner_fn):
    """learner_fn(scores, labels, expected_poison, suspect) -> (N,) bool must remove exactly the
    round(1.5 * expected_poison) highest scores of class ``suspect`` (``poisoning.remove_top``)."""
    name = "remove_top"
    for trial, (expected, suspect) in enumerate(((4, 2), (7, 0), (3, 1))):
        g = torch.Generator().manual_seed(trial)
        labels = torch.randint(0, 3, (90,), generator=g)
        scores = torch.rand(90, generator=g)
        got = call_learner(name, learner_fn, scores, labels, expected, suspect)
        want = poisoning.remove_top(scores, labels, expected, [suspect])
        got = torch.as_tensor(got, dtype=torch.bool)
        if got.shape != want.shape:
            _fail(name, f"expected a (N,) bool mask of shape {tuple(want.shape)}, got {tuple(got.shape)}")
        if not torch.equal(got, want):
            outside = int((got & (labels != suspect)).sum())
            _fail(name, f"case expected_poison={expected}, suspect={suspect}: removed {int(got.sum())} images "
                        f"({outside} outside class {suspect}), expected the {int(want.sum())} highest scores of "
                        f"class {suspect} (1.5 x expected_poison, rounded)")
    print(f"[{name}] 3 cases: PASSED")


def _vote_cases():
    return [torch.tensor(v) for v in ([5, 5, 0], [0, 4, 4], [6, 3, 1], [3, 6, 1], [2, 2, 2], [7, 0, 0],
                                        [1, 5, 4], [4, 1, 5], [0, 0, 3], [3, 4, 3], [9, 2, 2], [2, 9, 8],
                                        [7, 3, 0], [2, 8, 4], [6, 0, 2], [3, 5, 0])]


def check_dpa_certificate(learner_fn):
    """learner_fn(votes) -> (prediction, rho), votes (N, K) integer counts, must equal
    ``poisoning.dpa_certificate``: ties to the smaller index, rho = floor((n_c - max_{c' != c}
    (n_c' + 1[c' < c])) / 2), on tied, one-sided and clear cases."""
    name = "dpa_certificate"
    votes = torch.stack(_vote_cases())
    got = call_learner(name, learner_fn, votes)
    want_pred, want_rho = poisoning.dpa_certificate(votes)
    try:
        pred, rho = (torch.as_tensor(t).long().flatten() for t in got)
    except (TypeError, ValueError):
        _fail(name, "return a pair (prediction, rho) of (N,) integer tensors")
    if pred.shape != want_pred.shape or rho.shape != want_rho.shape:
        _fail(name, f"expected two tensors of shape {tuple(want_pred.shape)}")
    for v, p, r, wp, wr in zip(votes.tolist(), pred.tolist(), rho.tolist(), want_pred.tolist(), want_rho.tolist()):
        if p != wp:
            _fail(name, f"votes {v}: predicted class {p}, expected {wp} (most votes, ties to the smaller index)")
        if r != wr:
            _fail(name, f"votes {v}: rho {r}, expected {wr} (each poisoned image moves one vote, so the gap "
                        "closes by 2 per image; a rival with a smaller index wins ties)")
    print(f"[{name}] {len(votes)} vote vectors: PASSED")
