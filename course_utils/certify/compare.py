"""Empirical and certified robustness of one model, side by side, with what each number costs
(notebook 09, interview question ``cd-when``).

``side_by_side(model, x, y, eps, pgd)`` measures, on the same images and one L-infinity
radius: clean accuracy, PGD accuracy and AutoAttack accuracy (upper bounds on robust accuracy: a
stronger attack can only lower them) and IBP and CROWN verified accuracy (lower bounds: proofs),
each with its 95% interval and the seconds it took per image on this machine.
"""
from __future__ import annotations

import time

from ..evaluation import EvalResult, evaluate
from ..interop import autoattack
from .ibp import verified_accuracy
from .relaxation import verified_accuracy_by


def side_by_side(model, x, y, eps: float, pgd, methods=("ibp", "crown"), autoattack_impl=None) -> list[dict]:
    """Rows ``{"evaluation", "kind", "threat", "accuracy", "95% CI", "images", "seconds per image"}`` for
    ``model`` on the same images (x, y): clean, ``pgd`` (an ``AttackConfig`` at ``eps``), AutoAttack,
    then each certificate of ``methods`` ("ibp", "crown") at ``eps``. ``kind`` is "empirical" (an
    attack's number: an upper bound on robust accuracy) or "certified" (a lower bound)."""
    if abs(pgd.eps - eps) > 1e-12:
        raise ValueError(f"pgd attacks at eps={pgd.eps}, the certificates at eps={eps}: compare one radius")
    rows = []

    def add(name, kind, run, n):
        start = time.perf_counter()
        r = run()
        seconds = time.perf_counter() - start
        rows.append({"evaluation": name, "kind": kind, "threat": r.threat, "accuracy": r.accuracy,
                     "95% CI": tuple(round(v, 3) for v in r.ci), "images": n, "seconds per image": seconds / n})

    add("clean", "empirical", lambda: evaluate(model, (x, y), threat="clean", progress=False), len(y))
    add("PGD", "empirical", lambda: evaluate(model, (x, y), pgd, progress=False), len(y))
    add("AutoAttack", "empirical", lambda: evaluate(model, (x, y), autoattack(eps, impl=autoattack_impl), progress=False),
        len(y))
    for method in methods:
        if method == "ibp":
            run = lambda: EvalResult(*verified_accuracy(model, x, y, eps), threat=f"IBP verified, L-inf eps={eps:g}")  # noqa: E731
        else:
            run = lambda m=method: EvalResult(*verified_accuracy_by(m, model, x, y, eps), threat=f"{m.upper()} verified, L-inf eps={eps:g}")  # noqa: E731
        add(f"{method.upper()} certificate", "certified", run, len(y))
    return rows
