"""Models take [0, 1] pixels; training lowers the loss; checkpoints are verified; evaluation is honest."""
import hashlib
import json

import pytest
import torch

from course_utils import evaluation, models, training
from course_utils.config import seed_everything


@pytest.mark.parametrize("name,shape", [("mnist_small_cnn", (2, 1, 28, 28)), ("mnist_madry_cnn", (2, 1, 28, 28)),
                                        ("mnist_linear", (2, 1, 28, 28)),
                                        ("cifar_small_cnn", (2, 3, 32, 32)), ("preact_resnet18", (2, 3, 32, 32))])
def test_models_output_logits(name, shape):
    model = models.build_model(name).eval()
    assert model(torch.rand(shape)).shape == (2, 10)
    first = model[0] if isinstance(model, torch.nn.Sequential) else model.normalize
    assert isinstance(first, models.Normalize)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model name"):
        models.build_model("vgg")


def _toy(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    return x, y


def test_training_lowers_loss():
    seed_everything(0)
    x, y = _toy()
    model = models.mnist_small_cnn()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    hist = training.fit(model, loader, epochs=3, lr=0.05, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert not model.training


def test_checkpoint_round_trip_and_tamper(tmp_path):
    model = models.mnist_small_cnn()
    path = tmp_path / "m.pt"
    digest = training.save_checkpoint(model, path, {"recipe": "test"})
    assert json.loads((tmp_path / "m.pt.json").read_text())["sha256"] == digest
    other = training.load_checkpoint(models.mnist_small_cnn(), path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="modified or damaged"):
        training.load_checkpoint(models.mnist_small_cnn(), path)
    (tmp_path / "m.pt.json").unlink()
    with pytest.raises(ValueError, match="no checksum"):
        training.load_checkpoint(models.mnist_small_cnn(), path)


def test_checkpoint_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "payload": print}, path)  # not a plain state dict
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="could not be loaded"):
        training.load_checkpoint(models.mnist_small_cnn(), path, expected_sha256=digest)


def test_evaluate_reports_interval_and_restores_mode():
    x, y = _toy(64)
    model = models.mnist_small_cnn().train()
    r = evaluation.evaluate(model, (x, y), progress=False)
    assert model.training
    assert r.n == 64 and 0 <= r.ci[0] <= r.accuracy <= r.ci[1] <= 1
    assert "64" in str(r)


def test_confidence_interval_is_clopper_pearson():
    from scipy.stats import binomtest

    r = evaluation.EvalResult(correct=37, n=50)
    ci = binomtest(37, 50).proportion_ci(confidence_level=0.95, method="exact")
    assert r.ci == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_epsilon_sweep_and_table():
    from course_utils import attacks

    x, y = _toy(32)
    model = models.mnist_small_cnn()
    df = evaluation.epsilon_sweep(model, (x, y), [0, 0.1, 0.3], attacks.AttackConfig.fgsm(0.1), progress=False)
    assert list(df["eps"]) == [0, 0.1, 0.3] and set(df.columns) >= {"accuracy", "ci_low", "ci_high", "images"}
    assert list(df["threat model"]) == ["clean", "FGSM linf eps=0.1", "FGSM linf eps=0.3"]
    pgd = evaluation.epsilon_sweep(model, (x, y), [0.1, 0.2], attacks.AttackConfig(0.1, steps=4, alpha=0.01), progress=False)
    assert list(pgd["threat model"]) == ["PGD linf eps=0.1 alpha=0.01 steps=4 restarts=1",
                                         "PGD linf eps=0.2 alpha=0.02 steps=4 restarts=1"]  # alpha / eps kept
    table = evaluation.results_table([evaluation.EvalResult(3, 4, "PGD")], model="m")
    assert table.loc[0, "model"] == "m" and table.loc[0, "threat model"] == "PGD"


def test_threat_string():
    assert evaluation.threat_string("PGD", norm="linf", eps=8 / 255, steps=20) == "PGD linf eps=8/255 steps=20"
    assert evaluation.threat_string("PGD", norm="l2", eps=0.3) == "PGD l2 eps=0.3"
    assert evaluation.threat_string("AutoAttack", norm="linf", eps=8 / 255) == "AutoAttack linf eps=8/255"


def test_evaluate_bad_data():
    with pytest.raises(ValueError, match="data must be"):
        evaluation.evaluate(models.mnist_small_cnn(), [1, 2, 3], progress=False)
