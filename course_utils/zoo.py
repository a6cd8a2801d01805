"""Adversarial-training recipes shared by notebooks 04 and 05, project p1 and the benchmark.

``robust_model("mnist")`` trains (or loads from ``cache_dir()/models``) the robust model of the
current profile with ``training.adversarial_fit``, so the notebook and
``benchmarks/adversarial_training.py`` report on the same weights. ``RECIPES`` holds the settings:

- MNIST, eps = 0.3: full = Wong, Rice & Kolter (2020): the small CNN, FGSM with random start
  (alpha = 0.375), 10 epochs, Adam with a one-cycle LR up to 5e-3 (published 98.5% clean /
  88.8% PGD-50 x 10 restarts). quick = a CPU budget of a few minutes (see the recipe).
- CIFAR-10, eps = 8/255: full = PreActResNet-18, FGSM-RS (alpha = 10/255), 15 epochs, SGD one-cycle
  to 0.2 (Wong et al. 2020: 86.06% clean / 46.06% under PGD-50 x 10 restarts, step 2/255, in the
  README and ``CIFAR10/train_fgsm.py`` of locuslab/fast_adversarial; RobustBench's AutoAttack
  evaluation of their model, entry ``Wong2020Fast``: 83.34% / 43.21%); quick = ``cifar_small_cnn``
  on a CPU.

The cache key holds the profile and a hash of the recipe, so changing a setting retrains.
A robust model's training history is cached beside it (``<key>.history.csv``, written with
``config.atomic_write``); the model's sidecar records the CSV's SHA-256, columns and number of
rows (epochs run), and ``read_history`` checks all three. A history that fails (missing, empty,
garbled, truncated, edited) makes the whole entry count as missing: one warning, then training.
"""
from __future__ import annotations

import hashlib
import json
import warnings

from .attacks import AttackConfig
from .config import atomic_write, get_device, get_profile, sha256sum
from .training.adversarial import AdversarialTrainingConfig

_MNIST_FULL = dict(model="mnist_small_cnn", width=1, n_train=60_000, batch=100, n_val=1000,
                   train=AdversarialTrainingConfig(AttackConfig(0.3, kind="fgsm_rs", alpha=0.375), epochs=10, lr=5e-3,
                                                   optimizer="adam", weight_decay=0.0, drop=0.2))
_CIFAR_FULL = dict(model="preact_resnet18", n_train=50_000, batch=128, n_val=1000, augment=True,
                   train=AdversarialTrainingConfig(AttackConfig(8 / 255, kind="fgsm_rs", alpha=10 / 255), epochs=15, lr=0.2,
                                                   drop=0.2))


def _with(base: dict, train_changes: dict | None = None, **changes) -> dict:
    """``base`` with some data settings and some ``AdversarialTrainingConfig`` fields changed."""
    return {**base, **changes, "train": base["train"].replace(**(train_changes or {}))}


RECIPES = {
    "mnist": {
        "smoke": _with(_MNIST_FULL, dict(epochs=1, val_attack=AttackConfig(0.3, steps=3, alpha=0.075)), n_train=1024,
                       n_val=64),
        # CPU budget: wider CNN, PGD-3 training (3 steps of 0.15 reach any corner of the 0.3-ball from a random
        # start), eps ramped over 2 of 8 epochs, best epoch on a held-out PGD check kept
        "quick": _with(_MNIST_FULL, dict(attack=AttackConfig(0.3, steps=3, alpha=0.15), epochs=8, ramp_epochs=2),
                       width=2, n_val=500),
        "full": _MNIST_FULL,
    },
    "cifar10": {
        "smoke": _with(_CIFAR_FULL, dict(epochs=1, val_attack=AttackConfig(8 / 255, steps=3, alpha=2 / 255)),
                       model="cifar_small_cnn", n_train=512, n_val=64),
        "quick": _with(_CIFAR_FULL, dict(epochs=4, lr=0.1), model="cifar_small_cnn", n_val=500, augment=False),
        "full": _CIFAR_FULL,
    },
}


def recipe(dataset: str, profile: str | None = None) -> dict:
    """The settings for ``dataset`` ("mnist" or "cifar10") under ``profile`` (default: the current one)."""
    if dataset not in RECIPES:
        raise ValueError(f"dataset must be one of {sorted(RECIPES)}, got {dataset!r}")
    return dict(RECIPES[dataset][profile or get_profile().name])


def recipe_json(r: dict) -> str:
    """A recipe as canonical JSON (its training config as plain fields): what the cache key hashes."""
    return json.dumps({**r, "train": r["train"].to_dict()} if "train" in r else r, sort_keys=True)


def cache_name(dataset: str, profile: str | None = None) -> str:
    profile = profile or get_profile().name
    digest = hashlib.sha256(recipe_json(recipe(dataset, profile)).encode()).hexdigest()[:10]
    return f"{dataset}_robust_{profile}_{digest}"


def build(r: dict):
    """A fresh model for recipe ``r``."""
    from . import models

    return models.mnist_small_cnn(r.get("width", 1)) if r["model"] == "mnist_small_cnn" else models.build_model(r["model"])


def split_indices(n: int, n_train: int, n_val: int, seed: int = 0):
    """Disjoint seeded (train, val) index tensors: val = the first ``n_val`` of a permutation of range(n)."""
    import torch

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:n_val + n_train], perm[:n_val]


def _augmented_loader(ds, idx, r, seed):
    """Random crop (pad 4) + horizontal flip on uint8 tensors, batch-wise (Wong et al. 2020's CIFAR-10 augmentation)."""
    import torch

    images, labels = ds.images[idx], ds.targets[idx]
    g = torch.Generator().manual_seed(seed)

    class Loader:
        def __len__(self):
            return (len(labels) + r["batch"] - 1) // r["batch"]

        def __iter__(self):
            order = torch.randperm(len(labels), generator=g)
            for i in range(len(self)):
                b = order[i * r["batch"]:(i + 1) * r["batch"]]
                x = torch.nn.functional.pad(images[b].float().div_(255), (4, 4, 4, 4), mode="reflect")
                dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()
                x = x[:, :, dy:dy + 32, dx:dx + 32]
                flip = torch.rand(len(b), generator=g) < 0.5
                x[flip] = x[flip].flip(3)
                yield x.contiguous(), labels[b]

    return Loader()


HISTORY_COLUMNS = ("epoch", "eps", "steps", "loss", "train_acc", "seconds", "val_clean", "val_robust")


def write_history(path, history) -> dict:
    """Write a training history (DataFrame, one row per epoch) atomically as CSV; return the record the
    model's sidecar keeps for ``read_history``: ``{"sha256", "columns", "rows"}``."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        history.to_csv(f, index=False)
    return {"sha256": sha256sum(path), "columns": [str(c) for c in history.columns], "rows": len(history)}


def read_history(path, record):
    """The history CSV at ``path`` as a DataFrame, after checking it against ``record`` (from
    ``write_history``): the SHA-256, the columns (which include ``HISTORY_COLUMNS``) and one row per
    recorded epoch, numbered 1..rows. Anything else raises ``ValueError`` saying what."""
    import pandas as pd

    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise ValueError("the model's sidecar records no history checksum (a cache from an older version)")
    try:
        digest = sha256sum(path)
    except OSError as e:
        raise ValueError(f"it cannot be read ({type(e).__name__})") from None
    if digest != record["sha256"]:
        raise ValueError("its SHA-256 differs from the one recorded with the model")
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as e:  # empty, garbled, not UTF-8
        raise ValueError(f"it is not a readable CSV ({type(e).__name__})") from None
    columns = [str(c) for c in history.columns]
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing or columns != record.get("columns"):
        raise ValueError(f"its columns {columns} are not the recorded {record.get('columns')} (missing: {missing})")
    if len(history) != record.get("rows") or list(history["epoch"]) != list(range(1, len(history) + 1)):
        raise ValueError(f"it has {len(history)} rows (epochs {list(history['epoch'])}), "
                         f"not the {record.get('rows')} epochs recorded")
    return history


def robust_model(dataset: str, profile: str | None = None, device=None, progress: bool = True, memory_format=None):
    """``(model, history, recipe)``: the adversarially trained model of ``recipe(dataset, profile)``,
    on ``device`` (default: ``get_device()``); ``recipe["train"]`` is its ``AdversarialTrainingConfig``.

    Loaded from the cache when an intact checkpoint and its verified history exist (then ``history``
    is the saved CSV), otherwise trained with ``adversarial_fit`` on ``n_train`` training images, with
    a PGD check after each epoch on ``n_val`` other (held-out) training images. ``history`` has a
    ``seconds`` column. A damaged cache entry (weights, sidecar or history) is trained again.
    ``memory_format``: e.g. ``torch.channels_last`` for NHWC convolutions (faster on GPUs with tensor
    cores, ``benchmarks/gpu_check.py``); the same function either way, so the cache entry is shared.
    """
    import torch

    from .data import load_dataset, make_loader
    from .training import ModelFileError, adversarial_fit, cached_model, cached_model_path, read_sidecar

    r = recipe(dataset, profile)
    name = cache_name(dataset, profile)
    path = cached_model_path(name)
    hist_path = path.with_name(f"{name}.history.csv")
    device = device or get_device()
    meta = {"recipe": json.loads(recipe_json(r))}
    holder = {}
    if path.exists():
        try:
            on_disk = read_sidecar(path)
        except ModelFileError:
            on_disk = None  # cached_model finds the entry unusable, says so and trains again
        if on_disk is not None:
            try:
                holder["history"] = read_history(hist_path, on_disk.get("history"))
            except ValueError as e:
                warnings.warn(f"training history {hist_path} is unusable: {e}; training the model again",
                              stacklevel=2)
                for f in (path, path.with_name(path.name + ".json")):  # the entry now counts as missing
                    f.unlink(missing_ok=True)

    def train(model):
        ds = load_dataset(dataset, "train")
        train_idx, val_idx = split_indices(len(ds), r["n_train"], r["n_val"])
        loader = (_augmented_loader(ds, train_idx, r, seed=0) if r.get("augment") else
                  make_loader(torch.utils.data.Subset(ds, train_idx.tolist()), r["batch"], shuffle=True, seed=0))
        xv, yv = ds.tensors(val_idx)  # held out: never trained on
        res = adversarial_fit(model, loader, r["train"], val=(xv.to(device), yv.to(device)), progress=progress)
        meta["history"] = write_history(hist_path, res.history)  # saved in the sidecar by cached_model
        holder["history"] = res.history

    fresh = (lambda: build(r)) if memory_format is None else (lambda: build(r).to(memory_format=memory_format))
    model = cached_model(name, fresh, train, meta=meta, device=device)
    return model.to(device).eval(), holder.get("history"), r


STANDARD = {  # standard (not robust) models: MNIST for notebook 03, CIFAR-10 for notebook 05 and project p1
    "mnist": {
        "smoke": dict(model="mnist_small_cnn", width=1, n_train=2_000, epochs=1, batch=128, lr=3e-3, optimizer="adam", weight_decay=0.0),
        "quick": dict(model="mnist_small_cnn", width=1, n_train=60_000, epochs=3, batch=128, lr=3e-3, optimizer="adam", weight_decay=0.0),
        "full": dict(model="mnist_small_cnn", width=1, n_train=60_000, epochs=10, batch=128, lr=3e-3, optimizer="adam", weight_decay=0.0),
    },
    "cifar10": {
        "smoke": dict(model="cifar_small_cnn", n_train=512, epochs=1, batch=128, lr=0.05, optimizer="sgd", weight_decay=5e-4),
        "quick": dict(model="cifar_small_cnn", n_train=20_000, epochs=3, batch=128, lr=0.1, optimizer="sgd", weight_decay=5e-4),
        "full": dict(model="preact_resnet18", n_train=50_000, epochs=15, batch=128, lr=0.1, optimizer="sgd", weight_decay=5e-4),
    },
}


def standard_model(dataset: str, profile: str | None = None, device=None, progress: bool = True):
    """``(model, recipe)``: the standard classifier of ``STANDARD[dataset][profile]`` (one-cycle LR),
    trained once on a seeded stratified subset and cached (the key holds a hash of the recipe).
    The model is on ``device`` (default: ``get_device()``)."""
    from .data import load_dataset, make_loader
    from .training import cached_model, fit

    if dataset not in STANDARD:
        raise ValueError(f"dataset must be one of {sorted(STANDARD)}, got {dataset!r}")
    profile = profile or get_profile().name
    r = dict(STANDARD[dataset][profile])
    digest = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:10]

    def train(model):
        ds = load_dataset(dataset, "train")
        fit(model, make_loader(ds, r["batch"], shuffle=True, seed=0, n=r["n_train"]), r["epochs"], lr=r["lr"],
            optimizer=r["optimizer"], weight_decay=r["weight_decay"], progress=progress)

    model = cached_model(f"{dataset}_standard_{profile}_{digest}", lambda: build(r), train,
                         meta={"recipe": r}, device=device or get_device())
    return model.eval(), r


IBP = {  # the IBP-trained MNIST model of notebook 08 (Gowal et al. 2018 schedule), also used by 08b and benchmarks/certified.py
    "smoke": dict(model="mnist_small_cnn", n_train=2048, epochs=1, batch=128, eps_train=0.15),
    "quick": dict(model="mnist_small_cnn", n_train=60_000, epochs=8, batch=128, eps_train=0.15),
    "full": dict(model="mnist_small_cnn", n_train=60_000, epochs=100, batch=128, eps_train=0.15),
}


def ibp_model(profile: str | None = None, device=None, progress: bool = True):
    """``(model, history, recipe)``: ``mnist_small_cnn`` trained by ``certify.ibp_fit`` at eps_train =
    0.15 (above the test radius 0.1, as Gowal et al. 2018) on ``IBP[profile]``; cached, so notebooks
    08 and 08b and ``benchmarks/certified.py`` certify the same weights. ``history``: the per-epoch
    list of ``ibp_fit`` when trained now, else the one recorded in the sidecar (``None`` if absent).
    """
    from .certify import ibp_fit
    from .data import load_dataset, make_loader
    from .training import ModelFileError, cached_model, cached_model_path, read_sidecar

    profile = profile or get_profile().name
    if profile not in IBP:
        raise ValueError(f"profile must be one of {sorted(IBP)}, got {profile!r}")
    r = IBP[profile]
    name = f"mnist_ibp_eps{r['eps_train']}_{profile}_{r['epochs']}_{r['n_train']}"  # the key notebook 08 has always used
    meta = {"recipe": dict(r)}

    def train(model):
        loader = make_loader(load_dataset("mnist", "train"), batch_size=r["batch"], n=r["n_train"], seed=0)
        meta["history"] = ibp_fit(model, loader, epochs=r["epochs"], eps=r["eps_train"], progress=progress)

    model = cached_model(name, lambda: build(r), train, meta=meta, device=device or get_device())
    history = meta.get("history")
    if history is None:
        try:
            history = read_sidecar(cached_model_path(name)).get("history")
        except ModelFileError:
            history = None
    return model.eval(), history, dict(r)
