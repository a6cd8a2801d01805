"""The lessons' guards (evaluation.phenomenon, paired_verdict, rate_verdict) must refuse noise,
the wrong direction and a rate whose interval straddles the threshold."""
import pytest
import torch

from course_utils import evaluation


def _pair(n, only_a, only_b, both=0):
    a = torch.zeros(n, dtype=torch.bool)
    b = torch.zeros(n, dtype=torch.bool)
    a[:only_a] = True
    b[only_a:only_a + only_b] = True
    a[only_a + only_b:only_a + only_b + both] = True
    b[only_a + only_b:only_a + only_b + both] = True
    return a, b


def test_phenomenon_wording_and_refuses_missing_parts():
    assert evaluation.phenomenon("X", True, "1 vs 2", "rerun") == (True, "X appeared: 1 vs 2.")
    ok, msg = evaluation.phenomenon("X", False, "1 vs 2", "rerun with seed 1")
    assert not ok and msg == "X did NOT appear in this run: 1 vs 2. rerun with seed 1"
    with pytest.raises(ValueError):
        evaluation.phenomenon("X", False, "1 vs 2", "")
    assert evaluation.phenomenon("X", True, "1 vs 2", "", if_so="Keep it.") == (True, "X appeared: 1 vs 2. Keep it.")
    assert evaluation.phenomenon("X", False, "1 vs 2", "rerun", if_so="Keep it.")[1].endswith("rerun")


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


def test_paired_verdict_sees_a_real_drop():
    a, b = _pair(200, only_a=60, only_b=2, both=100)
    ok, msg = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps")
    assert ok and msg.startswith("DROP appeared") and "McNemar p" in msg


def test_paired_verdict_refuses_noise_and_the_wrong_direction():
    a, b = _pair(200, only_a=12, only_b=8, both=100)  # 4 images apart: noise
    ok, msg = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps")
    assert not ok and "within test-set noise" in msg and msg.endswith("try a larger eps")
    a, b = _pair(200, only_a=2, only_b=60, both=100)  # the reverse of the claim, however clear
    ok, msg = evaluation.paired_verdict("DROP", a, b, "clean", "attacked", "try a larger eps")
    assert not ok and "did NOT appear" in msg


def test_rate_verdict_needs_the_whole_interval_past_the_threshold():
    assert evaluation.rate_verdict("R", 90, 100, 0.5, "triggered", "more poison")[0]
    assert not evaluation.rate_verdict("R", 55, 100, 0.5, "triggered", "more poison")[0]  # 44.7-65.0 straddles
    assert evaluation.rate_verdict("R", 1, 100, 0.1, "wrong", "x", above=False)[0]
    assert not evaluation.rate_verdict("R", 8, 100, 0.1, "wrong", "x", above=False)[0]  # up to 15%
    with pytest.raises(ValueError):
        evaluation.rate_verdict("R", 1, 100, 1.5, "wrong", "x")
