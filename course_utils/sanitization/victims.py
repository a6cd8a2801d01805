"""The CIFAR-10 model that notebook 06 defends with squeezing (also used by notebook 09 and
``benchmarks/sanitization.py``): the course's small CIFAR CNN, trained with the standard recipe at
the profile's size and cached, so every user of it attacks the same weights.
"""
from __future__ import annotations

from .. import data, models, training
from ..config import Profile, get_profile


def _profile(profile):
    return profile if isinstance(profile, Profile) else get_profile(profile)


def cifar_recipe(profile=None) -> dict:
    """Training images, epochs and learning rate of notebook 06's CIFAR-10 model for a profile."""
    P = _profile(profile)
    return {"n_train": P.pick(smoke=1_000, quick=10_000, full=50_000), "epochs": P.pick(smoke=1, quick=3, full=30),
            "lr": 0.05, "batch_size": 128, "seed": 0}


def cifar_cache_name(profile=None) -> str:
    """The model cache entry of ``cifar_model`` (shared with notebook 06's earlier runs)."""
    P, r = _profile(profile), cifar_recipe(profile)
    return f"cifar_small_cnn_standard_{P.name}_{r['n_train']}_{r['epochs']}"


def cifar_model(profile=None, device=None, train_set=None):
    """Notebook 06's CIFAR-10 small CNN (SGD one-cycle, lr 0.05), loaded from the cache or trained and cached.

    ``train_set`` defaults to ``data.load_dataset("cifar10", "train")`` (read only when training).
    Returns the model in eval mode.
    """
    r = cifar_recipe(profile)

    def train(m):
        images = train_set if train_set is not None else data.load_dataset("cifar10", "train")
        loader = data.make_loader(images, batch_size=r["batch_size"], n=r["n_train"], seed=r["seed"])
        training.fit(m, loader, epochs=r["epochs"], lr=r["lr"])

    return training.cached_model(cifar_cache_name(profile), models.cifar_small_cnn, train,
                                 meta={"recipe": "SGD one-cycle lr 0.05", "epochs": r["epochs"]}, device=device).eval()
