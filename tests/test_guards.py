"""The lessons' verdicts (course_utils.verdicts, re-exported by evaluation): three outcomes, each fed
the mistake it must refuse. Every "refuses" case below was read as "appeared" or as "no difference"
by the two-way guards that came before (non-significance read as absence, a straddling interval)."""
import numpy as np
import pytest
import torch

from course_utils import evaluation
from course_utils.verdicts import CONTRADICTED, NOT_RESOLVED, SHOWN


def _pair(n, only_a, only_b, both=0):
    a = torch.zeros(n, dtype=torch.bool)
    b = torch.zeros(n, dtype=torch.bool)
    a[:only_a] = True
    b[only_a:only_a + only_b] = True
    a[only_a + only_b:only_a + only_b + both] = True
    b[only_a + only_b:only_a + only_b + both] = True
    return a, b


def test_verdict_wording_unpacking_and_refusals():
    v = evaluation.verdict("X", "shown", "1 vs 2")
    assert str(v) == repr(v) == "X: SHOWN. 1 vs 2." and bool(v) and v.shown
    ok, msg = evaluation.verdict("X", "not resolved", "1 vs 2", "rerun with seed 1")
    assert not ok and msg == "X: NOT RESOLVED at this size. 1 vs 2. rerun with seed 1"
    assert evaluation.verdict("X", "contradicted", "1 vs 2", "the opposite")[1].startswith("X: CONTRADICTED.")
    with pytest.raises(ValueError, match="needs a note"):
        evaluation.verdict("X", "not resolved", "1 vs 2")
    with pytest.raises(ValueError, match="outcome"):
        evaluation.verdict("X", "appeared", "1 vs 2", "x")
    with pytest.raises(ValueError):
        evaluation.verdict("X", "shown", "")
    assert evaluation.phenomenon("X", False, "1 vs 2", "rerun").outcome == NOT_RESOLVED  # never "contradicted"


def test_newcombe_interval_does_not_collapse_and_contains_the_difference():
    a, b = _pair(10, 0, 0, both=9)  # no discordant image on 10: Wald's interval would be [0, 0]
    d, lo, hi = evaluation.paired_difference_interval(a, b)
    assert d == 0 and lo < -0.1 and hi > 0.1
    a, b = _pair(1000, 60, 20, both=700)
    d, lo, hi = evaluation.paired_difference_interval(a, b)
    assert d == pytest.approx(0.04) and lo < 0.04 < hi
    wald = 1.96 * np.sqrt((80 / 1000 - 0.04 ** 2) / 1000)  # large n: close to Wald's
    assert hi - lo == pytest.approx(2 * wald, rel=0.1)
    _, lo90, hi90 = evaluation.paired_difference_interval(a, b, alpha=0.10)
    assert lo < lo90 < hi90 < hi


def test_paired_verdict_three_outcomes():
    a, b = _pair(200, only_a=60, only_b=2, both=100)
    v = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps")
    assert v.outcome == SHOWN and "McNemar p < 0.001" in str(v)
    a, b = _pair(200, only_a=2, only_b=60, both=100)  # the reverse of the claim, however clear
    assert evaluation.paired_verdict("DROP", a, b, "clean", "attacked").outcome == CONTRADICTED
    a, b = _pair(200, only_a=12, only_b=8, both=100)  # 4 images apart: noise, NOT "no difference"
    v = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps")
    assert v.outcome == NOT_RESOLVED and "would resolve" in str(v) and "try a larger eps" in str(v)
    a, b = _pair(20000, only_a=20, only_b=20, both=10000)  # tiny discordance on many images: below a 1-point margin
    v = evaluation.paired_verdict("GAIN", a, b, "A", "B", margin=0.01)
    assert v.outcome == CONTRADICTED and "margin" in str(v)
    assert evaluation.paired_verdict("GAIN", *_pair(200, 12, 8, both=100), "A", "B", 0.5).outcome == CONTRADICTED


def test_equivalence_verdict_never_reads_non_significance_as_agreement():
    a, b = _pair(100, only_a=2, only_b=2, both=80)  # McNemar p = 1, but 100 images cannot bound 1 point
    v = evaluation.equivalence_verdict("HIDES", a, b, "poisoned", "clean", margin=0.01)
    assert v.outcome == NOT_RESOLVED and "would resolve" in str(v)
    a, b = _pair(10000, only_a=20, only_b=18, both=9000)
    assert evaluation.equivalence_verdict("HIDES", a, b, "poisoned", "clean", margin=0.01).outcome == SHOWN
    a, b = _pair(1000, only_a=100, only_b=5, both=800)
    assert evaluation.equivalence_verdict("HIDES", a, b, "poisoned", "clean", margin=0.02).outcome == CONTRADICTED
    with pytest.raises(ValueError, match="margin"):
        evaluation.equivalence_verdict("HIDES", a, b, "poisoned", "clean", margin=0)


def test_rate_verdict_three_outcomes():
    assert evaluation.rate_verdict("R", 90, 100, 0.5, "triggered").outcome == SHOWN
    v = evaluation.rate_verdict("R", 55, 100, 0.5, "triggered", "more poison")  # 44.7-65.0 straddles
    assert v.outcome == NOT_RESOLVED and "trials would resolve" in str(v)
    assert evaluation.rate_verdict("R", 20, 100, 0.5, "triggered").outcome == CONTRADICTED
    assert evaluation.rate_verdict("R", 1, 100, 0.1, "wrong", above=False).outcome == SHOWN
    assert evaluation.rate_verdict("R", 8, 100, 0.1, "wrong", above=False).outcome == NOT_RESOLVED  # up to 15%
    assert evaluation.rate_verdict("R", 40, 100, 0.1, "wrong", above=False).outcome == CONTRADICTED
    assert evaluation.rate_verdict("R", np.int64(90), 100, 0.5, "triggered").outcome == SHOWN
    with pytest.raises(ValueError):
        evaluation.rate_verdict("R", 1, 100, 1.5, "wrong", "x")
    with pytest.raises(ValueError):
        evaluation.rate_verdict("R", 101, 100, 0.5, "wrong", "x")


def test_correct_in_batches_equals_all_at_once():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(10, 1, 2, 2), torch.randint(0, 3, (10,))
    fgsm = lambda m, xb, yb: (xb + 0.3 * torch.sign(torch.randn_like(xb))).clamp(0, 1)  # noqa: E731
    assert torch.equal(evaluation.correct(model, x, y, batch_size=3), evaluation.correct(model, x, y))
    torch.manual_seed(1)
    batched = evaluation.correct(model, x, y, fgsm, batch_size=4)
    torch.manual_seed(1)
    per_batch = torch.cat([evaluation.correct(model, x[i:i + 4], y[i:i + 4], fgsm) for i in range(0, 10, 4)])
    assert batched.shape == (10,) and torch.equal(batched, per_batch)
    with pytest.raises(ValueError):
        evaluation.correct(model, x, y, batch_size=0)


def test_ledger_evaluates_once_seeds_the_start_and_reports_the_worst_case():
    from course_utils.attacks import AttackConfig

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 3, (40,))
    pgd = AttackConfig(0.05, steps=3)  # random start, no generator
    led, again = evaluation.Ledger(x, y, seed=3), evaluation.Ledger(x, y, seed=3)
    first = led.correct("m", model, pgd)
    assert led.correct("m", model, pgd) is first  # evaluated once, reused: one number per model and attack
    assert torch.equal(again.correct("m", model, pgd), first)  # seeded: the same in a second ledger
    led.correct("m", model, None)
    calls = []

    def only_first_image(m, xb, yb):  # an "attack" that breaks image 0 only, through a recorded vector
        calls.append(1)
        return xb
    ok = led.correct("m", model, None).clone()
    ok[0] = False
    led.record("m", "fake attack", ok & first)
    worst = led.worst_case("m")
    assert worst.correct == int((first & ok).sum()) and "worst case over 2 attacks" in worst.threat
    assert set(led.winners("m")) == {str(pgd), "fake attack"}
    table = led.table()
    assert list(table["threat model"]).count("worst case (headline)") == 1 and "%" in table["accuracy"].iloc[0]
    with pytest.raises(ValueError, match="no attack"):
        evaluation.Ledger(x, y).worst_case("m")


def test_verdict_texts_follow_the_outcome():
    a, b = _pair(200, only_a=60, only_b=2, both=100)
    shown = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps", if_so="as expected",
                                      note="one seed")
    assert str(shown).endswith("as expected one seed") and "try a larger eps" not in str(shown)
    unresolved = evaluation.paired_verdict("DROP", *_pair(200, 12, 8, both=100), "clean", "attacked", "try a larger eps",
                                           if_so="as expected")
    assert "try a larger eps" in str(unresolved) and "as expected" not in str(unresolved)
    assert "more poison" not in str(evaluation.rate_verdict("R", 90, 100, 0.5, "triggered", "more poison"))
    assert "more poison" in str(evaluation.rate_verdict("R", 55, 100, 0.5, "triggered", "more poison"))


def test_not_resolved_says_what_more_images_would_show():
    tie = evaluation.paired_verdict("GAIN", *_pair(500, 20, 20, both=300), "A", "B")  # a difference of exactly 0
    assert tie.outcome == NOT_RESOLVED and "No gain was seen" in str(tie) and "a difference of this size" not in str(tie)
    gain = evaluation.paired_verdict("GAIN", *_pair(500, 25, 15, both=300), "A", "B")
    assert gain.outcome == NOT_RESOLVED and "would resolve a difference of this size" in str(gain)


def test_no_discordant_image_does_not_claim_one_image_would_resolve_it():
    a, b = _pair(100, 0, 0, both=90)  # identical on 100 images: the 90% interval is still wider than 1 point
    v = evaluation.paired_verdict("GAIN", a, b, "A", "B")
    assert v.outcome == NOT_RESOLVED and "about 1 images" not in str(v)
