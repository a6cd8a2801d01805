"""Data sets as tensors in pixel space, online or offline.

``load_dataset(name, split)`` returns a ``torch.utils.data.Dataset`` of ``(x, y)`` with
``x``: float32 (C, H, W) in [0, 1] and ``y``: int64 class index. Images are kept as uint8 in
memory and converted per item, so CIFAR-10 costs 150 MB, not 600 MB.

Where the files come from, in this order (see ``../shared/data/README.md`` for offline copies):

- MNIST: ``<data_dir>/MNIST/raw/*-ubyte`` (torchvision's layout); downloaded when missing and online.
  Each file is verified before use: its IDX header (magic number, shape), its length, labels in
  0..9, and the SHA-256 of the official uncompressed file (``MNIST_SHA256``). A file that fails
  raises ``DataFileError`` naming it and what to do (delete it and download again, or copy the
  official file); a damaged file is never reported as missing, and never downloaded over.
- CIFAR-10: the official ``<data_dir>/cifar-10-batches-py/``; else the JPEG re-encoded archive
  ``<data_dir>/cifar10_jpeg.tar.gz`` (SHA-256 verified, decoded once, cached as arrays in
  ``cache_dir()``); else a torchvision download when online.
- rt-polarity (sentence polarity v1.0, Pang & Lee 2005): ``<data_dir>/rt-polarity/rt-polarity.{pos,neg}``
  (UTF-8); else the official tarball, downloaded when online and re-encoded from latin-1. Served as a
  ``TextDataset`` with a seeded 80/10/10 train / validation / test split.

Array caches (the decoded CIFAR-10 arrays) are written with ``config.atomic_write`` together with
a sidecar ``<file>.json`` holding their SHA-256. On read, the digest, the dtype (uint8), the shape
(N, C, H, W) and the label range are checked; anything else (missing or garbled sidecar, other
content, a truncated file) is rebuilt from the source with a one-line warning, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .config import atomic_write, cache_dir, data_dir, sha256sum

DATASETS = ("mnist", "cifar10", "rtpolarity")
SPLITS = ("train", "test")
TEXT_SPLITS = ("train", "validation", "test")
RT_POLARITY_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_JPEG_ARCHIVE = "cifar10_jpeg.tar.gz"
CIFAR10_JPEG_SHA256 = "b7a2e9eef770ab9946f464f308e7f8e5433007063850c0f8c871b717b766182e"
MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_SHA256 = {  # the official uncompressed IDX files (LeCun et al.; torchvision's mirrors, after gunzip)
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_SHAPES = {"train-images-idx3-ubyte": (60_000, 28, 28), "train-labels-idx1-ubyte": (60_000,),
                "t10k-images-idx3-ubyte": (10_000, 28, 28), "t10k-labels-idx1-ubyte": (10_000,)}


class DataFileError(ValueError):
    """A data file exists but is damaged or not the expected one (bad header, wrong length, values out
    of range, wrong checksum). The message names the file and what to do about it."""


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
    raw = data_dir() / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    files = [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    if not all(f.exists() for f in files):
        try:
            if not download:
                raise OSError("download=False")
            from torchvision.datasets import MNIST

            MNIST(root=str(data_dir()), train=(split == "train"), download=True)
        except (RuntimeError, OSError) as e:  # offline download failure or missing files
            raise FileNotFoundError(
                f"MNIST not found and could not be downloaded ({e}). Put the four raw IDX files "
                f"{', '.join(MNIST_RAW)} (uncompressed) in {raw}/, or set COURSE_DATA_DIR to a folder "
                f"that has MNIST/raw/ (for example ../shared/data)."
            ) from e
    images, labels = (read_mnist_file(f) for f in files)
    return ArrayDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), MNIST_CLASSES)


def read_mnist_file(path) -> np.ndarray:
    """The uint8 array in one of the four official MNIST IDX files, after checking, in order: the
    header (magic number 0x0801 / 0x0803 = unsigned bytes in 1 / 3 dimensions; the shape
    ``MNIST_SHAPES[name]``), the length, labels in 0..9 and the SHA-256 ``MNIST_SHA256[name]``.

    Returns images (N, 28, 28) or labels (N,). Raises ``DataFileError`` naming the file and what to do.
    """
    path = Path(path)
    name = path.name
    if name not in MNIST_SHAPES:
        raise ValueError(f"path must name one of the MNIST files {MNIST_RAW}, got {name!r}")
    shape, expected = MNIST_SHAPES[name], MNIST_SHA256[name]
    fix = (f"delete {path} and load again with download=True (online) to fetch the official file, or copy the "
           f"official uncompressed {name} (SHA-256 {expected[:16]}...) there, for example from ../shared/data/MNIST/raw/")

    def fail(problem):
        return DataFileError(f"{path} {problem}; {fix}")

    raw = bytearray(path.read_bytes())
    header = 4 * (1 + len(shape))
    size = header + int(np.prod(shape))
    if len(raw) < header:
        raise fail(f"is truncated or corrupt: {len(raw)} bytes, shorter than its {header}-byte IDX header")
    magic, want = int.from_bytes(raw[:4], "big"), 0x0800 + len(shape)
    if magic != want:
        raise fail(f"does not start with the IDX magic number 0x{want:08x} (unsigned bytes, {len(shape)} "
                   f"dimension{'s' if len(shape) > 1 else ''}) but with 0x{magic:08x}: it is corrupt or not this MNIST file")
    dims = tuple(int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, 1 + len(shape)))
    if dims != shape:
        raise fail(f"has the shape {dims} in its header, but {name} is {shape}: it is corrupt or another file")
    if len(raw) < size:
        raise fail(f"is truncated or corrupt: {len(raw):,} bytes, {size:,} expected")
    if len(raw) > size:
        raise fail(f"is longer than its header says ({len(raw) - size:,} extra bytes): it is corrupt")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if len(shape) == 1 and array.max() > 9:
        bad = np.flatnonzero(array > 9)
        raise fail(f"has {len(bad)} labels outside 0..9 (the first at index {bad[0]}: {array[bad[0]]})")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected:
        raise fail(f"has SHA-256 {digest[:16]}..., not the official {expected[:16]}...: it is well-formed but "
                   "its content was changed or damaged")
    return array


def data_source(name: str) -> str:
    """Which copy ``load_dataset(name)`` reads now: for CIFAR-10 the official batches or the offline
    JPEG re-encoded archive (accuracies differ slightly between them); MNIST's copies are exact."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key != "cifar10":
        return f"{name} (exact copy)"
    if (data_dir() / "cifar-10-batches-py").is_dir():
        return "cifar10: official python batches"
    if (data_dir() / CIFAR10_JPEG_ARCHIVE).exists():
        return f"cifar10: JPEG re-encoded archive {CIFAR10_JPEG_ARCHIVE} (SHA-256 {CIFAR10_JPEG_SHA256[:12]}...)"
    return "cifar10: not present (would be downloaded)"


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
                    with atomic_write(f, "w", encoding="utf-8") as out:
                        out.write(tar.extractfile(f"rt-polaritydata/{f.name}").read().decode("latin-1"))
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


def _write_array_cache(path, images: np.ndarray, labels: np.ndarray, **meta) -> str:
    """Save ``images`` (N, C, H, W) uint8 and ``labels`` (N,) as ``path`` (.npz) with ``config.atomic_write``,
    then the sidecar ``path.json`` = ``{"sha256", "shape", **meta}``; returns the digest."""
    path = Path(path)
    with atomic_write(path) as f:
        np.savez(f, images=images, labels=labels)
    digest = sha256sum(path)
    with atomic_write(str(path) + ".json", "w", encoding="utf-8") as f:
        json.dump({"sha256": digest, "shape": list(images.shape), **meta}, f, indent=2)
    return digest


def _read_array_cache(path, image_shape: tuple, num_classes: int):
    """``(images, labels)`` from a cache written by ``_write_array_cache``, or ``None`` when there is none
    or it fails a check: the sidecar is a JSON object with a SHA-256 that the file matches, images are
    uint8 (N, *image_shape), labels are N integers in [0, num_classes). A failure warns in one line."""
    path = Path(path)
    sidecar = Path(str(path) + ".json")
    if not path.exists():
        return None
    try:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"its sidecar {sidecar.name} is missing or unreadable ({type(e).__name__})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise ValueError(f"its sidecar {sidecar.name} records no SHA-256")
        if sha256sum(path) != meta["sha256"]:
            raise ValueError("its SHA-256 differs from the one recorded when it was written")
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        if images.dtype != np.uint8 or images.shape[1:] != tuple(image_shape):
            raise ValueError(f"images are {images.dtype} {images.shape}, expected uint8 (N, {', '.join(map(str, image_shape))})")
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels are {labels.dtype} {labels.shape}, expected {len(images)} integers")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels range over [{labels.min()}, {labels.max()}], outside 0..{num_classes - 1}")
    except Exception as e:  # any failure: the cache is rebuilt, never trusted
        warnings.warn(f"cache {path} is unusable: {e}; rebuilding it", stacklevel=2)
        return None
    return images, labels


def _cifar10_from_jpeg_archive(archive: Path, split: str):
    """Decode ``cifar10_jpeg/{split}/<class>/<NNNN>.jpg`` into uint8 (N, 3, 32, 32), cached as .npz.

    Order: sorted by class, then file name (ImageFolder order), so always shuffle or stratify.
    The archive is checked against its SHA-256 before the first decode; the cache is keyed by it
    and verified on every read (``_read_array_cache``).
    """
    cache = cache_dir() / f"cifar10_jpeg_{CIFAR10_JPEG_SHA256[:12]}_{split}.npz"
    cached = _read_array_cache(cache, (3, 32, 32), len(CIFAR10_CLASSES))
    if cached is not None:
        return cached
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
    _write_array_cache(cache, images, labels, source_sha256=CIFAR10_JPEG_SHA256)
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
