"""The exercise-check tools: they pass the reference, fail wrong answers, and strip like nbgrader."""
import pytest
import torch

from course_utils import attacks, checks


def test_rel_error():
    assert checks.rel_error(torch.ones(3), torch.ones(3)) == 0
    assert checks.rel_error([1.0], [3.0]) == pytest.approx(0.5)
    with pytest.raises(AssertionError, match="shape"):
        checks.rel_error(torch.ones(2), torch.ones(3))


def test_attack_checks_pass_reference_and_fail_wrong():
    checks.attacks.check_fgsm(lambda m, x, y, eps: attacks.fgsm(m, x, y, eps))
    with pytest.raises(AssertionError):
        checks.attacks.check_fgsm(lambda m, x, y, eps: (x + eps).clamp(0, 1))  # ignores the gradient
    checks.attacks.check_projection(lambda d, eps: d.clamp(-eps, eps), "linf")
    with pytest.raises(AssertionError):
        checks.attacks.check_projection(lambda d, eps: d.clamp(-eps, eps), "l2")


def test_not_implemented_is_a_failed_check():
    def student(*args):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented"):
        checks.attacks.check_pgd(student)


def test_strip_solutions_like_nbgrader():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)\n"
    out = checks.strip_solutions(src)
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)\n"
