"""The shipped checkpoints (``zoo.pretrained``): they load through the safe loader, refuse tampering,
and still score what their sidecar records on a seeded subset of the test set."""
import json
import shutil

import pytest
import torch

from course_utils import data, models, zoo
from course_utils.config import sha256sum
from course_utils.training import ModelFileError

NAME = "resnet20_cifar10"


def _meta(name=NAME):
    return json.loads((zoo.checkpoint_dir() / f"{name}.pt.json").read_text(encoding="utf-8"))


def check_recorded_accuracy(model, meta):
    """Re-measure the seeded 1,000-image subset and compare with the sidecar: the count within 5 images
    (arithmetic may differ between machines), and the full-test accuracy inside the subset's 95% interval."""
    sub = zoo.pretrained_accuracy(model, meta["recipe"]["dataset"], n=meta["subset_accuracy"]["n"],
                                  seed=meta["subset_accuracy"]["seed"])
    full = meta["test_accuracy"]["correct"] / meta["test_accuracy"]["n"]
    assert abs(sub.correct - meta["subset_accuracy"]["correct"]) <= 5, (sub, meta["subset_accuracy"])
    lo, hi = sub.ci
    assert lo <= full <= hi, f"recorded full-test accuracy {full:.4f} outside the subset's interval {sub}"
    return sub


def test_names_and_sizes():
    assert NAME in zoo.pretrained_names()
    files = [p for p in zoo.checkpoint_dir().iterdir() if p.is_file()]
    weights = [p for p in files if p.suffix == ".pt"]
    current = {n: t for n, (t, _) in _shipped_today().items()}  # the entries today's recipes would ship
    stems = {p.stem for p in weights}
    assert set(zoo.pretrained_names()) <= stems, "a checkpoint per pretrained name"
    assert stems <= set(zoo.pretrained_names()) | set(current), f"strays (an old recipe's entry?): {stems - set(current)}"
    for stem in stems - set(zoo.pretrained_names()):
        robust = current[stem] in zoo.RECIPES  # their history is a CSV, the others' in the sidecar
        assert all(f.is_file() for f in zoo.shipped_files(stem)[:3 if robust else 2]), f"{stem}: weights, sidecar (history)"
    assert all(p.stat().st_size <= 5 * 2**20 for p in weights), "each checkpoint at most about 5 MB"
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20, "all together at most about 20 MB"


@pytest.mark.parametrize("name", zoo.pretrained_names())
def test_sidecar_records_recipe_log_and_target(name):
    meta = _meta(name)
    assert meta["recipe"] == zoo.PRETRAINED[name], "the shipped weights come from the recipe in the code"
    assert meta["architecture"] == zoo.PRETRAINED[name]["model"]
    log = zoo.checkpoint_dir() / meta["log"]
    assert sha256sum(log) == meta["log_sha256"]
    rows = log.read_text(encoding="utf-8").strip().splitlines()
    assert len(rows) == 1 + meta["recipe"]["epochs"], "one log row per epoch"
    acc = meta["test_accuracy"]
    assert acc["n"] == 10_000 and acc["ci95"][0] <= acc["correct"] / acc["n"] <= acc["ci95"][1]
    # a floor that catches a badly trained or wrongly recorded file; the target (88%) is reported, not asserted
    assert acc["correct"] / acc["n"] >= 0.85, "a standard ResNet-20 scores well above 85% on CIFAR-10"


@pytest.mark.parametrize("name", zoo.pretrained_names())
def test_shipped_checkpoint_scores_its_recorded_accuracy(name):
    model = zoo.pretrained(name, device="cpu")
    assert not model.training and isinstance(model[0], models.Normalize), "eval mode, [0, 1] pixels in"
    check_recorded_accuracy(model, _meta(name))


def test_accuracy_check_fails_on_the_wrong_weights():
    """The check above can fail: an untrained ResNet-20 under the same sidecar is caught."""
    with pytest.raises(AssertionError):
        check_recorded_accuracy(models.resnet20().eval(), _meta())


def _shipped_today() -> dict:
    """cache name -> (ship target, profile) of every entry today's recipes ship (``zoo.ship_names``)."""
    return {n: (t, prof) for t in zoo.SHIP_TARGETS for prof in ("smoke", "quick", "full") for n in zoo.ship_names(t, prof)}


def test_shipped_entries_verify():
    """Each shipped cache entry (zoo.ship: robust models, the L-infinity trap's models, the IBP model)
    passes the cache's own checks: its recipe's architecture, the weights' SHA-256, and its history."""
    from course_utils.training import load_checkpoint, read_sidecar, union

    today = _shipped_today()
    stems = [p.stem for p in zoo.checkpoint_dir().glob("*.pt") if p.stem not in zoo.pretrained_names()]
    assert {"trap", "ibp", "mnist", "cifar10"} <= {today[s][0] for s in stems}, "what notebooks 04, 05, 08 load"
    for stem in stems:
        target, profile = today[stem]
        weights, _, history = zoo.shipped_files(stem)
        meta = read_sidecar(weights)
        if target in zoo.RECIPES or target.endswith("_twin"):
            r = zoo.recipe(target, profile) if target in zoo.RECIPES else zoo.twin_recipe(target[:-5], profile)
            assert len(zoo.read_history(history, meta["history"])) >= 1
        elif target == "trap":
            kind = stem.split("_")[2]
            r = union.recipe(kind, profile)
            epochs = meta["history"]["epoch"]
            assert epochs == list(range(1, len(epochs) + 1)) and 1 <= len(epochs) <= r["train"].epochs
        else:
            r = zoo.IBP[profile]
            assert len(meta["history"]) == r["epochs"], "one history row per epoch"
        load_checkpoint(zoo.build(r), weights)


def test_channels_last_is_the_same_model():
    """memory_format=channels_last (p1, for speed on a CPU): NHWC convolution weights, the same predictions."""
    plain = zoo.pretrained(NAME, device="cpu")
    nhwc = zoo.pretrained(NAME, device="cpu", memory_format=torch.channels_last)
    convs = [p for p in nhwc.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not any(p.is_contiguous(memory_format=torch.channels_last) for p in plain.parameters()
                   if p.ndim == 4 and p.shape[-1] > 1), "the default keeps NCHW"
    x, _ = data.load_dataset("cifar10", "test").tensors(torch.arange(64))
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), plain(x), atol=1e-4, rtol=1e-4)


def test_tampered_or_unverified_checkpoints_are_refused(tmp_path, monkeypatch):
    for f in zoo.checkpoint_dir().glob(f"{NAME}.*"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: tmp_path)
    zoo.pretrained(NAME, device="cpu")  # the copy is intact
    weights = tmp_path / f"{NAME}.pt"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="SHA-256"):
        zoo.pretrained(NAME, device="cpu")
    (tmp_path / f"{NAME}.pt.json").unlink()
    with pytest.raises(ModelFileError, match="sidecar"):
        zoo.pretrained(NAME, device="cpu")


def test_unknown_name_and_source():
    with pytest.raises(ValueError, match="resnet20_cifar10"):
        zoo.pretrained("resnet50")
    with pytest.raises(ValueError, match="source"):
        zoo.pretrained(NAME, source="internet")


def test_train_it_yourself_switch_and_the_cli(tmp_path, monkeypatch):
    """``source="train"`` trains by the same code path as the shipped file (a tiny recipe here), caches,
    and the second call loads instead of training; ``python -m course_utils.zoo train`` writes a
    checkpoint that ``pretrained`` accepts."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    tiny = dict(zoo.PRETRAINED[NAME], n_train=128, epochs=1, batch=64)
    monkeypatch.setitem(zoo.PRETRAINED, "tiny", tiny)
    calls = []
    real = zoo._train_pretrained
    monkeypatch.setattr(zoo, "_train_pretrained", lambda *a, **k: calls.append(1) or real(*a, **k))
    m1 = zoo.pretrained("tiny", device="cpu", source="train", progress=False)
    m2 = zoo.pretrained("tiny", device="cpu", source="train", progress=False)
    assert len(calls) == 1 and not m2.training
    (sidecar,) = (tmp_path / "cache" / "models").glob("tiny_*.pt.json")
    assert len(json.loads(sidecar.read_text(encoding="utf-8"))["log"]) == tiny["epochs"], "the log is kept"
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    zoo._main(["train", "tiny", "--out", str(tmp_path / "out")])
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: tmp_path / "out")
    model = zoo.pretrained("tiny", device="cpu")
    meta = _meta("tiny")
    assert meta["command"] == "python -m course_utils.zoo train tiny" and meta["recipe"] == tiny
    assert zoo.pretrained_accuracy(model, n=200).n == 200


def test_data_source_names_the_copy():
    assert "cifar10" in data.data_source("cifar10") and "exact" in data.data_source("mnist")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loads_on_cuda():
    model = zoo.pretrained(NAME, device="cuda")
    assert next(model.parameters()).is_cuda
    check_recorded_accuracy(model, _meta())
