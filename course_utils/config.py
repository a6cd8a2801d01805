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
- ``atomic_write(path)``: the one way the course writes a cache file (a temporary file in the same
  folder, then ``os.replace``), so an interrupted write never leaves a half file under the real
  name; ``sha256sum(path)`` for the checksums that cache sidecars record. Temporary files of
  killed writes (``*.tmp`` older than ``STALE_TEMP_SECONDS``, one hour) are removed by the next
  write to the same file and, for the whole cache folder, by the first ``cache_dir()`` of a process.

Nothing here touches CUDA at import time.
"""
from __future__ import annotations

import glob
import hashlib
import os
import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

PROFILE_NAMES = ("smoke", "quick", "full")
REPO_ROOT = Path(__file__).resolve().parents[1]
STALE_TEMP_SECONDS = 3600  # a temporary file this old belongs to a killed write


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


_SWEPT = set()  # cache folders already cleared of stale temporary files by this process


def cache_dir() -> Path:
    """Where derived files (decoded arrays, trained models) go: ``COURSE_CACHE_DIR`` or ``data/cache``.

    Created when missing (subfolders are created by ``atomic_write`` on first use). The first call
    of a process for a folder removes ``*.tmp`` files older than ``STALE_TEMP_SECONDS`` in it and its
    subfolders: what killed writes left behind.
    """
    env = os.environ.get("COURSE_CACHE_DIR")
    path = _from_repo(env) if env else REPO_ROOT / "data" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    if path not in _SWEPT:
        _SWEPT.add(path)
        remove_stale_temp_files(path, "**/*.tmp")
    return path


def sha256sum(path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, as 64 hex digits (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def remove_stale_temp_files(folder, pattern: str = "*.tmp", older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the files in ``folder`` matching ``pattern`` (a glob; ``**/`` recurses) last modified more
    than ``older_than`` seconds ago; return them. A write in progress keeps its file fresh, so only
    what an interrupted write left behind is old. Files that vanish or cannot be removed are skipped."""
    removed, cutoff = [], time.time() - older_than
    for p in Path(folder).glob(pattern):
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
        except OSError:  # another process removed it first, or a read-only folder
            pass
    return removed


@contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None, newline: str | None = None):
    """``with atomic_write(path) as f: ...``: write ``path`` all at once or not at all.

    ``f`` is a temporary file ``<name>.<random>.tmp`` in the same folder (created when missing);
    when the block ends without an exception it is flushed, synced and moved onto ``path`` with
    ``os.replace`` (atomic on POSIX and Windows), otherwise it is deleted and ``path`` is left as it
    was. ``mode`` is ``"wb"`` or ``"w"`` (text, with ``encoding`` / ``newline``). A killed process
    cannot delete its temporary file; the next write to ``path`` removes those older than an hour.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, glob.escape(path.name) + "*.tmp")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe() -> str:
    """One line for a notebook's first cell: device, profile, data directory, versions."""
    return (
        f"device={get_device()} profile={get_profile().name} data_dir={data_dir()} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
