"""The arithmetic behind the business framing of notebook 09's answer to ``at-product``: what a
clean-accuracy cost and a robustness gain mean in errors, given how much traffic is adversarial."""
from __future__ import annotations

from ..validation import check_fraction


def error_rate(clean: float, robust: float, attack_share: float) -> float:
    """Expected error rate when a share ``attack_share`` of inputs is attacked (and the attack is the one
    ``robust`` was measured under) and the rest is clean: ``(1 - s)(1 - clean) + s (1 - robust)``."""
    clean, robust, s = (check_fraction(v, n) for v, n in ((clean, "clean"), (robust, "robust"),
                                                          (attack_share, "attack_share")))
    return (1 - s) * (1 - clean) + s * (1 - robust)


def break_even_attack_share(clean_std: float, robust_std: float, clean_rob: float, robust_rob: float) -> float | None:
    """The share of adversarial traffic above which the robust model makes fewer errors than the standard
    one: ``dclean / (dclean + drobust)`` with ``dclean = clean_std - clean_rob`` (the clean cost) and
    ``drobust = robust_rob - robust_std`` (the gain). 0.0 when robustness cost no clean accuracy (the
    robust model is never worse); None when it is not more robust (it never wins)."""
    for v, n in ((clean_std, "clean_std"), (robust_std, "robust_std"), (clean_rob, "clean_rob"), (robust_rob, "robust_rob")):
        check_fraction(v, n)
    gain, cost = robust_rob - robust_std, clean_std - clean_rob
    if gain <= 0:
        return None
    return max(cost, 0.0) / (max(cost, 0.0) + gain)
