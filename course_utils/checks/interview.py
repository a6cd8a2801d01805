"""Checks for notebook 09 (interview preparation): answers computed from the learner's own numbers.

Each check runs the learner's function on hand-made cases whose right answer is known (dyadic
accuracies, so ties are exact), including the boundary cases an interview answer must get right: a
robust model that is *more* accurate, a class that did not drop, intervals that overlap.
"""
from __future__ import annotations

from ..evaluation import EvalResult
from . import call_learner


def _show(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def _fail(name: str, message: str):
    print(f"[{name}] FAILED: {message}")
    raise AssertionError(f"{name}: {message}")


def cost_per_robust_point_reference(clean_std, clean_rob, robust_std, robust_rob):
    """Clean-accuracy points lost per robust-accuracy point gained (accuracies in [0, 1]).

    ``None`` when robust accuracy did not rise (no gain: the ratio is undefined), ``0.0`` when clean
    accuracy did not fall (the robustness cost nothing), else (clean_std - clean_rob) / (robust_rob - robust_std) > 0."""
    if robust_rob <= robust_std:
        return None
    return max(clean_std - clean_rob, 0.0) / (robust_rob - robust_std)


COST_CASES = [  # (clean_std, clean_rob, robust_std, robust_rob), what the case is about
    ((0.99, 0.97, 0.0, 0.5), "clean 99% -> 97%, robust 0% -> 50%: 2 points for 50, expected 0.04"),
    ((0.9, 0.6, 0.1, 0.4), "clean 90% -> 60%, robust 10% -> 40%: expected 1.0"),
    ((0.75, 0.875, 0.0, 0.5), "the robust model is MORE accurate (75% -> 87.5%): it cost nothing, expected 0.0, not a negative ratio"),
    ((0.99, 0.9, 0.25, 0.25), "robust accuracy did not rise (25% -> 25%): no gain to divide by, expected None"),
    ((0.99, 0.9, 0.5, 0.25), "robust accuracy fell (50% -> 25%): no gain, expected None, not a negative ratio"),
]


def check_cost_per_robust_point(learner_fn):
    """learner_fn(clean_std, clean_rob, robust_std, robust_rob) -> clean points per robust point,
    0.0 when clean accuracy did not fall, None when robust accuracy did not rise."""
    name = "cost_per_robust_point"
    for args, about in COST_CASES:
        try:
            got = call_learner(name, learner_fn, *args)
        except ZeroDivisionError:
            _fail(name, f"{about}; the function divided by zero (test for no robust gain first)")
        expected = cost_per_robust_point_reference(*args)
        if expected is None or got is None:
            if got is not expected:
                _fail(name, f"{about}; got {_show(got)}")
            continue
        try:
            got = float(got)
        except (TypeError, ValueError):
            _fail(name, f"{about}; got {got!r}, not a number")
        tol = 1e-9 * max(1.0, abs(expected))
        if not abs(got - expected) <= tol:
            hint = ""
            if got != 0 and abs(1 / got - expected) <= tol:
                hint = " (that is robust points per clean point: divide the clean loss by the robust gain)"
            elif expected != 0 and abs(got + expected) <= tol:
                hint = " (sign error: clean loss = clean_std - clean_rob)"
            elif got < 0:
                hint = " (a negative cost: when clean accuracy rose, robustness cost nothing)"
            _fail(name, f"{about}; got {_show(got)}{hint}")
    print(f"[{name}] {len(COST_CASES)} cases (a cost, no cost, no robust gain): PASSED")


def classes_that_pay_reference(per_class_std, per_class_rob, k):
    """The (at most) k classes whose clean accuracy dropped most, largest drop first, ties by the
    smaller class index; only classes that dropped (std - rob > 0)."""
    drops = [(s - r, c) for c, (s, r) in enumerate(zip(per_class_std, per_class_rob))]
    return [c for d, c in sorted(drops, key=lambda t: (-t[0], t[1])) if d > 0][:k]


PAY_CASES = [  # (per_class_std, per_class_rob, k), what the case is about
    ([1.0, 0.875, 0.75, 1.0, 0.9375], [0.875, 0.875, 0.25, 0.9375, 0.5], 2,
     "drops 0.125, 0, 0.5, 0.0625, 0.4375 with k=2: expected [2, 4]"),
    ([1.0, 0.875, 0.75, 1.0, 0.9375], [0.875, 0.875, 0.25, 0.9375, 0.5], 3,
     "the same drops with k=3: expected [2, 4, 0]"),
    ([0.5, 1.0, 0.75, 1.0, 0.75, 1.0], [0.5, 0.75, 0.75, 0.75, 0.5, 0.875], 3,
     "classes 1, 3 and 4 all drop by 0.25, class 5 by 0.125, with k=3: expected [1, 3, 4] (ties by the smaller class index)"),
    ([0.5, 0.75, 0.75, 1.0], [0.625, 0.75, 0.5, 1.0], 3,
     "only class 2 dropped (class 0 rose, 1 and 3 are unchanged), k=3: expected [2] (a class that did not drop does not pay)"),
]


def check_classes_that_pay(learner_fn):
    """learner_fn(per_class_std, per_class_rob, k) -> list of at most k class indices, largest clean
    drop first, ties by the smaller index, only classes whose clean accuracy dropped."""
    name = "classes_that_pay"
    for std, rob, k, about in PAY_CASES:
        got = call_learner(name, learner_fn, list(std), list(rob), k)
        try:
            got = [int(c) for c in got]
        except (TypeError, ValueError):
            _fail(name, f"{about}; got {got!r}, not a list of class indices")
        expected = classes_that_pay_reference(std, rob, k)
        if got == expected:
            continue
        not_dropped = [c for c in got if 0 <= c < len(std) and std[c] - rob[c] <= 0]
        if not_dropped:
            c = not_dropped[0]
            hint = (f"class {c}'s clean accuracy did not drop ({std[c]} -> {rob[c]}): drop = standard - robust, "
                    f"and only classes that dropped pay")
        elif len(got) > k:
            hint = f"{len(got)} classes: at most k={k}"
        elif set(got) == set(expected):
            hint = "same classes, wrong order: largest drop first, ties by the smaller class index"
        else:
            hint = f"missed {sorted(set(expected) - set(got))}: drop = standard - robust, largest first"
        _fail(name, f"{about}; got {got} ({hint})")
    print(f"[{name}] {len(PAY_CASES)} cases (k, ties, classes that did not drop): PASSED")


def order_violations_reference(results):
    """results: dict name -> EvalResult, ordered from the strongest claim (verified) to the weakest
    (clean); accuracy must not rise along the order. The pairs (stronger, weaker) whose intervals
    say it did: the stronger's CI lower end above the weaker's CI upper end. Every pair is compared."""
    items = list(results.items())
    return [(a, b) for i, (a, ra) in enumerate(items) for b, rb in items[i + 1:] if ra.ci[0] > rb.ci[1]]


def _chain(**counts):
    return {name.replace("_", " "): EvalResult(c, n, threat=name) for name, (c, n) in counts.items()}


ORDER_CASES = [  # results (strongest first), what the case is about
    (_chain(verified=(20, 100), PGD=(40, 100), FGSM=(55, 100), clean=(95, 100)),
     "verified 20% <= PGD 40% <= FGSM 55% <= clean 95%: a consistent evaluation, expected no violation"),
    (_chain(verified=(42, 100), PGD=(40, 100), clean=(95, 100)),
     "verified 42/100 above PGD 40/100 but their intervals overlap (noise): expected no violation"),
    (_chain(verified=(90, 100), PGD=(40, 100), clean=(95, 100)),
     "verified 90/100 above PGD 40/100, intervals apart (a broken evaluation): expected [('verified', 'PGD')]"),
    (_chain(verified=(1640, 2000), PGD=(7, 10), clean=(1300, 2000)),
     "verified 82% of 2000 above clean 65% of 2000, PGD 7/10 overlapping both: expected [('verified', 'clean')] "
     "(compare every pair, not only neighbours)"),
]


def check_order_violations(learner_fn):
    """learner_fn(results) -> list of (stronger, weaker) name pairs whose accuracies are out of
    order beyond their confidence intervals; results is a dict name -> EvalResult, strongest first."""
    name = "order_violations"
    for results, about in ORDER_CASES:
        got = call_learner(name, learner_fn, dict(results))
        try:
            got = [tuple(p) for p in got]
        except TypeError:
            _fail(name, f"{about}; got {got!r}, not a list of (stronger, weaker) pairs")
        expected = order_violations_reference(results)
        if sorted(got) == sorted(expected):
            continue
        extra, missed = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
        in_order = [p for p in extra if p[0] not in results or p[1] not in results
                    or results[p[0]].accuracy <= results[p[1]].accuracy]
        if in_order:
            hint = f"flagged {in_order[0]}, whose stronger threat model scores lower, as it should"
        elif extra:
            hint = (f"flagged {extra[0]}, whose intervals overlap (noise): flag only when the stronger's CI lower "
                    f"end is above the weaker's CI upper end")
        else:
            hint = f"missed {missed[0]}"
        _fail(name, f"{about}; got {got} ({hint})")
    print(f"[{name}] {len(ORDER_CASES)} cases (consistent, overlap, broken, non-neighbours): PASSED")
