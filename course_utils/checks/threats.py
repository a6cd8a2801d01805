"""Checks for notebook 01 (threat modeling): the threat model of an image-classification API."""
from __future__ import annotations

from ..threats import STRIDE_CATEGORIES, ThreatModel, validate_threat_model
from . import call_learner

REQUIRED_ATTACKS = ("evasion", "extraction")  # the two threats no image API can leave out
MIN_THREATS = 6


def _result(name: str, problems: list[str]):
    if problems:
        print(f"[{name}] FAILED, {len(problems)} problem(s):")
        for p in problems:
            print("  -", p)
        raise AssertionError(f"{name}: " + "; ".join(problems))
    print(f"[{name}] PASSED")


def check_threat_model(build_fn):
    """``build_fn()`` must return a complete ``ThreatModel`` of an image-classification API serving
    a mobile app: every STRIDE category with at least one threat, every threat with a description,
    a mitigation and a test, at least ``MIN_THREATS`` threats, and evasion and model extraction
    among them. Prints the problems (or the coverage table) and raises ``AssertionError`` on failure."""
    name = "threat_model"
    tm = call_learner(name, build_fn)
    if not isinstance(tm, ThreatModel):
        _result(name, [f"the function must return a course_utils.threats.ThreatModel, got {type(tm).__name__}"])
    problems = validate_threat_model(tm, require_threat_per_category=True)
    if len(tm.threats) < MIN_THREATS:
        problems.append(f"only {len(tm.threats)} threats: an API serving a mobile app has at least {MIN_THREATS} "
                        f"worth writing down (one per STRIDE category is the minimum)")
    kinds = {t.attack for t in tm.threats}
    for kind in REQUIRED_ATTACKS:
        if kind not in kinds:
            problems.append(f"no threat with attack='{kind}': a public image API faces it (see the demos above)")
    covered = sum(1 for c in STRIDE_CATEGORIES if any(t.stride == c for t in tm.threats))
    print(f"[{name}] {len(tm.threats)} threats, {covered}/{len(STRIDE_CATEGORIES)} STRIDE categories, "
          f"attack kinds: {sorted(kinds)}")
    _result(name, problems)
