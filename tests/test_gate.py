"""The promotion gate (course_utils.gate) and the synthetic fraud data (course_utils.fraud)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_utils import fraud
from course_utils.fraud import gate
from course_utils.certify import ibp_fit
from course_utils.training import save_checkpoint

RADIUS = 0.01  # L-infinity radius on the controlled features, model units


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    df = fraud.make_transactions(6000, seed=0)
    scaler = fraud.FeatureScaler().fit(df)
    x = torch.from_numpy(scaler.transform(df))
    y = torch.from_numpy(df["is_fraud"].to_numpy().copy()).long()
    return scaler, x, y


def _save(model, path, scaler, **meta):
    save_checkpoint(model, path, {"architecture": "fraud_mlp", "architecture_kwargs": {"hidden": 32},
                                  "scaler": scaler.to_dict(), "certifier": "ibp", "name": path.stem, **meta})
    return path


@pytest.fixture(scope="module")
def good_model(data, tmp_path_factory):
    scaler, x, y = data
    torch.manual_seed(0)
    model = fraud.fraud_mlp(hidden=32)
    w = torch.where(y == 1, 10.0, 1.0)  # oversample fraud
    sampler = torch.utils.data.WeightedRandomSampler(w, len(y), generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256, sampler=sampler)
    ibp_fit(model, loader, epochs=6, eps=2 * RADIUS * torch.from_numpy(fraud.controlled_mask()), lr=3e-3, progress=False)
    return _save(model, tmp_path_factory.mktemp("good") / "good.pt", scaler)


@pytest.fixture
def never_fraud(data, tmp_path):
    model = fraud.fraud_mlp(hidden=32)
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([50.0, -50.0]))  # always "legitimate"
    return _save(model, tmp_path / "never_fraud.pt", data[0])


def test_generator_is_seeded_and_imbalanced():
    a, b = fraud.make_transactions(3000, seed=5), fraud.make_transactions(3000, seed=5)
    assert a.equals(b) and not a.equals(fraud.make_transactions(3000, seed=6))
    assert 0.01 < a["is_fraud"].mean() < 0.04
    assert a.groupby("is_fraud")["hour"].apply(lambda h: ((h < 6)).mean()).diff().iloc[-1] > 0.1  # fraud at night
    scaler = fraud.FeatureScaler().fit(a)
    x = scaler.transform(a)
    assert x.shape == (3000, len(fraud.FEATURES)) and x.min() >= 0 and x.max() <= 1
    eps, r2 = fraud.threat_radii(scaler, {"amount": 5.0})
    assert eps[fraud.FEATURES.index("amount")] == pytest.approx(5.0 / scaler.scale("amount")) and r2 == pytest.approx(eps.max())
    with pytest.raises(ValueError, match="attacker-controlled"):
        fraud.threat_radii(scaler, {"foreign": 1.0})


def test_gate_passes_a_good_model(good_model, tmp_path):
    code, report = gate.run_gate(good_model, RADIUS, 0.9, 0.3, out=tmp_path / "r", n=3000)
    assert code == gate.EXIT_PASS and report["passed"], report
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["certified_accuracy"] == report["certified_accuracy"] >= 0.9
    assert "PASSED" in (tmp_path / "r" / "report.md").read_text()


def test_gate_refuses_a_weak_model(never_fraud, tmp_path):
    code, report = gate.run_gate(never_fraud, RADIUS, 0.9, 0.3, out=tmp_path / "r", n=3000)
    assert report["certified_accuracy"] > 0.9  # the accuracy trap of imbalanced data ...
    assert code == gate.EXIT_SHORT and not report["passed"]  # ... caught by the recall requirement
    assert "FAILED" in (tmp_path / "r" / "report.md").read_text()
    assert gate.run_gate(never_fraud, RADIUS, 0.99, out=tmp_path / "r2", n=3000)[0] == gate.EXIT_SHORT


def test_gate_refuses_corrupt_tampered_and_missing_models(good_model, tmp_path, capsys):
    bad = tmp_path / "tampered.pt"
    bad.write_bytes(good_model.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "tampered.pt.json").write_text(open(str(good_model) + ".json").read())
    assert gate.main(["--model", str(bad), "--radius", "0.01", "--min-certified-accuracy", "0.5"]) == gate.EXIT_BAD_INPUT
    assert "SHA-256" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    meta = json.loads(open(str(good_model) + ".json").read())
    meta["sha256"] = __import__("hashlib").sha256(b"not a checkpoint").hexdigest()
    (tmp_path / "junk.pt.json").write_text(json.dumps(meta))
    assert gate.main(["--model", str(junk), "--radius", "0.01", "--min-certified-accuracy", "0.5"]) == gate.EXIT_BAD_INPUT
    assert "could not be loaded" in capsys.readouterr().err
    (tmp_path / "broken.pt").write_bytes(good_model.read_bytes())
    (tmp_path / "broken.pt.json").write_text("{not json")
    assert gate.main(["--model", str(tmp_path / "broken.pt"), "--radius", "0.01", "--min-certified-accuracy", "0.5"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert gate.main(["--model", str(tmp_path / "missing.pt"), "--radius", "0.01", "--min-certified-accuracy", "0.5"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(p.name == "report.json" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("radius,acc,msg", [(0.0, 0.5, "radius"), (-1.0, 0.5, "radius"), (float("nan"), 0.5, "radius"),
                                            (0.01, 1.5, "accuracy"), (0.01, -0.1, "accuracy")])
def test_gate_rejects_bad_arguments(good_model, radius, acc, msg, capsys):
    argv = ["--model", str(good_model), "--radius", str(radius), "--min-certified-accuracy", str(acc)]
    assert gate.main(argv) == gate.EXIT_BAD_INPUT
    assert msg in capsys.readouterr().err


def test_gate_command_line_exit_codes(good_model, never_fraud, tmp_path):
    env = {**os.environ, "COURSE_PROFILE": "smoke", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "course_utils.gate", "--radius", str(RADIUS), "--n", "2000",
           "--min-certified-accuracy", "0.9", "--min-certified-recall", "0.3"]
    ok = subprocess.run(cmd + ["--model", str(good_model), "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    weak = subprocess.run(cmd + ["--model", str(never_fraud), "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True)
    assert weak.returncode == 1 and "FAILED" in weak.stdout
    assert np.isfinite(json.loads((tmp_path / "b" / "report.json").read_text())["certified_recall"])


@pytest.mark.parametrize("module", ["course_utils.gate", "course_utils.fraud.gate"])
def test_both_command_lines_run_the_gate(module, tmp_path):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--min-certified-accuracy" in out.stdout
    bad = subprocess.run([sys.executable, "-m", module, "--model", str(tmp_path / "none.pt"), "--radius", "0.01",
                          "--min-certified-accuracy", "0.5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


# ---------------------------------------------------------------- nonsense certificates (issue 17, item 4)

@pytest.fixture
def always_fraud(data, tmp_path):
    """An untrained model biased to flag every transaction: about 2% clean accuracy."""
    torch.manual_seed(0)
    model = fraud.fraud_mlp(hidden=32)
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([-50.0, 50.0]))
    return model, data[0]


GARBAGE_SIDECARS = {  # whatever the sidecar says, a model with 2% clean accuracy is not promoted
    "smoothing sigma=inf": {"certifier": "smoothing", "sigma": float("inf")},
    "smoothing sigma=nan": {"certifier": "smoothing", "sigma": float("nan")},
    "smoothing sigma=0": {"certifier": "smoothing", "sigma": 0.0},
    "smoothing sigma=-1": {"certifier": "smoothing", "sigma": -1.0},
    "smoothing sigma=1e6": {"certifier": "smoothing", "sigma": 1e6},
    "smoothing sigma=0.1": {"certifier": "smoothing", "sigma": 0.1},
    "smoothing sigma as text": {"certifier": "smoothing", "sigma": "0.1"},
    "ibp": {"certifier": "ibp"},
    "crown": {"certifier": "crown"},
    "alpha-crown": {"certifier": "alpha-crown"},
    "no certifier": {},
}


@pytest.mark.parametrize("case", GARBAGE_SIDECARS)
def test_gate_promotes_no_garbage_model_whatever_its_sidecar_says(always_fraud, tmp_path, capsys, case):
    model, scaler = always_fraud
    meta = {"architecture": "fraud_mlp", "architecture_kwargs": {"hidden": 32}, "scaler": scaler.to_dict(),
            "name": "garbage", **GARBAGE_SIDECARS[case]}
    path = tmp_path / "garbage.pt"
    save_checkpoint(model, path, meta)
    # the weakest gate: no recall requirement, so only the clean-accuracy rule and the parameter checks stand
    code = gate.main(["--model", str(path), "--radius", "0.05", "--min-certified-accuracy", "0.9", "--n", "300",
                      "--samples", "50", "--out", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code != gate.EXIT_PASS
    reports = list(tmp_path.rglob("report.json"))
    assert not any(json.loads(p.read_text())["passed"] for p in reports)
    if code == gate.EXIT_BAD_INPUT:  # refused before certifying: the reason names the parameter
        assert "sigma must be a finite number > 0" in out.err and not reports
    else:
        assert code == gate.EXIT_SHORT and "clean accuracy" in out.out and "FAILED" in out.out


def test_gate_refuses_infinite_sigma_at_every_entry(good_model, data, tmp_path, capsys):
    """The probe's sidecar ``"certifier": "smoothing", "sigma": Infinity`` certified an untrained model."""
    meta = json.loads(open(str(good_model) + ".json").read())
    net = fraud.fraud_mlp(hidden=32)
    net.load_state_dict(torch.load(good_model, weights_only=True))
    for bad in ({"sigma": float("inf")}, {"sigma": float("nan")}, {"sigma": 0}, {"sigma": None}):
        sidecar = {k: v for k, v in meta.items() if k != "sha256"} | {"certifier": "smoothing", **bad}
        path = tmp_path / "inf.pt"
        save_checkpoint(net, path, sidecar)
        assert "Infinity" in (tmp_path / "inf.pt.json").read_text() or bad["sigma"] != float("inf")
        assert gate.main(["--model", str(path), "--radius", "0.05", "--min-certified-accuracy", "0.5"]) == 2
        assert "sigma must be a finite number > 0" in capsys.readouterr().err
        # certify_candidate is public: it checks the certificate's parameters itself
        with pytest.raises(gate.GateError, match="sigma must be a finite number > 0"):
            gate.certify_candidate(net, sidecar, data[0], 0.05, n=50, samples=10)
    assert not list(tmp_path.rglob("report.json"))


@pytest.mark.parametrize("kwargs,name", [({"radius": float("inf")}, "radius"), ({"radius": 0.0}, "radius"),
                                         ({"radius": float("nan")}, "radius"), ({"samples": 0}, r"n \(--samples\) must be"),
                                         ({"sigma": float("inf")}, "sigma")])
def test_certificate_parameters_in_range_only(kwargs, name):
    args = {"radius": 0.05, "samples": 100, "sigma": 0.1} | kwargs
    with pytest.raises(gate.GateError, match=name):
        gate.certificate_parameters("smoothing", args["radius"], {"sigma": args["sigma"]}, args["samples"])
    if "sigma" not in kwargs and "samples" not in kwargs:
        with pytest.raises(gate.GateError, match=name):
            gate.certificate_parameters("ibp", args["radius"], {}, args["samples"])
    ok = gate.certificate_parameters("smoothing", 0.05, {"sigma": 0.1}, 100)
    assert ok["sigma"] == 0.1 and ok["n"] == 100 and 0 < ok["alpha"] < 1 and ok["n0"] >= 1


def test_gate_refuses_a_model_with_non_finite_outputs(data, tmp_path, capsys):
    net = fraud.fraud_mlp(hidden=32)
    with torch.no_grad():
        net[-1].weight.fill_(float("nan"))  # argmax of NaN logits is class 0: "legitimate", 98% accurate
    path = _save(net, tmp_path / "nan.pt", data[0], certifier="smoothing", sigma=0.1)
    assert gate.main(["--model", str(path), "--radius", "0.05", "--min-certified-accuracy", "0.5",
                      "--n", "200", "--samples", "20"]) == gate.EXIT_BAD_INPUT
    assert "non-finite" in capsys.readouterr().err


def test_clean_accuracy_rule_stops_a_smoothed_classifier_that_is_not_the_model(data, tmp_path, capsys):
    """A finite, in-range but huge sigma: the smoothed classifier is a constant ("legitimate", 98%
    accurate, certified at every radius) while the model itself flags every transaction (2%)."""
    scaler, x, y = data
    d = len(fraud.FEATURES)
    net = fraud.fraud_mlp(hidden=32)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net[0].weight[:d] = torch.eye(d)  # h1 = relu(+x), relu(-x): at most 1 each on clean inputs
        net[0].weight[d:2 * d] = -torch.eye(d)
        net[2].weight[0, :2 * d] = 1.0  # h2 = relu(sum h1 - d): 0 on clean inputs, huge under big noise
        net[2].bias[0] = -float(d)
        net[4].weight[0, 0] = 1.0  # logit "legitimate" = h2; logit "fraud" = 1
        net[4].bias[1] = 1.0
    assert (net(x).argmax(1) == 1).all()
    path = _save(net, tmp_path / "noise_lover.pt", scaler, certifier="smoothing", sigma=1e6)
    code = gate.main(["--model", str(path), "--radius", "0.05", "--min-certified-accuracy", "0.9", "--n", "300",
                      "--samples", "50", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["certified_accuracy"] > 0.9  # the certificate itself is valid for the smoothed classifier ...
    assert code == gate.EXIT_SHORT and not report["passed"]  # ... but the model is not what was certified
    assert report["model_clean_accuracy"] < 0.1 and "clean accuracy" in out and "FAILED" in out


def test_gate_rates_are_exact_fractions_and_thresholds_are_inclusive(good_model, data, tmp_path):
    """Rates are counts / n in float64 (a float32 mean of 45 / 50 is 0.89999998 and failed a 0.9 threshold),
    and a model exactly at both thresholds passes."""
    n = 3000
    _, report = gate.run_gate(good_model, RADIUS, 0.0, 0.0, out=tmp_path / "a", n=n)
    net, _, scaler = gate.load_candidate(good_model)
    df = fraud.make_transactions(n, seed=2024)
    y = torch.from_numpy(df["is_fraud"].to_numpy().copy()).long()
    with torch.no_grad():
        pred = net(torch.from_numpy(scaler.transform(df))).argmax(1)
    assert report["model_clean_accuracy"] == int((pred == y).sum()) / n
    assert report["model_clean_recall"] == int((pred[y == 1] == 1).sum()) / int((y == 1).sum())
    acc = min(report["certified_accuracy"], report["model_clean_accuracy"])
    rec = min(report["certified_recall"], report["model_clean_recall"])
    code, report = gate.run_gate(good_model, RADIUS, acc, rec, out=tmp_path / "b", n=n)
    assert code == gate.EXIT_PASS, report["reasons"]


def test_gate_fails_without_a_fraud_case(good_model, tmp_path, monkeypatch):
    """No fraud case: recall is NaN, and `NaN < threshold` is False; the gate must fail, not promote."""
    real = fraud.make_transactions
    monkeypatch.setattr(gate.fraud, "make_transactions", lambda n, seed=0: real(n, seed=seed).query("is_fraud == 0"))
    code, report = gate.run_gate(good_model, RADIUS, 0.0, 0.0, out=tmp_path / "r", n=500)
    assert report["fraud_cases"] == 0 and code == gate.EXIT_SHORT
    assert any("no fraud case" in r for r in report["reasons"]), report["reasons"]


def test_gate_accepts_alpha_crown_and_it_certifies_at_least_what_crown_does(good_model, data):
    """Issue 33: "alpha-crown" is a certifier of the gate; on the same transactions it is never below CROWN."""
    scaler = data[0]
    net = fraud.fraud_mlp(hidden=32)
    net.load_state_dict(torch.load(good_model, weights_only=True))
    meta = json.loads(open(str(good_model) + ".json").read())
    out = {c: gate.certify_candidate(net.eval(), meta | {"certifier": c}, scaler, 0.05, n=300)
           for c in ("crown", "alpha-crown")}
    assert "ALPHA-CROWN" in out["alpha-crown"]["threat_model"]
    assert out["alpha-crown"]["certified_accuracy"] >= out["crown"]["certified_accuracy"]
    assert out["alpha-crown"]["certified_recall"] >= out["crown"]["certified_recall"]
