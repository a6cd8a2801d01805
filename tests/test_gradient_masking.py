"""The gradient-masking checklist (``evaluation.gradient_masking_checks``) must be able to fail.

A model whose robustness is fake (a standard CNN behind a 2-bit input quantizer: zero input
gradients, Athalye et al. 2018's shattered gradients) must be flagged on more than one row; a
model with random gradients must be flagged by the independent-restarts row; a crippled attack
(a step too small to move) by the iterative and more-steps rows; an honest standard model passes.
"""
import functools

import pytest
import torch

from course_utils import data, evaluation, models, sanitization, training
from course_utils.attacks import AttackConfig
from course_utils.config import seed_everything

pytestmark = pytest.mark.slow  # trains a surrogate (a few seconds) on top of the session's mnist_model

N = 128  # test images per checklist
EPS = 0.3


@pytest.fixture(scope="module")
def surrogate():
    """An independently trained standard CNN (another seed, 5,000 other images): the transfer row's source."""
    seed_everything(1)
    model = models.mnist_small_cnn()
    loader = data.make_loader(data.load_dataset("mnist", "train"), batch_size=128, n=5000, seed=1)
    training.fit(model, loader, epochs=1, lr=0.05, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def batch(mnist_test):
    return mnist_test[0][:N], mnist_test[1][:N]


class _RandomGradient(torch.autograd.Function):
    """Identity forward; backward replaces the gradient with noise (a stochastic, shattered gradient)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return torch.randn_like(grad_output)


def _flags(df):
    return set(df.loc[df["passed"] == False, "check"])  # noqa: E712 (None is a skipped row)


def _row(df, start):
    return df[df["check"].str.startswith(start)].iloc[0]


def test_masked_model_is_flagged_on_several_rows(mnist_model, surrogate, batch, one_thread, capsys):
    masked = models.Preprocessed(mnist_model, functools.partial(sanitization.bit_depth, bits=2)).eval()
    x, y = batch
    pgd = AttackConfig(EPS, steps=10)
    assert evaluation.evaluate(masked, (x, y), pgd, progress=False).accuracy > 0.8  # looks robust to PGD
    df = evaluation.gradient_masking_checks(masked, x, y, pgd, restarts=3, surrogate=surrogate, square_queries=300)
    flags = _flags(df)
    assert len(flags) >= 2, df
    for start in ("gradient-free", "transfer", "accuracy reaches"):
        assert _row(df, start)["verdict"] == "FLAG", df
    out = capsys.readouterr().out
    assert "FLAG" in out and "a FLAG here means" in out and "Clopper-Pearson" in out


def test_honest_model_passes(mnist_model, surrogate, batch, one_thread):
    x, y = batch
    for eps in (0.1, EPS):  # 0.1: non-trivial accuracies; 0.3: PGD reaches about 0
        df = evaluation.gradient_masking_checks(mnist_model, x, y, AttackConfig(eps, steps=10), restarts=3,
                                                surrogate=surrogate, square_queries=300, verbose=False)
        assert df["passed"].tolist() == [True] * 6, df
        assert df.attrs["threat model"].startswith(f"PGD linf eps={eps}")


def test_restart_row_compares_independent_runs(mnist_model, batch, one_thread):
    """Random gradients: one PGD run lands at a random point of the ball; 10 independent restarts find more."""
    noisy = models.Preprocessed(mnist_model, _RandomGradient.apply).eval()
    x, y = batch
    torch.manual_seed(0)
    df = evaluation.gradient_masking_checks(noisy, x, y, AttackConfig(EPS, steps=2, alpha=EPS), restarts=10,
                                            square_queries=100, verbose=False)
    assert _row(df, "10 independent restarts")["verdict"] == "FLAG", df
    assert _row(df, "transfer")["verdict"] == "SKIP" and _row(df, "transfer")["passed"] is None


def test_crippled_attack_is_flagged(mnist_model, batch, one_thread):
    """A step that cannot move (alpha = 0.001 x 5 steps): iterative loses to FGSM, more steps (scaled alpha) win."""
    x, y = batch
    df = evaluation.gradient_masking_checks(mnist_model, x, y, AttackConfig(EPS, steps=5, alpha=0.001), restarts=2,
                                            square_queries=50, verbose=False)
    assert _row(df, "iterative")["verdict"] == "FLAG", df
    more = _row(df, "more steps (20")
    assert more["verdict"] == "FLAG" and "alpha=0.0375" in more["checked attack"], df  # 2.5 * 0.3 / 20


def test_transfer_skip_is_printed(tiny_model, capsys):
    x = torch.rand(4, 1, 28, 28)
    y = torch.arange(4)
    evaluation.gradient_masking_checks(tiny_model, x, y, AttackConfig(0.1, steps=2), restarts=2, square_queries=5)
    assert "transfer check skipped: no surrogate" in capsys.readouterr().out


def test_rejects_non_pgd_attack(tiny_model):
    x, y = torch.rand(2, 1, 28, 28), torch.arange(2)
    with pytest.raises(ValueError, match="PGD AttackConfig"):
        evaluation.gradient_masking_checks(tiny_model, x, y, AttackConfig.fgsm(0.1), verbose=False)
