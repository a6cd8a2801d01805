"""Run configuration: device, seeding, run profile and data directories.

Everything a notebook needs to know about *where* and *how big* it runs comes from here, once:

- ``get_device()``: CUDA, then Apple MPS, then CPU; ``COURSE_DEVICE`` overrides (``cpu``, ``cuda:1``...).
- ``seed_everything(seed)``: Python, NumPy and torch generators.
- ``get_profile()``: the run size, from ``COURSE_PROFILE`` = ``smoke`` | ``quick`` | ``full``
  (default ``full`` when CUDA is available, else ``quick``).
- ``data_dir()`` / ``cache_dir()``: where data sets are read from (``COURSE_DATA_DIR``, default
  ``data/`` in the repository) and where derived files are written (``COURSE_CACHE_DIR``,
  default ``data/cache``), so a read-only data directory works. Relative paths in either
  variable are taken from the repository root.

Nothing here touches CUDA at import time.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

PROFILE_NAMES = ("smoke", "quick", "full")
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Profile:
    """Sizes shared by every lesson for one run size.

    smoke: seconds per notebook, for CI; results need not be meaningful.
    quick: default without a GPU; minutes per notebook on a 2-core CPU, results still teach.
    full:  the papers' settings (full data sets, PGD-40 with restarts, full test sets).
    """

    name: str
    n_train: int  # training images (MNIST-sized data sets; None-like 0 never used)
    n_test: int  # test images for clean and robust evaluation
    epochs: int  # training epochs for a standard model
    batch_size: int  # training batch size
    attack_steps: int  # PGD steps for evaluation
    restarts: int  # PGD random restarts for evaluation

    def pick(self, smoke, quick, full):
        """Return the value for this profile: ``P.pick(smoke=256, quick=10_000, full=60_000)``.

        Lessons use it for their own sizes so that every size still depends on the one profile.
        """
        return {"smoke": smoke, "quick": quick, "full": full}[self.name]


PROFILES = {
    "smoke": Profile("smoke", n_train=512, n_test=64, epochs=1, batch_size=64, attack_steps=5, restarts=1),
    "quick": Profile("quick", n_train=60_000, n_test=1_000, epochs=2, batch_size=128, attack_steps=40, restarts=1),
    "full": Profile("full", n_train=60_000, n_test=10_000, epochs=10, batch_size=128, attack_steps=40, restarts=10),
}


def get_profile(name: str | None = None) -> Profile:
    """The run profile: ``name``, else ``COURSE_PROFILE``, else ``full`` with CUDA and ``quick`` without."""
    if name is None:
        name = os.environ.get("COURSE_PROFILE", "").strip().lower() or None
    if name is None:
        name = "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILE_NAMES}, got {name!r} (set COURSE_PROFILE)")
    return PROFILES[name]


def profile_table():
    """The profiles side by side, as a pandas DataFrame (for notebook 00 and the README)."""
    import pandas as pd

    rows = {p.name: {f.name: getattr(p, f.name) for f in fields(p) if f.name != "name"} for p in PROFILES.values()}
    return pd.DataFrame(rows)


def get_device(name: str | None = None) -> torch.device:
    """The compute device: ``name``, else ``COURSE_DEVICE``, else CUDA, then MPS, then CPU."""
    name = name or os.environ.get("COURSE_DEVICE", "").strip() or None
    if name is not None:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"COURSE_DEVICE / device must name a torch device such as 'cpu' or 'cuda', got {name!r}") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device, lazily
    return torch.Generator().manual_seed(seed)


def _from_repo(path: str) -> Path:
    """An absolute path as given; a relative one from the repository root (not the working
    directory, which is ``notebooks/`` inside a notebook), so ``COURSE_DATA_DIR=../shared/data``
    means the same folder from a shell, from pytest and from every notebook."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def data_dir() -> Path:
    """Where data sets are read from (and downloaded to when online): ``COURSE_DATA_DIR`` or ``data/``."""
    env = os.environ.get("COURSE_DATA_DIR")
    return _from_repo(env) if env else REPO_ROOT / "data"


def cache_dir() -> Path:
    """Where derived files (decoded arrays, trained models) go: ``COURSE_CACHE_DIR`` or ``data/cache``."""
    env = os.environ.get("COURSE_CACHE_DIR")
    path = _from_repo(env) if env else REPO_ROOT / "data" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe() -> str:
    """One line for a notebook's first cell: device, profile, data directory, versions."""
    return (
        f"device={get_device()} profile={get_profile().name} data_dir={data_dir()} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
