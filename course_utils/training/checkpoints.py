"""Checkpoints with checksums and the course's one safe model loader.

``save_checkpoint`` / ``load_checkpoint`` store a state dict with a SHA-256 sidecar ``path.json``
and load it with ``torch.load(..., weights_only=True)``; a tampered file is refused.
``load_model_file(path, architectures)`` is what a deployment uses (the p3 gate, the p4 service):
the file and its sidecar must exist, the sidecar must be a JSON object naming an architecture
(``"architecture"``, ``"architecture_kwargs"``), and the weights must match the checksum; anything
else raises ``ModelFileError``. ``cached_model`` trains once and reloads from ``cache_dir()``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch


class ModelFileError(ValueError):
    """A model file is missing, tampered with, or its sidecar does not describe it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_checkpoint(model, path, meta: dict | None = None) -> str:
    """Save ``model.state_dict()`` atomically to ``path`` and its SHA-256 (+ ``meta``) to ``path.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    digest = _sha256(path)
    Path(str(path) + ".json").write_text(json.dumps({"sha256": digest, **(meta or {})}, indent=2))
    return digest


def load_checkpoint(model, path, expected_sha256: str | None = None, map_location=None):
    """Load a state dict saved by ``save_checkpoint`` into ``model``, after checking its SHA-256.

    The expected digest is ``expected_sha256`` or the one in ``path.json``. A missing sidecar, a
    mismatch or a file that is not a plain state dict raises ``ValueError``; loading uses
    ``weights_only=True``, so a checkpoint cannot run code. ``save_checkpoint`` stores CPU tensors;
    ``load_state_dict`` copies them onto the model's device.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if expected_sha256 is None:
        sidecar = Path(str(path) + ".json")
        if not sidecar.exists():
            raise ValueError(f"checkpoint {path} has no checksum file {sidecar.name}; refusing to load it")
        expected_sha256 = json.loads(sidecar.read_text())["sha256"]
    digest = _sha256(path)
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
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"sidecar {sidecar} is not valid JSON ({e}); refusing the model") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"sidecar {sidecar} must hold a JSON object, got {type(meta).__name__}")
    return meta


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
    if not isinstance(meta.get("sha256"), str):
        raise ModelFileError(f"sidecar of {path} has no SHA-256 of the weights: refusing an unverified model")
    try:
        model = architectures(name, **kwargs) if callable(architectures) else architectures[name](**kwargs)
        load_checkpoint(model, path, expected_sha256=meta["sha256"])  # the sidecar is read once, above
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise ModelFileError(f"{path}: {e}") from None
    return (model.to(device) if device is not None else model).eval(), meta


def cached_model(name: str, build, train, meta: dict | None = None, device=None):
    """Load model ``name`` from ``cache_dir()/models`` if present and intact, else ``train`` and save it.

    build(): a fresh model; train(model): trains it in place. The cache key should include the
    profile and the recipe (e.g. ``"mnist_standard_quick"``) so different runs never mix.
    """
    from ..config import cache_dir

    path = cache_dir() / "models" / f"{name}.pt"
    model = build()
    if path.exists():
        try:
            load_checkpoint(model, path)
            return model.to(device) if device is not None else model
        except ValueError as e:
            print(f"cached {path.name} refused ({e}); training again")
    if device is not None:
        model = model.to(device)
    train(model)
    save_checkpoint(model, path, meta)
    return model
