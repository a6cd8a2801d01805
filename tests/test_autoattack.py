"""AutoAttack (issue 15, item 4): the official implementation (pyautoattack, Croce & Hein's code) is the
default, torchattacks' port the fallback, and the two agree within sampling noise on the same images."""
import pytest
import torch

from course_utils import evaluation, interop

EPS = 0.15  # MNIST L-inf radius where the session's standard CNN is neither fully robust nor fully broken
N = 100  # test images (the official run takes about 30 s on a shared 2-core CPU)


def intervals_agree(a: evaluation.EvalResult, b: evaluation.EvalResult) -> bool:
    """Each accuracy lies inside the other's 95% Clopper-Pearson interval."""
    (alo, ahi), (blo, bhi) = a.ci, b.ci
    return alo <= b.accuracy <= ahi and blo <= a.accuracy <= bhi


def _flags(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


@pytest.fixture(scope="module")
def runs(mnist_model, mnist_test, one_thread):
    x, y = mnist_test[0][:N], mnist_test[1][:N]
    out = {"x": x, "y": y, "clean": evaluation.evaluate(mnist_model, (x, y), progress=False),
           "clean_flags": _flags(mnist_model, x, y)}
    for impl in interop.AUTOATTACK_IMPLS:
        attack = interop.autoattack(EPS, impl=impl)
        x_adv = attack(mnist_model, x, y)
        correct = _flags(mnist_model, x_adv, y)
        out[impl] = {"x_adv": x_adv, "flags": correct,
                     "result": evaluation.EvalResult(int(correct.sum()), N, evaluation.describe_attack(attack))}
    return out


def test_official_is_the_default_and_says_so():
    assert interop.official_autoattack_available()  # pyautoattack is a dependency (pyproject.toml)
    attack = interop.autoattack(8 / 255)
    assert attack.impl == "official"
    assert str(attack).startswith("AutoAttack (standard, official pyautoattack ") and str(attack).endswith(" linf eps=8/255")
    assert evaluation.describe_attack(attack) == str(attack)
    assert "torchattacks" in str(interop.autoattack(0.3, "l2", impl="torchattacks"))
    with pytest.raises(ValueError, match="impl must be one of"):
        interop.autoattack(0.3, impl="foolbox")


def test_falls_back_to_torchattacks_without_pyautoattack(monkeypatch):
    monkeypatch.setattr(interop, "official_autoattack_available", lambda: False)
    assert interop.autoattack(0.3).impl == "torchattacks"
    with pytest.raises(ImportError, match="pip install pyautoattack"):
        interop.autoattack(0.3, impl="official")


def test_interval_rule_rejects_what_it_should():
    """The agreement rule fails on the mistakes it is for: an attack that does nothing, or a much weaker one."""
    aa = evaluation.EvalResult(34, 100)
    assert intervals_agree(aa, evaluation.EvalResult(35, 100))
    assert not intervals_agree(aa, evaluation.EvalResult(99, 100))  # returned x unchanged: clean accuracy
    assert not intervals_agree(aa, evaluation.EvalResult(50, 100))  # 16 points weaker


@pytest.mark.slow
def test_official_lowers_accuracy_and_stays_in_the_ball(runs):
    """The official attack is not a no-op: accuracy falls well below clean, within the eps-ball, in [0, 1]."""
    clean, official = runs["clean"], runs["official"]["result"]
    assert official.ci[1] < clean.ci[0], f"{official} is not below {clean}"
    assert official.accuracy > 0  # a radius where robust accuracy is neither 0 nor 1 (else agreement says nothing)
    x_adv = runs["official"]["x_adv"]
    assert (x_adv - runs["x"]).abs().amax() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not (runs["official"]["flags"] & ~runs["clean_flags"]).any()  # never turns a wrong prediction right


@pytest.mark.slow
def test_official_and_torchattacks_agree_within_sampling_noise(runs):
    """Same model, same images: each robust accuracy inside the other's 95% interval, and few images on
    which only one of them succeeds (paired)."""
    official, port = runs["official"]["result"], runs["torchattacks"]["result"]
    assert intervals_agree(official, port), f"{official} vs {port}"
    only_official = int((~runs["official"]["flags"] & runs["torchattacks"]["flags"]).sum())
    only_port = int((runs["official"]["flags"] & ~runs["torchattacks"]["flags"]).sum())
    print(f"{official}\n{port}\nbroken by only the official: {only_official}, by only torchattacks: {only_port}")
    assert only_official + only_port <= 0.1 * N
