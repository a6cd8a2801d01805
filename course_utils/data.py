"""Data sets as tensors in pixel space, online or offline.

``load_dataset(name, split)`` returns a ``torch.utils.data.Dataset`` of ``(x, y)`` with
``x``: float32 (C, H, W) in [0, 1] and ``y``: int64 class index. Images are kept as uint8 in
memory and converted per item, so CIFAR-10 costs 150 MB, not 600 MB.

Where the files come from, in this order (see ``../shared/data/README.md`` for offline copies):

- MNIST: ``<data_dir>/MNIST/raw/*-ubyte`` (torchvision's layout); downloaded when missing and online.
- CIFAR-10: the official ``<data_dir>/cifar-10-batches-py/``; else the JPEG re-encoded archive
  ``<data_dir>/cifar10_jpeg.tar.gz`` (SHA-256 verified, decoded once, cached as arrays in
  ``cache_dir()``); else a torchvision download when online.
- rt-polarity (sentence polarity v1.0, Pang & Lee 2005): ``<data_dir>/rt-polarity/rt-polarity.{pos,neg}``
  (UTF-8); else the official tarball, downloaded when online and re-encoded from latin-1. Served as a
  ``TextDataset`` with a seeded 80/10/10 train / validation / test split.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .config import cache_dir, data_dir

DATASETS = ("mnist", "cifar10", "rtpolarity")
SPLITS = ("train", "test")
TEXT_SPLITS = ("train", "validation", "test")
RT_POLARITY_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_JPEG_ARCHIVE = "cifar10_jpeg.tar.gz"
CIFAR10_JPEG_SHA256 = "b7a2e9eef770ab9946f464f308e7f8e5433007063850c0f8c871b717b766182e"
MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class ArrayDataset(Dataset):
    """Images stored as uint8 (N, C, H, W), served as float32 in [0, 1] with int64 labels."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels, classes=None):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.targets = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(self.targets) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} labels")
        self.classes = tuple(classes) if classes is not None else tuple(str(c) for c in range(int(self.targets.max()) + 1))

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i].float().div_(255.0), self.targets[i]

    def tensors(self, indices=None):
        """All (or the selected) examples at once: ``x`` (N, C, H, W) float in [0, 1], ``y`` (N,)."""
        idx = slice(None) if indices is None else torch.as_tensor(indices)
        return self.images[idx].float().div_(255.0), self.targets[idx]


class TextDataset(Dataset):
    """Sentences with int64 labels: ``ds[i]`` is ``(text, y)``; ``.texts``, ``.targets``, ``.classes``."""

    def __init__(self, texts, labels, classes):
        self.texts = list(texts)
        self.targets = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(self.texts) != len(self.targets):
            raise ValueError(f"{len(self.texts)} texts but {len(self.targets)} labels")
        self.classes = tuple(classes)

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i], self.targets[i]


def load_dataset(name: str, split: str = "train", download: bool = True) -> ArrayDataset:
    """Load ``"mnist"`` or ``"cifar10"`` (split ``"train"`` / ``"test"``), or ``"rt-polarity"``
    (split ``"train"`` / ``"validation"`` / ``"test"``, a ``TextDataset``).

    Returns an ``ArrayDataset``: ``x`` float32 (C, H, W) in [0, 1], ``y`` int64. With
    ``download=False`` (or offline), only files already in ``data_dir()`` are used, and a missing
    file raises ``FileNotFoundError`` saying exactly what to put where.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    if key == "rtpolarity":
        if split not in TEXT_SPLITS:
            raise ValueError(f"split must be one of {TEXT_SPLITS} for rt-polarity, got {split!r}")
        return _load_rt_polarity(split, download)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _load_mnist(split, download) if key == "mnist" else _load_cifar10(split, download)


def _load_mnist(split, download):
    from torchvision.datasets import MNIST

    root = data_dir()
    raw = root / "MNIST" / "raw"
    have_raw = all((raw / f).exists() for f in MNIST_RAW)
    try:
        ds = MNIST(root=str(root), train=(split == "train"), download=download and not have_raw)
    except (RuntimeError, OSError) as e:  # offline download failure or missing files
        raise FileNotFoundError(
            f"MNIST not found and could not be downloaded ({e}). Put the four raw IDX files "
            f"{', '.join(MNIST_RAW)} (uncompressed) in {raw}/, or set COURSE_DATA_DIR to a folder "
            f"that has MNIST/raw/ (for example ../shared/data)."
        ) from e
    return ArrayDataset(ds.data.unsqueeze(1).contiguous(), ds.targets, MNIST_CLASSES)


def _load_cifar10(split, download):
    root = data_dir()
    if (root / "cifar-10-batches-py").is_dir():
        return _cifar10_torchvision(root, split, download=False)
    archive = root / CIFAR10_JPEG_ARCHIVE
    if archive.exists():
        images, labels = _cifar10_from_jpeg_archive(archive, split)
        return ArrayDataset(images, labels, CIFAR10_CLASSES)
    if download:
        try:
            return _cifar10_torchvision(root, split, download=True)
        except (RuntimeError, OSError) as e:
            error = e
    else:
        error = "download=False"
    raise FileNotFoundError(
        f"CIFAR-10 not found in {root} and could not be downloaded ({error}). Either put the official "
        f"python version in {root / 'cifar-10-batches-py'}/ (data_batch_1..5, test_batch, batches.meta), "
        f"or the offline archive {CIFAR10_JPEG_ARCHIVE} (SHA-256 {CIFAR10_JPEG_SHA256[:12]}...) in {root}/, "
        f"or set COURSE_DATA_DIR to a folder that has one of them (for example ../shared/data)."
    )


def _load_rt_polarity(split, download, seed=0):
    """Pang & Lee (2005) sentence polarity v1.0: 5,331 negative (0) + 5,331 positive (1) snippets.

    The split is a seeded permutation of all 10,662 sentences: 80% train, 10% validation, 10% test.
    """
    folder = data_dir() / "rt-polarity"
    files = [folder / "rt-polarity.neg", folder / "rt-polarity.pos"]
    if not all(f.exists() for f in files):
        if not download:
            raise FileNotFoundError(f"rt-polarity not found: put rt-polarity.neg and rt-polarity.pos (UTF-8) in {folder}/ "
                                    f"or set COURSE_DATA_DIR to a folder that has rt-polarity/ (for example ../shared/data)")
        try:
            with urllib.request.urlopen(RT_POLARITY_URL, timeout=60) as r, tarfile.open(fileobj=io.BytesIO(r.read()), mode="r:gz") as tar:
                folder.mkdir(parents=True, exist_ok=True)
                for f in files:  # the original files are latin-1; store them as UTF-8
                    f.write_text(tar.extractfile(f"rt-polaritydata/{f.name}").read().decode("latin-1"), encoding="utf-8")
        except (OSError, KeyError, tarfile.TarError) as e:
            raise FileNotFoundError(f"rt-polarity not found in {folder} and could not be downloaded from {RT_POLARITY_URL} ({e}). "
                                    f"Put rt-polarity.neg and rt-polarity.pos there, or set COURSE_DATA_DIR to a folder "
                                    f"that has rt-polarity/ (for example ../shared/data).") from e
    texts, labels = [], []
    for label, f in enumerate(files):
        lines = [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts += lines
        labels += [label] * len(lines)
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = int(0.8 * len(texts)), int(0.1 * len(texts))
    part = {"train": perm[:n_train], "validation": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}[split]
    return TextDataset([texts[i] for i in part], [labels[i] for i in part], ("negative", "positive"))


def _cifar10_torchvision(root, split, download):
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(root=str(root), train=(split == "train"), download=download)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return ArrayDataset(images, ds.targets, CIFAR10_CLASSES)


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_save_npz(path: Path, **arrays):
    """Write to a temporary file in the same folder, then rename: an interruption leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cifar10_from_jpeg_archive(archive: Path, split: str):
    """Decode ``cifar10_jpeg/{split}/<class>/<NNNN>.jpg`` into uint8 (N, 3, 32, 32), cached as .npz.

    Order: sorted by class, then file name (ImageFolder order), so always shuffle or stratify.
    The archive is checked against its SHA-256 before the first decode; the cache is keyed by it.
    """
    cache = cache_dir() / f"cifar10_jpeg_{CIFAR10_JPEG_SHA256[:12]}_{split}.npz"
    if cache.exists():
        try:
            with np.load(cache) as z:
                return z["images"], z["labels"]
        except Exception:  # a corrupt cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    digest = sha256sum(archive)
    if digest != CIFAR10_JPEG_SHA256:
        raise ValueError(f"{archive} has SHA-256 {digest}, expected {CIFAR10_JPEG_SHA256}: the file is damaged or another one")
    from PIL import Image

    found = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[1] != split or not parts[3].endswith(".jpg"):
                continue
            label = CIFAR10_CLASSES.index(parts[2])
            data = tar.extractfile(member).read()
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
            found[(label, parts[3])] = img
    keys = sorted(found)
    images = np.stack([found[k] for k in keys]).transpose(0, 3, 1, 2).copy()
    labels = np.array([k[0] for k in keys], dtype=np.int64)
    _atomic_save_npz(cache, images=images, labels=labels)
    return images, labels


def stratified_indices(targets, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices with (nearly) equal counts per class, seeded, in shuffled order.

    ``n`` larger than the data set returns a seeded permutation of all of it.
    """
    targets = torch.as_tensor(targets)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    g = torch.Generator().manual_seed(seed)
    if n >= len(targets):
        return torch.randperm(len(targets), generator=g)
    classes = torch.unique(targets)
    per_class = [torch.nonzero(targets == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    base, extra = divmod(n, len(classes))
    chosen = [idx[: base + (1 if i < extra else 0)] for i, idx in enumerate(per_class)]
    out = torch.cat(chosen)
    if len(out) < n:  # a class too small: top up from the rest
        rest = torch.cat([idx[base + (1 if i < extra else 0):] for i, idx in enumerate(per_class)])
        out = torch.cat([out, rest[: n - len(out)]])
    return out[torch.randperm(len(out), generator=g)]


def stratified_subset(dataset, n: int, seed: int = 0) -> Subset:
    """A seeded, class-stratified ``Subset`` of ``n`` examples (the whole set, shuffled, if ``n`` >= len)."""
    return Subset(dataset, stratified_indices(dataset.targets, n, seed).tolist())


def subset_tensors(dataset, n: int, seed: int = 0):
    """``(x, y)`` tensors of a stratified subset: the quickest way to get evaluation images."""
    idx = stratified_indices(dataset.targets, n, seed)
    if isinstance(dataset, ArrayDataset):
        return dataset.tensors(idx)
    xs, ys = zip(*(dataset[i] for i in idx.tolist()))
    return torch.stack(xs), torch.as_tensor(ys)


def make_loader(dataset, batch_size: int = 128, shuffle: bool = True, seed: int = 0, n: int | None = None, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` (or a stratified subset of ``n``), seeded when shuffled."""
    if n is not None:
        dataset = stratified_subset(dataset, n, seed)
    g = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, **kwargs)
