"""Caches and data files that recover instead of crashing (issue 17, items 8 and 9).

Every cache file is written atomically and verified on read; a damaged or foreign entry is
rebuilt with a warning. Raw MNIST files are verified (structure, labels, SHA-256) and a bad file
is named with what to do about it. Corrupted copies are built in tmp folders, never in the data.
"""
import json
import os
import shutil
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from course_utils import config, data, training, zoo
from course_utils.attacks import AttackConfig
from course_utils.training import AdversarialTrainingConfig

SHARED_MNIST = data.data_dir() / "MNIST" / "raw" if os.environ.get("COURSE_DATA_DIR") else None
needs_mnist = pytest.mark.skipif(SHARED_MNIST is None or not (SHARED_MNIST / data.MNIST_RAW[0]).exists(),
                                 reason="needs COURSE_DATA_DIR with the offline MNIST files")


# ---------------------------------------------------------------- the atomic-write helper

def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path):
    path = tmp_path / "new" / "folder" / "f.bin"  # folders are created on first use
    with config.atomic_write(path) as f:
        f.write(b"old")
    with pytest.raises(KeyboardInterrupt):
        with config.atomic_write(path) as f:
            f.write(b"half of the new con")
            raise KeyboardInterrupt  # as if the process were stopped mid-write
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no temp file left


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    hour_ago = time.time() - config.STALE_TEMP_SECONDS - 60
    stale = [tmp_path / "cifar10_jpeg_b7a2e9eef770_test.npzk3j4h5.tmp", models_dir / "tmpab12cd.tmp",
             models_dir / "m.pt.x1y2z3.tmp"]
    fresh = models_dir / "m.pt.q9w8e7.tmp"  # may belong to a write in progress
    mine = tmp_path / "notes.txt"
    for p in stale + [fresh, mine]:
        p.write_bytes(b"x" * 100)
    for p in stale + [mine]:
        os.utime(p, (hour_ago, hour_ago))
    config.cache_dir()
    assert not any(p.exists() for p in stale) and fresh.exists() and mine.exists()
    # a temp of a write in progress elsewhere is kept; one older than an hour next to a target is not
    other = tmp_path / "elsewhere"
    other.mkdir()
    old = other / "w.pt.abc.tmp"
    old.write_bytes(b"x")
    os.utime(old, (hour_ago, hour_ago))
    with config.atomic_write(other / "w.pt") as f:
        f.write(b"y")
    assert not old.exists() and (other / "w.pt").read_bytes() == b"y"


# ---------------------------------------------------------------- cached models (training.cached_model)

def _build():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def _trainer(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    return train


def _cached(calls):
    return training.cached_model("toy", _build, _trainer(calls), meta={"note": "toy"})


SIDECAR_DAMAGE = {
    "sidecar without sha256": lambda side: side.write_text(json.dumps({"note": "toy"})),
    "sidecar is a JSON list": lambda side: side.write_text("[1, 2]"),
    "sidecar is garbled": lambda side: side.write_bytes(b"\xff\xfe{not json"),
    "sidecar is empty": lambda side: side.write_text(""),
    "sidecar is missing": lambda side: side.unlink(),
    "weights are truncated": lambda side: side.with_suffix("").write_bytes(side.with_suffix("").read_bytes()[:50]),
    "weights are empty": lambda side: side.with_suffix("").write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(SIDECAR_DAMAGE))
def test_cached_model_rebuilds_an_unreadable_entry(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    calls = []
    first = _cached(calls)
    assert calls == [1] and (tmp_path / "models" / "toy.pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact entry loads quietly, without training
        again = _cached(calls)
    assert calls == [1] and torch.equal(again[0].weight, first[0].weight)
    SIDECAR_DAMAGE[damage](tmp_path / "models" / "toy.pt.json")
    with pytest.warns(UserWarning, match="toy.pt") as record:
        rebuilt = _cached(calls)
    assert len(record) == 1 and "\n" not in str(record[0].message)  # one line
    assert calls == [1, 1] and torch.equal(rebuilt[0].weight, first[0].weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _cached(calls)  # the rebuilt entry is intact again
    assert calls == [1, 1]


def test_cached_model_rebuilds_from_a_fresh_model_not_a_half_loaded_one(tmp_path, monkeypatch):
    """Weights of another architecture with overlapping keys: ``load_state_dict`` copies the keys that
    fit before it fails; the rebuild must start from ``build()``, not from that half-loaded model."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    other = nn.Sequential(nn.Linear(3, 4))
    with torch.no_grad():
        other[0].weight.fill_(7.0)
    training.save_checkpoint(other, tmp_path / "models" / "toy.pt")
    calls = []
    with pytest.warns(UserWarning, match="toy.pt"):
        model = _cached(calls)
    expected = _build()
    _trainer([])(expected)
    assert calls == [1] and torch.equal(model[0].weight, expected[0].weight)


@pytest.mark.parametrize("damage", ["sidecar without sha256", "sidecar is a JSON list", "sidecar is garbled"])
def test_the_safe_loader_still_refuses_what_the_cache_rebuilds(tmp_path, damage):
    from course_utils import models

    path = tmp_path / "m.pt"
    training.save_checkpoint(models.mnist_small_cnn(), path, {"architecture": "mnist_small_cnn"})
    SIDECAR_DAMAGE[damage](tmp_path / "m.pt.json")
    with pytest.raises(training.ModelFileError):
        training.load_model_file(path, models.build_model)
    with pytest.raises(ValueError):  # load_checkpoint: a ValueError that says why, not a KeyError / TypeError
        training.load_checkpoint(models.mnist_small_cnn(), path)


# ---------------------------------------------------------------- the robust zoo model and its history CSV

TINY_RECIPE = dict(model="mnist_small_cnn", width=1, n_train=32, batch=16, n_val=16,
                   train=AdversarialTrainingConfig(AttackConfig(0.3, kind="fgsm_rs", alpha=0.375), epochs=2, lr=1e-3,
                                                   optimizer="adam", weight_decay=0.0, drop=None,
                                                   val_attack=AttackConfig(0.3, steps=1, alpha=0.3)))


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """A fresh (not yet existing) cache folder, a 2-epoch recipe and 64 synthetic MNIST-shaped images;
    returns the list of ``load_dataset`` calls (one per training run)."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "fresh_cache"))
    monkeypatch.setitem(zoo.RECIPES["mnist"], "smoke", TINY_RECIPE)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g)
    ds = data.ArrayDataset(images, torch.arange(64) % 10, data.MNIST_CLASSES)
    loads = []
    monkeypatch.setattr(data, "load_dataset", lambda name, split="train", download=True: loads.append(name) or ds)
    return loads


def _robust():
    return zoo.robust_model("mnist", "smoke", device=torch.device("cpu"), progress=False)


def _history_path():
    return config.cache_dir() / "models" / f"{zoo.cache_name('mnist', 'smoke')}.history.csv"


def test_a_fresh_cache_folder_trains_saves_and_reloads(tiny_zoo):
    model, history, r = _robust()
    assert tiny_zoo == ["mnist"] and len(history) == r["train"].epochs
    assert _history_path().exists() and _history_path().with_name(_history_path().name[:-12] + ".pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, history2, _ = _robust()
    assert tiny_zoo == ["mnist"]  # from the cache: no second training
    pd.testing.assert_frame_equal(history2, history, check_exact=False)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(again(x), model(x))


HISTORY_DAMAGE = {
    "empty file": lambda p: p.write_text(""),
    "garbled bytes": lambda p: p.write_bytes(b"\x00\xff\x13garbage,\n\x01"),
    "header only (truncated)": lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"),
    "one row lost": lambda p: p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n"),
    "a column missing": lambda p: pd.read_csv(p).drop(columns=["val_robust"]).to_csv(p, index=False),
    "values changed": lambda p: pd.read_csv(p).assign(val_robust=1.0).to_csv(p, index=False),
    "file deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", list(HISTORY_DAMAGE))
def test_a_damaged_history_csv_is_rebuilt(tiny_zoo, damage):
    _, history, r = _robust()
    HISTORY_DAMAGE[damage](_history_path())
    with pytest.warns(UserWarning, match="history"):
        _, rebuilt, _ = _robust()
    assert tiny_zoo == ["mnist", "mnist"]  # trained again
    assert len(rebuilt) == r["train"].epochs and list(rebuilt["epoch"]) == [1, 2]
    assert len(pd.read_csv(_history_path())) == r["train"].epochs


@pytest.mark.parametrize("damage, says", [
    (lambda h: h.iloc[:-1], "rows"),
    (lambda h: h.drop(columns=["val_robust"]), "columns"),
    (lambda h: h.assign(epoch=[1, 1]), "epochs"),
])
def test_the_history_is_checked_beyond_its_digest(tiny_zoo, damage, says):
    """Even a CSV whose recorded digest was updated must have the recorded columns and epochs."""
    _robust()
    path = _history_path()
    damage(pd.read_csv(path)).to_csv(path, index=False)
    side_path = training.cached_model_path(zoo.cache_name("mnist", "smoke")).with_suffix(".pt.json")
    side = json.loads(side_path.read_text())
    side["history"]["sha256"] = data.sha256sum(path)
    side_path.write_text(json.dumps(side))
    with pytest.raises(ValueError, match=says):
        zoo.read_history(path, side["history"])
    with pytest.warns(UserWarning, match=says):
        _, history, r = _robust()
    assert tiny_zoo == ["mnist", "mnist"] and len(history) == r["train"].epochs


def test_a_shipped_entry_is_loaded_on_a_learners_first_run(tiny_zoo, tmp_path, monkeypatch):
    """zoo.ship writes the entry the course commits; a fresh cache then loads it (no training), and the
    "train it yourself" switch (source="train") trains by the same recipe anyway."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: shipped)
    written = zoo.ship("mnist", "smoke", progress=False)
    key = zoo.cache_name("mnist", "smoke")
    assert tiny_zoo == ["mnist"] and [p.name for p in written] == [f"{key}.pt", f"{key}.pt.json", f"{key}.history.csv"]
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "learner_cache"))  # a learner's empty cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, history, r = _robust()
    assert tiny_zoo == ["mnist"], "the shipped entry was loaded, not trained again"
    assert len(history) == r["train"].epochs
    state = torch.load(written[0], weights_only=True)
    assert all(torch.equal(v.cpu(), state[k]) for k, v in model.state_dict().items())
    zoo.robust_model("mnist", "smoke", device=torch.device("cpu"), progress=False, source="train")
    assert tiny_zoo == ["mnist", "mnist"], "source='train' trains whatever is shipped"
    with pytest.raises(ValueError, match="source"):
        zoo.robust_model("mnist", "smoke", source="download")


@pytest.mark.parametrize("damaged", [".pt", ".history.csv"])
def test_a_damaged_shipped_entry_is_trained_again(tiny_zoo, tmp_path, monkeypatch, damaged):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: shipped)
    zoo.ship("mnist", "smoke", progress=False)
    f = shipped / f"{zoo.cache_name('mnist', 'smoke')}{damaged}"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "learner_cache"))
    with pytest.warns(UserWarning, match="unusable"):
        _robust()
    assert tiny_zoo == ["mnist", "mnist"], "a damaged shipped copy is never trusted"


@pytest.mark.parametrize("target", ["trap", "ibp"])
def test_shipped_trap_and_ibp_models_load_without_training(tiny_zoo, tmp_path, monkeypatch, target):
    """Any cache entry the course ships (here notebook 04's trap models and notebook 08's IBP model, which
    go through training.cached_model) is copied into a learner's empty cache and loaded, not trained;
    source="train" trains them anyway."""
    from course_utils.training import union

    monkeypatch.setitem(zoo.IBP, "smoke", dict(model="mnist_small_cnn", n_train=64, epochs=1, batch=32, eps_train=0.15))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: shipped)
    written = zoo.ship(target, "smoke", progress=False)
    names = zoo.ship_names(target, "smoke")
    assert sorted(p.name for p in written if p.suffix == ".pt") == sorted(f"{n}.pt" for n in names)
    assert all(zoo.is_shipped(n) for n in names) and len(tiny_zoo) == len(names)

    def load(source):
        if target == "ibp":
            return [zoo.ibp_model("smoke", device="cpu", progress=False, source=source)[0]]
        return [union.model(k, "smoke", device="cpu", progress=False, source=source)[0] for k in ("standard", "l2", "union")]

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "learner_cache"))  # a learner's empty cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load("shipped")
    assert len(tiny_zoo) == len(names), "the shipped entries were loaded, not trained again"
    for model, name in zip(loaded, names):
        state = torch.load(shipped / f"{name}.pt", weights_only=True)
        assert all(torch.equal(v.cpu(), state[k]) for k, v in model.state_dict().items())
    load("train")
    assert len(tiny_zoo) == 2 * len(names), "source='train' trains whatever is shipped"
    with pytest.raises(ValueError, match="source"):
        load("download")


def test_a_killed_history_write_leaves_no_half_file(tiny_zoo, monkeypatch):
    to_csv = pd.DataFrame.to_csv

    def write_half_then_die(self, path_or_buf=None, *args, **kwargs):
        text = to_csv(self, None, *args, **kwargs)
        if hasattr(path_or_buf, "write"):
            path_or_buf.write(text[:20])
        else:
            with open(path_or_buf, "w") as f:
                f.write(text[:20])
        raise KeyboardInterrupt

    (config.cache_dir() / "models").mkdir()
    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        _robust()
    assert not _history_path().exists() and not list(_history_path().parent.glob("*.tmp"))
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    _, history, r = _robust()
    assert len(history) == r["train"].epochs


# ---------------------------------------------------------------- the CIFAR-10 array cache

@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A 2-images-per-class fake of the JPEG archive, accepted by checksum; returns the cache folder."""
    from test_config_data import _fake_archive

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    _fake_archive(tmp_path / data.CIFAR10_JPEG_ARCHIVE)
    monkeypatch.setattr(data, "CIFAR10_JPEG_SHA256", data.sha256sum(tmp_path / data.CIFAR10_JPEG_ARCHIVE))
    return tmp_path / "cache"


def _resave(cache, images, labels, fix_sidecar=False):
    """Rewrite the cache as a well-formed .npz; with ``fix_sidecar`` its recorded digest follows."""
    with open(cache, "wb") as f:
        np.savez(f, images=images, labels=labels)
    side = cache.with_name(cache.name + ".json")
    if fix_sidecar:
        meta = json.loads(side.read_text())
        meta["sha256"] = data.sha256sum(cache)
        side.write_text(json.dumps(meta))


CACHE_DAMAGE = {
    "labels shuffled": lambda im, lab: (im, np.random.default_rng(0).permutation(lab), False),
    "images shuffled": lambda im, lab: (im[np.random.default_rng(0).permutation(len(im))], lab, False),
    "labels out of range, digest updated": lambda im, lab: (im, np.full_like(lab, 200), True),
    "images not uint8, digest updated": lambda im, lab: (im.astype(np.float32), lab, True),
    "images the wrong shape, digest updated": lambda im, lab: (im[:, :1], lab, True),
    "fewer labels than images, digest updated": lambda im, lab: (im, lab[:-1], True),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_well_formed_cifar_cache_with_the_wrong_content_is_rebuilt(fake_cifar, damage):
    good = data.load_dataset("cifar10", "train", download=False)
    (cache,) = fake_cifar.glob("*.npz")
    images, labels, fix = CACHE_DAMAGE[damage](good.images.numpy(), good.targets.numpy())
    _resave(cache, images, labels, fix_sidecar=fix)
    with pytest.warns(UserWarning, match="rebuilding"):
        again = data.load_dataset("cifar10", "train", download=False)
    assert torch.equal(again.targets, good.targets) and torch.equal(again.images, good.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_dataset("cifar10", "train", download=False)  # rebuilt entry: read quietly


@pytest.mark.parametrize("sidecar", ["missing", "garbled", "a list"])
def test_a_cifar_cache_without_a_usable_sidecar_is_rebuilt(fake_cifar, sidecar):
    good = data.load_dataset("cifar10", "test", download=False)
    (cache,) = fake_cifar.glob("*.npz")
    side = cache.with_name(cache.name + ".json")
    {"missing": side.unlink, "garbled": lambda: side.write_bytes(b"\xff{"), "a list": lambda: side.write_text("[]")}[sidecar]()
    with pytest.warns(UserWarning, match="rebuilding"):
        again = data.load_dataset("cifar10", "test", download=False)
    assert torch.equal(again.targets, good.targets)
    assert json.loads(side.read_text())["sha256"] == data.sha256sum(cache)


# ---------------------------------------------------------------- raw MNIST files

def test_the_mnist_digests_are_the_official_ones():
    """The digests the loader checks are those of the official uncompressed files, as listed in the
    offline data README (``../shared/data/README.md``); the intact offline copy passes them."""
    readme = data.data_dir() / "README.md"
    if SHARED_MNIST is None or not readme.exists():
        pytest.skip("needs COURSE_DATA_DIR with the offline data README")
    listed = {}
    for line in readme.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith("MNIST/raw/"):
            listed[parts[1].split("/")[-1]] = parts[0]
    assert listed == data.MNIST_SHA256


@pytest.fixture
def mnist_copy(tmp_path, monkeypatch):
    """A data folder whose MNIST/raw holds copies of the offline test files (links to the train files)."""
    if SHARED_MNIST is None:
        pytest.skip("needs COURSE_DATA_DIR with the offline MNIST files")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_RAW:
        if name.startswith("t10k"):
            shutil.copyfile(SHARED_MNIST / name, raw / name)
        else:
            (raw / name).symlink_to(SHARED_MNIST / name)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    return raw


def _edit(path, fn):
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(fn(raw)))


def test_an_intact_mnist_copy_loads(mnist_copy):
    ds = data.load_dataset("mnist", "test", download=False)
    assert len(ds) == 10_000 and ds.targets[:4].tolist() == [7, 2, 1, 0]


def _labels_200(raw):
    raw[8 + 100:8 + 200] = bytes([200]) * 100  # 100 labels set to 200 (header: 8 bytes)
    return raw


def _random_images(raw):
    rng = np.random.default_rng(0)
    start = 16 + 784 * 5000  # 100 images replaced by noise (header: 16 bytes)
    raw[start:start + 784 * 100] = rng.integers(0, 256, 784 * 100, dtype=np.uint8).tobytes()
    return raw


def _bad_magic(raw):
    raw[2:4] = b"\x08\x02"
    return raw


MNIST_DAMAGE = {  # file, edit, what the message must say
    "labels set to 200": ("t10k-labels-idx1-ubyte", _labels_200, r"labels outside 0\.\.9"),
    "100 images randomised": ("t10k-images-idx3-ubyte", _random_images, "SHA-256"),
    "one pixel changed": ("t10k-images-idx3-ubyte", lambda raw: raw.__setitem__(-1, raw[-1] ^ 1) or raw, "SHA-256"),
    "bad magic number": ("t10k-images-idx3-ubyte", _bad_magic, "magic number"),
    "truncated images": ("t10k-images-idx3-ubyte", lambda raw: raw[:len(raw) // 2], "truncated"),
    "truncated labels": ("t10k-labels-idx1-ubyte", lambda raw: raw[:6], "truncated"),
    "empty file": ("t10k-labels-idx1-ubyte", lambda raw: b"", "truncated"),
    "bytes appended": ("t10k-labels-idx1-ubyte", lambda raw: raw + b"\x00" * 10, "longer"),
}


@pytest.mark.parametrize("damage", list(MNIST_DAMAGE))
def test_a_damaged_mnist_file_is_named_with_what_to_do(mnist_copy, damage):
    name, edit, says = MNIST_DAMAGE[damage]
    _edit(mnist_copy / name, edit)
    for download in (False, True):  # the file exists: no download is tried, and it is still refused
        with pytest.raises(data.DataFileError, match=says) as info:
            data.load_dataset("mnist", "test", download=download)
        message = str(info.value)
        assert str(mnist_copy / name) in message and "delete" in message and "official" in message
        assert not isinstance(info.value, FileNotFoundError)


def test_a_missing_mnist_file_is_still_not_found(mnist_copy):
    (mnist_copy / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_dataset("mnist", "test", download=False)


def test_the_standard_twin_differs_from_the_robust_recipe_only_in_the_ratio(tiny_zoo, tmp_path, monkeypatch):
    """zoo.standard_twin (notebook 05's trade-off table): the robust recipe with ratio=0, its own cache
    entry, shipped and loaded like the robust model."""
    robust_r, twin_r = zoo.recipe("mnist", "smoke"), zoo.twin_recipe("mnist", "smoke")
    assert twin_r["train"].ratio == 0.0 and robust_r["train"].ratio == 1.0
    assert {k: v for k, v in twin_r.items() if k != "train"} == {k: v for k, v in robust_r.items() if k != "train"}
    assert twin_r["train"].val_attack.eps == 0.0  # the epoch kept is the most accurate, not the most PGD-robust
    assert twin_r["train"].replace(ratio=1.0, val_attack=robust_r["train"].val_attack) == robust_r["train"]  # nothing else
    assert zoo.twin_cache_name("mnist", "smoke") != zoo.cache_name("mnist", "smoke")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(zoo, "checkpoint_dir", lambda: shipped)
    written = zoo.ship("mnist_twin", "smoke", progress=False)
    assert [p.name for p in written][0] == f"{zoo.twin_cache_name('mnist', 'smoke')}.pt" and tiny_zoo == ["mnist"]
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "learner_cache"))
    twin, history, r = zoo.standard_twin("mnist", "smoke", device="cpu", progress=False)
    assert tiny_zoo == ["mnist"], "the shipped twin was loaded, not trained again"
    assert r == twin_r and len(history) == r["train"].epochs
    again, _, _ = zoo.standard_twin("mnist", "smoke", device="cpu", progress=False, source="train")
    assert tiny_zoo == ["mnist", "mnist"]
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), again.state_dict().values())), \
        "seeded initialization and data order: the twin trains to the same weights"
