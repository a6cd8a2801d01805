"""Checkpoints with checksums and the course's one safe model loader.

``save_checkpoint`` / ``load_checkpoint`` store a state dict with a SHA-256 sidecar ``path.json``
and load it with ``torch.load(..., weights_only=True)``; a tampered file is refused.
``load_model_file(path, architectures)`` is what a deployment uses (the p3 gate, the p4 service):
the file and its sidecar must exist, the sidecar must be a JSON object naming an architecture
(``"architecture"``, ``"architecture_kwargs"``), and the weights must match the checksum; anything
else raises ``ModelFileError``. ``cached_model`` trains once and reloads from ``cache_dir()``.

Both files are written with ``config.atomic_write`` (temporary file in the same folder, then
``os.replace``): an interrupted save leaves the old files or none, never half a file. The two
readers differ on purpose: ``load_model_file`` refuses anything it cannot verify (a deployment
must not guess), while ``cached_model`` treats an unreadable or unverifiable cache entry as
missing, warns in one line and trains the model again.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..config import atomic_write, cache_dir, sha256sum


class ModelFileError(ValueError):
    """A model file is missing, tampered with, or its sidecar does not describe it."""


def save_checkpoint(model, path, meta: dict | None = None) -> str:
    """Save ``model.state_dict()`` atomically to ``path`` and its SHA-256 (+ ``meta``) to ``path.json``."""
    path = Path(path)
    with atomic_write(path) as f:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, f)
    digest = sha256sum(path)
    with atomic_write(str(path) + ".json", "w", encoding="utf-8") as f:
        json.dump({"sha256": digest, **(meta or {})}, f, indent=2)
    return digest


def load_checkpoint(model, path, expected_sha256: str | None = None, map_location=None):
    """Load a state dict saved by ``save_checkpoint`` into ``model``, after checking its SHA-256.

    The expected digest is ``expected_sha256`` or the one in ``path.json``. A missing or unreadable
    sidecar (not a JSON object, no ``"sha256"``: ``ModelFileError``, a ``ValueError``), a mismatch or
    a file that is not a plain state dict raises ``ValueError``; loading uses
    ``weights_only=True``, so a checkpoint cannot run code. ``save_checkpoint`` stores CPU tensors;
    ``load_state_dict`` copies them onto the model's device.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if expected_sha256 is None:
        expected_sha256 = _recorded_sha256(path, read_sidecar(path))
    digest = sha256sum(path)
    if digest != expected_sha256:
        raise ValueError(f"checkpoint {path} has SHA-256 {digest[:16]}..., expected {expected_sha256[:16]}...: "
                         "the file was modified or damaged; refusing to load it")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # unpickling refused, wrong architecture
        raise ValueError(f"checkpoint {path} could not be loaded into {type(model).__name__}: {e}") from e
    return model


def read_sidecar(path) -> dict:
    """The JSON object in ``path.json``; ``ModelFileError`` when the model file or sidecar is missing or not an object."""
    path = Path(path)
    sidecar = Path(str(path) + ".json")
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not sidecar.is_file():
        raise ModelFileError(f"model file {path} has no checksum sidecar {sidecar.name}: refusing to load an unverified model")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"sidecar {sidecar} is not valid JSON ({e}); refusing the model") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"sidecar {sidecar} must hold a JSON object, got {type(meta).__name__}")
    return meta


def _recorded_sha256(path, meta: dict) -> str:
    if not isinstance(meta.get("sha256"), str):
        raise ModelFileError(f"sidecar of {path} has no SHA-256 of the weights: refusing an unverified model")
    return meta["sha256"]


def load_model_file(path, architectures, device=None):
    """``(model in eval mode, sidecar dict)`` for a file written by ``save_checkpoint`` with an
    ``"architecture"`` (a key of ``architectures``, or any name when it is a callable
    ``build(name, **kwargs)``) and optional ``"architecture_kwargs"`` in its sidecar.

    Checks, in order: file and sidecar exist, the sidecar is a JSON object, the architecture is known,
    the model can be built, the SHA-256 matches, the state dict fits (``weights_only=True``).
    Every failure is a ``ModelFileError`` that says which. The model is built where torch builds
    it (the CPU) and moved to ``device`` when one is given.
    """
    meta = read_sidecar(path)
    name, kwargs = meta.get("architecture"), meta.get("architecture_kwargs", {})
    if not callable(architectures) and name not in architectures:
        raise ModelFileError(f"sidecar of {path} must name an architecture in {sorted(architectures)}, got {name!r}")
    if not isinstance(kwargs, dict):
        raise ModelFileError(f"architecture_kwargs in the sidecar of {path} must be an object, got {kwargs!r}")
    expected = _recorded_sha256(path, meta)
    try:
        model = architectures(name, **kwargs) if callable(architectures) else architectures[name](**kwargs)
        load_checkpoint(model, path, expected_sha256=expected)  # the sidecar is read once, above
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise ModelFileError(f"{path}: {e}") from None
    return (model.to(device) if device is not None else model).eval(), meta


def cached_model_path(name: str) -> Path:
    """Where ``cached_model(name, ...)`` keeps its weights: ``cache_dir()/models/<name>.pt`` (+ ``.pt.json``)."""
    return cache_dir() / "models" / f"{name}.pt"


def cached_field(name: str, meta: dict, key: str):
    """``meta[key]`` when ``cached_model(name, ..., meta=meta)`` has just trained (its ``train`` filled
    ``meta``), else the value recorded in the cache entry's sidecar; None if neither has it."""
    if meta.get(key) is not None:
        return meta[key]
    try:
        return read_sidecar(cached_model_path(name)).get(key)
    except ModelFileError:
        return None


def cached_model(name: str, build, train, meta: dict | None = None, device=None, shipped: bool = True):
    """Load model ``name`` from ``cache_dir()/models`` if present and intact, else ``train`` and save it.

    build(): a fresh model; train(model): trains it in place. The cache key should include the
    profile and the recipe (e.g. ``"mnist_standard_quick"``) so different runs never mix. An entry
    that cannot be verified or loaded (missing, empty or garbled sidecar, no SHA-256, other weights,
    another architecture) counts as missing: a one-line warning, then training starts from a fresh
    ``build()``. ``meta`` is stored in the sidecar after ``train`` returns, so ``train`` may add to it.

    When the cache has no entry ``name`` and the course ships one (``zoo.is_shipped(name)``: made by
    ``python -m course_utils.zoo ship``), the shipped files are copied into the cache first and then
    verified like any entry; ``shipped=False`` skips that (a caller that copied and rejected the
    shipped entry itself). A "train it yourself" caller uses a name the course does not ship
    (``zoo.robust_model(..., source="train")`` appends ``_yours``).
    """
    path = cached_model_path(name)
    if shipped and not path.exists() and not Path(str(path) + ".json").exists():
        from .. import zoo

        zoo.copy_shipped(name, path.parent)
    model = build()
    if path.exists() or Path(str(path) + ".json").exists():
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            load_checkpoint(model, path)
            return model.to(device) if device is not None else model
        except Exception as e:  # any failure reading the cache: train again, never crash or trust it
            warnings.warn(f"cached model {path} is unusable ({' '.join(str(e).split())}); training it again",
                          stacklevel=2)
            model.load_state_dict(initial)  # a failed load may have copied some tensors
    if device is not None:
        model = model.to(device)
    train(model)
    save_checkpoint(model, path, meta)
    return model
