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

``standard_twin(dataset)`` is the same recipe with ``ratio=0`` (no adversarial example, initial
weights seeded 0, the epoch kept chosen by clean held-out accuracy): the standard model a trade-off table compares the robust one with (notebook 05).

The cache key holds the profile and a hash of the recipe, so changing a setting retrains.
A robust model's training history is cached beside it (``<key>.history.csv``, written with
``config.atomic_write``); the model's sidecar records the CSV's SHA-256, columns and number of
rows (epochs run), and ``read_history`` checks all three. A history that fails (missing, empty,
garbled, truncated, edited) makes the whole entry count as missing: one warning, then training.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
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
    """Random crop (reflect-pad 4, an offset per image) + horizontal flip of uint8 tensors, done per batch
    (Wong et al. 2020's CIFAR-10 augmentation)."""
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
                yield random_crop_flip(images[b].float().div_(255), g), labels[b]

    return Loader()


def random_crop_flip(x, generator):
    """Wong et al. (2020)'s CIFAR-10 augmentation of a batch x: (B, C, 32, 32) in [0, 1]: reflect-pad 4,
    one random 32x32 crop per image, horizontal flip with probability 1/2 (draws from ``generator``)."""
    import torch

    n = len(x)
    x = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = (torch.randint(0, 9, (n, 1), generator=generator) + torch.arange(32) for _ in range(2))
    x = x[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
          dy[:, None, :, None], dx[:, None, None, :]]  # one random 32x32 crop per image
    flip = torch.rand(n, generator=generator) < 0.5
    x[flip] = x[flip].flip(3)
    return x.contiguous()


def shard_loader(ds, idx, r: dict, run, seed: int = 0):
    """This rank's loader over ``ds[idx]`` for ``run`` (``training.distributed.Run``): a
    ``DistributedSampler`` (shuffled with ``seed``, reshuffled per epoch by ``set_epoch``) and
    ``batch // world_size`` images per step, so the ranks' batches together are the one-process batch
    of the same permutation; with ``augment``, ``random_crop_flip`` drawing from the run's per-rank
    generator (its state is in the resumable checkpoint)."""
    from torch.utils.data import DataLoader, DistributedSampler, Subset, default_collate

    subset = Subset(ds, idx.tolist())
    sampler = DistributedSampler(subset, num_replicas=run.world_size, rank=run.rank, shuffle=True, seed=seed)

    def collate(batch):
        x, y = default_collate(batch)
        return (random_crop_flip(x, run.generator) if r.get("augment") else x), y

    return DataLoader(subset, batch_size=run.per_rank_batch(r["batch"]), sampler=sampler, collate_fn=collate)


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


def robust_model(dataset: str, profile: str | None = None, device=None, progress: bool = True, memory_format=None,
                 source: str = "shipped"):
    """``(model, history, recipe)``: the adversarially trained model of ``recipe(dataset, profile)``,
    on ``device`` (default: ``get_device()``); ``recipe["train"]`` is its ``AdversarialTrainingConfig``.

    Loaded from the cache when an intact checkpoint and its verified history exist (then ``history``
    is the saved CSV), otherwise trained with ``adversarial_fit`` on ``n_train`` training images, with
    a PGD check after each epoch on ``n_val`` other (held-out) training images. ``history`` has a
    ``seconds`` column. A damaged cache entry (weights, sidecar or history) is trained again.
    ``memory_format``: e.g. ``torch.channels_last`` for NHWC convolutions (faster on GPUs with tensor
    cores, ``benchmarks/gpu_check.py``); the same function either way, so the cache entry is shared.

    ``source``: ``"shipped"`` (default): when the cache has no entry for this recipe and the course
    ships one (``course_utils/checkpoints/<cache_name>.pt`` with its sidecar and history, made by
    ``python -m course_utils.zoo ship <dataset> <profile>``), the shipped files are copied into the
    cache first and then verified like any cache entry (a damaged copy is trained again); without a
    shipped entry, it trains. ``"train"``: train it yourself by the same recipe, whatever is shipped
    (cached as ``<cache_name>_yours``, so later ``"train"`` calls load it): the "train it yourself
    instead" switch of notebooks 04 and 05.
    """
    return _recipe_model(dataset, recipe(dataset, profile), cache_name(dataset, profile), device, progress,
                         memory_format, source)


def twin_recipe(dataset: str, profile: str | None = None) -> dict:
    """``recipe(dataset, profile)`` with ``ratio=0``: no adversarial example, everything else the same
    (images, held-out split, data order, width, epochs, optimizer, schedule). The held-out check becomes
    clean accuracy (an attack at eps 0, as for the L-infinity trap's standard model), so the epoch kept
    is the most accurate one, not the one a standard model happens to resist PGD best on (about 0%)."""
    r = recipe(dataset, profile)
    return {**r, "train": r["train"].replace(ratio=0.0, val_attack=AttackConfig(0.0))}


def twin_cache_name(dataset: str, profile: str | None = None) -> str:
    profile = profile or get_profile().name
    digest = hashlib.sha256(recipe_json(twin_recipe(dataset, profile)).encode()).hexdigest()[:10]
    return f"{dataset}_standard_twin_{profile}_{digest}"


def standard_twin(dataset: str, profile: str | None = None, device=None, progress: bool = True, source: str = "shipped"):
    """``(model, history, recipe)``: the **standard twin** of ``robust_model(dataset, profile)``, trained by
    ``twin_recipe`` (the robust recipe with ``ratio=0`` and a clean held-out check), so a trade-off table that compares the two
    compares adversarial training and nothing else (notebook 05). Cached, shipped and switched by
    ``source`` exactly as ``robust_model`` (``python -m course_utils.zoo ship <dataset>_twin <profile>``)."""
    return _recipe_model(dataset, twin_recipe(dataset, profile), twin_cache_name(dataset, profile), device, progress,
                         None, source, init_seed=0)


def _recipe_model(dataset: str, r: dict, base_name: str, device, progress: bool, memory_format, source: str,
                  init_seed: int | None = None):
    """``robust_model``'s body for any recipe ``r`` of ``dataset`` cached under ``base_name``; ``init_seed``
    seeds the initial weights (None: the global torch generator as it stands, as ``robust_model`` always did)."""
    import torch

    from .data import load_dataset, make_loader
    from .training import ModelFileError, adversarial_fit, cached_model, cached_model_path, read_sidecar

    if source not in ("shipped", "train"):
        raise ValueError(f"source must be 'shipped' or 'train', got {source!r}")
    name = base_name + ("_yours" if source == "train" else "")
    path = cached_model_path(name)
    if source == "shipped" and not path.exists():
        copy_shipped(name, path.parent)
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

    def fresh():
        if init_seed is not None:
            torch.manual_seed(init_seed)
        m = build(r)
        return m if memory_format is None else m.to(memory_format=memory_format)

    model = cached_model(name, fresh, train, meta=meta, device=device, shipped=False)  # copied above, if shipped
    return model.to(device).eval(), holder.get("history"), r


def _entry_files(folder, name: str) -> list:
    """The three files of cache entry ``name`` in ``folder``: weights, sidecar, history (the history CSV
    only for the robust recipes; other entries keep their history in the sidecar)."""
    return [folder / f"{name}{suffix}" for suffix in (".pt", ".pt.json", ".history.csv")]


def _copy_files(sources: list, targets: list) -> list:
    """Copy each source file that exists to its target (atomically, file by file); the targets written."""
    written = []
    for src, dst in zip(sources, targets):
        if src.is_file():
            with atomic_write(dst, "wb") as f:
                f.write(src.read_bytes())
            written.append(dst)
    return written


def shipped_files(name: str) -> list:
    """The files of the shipped cache entry ``name`` (weights, sidecar, history), in ``checkpoint_dir()``."""
    return _entry_files(checkpoint_dir(), name)


def is_shipped(name: str) -> bool:
    """Whether the course ships cache entry ``name`` (its weights and sidecar are in ``checkpoint_dir()``)."""
    return all(f.is_file() for f in shipped_files(name)[:2])


def copy_shipped(name: str, folder) -> bool:
    """Copy the shipped entry ``name`` into the cache ``folder`` (``training.cached_model`` calls this
    when its cache has no entry ``name``); False if none is shipped. The copy is verified like any
    cache entry when it is loaded: a damaged one is trained again."""
    if not is_shipped(name):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    _copy_files(shipped_files(name), _entry_files(folder, name))
    return True


SHIP_TARGETS = ("mnist", "cifar10", "cifar10_twin", "trap", "ibp")  # what ``python -m course_utils.zoo ship`` can ship


def ship_names(target: str, profile: str) -> list[str]:
    """The cache names that ``ship(target, profile)`` writes: the robust model of a data set, the
    L-infinity trap's three other models (notebook 04), or the IBP-trained model (notebooks 08, 08b)."""
    from .training import union

    if target in RECIPES:
        return [cache_name(target, profile)]
    if target.endswith("_twin") and target[:-5] in RECIPES:
        return [twin_cache_name(target[:-5], profile)]
    if target == "trap":
        return [union.cache_name(kind, profile) for kind in union.KINDS if kind != "linf"]
    if target == "ibp":
        return [ibp_cache_name(profile)]
    raise ValueError(f"target must be one of {SHIP_TARGETS}, got {target!r}")


def ship(target: str, profile: str, out=None, progress: bool = True) -> list:
    """Train (or load from the cache) the models of ``ship_names(target, profile)`` with
    ``source="train"`` and copy their cache entries (weights, sidecar, history) into ``out`` (default
    ``checkpoint_dir()``): what the course ships so that a learner's first run loads instead of
    training. Returns the written paths."""
    from pathlib import Path

    from .training import cached_model_path, union

    names = ship_names(target, profile)
    if target in RECIPES:
        robust_model(target, profile, device="cpu", progress=progress, source="train")
    elif target.endswith("_twin"):
        standard_twin(target[:-5], profile, device="cpu", progress=progress, source="train")
    elif target == "trap":
        for kind in union.KINDS:
            if kind != "linf":
                union.model(kind, profile, device="cpu", progress=progress, source="train")
    else:
        ibp_model(profile, device="cpu", progress=progress, source="train")
    folder = Path(out) if out else checkpoint_dir()
    written = []
    for name in names:
        yours = cached_model_path(name + "_yours")
        written += _copy_files(_entry_files(yours.parent, yours.stem), _entry_files(folder, name))
    return written


RUN_TARGETS = (*RECIPES, *(f"{d}_twin" for d in RECIPES))  # what ``python -m course_utils.zoo train`` runs under torchrun


def run_recipe(target: str, profile: str | None = None, epochs: int | None = None) -> dict:
    """The recipe ``train_recipe(target, profile)`` trains: ``recipe`` (or ``twin_recipe`` for
    ``<dataset>_twin``), with ``epochs`` changed when given (a shorter probe of the same recipe)."""
    if target not in RUN_TARGETS:
        raise ValueError(f"target must be one of {RUN_TARGETS}, got {target!r}")
    r = twin_recipe(target[:-5], profile) if target.endswith("_twin") else recipe(target, profile)
    return r if epochs is None else {**r, "train": r["train"].replace(epochs=epochs)}


def train_recipe(target: str, profile: str | None = None, out=None, resume: bool = False, precision: str = "auto",
                 epochs: int | None = None, seed: int = 0, r: dict | None = None, on_epoch=None,
                 progress: bool = True) -> dict:
    """Train recipe ``target`` in this process or, under torchrun, in all of its processes: what
    ``[torchrun --nproc_per_node=N] python -m course_utils.zoo train <target> --profile full`` runs.

    ``adversarial_fit`` with a ``training.distributed.Run`` (see that module for the global batch, the
    learning rate, the per-rank random starts, batch norm and the precision policy): the data are
    ``shard_loader``'s (a ``DistributedSampler`` with the recipe's global batch, so 1 and N processes
    train on the same batches), the held-out split is ``split_indices``'s, the initial weights are seeded
    ``seed``. ``out`` (default ``cache_dir()/runs/<name>``) receives ``state.pt`` (the resumable state,
    written after every epoch; ``resume=True`` continues it after a kill), then ``<name>.pt`` (the kept
    weights with their sidecar, in the cache's format: copy the three files into ``cache_dir()/models``
    to use them as the recipe's cached model), ``<name>.history.csv`` and ``metrics.json`` (epochs,
    seconds, images per second per process and in all). ``r`` replaces the recipe (tests). Returns the
    metrics (on every rank).
    """
    import time
    from pathlib import Path

    import torch

    from .config import cache_dir, seed_everything
    from .data import load_dataset
    from .training import adversarial_fit, save_checkpoint
    from .training.distributed import Run

    profile = profile or get_profile().name
    r = r or run_recipe(target, profile, epochs)
    digest = hashlib.sha256(recipe_json(r).encode()).hexdigest()[:10]
    name = f"{target}_{profile}_{digest}"
    out = Path(out) if out else cache_dir() / "runs" / name
    identity = {"target": target, "profile": profile, "recipe_sha256": digest}
    run = Run.from_env(precision, state_path=out / "state.pt", resume=resume, identity=identity, seed=seed,
                       on_epoch=on_epoch)
    run.preflight()  # refuse another recipe's state before loading anything
    seed_everything(seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build(r).to(run.device)
    dataset = target.removesuffix("_twin")
    ds = load_dataset(dataset, "train")
    train_idx, val_idx = split_indices(len(ds), r["n_train"], r["n_val"])
    loader = shard_loader(ds, train_idx, r, run, seed=seed)
    xv, yv = ds.tensors(val_idx)
    t0 = time.perf_counter()
    res = adversarial_fit(model, loader, r["train"], val=(xv.to(run.device), yv.to(run.device)),
                          progress=progress, run=run)
    h = res.history
    per_rank = len(loader.sampler) * len(h) / max(float(h["seconds"].sum()), 1e-9)
    last = len(loader.sampler) / max(float(h["seconds"].iloc[-1]), 1e-9)  # without the first epoch's warm-up when > 1
    metrics = {"target": target, "profile": profile, "name": name, "world_size": run.world_size,
               "device": str(run.device), "precision": str(run.precision), "epochs_run": len(h),
               "best_epoch": res.best_epoch, "stopped": res.stopped, "seconds_this_session": time.perf_counter() - t0,
               "train_seconds": float(h["seconds"].sum()), "images_per_epoch_per_process": len(loader.sampler),
               "images_per_second_per_process": per_rank, "images_per_second": per_rank * run.world_size,
               "images_per_second_per_process_last_epoch": last,
               "attack": str(r["train"].attack), "global_batch": r["batch"], "batch_per_process": run.per_rank_batch(r["batch"])}
    if run.is_main:
        meta = {"recipe": json.loads(recipe_json(r)), "architecture": r["model"],
                "architecture_kwargs": {"width": r["width"]} if r["model"] == "mnist_small_cnn" else {},
                "history": write_history(out / f"{name}.history.csv", h), "run": metrics}
        model.to(memory_format=torch.contiguous_format)
        save_checkpoint(model, out / f"{name}.pt", meta)
        with atomic_write(out / "metrics.json", "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
    run.barrier()
    return metrics


# Pretrained models the course ships (``course_utils/checkpoints``): trained by the recipe below with
# ``python -m course_utils.zoo train <name>``, committed with their SHA-256 sidecar and training log.
PRETRAINED = {
    # ResNet-20 (He et al. 2016) on all 50,000 CIFAR-10 training images: SGD (momentum 0.9, weight decay
    # 5e-4), one-cycle LR up to 0.15, batch 128, random crop + flip, channels-last on the CPU.
    "resnet20_cifar10": dict(model="resnet20", dataset="cifar10", n_train=50_000, epochs=60, batch=128, lr=0.15,
                             optimizer="sgd", weight_decay=5e-4, augment=True, seed=0),
}
PRETRAINED_SUBSET = dict(n=1000, seed=0)  # the seeded stratified test subset whose accuracy the sidecar records


def checkpoint_dir():
    """The folder of the shipped checkpoints (inside the package, so an installed course has them)."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "checkpoints"


def pretrained_names() -> list[str]:
    """Names accepted by ``pretrained``."""
    return sorted(PRETRAINED)


def pretrained_info(name: str) -> dict:
    """The sidecar of the shipped checkpoint ``name``: recipe, command, full-test accuracy with its
    interval, training time and machine, SHA-256 (``ModelFileError`` if it is missing or unreadable)."""
    from .training import read_sidecar

    _pretrained_recipe(name)
    return read_sidecar(checkpoint_dir() / f"{name}.pt")


def _pretrained_recipe(name: str) -> dict:
    if name not in PRETRAINED:
        raise ValueError(f"pretrained model must be one of {pretrained_names()}, got {name!r}")
    return dict(PRETRAINED[name])


def pretrained(name: str, device=None, source: str = "shipped", progress: bool = True, memory_format=None):
    """The model ``name`` in eval mode, taking [0, 1] pixels, on ``device`` (default ``get_device()``).

    source ``"shipped"``: the committed checkpoint, read by the course's safe loader
    (``training.load_model_file``: sidecar, architecture, SHA-256, ``weights_only``); anything wrong
    with it raises ``ModelFileError``. ``"train"``: train it yourself with the same recipe (cached in
    ``cache_dir()/models``, so only the first call trains): the "train it yourself instead" switch.
    ``"robustbench"`` (online, ``resnet20_cifar10`` only): RobustBench's ``Standard`` WRN-28-10
    (``robustbench.utils.load_model``), a larger standard model for the full profile.
    ``memory_format``: e.g. ``torch.channels_last`` for NHWC convolutions (faster on a CPU and on GPUs
    with tensor cores; project p1): the same weights, only their layout in memory changes.
    """
    model = _pretrained(name, device, source, progress)
    return model if memory_format is None else model.to(memory_format=memory_format)


def _pretrained(name: str, device, source: str, progress: bool):
    from .training import cached_model, load_model_file

    r = _pretrained_recipe(name)
    device = device or get_device()
    if source == "shipped":
        from . import models

        model, _ = load_model_file(checkpoint_dir() / f"{name}.pt", models.MODELS, device=device)
        return model
    if source == "train":
        meta = {"recipe": r}  # the sidecar also gets the per-epoch log and the training time
        model = cached_model(f"{name}_{hashlib.sha256(recipe_json(r).encode()).hexdigest()[:10]}", lambda: build(r),
                             lambda m: meta.update(_train_pretrained(m, r, progress)), meta=meta, device=device)
        return model.to(device).eval()
    if source == "robustbench":
        try:
            from robustbench.utils import load_model
        except ImportError as e:
            raise ImportError("source='robustbench' needs `pip install robustbench` and internet access") from e
        return load_model(model_name="Standard", dataset="cifar10", threat_model="Linf").to(device).eval()
    raise ValueError(f"source must be 'shipped', 'train' or 'robustbench', got {source!r}")


def _train_pretrained(model, r: dict, progress: bool = True) -> dict:
    """Train ``model`` in place by recipe ``r``; returns ``{"log": [per-epoch rows], "seconds": ...}``."""
    import time

    import torch

    from .data import load_dataset
    from .training.loop import make_optimizer, train_epoch

    torch.manual_seed(r["seed"])
    ds = load_dataset(r["dataset"], "train")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(r["seed"]))[:r["n_train"]]
    loader = _augmented_loader(ds, idx, r, seed=r["seed"])
    if next(model.parameters()).device.type == "cpu":
        model.to(memory_format=torch.channels_last)  # NHWC convolutions: about 1.8x faster on a CPU
    total = r["epochs"] * len(loader)
    opt, sched = make_optimizer(model, r["lr"], total, weight_decay=r["weight_decay"], optimizer=r["optimizer"])
    log, t0 = [], time.perf_counter()
    for epoch in range(r["epochs"]):
        e0 = time.perf_counter()
        res = train_epoch(model, loader, opt, scheduler=sched, progress=progress, desc=f"epoch {epoch + 1}/{r['epochs']}",
                          step=epoch * len(loader), total_steps=total)
        log.append({"epoch": epoch + 1, "loss": res["loss"], "train_acc": res["accuracy"],
                    "lr_end": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - e0})
        if progress:
            print(f"epoch {epoch + 1}: loss {res['loss']:.3f}, train accuracy {res['accuracy']:.3f}, "
                  f"{log[-1]['seconds']:.0f} s", flush=True)
    model.to(memory_format=torch.contiguous_format).eval()
    return {"log": log, "seconds": time.perf_counter() - t0}


def pretrained_accuracy(model, dataset: str = "cifar10", n: int | None = None, seed: int = 0, batch_size: int = 500):
    """Clean accuracy (``EvalResult``) of ``model`` on the test set, or on its seeded stratified subset of ``n``."""
    from .data import load_dataset, stratified_indices
    from .evaluation import evaluate

    ds = load_dataset(dataset, "test")
    data = ds.tensors() if n is None else ds.tensors(stratified_indices(ds.targets, n, seed))
    return evaluate(model, data, batch_size=batch_size, progress=False, threat=f"clean ({dataset} test)")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def train_pretrained(name: str, out_dir, progress: bool = True) -> dict:
    """Train ``name`` by its recipe and write ``out_dir/<name>.pt`` with its sidecar (architecture,
    SHA-256, recipe, full test accuracy with interval, the subset accuracy a test re-checks, machine)
    and ``<name>.log.csv``; returns the sidecar's contents. What ``python -m course_utils.zoo train`` runs."""
    import csv
    import platform
    from pathlib import Path

    import torch

    from .data import data_source
    from .training import save_checkpoint

    r = _pretrained_recipe(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build(r)
    result = _train_pretrained(model, r, progress)
    full = pretrained_accuracy(model, r["dataset"])
    sub = pretrained_accuracy(model, r["dataset"], **PRETRAINED_SUBSET)
    log_path = out_dir / f"{name}.log.csv"
    with atomic_write(log_path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(result["log"][0]))
        w.writeheader()
        w.writerows(result["log"])
    meta = {"architecture": r["model"], "architecture_kwargs": {}, "recipe": r,
            "command": f"python -m course_utils.zoo train {name}",
            "test_accuracy": {"correct": full.correct, "n": full.n, "ci95": list(full.ci)},
            "subset_accuracy": {**PRETRAINED_SUBSET, "correct": sub.correct},
            "data": data_source(r["dataset"]), "train_seconds": round(result["seconds"], 1),
            "machine": {"cpu": _cpu_name() or platform.machine(), "threads": torch.get_num_threads(),
                        "torch": torch.__version__},
            "log": log_path.name, "log_sha256": sha256sum(log_path)}
    meta["sha256"] = save_checkpoint(model, out_dir / f"{name}.pt", meta)
    return meta


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


def ibp_cache_name(profile: str | None = None) -> str:
    """The cache key of ``ibp_model(profile)`` (the key notebook 08 has always used)."""
    profile = profile or get_profile().name
    if profile not in IBP:
        raise ValueError(f"profile must be one of {sorted(IBP)}, got {profile!r}")
    r = IBP[profile]
    return f"mnist_ibp_eps{r['eps_train']}_{profile}_{r['epochs']}_{r['n_train']}"


def ibp_model(profile: str | None = None, device=None, progress: bool = True, source: str = "shipped"):
    """``(model, history, recipe)``: ``mnist_small_cnn`` trained by ``certify.ibp_fit`` at eps_train =
    0.15 (above the test radius 0.1, as Gowal et al. 2018) on ``IBP[profile]``; cached, so notebooks
    08 and 08b and ``benchmarks/certified.py`` certify the same weights. ``history``: the per-epoch
    list of ``ibp_fit`` when trained now, else the one recorded in the sidecar (``None`` if absent).
    ``source``: ``"shipped"`` loads the course's shipped entry on a first run when there is one
    (``python -m course_utils.zoo ship ibp quick``), ``"train"`` trains it yourself (cached as
    ``<name>_yours``), as in ``robust_model``.
    """
    from .certify import ibp_fit
    from .data import load_dataset, make_loader
    from .training import cached_field, cached_model

    if source not in ("shipped", "train"):
        raise ValueError(f"source must be 'shipped' or 'train', got {source!r}")
    profile = profile or get_profile().name
    name = ibp_cache_name(profile) + ("_yours" if source == "train" else "")
    r = IBP[profile]
    meta = {"recipe": dict(r)}

    def train(model):
        loader = make_loader(load_dataset("mnist", "train"), batch_size=r["batch"], n=r["n_train"], seed=0)
        start = time.perf_counter()
        meta["history"] = ibp_fit(model, loader, epochs=r["epochs"], eps=r["eps_train"], progress=progress)
        meta["train_seconds"] = round(time.perf_counter() - start, 1)  # on the machine that trained it

    model = cached_model(name, lambda: build(r), train, meta=meta, device=device or get_device())
    history = cached_field(name, meta, "history")
    return model.eval(), history, dict(r)


def _main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m course_utils.zoo", description="Train a shipped model by its recipe.")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a pretrained model (its checkpoint, sidecar and log), or a recipe "
                                     "(mnist, cifar10, <dataset>_twin) resumably, in one process or under torchrun")
    t.add_argument("name", choices=[*pretrained_names(), *RUN_TARGETS])
    t.add_argument("--out", default=None, help="folder (default: the package's checkpoints folder for a pretrained "
                                                "model, cache_dir()/runs/<name> for a recipe)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    t.add_argument("--profile", choices=["smoke", "quick", "full"], default=None,
                   help="a recipe's profile (default: COURSE_PROFILE, else full with CUDA)")
    t.add_argument("--resume", action="store_true", help="continue the run whose state.pt is in --out (a recipe)")
    t.add_argument("--precision", choices=["auto", "off", "bf16", "fp16"], default="auto",
                   help="autocast on CUDA (auto: bf16 where supported, else fp16 with a scaler; fp32 on the CPU)")
    t.add_argument("--epochs", type=int, default=None, help="train a recipe for this many epochs instead (a probe)")
    t.add_argument("--seed", type=int, default=0, help="initial weights, data order and random starts (+ rank)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    sh = sub.add_parser("ship", help="train the models of a recipe and copy their cache entries into the shipped "
                                     "checkpoints: a data set's robust model, notebook 04's L-infinity trap models, "
                                     "or the IBP-trained model")
    sh.add_argument("target", choices=SHIP_TARGETS)
    sh.add_argument("profile", choices=["smoke", "quick", "full"])
    sh.add_argument("--out", default=None, help="folder (default: the package's checkpoints folder)")
    sh.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "ship":
        for path in ship(args.target, args.profile, args.out):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        return
    if args.name in RUN_TARGETS:
        from .training.distributed import ResumeError

        try:
            m = train_recipe(args.name, args.profile, args.out, args.resume, args.precision, args.epochs, args.seed,
                             progress=not args.quiet)
        except ResumeError as e:
            raise SystemExit(f"error: {e}") from None
        finally:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        if m["world_size"] == 1 or int(os.environ.get("RANK", "0")) == 0:
            print(f"{m['name']}: {m['epochs_run']} epochs ({m['stopped']}; kept epoch {m['best_epoch']}) on "
                  f"{m['world_size']} x {m['device']}, {m['precision']}: {m['images_per_second_per_process']:.0f} "
                  f"training images/s per process", flush=True)
        return
    if args.resume or args.epochs or args.profile or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(f"error: {args.name} is trained in one process from the start (no --resume, --epochs, "
                         "--profile or torchrun); those are for the recipes " + ", ".join(RUN_TARGETS))
    meta = train_pretrained(args.name, args.out or checkpoint_dir())
    acc = meta["test_accuracy"]
    print(f"{args.name}: test accuracy {acc['correct']}/{acc['n']} (95% CI {acc['ci95'][0]:.4f}-{acc['ci95'][1]:.4f}), "
          f"trained in {meta['train_seconds']:.0f} s; sha256 {meta['sha256']}")


if __name__ == "__main__":
    _main()
