"""Model files for the service (project p4): export with a calibrated detector, load safely.

``export_model(model, path, architecture, dataset, x_calib, fpr)`` calibrates the squeeze
detector's threshold tau on clean images (at most ``fpr`` of them flagged) and writes the weights
with ``training.save_checkpoint``: a state dict plus a sidecar ``path.json`` holding its SHA-256,
the architecture name (``models.build_model``) and tau. ``load_service_model(path)`` rebuilds the
architecture and loads with ``training.load_checkpoint`` (checksum verified, ``weights_only=True``):
a modified file raises ``training.ModelFileError`` and the service refuses to start. The sidecar itself is
not signed: protect it like the weights (read-only deployment, or an HMAC / signature in production).

Before anything is allocated, ``check_sidecar`` validates the sidecar against the schema below
(issue 17: an RGB ``input_shape`` for a grey model, a NaN threshold or a huge ``width`` used to
start a service that answered 500, silently turned the detector off, or allocated 1.6 GB):

===================== ==========================================================================
``sha256``            64 lowercase hex digits (the weights' checksum)
``architecture``      a name in ``models.MODELS``
``architecture_kwargs`` an object of that builder's keyword arguments (int, finite float, str, or
                      lists of ints); the model is first built on PyTorch's ``meta`` device (no
                      memory) and refused above ``MAX_PARAMETERS`` parameters
``dataset``           ``"mnist"`` or ``"cifar10"`` (picks the squeezers)
``input_shape``       [C, H, W], C in {1, 3}, 1 <= H, W <= 4096, and the architecture must accept
                      it: a forward pass on the meta device gives (1, num_classes)
``detector_threshold`` null or a finite number (NaN would turn the detector off silently)
``detector_fpr``      null or a finite number in (0, 1)
===================== ==========================================================================

Other keys (``version``, ``profile``, ...) are kept as metadata.

``course_model()``: the adversarially trained MNIST CNN the notebook and the benchmark serve.
"""
from __future__ import annotations

import inspect
import math
import re

import torch

from .. import models, training
from ..training import ModelFileError, load_model_file  # noqa: F401  (ModelFileError: the service's error type)
from .layers import squeeze_detector


def export_model(model, path, architecture: str, dataset: str = "mnist", x_calib=None, fpr: float = 0.05,
                 input_shape=(1, 28, 28), meta: dict | None = None, architecture_kwargs: dict | None = None) -> dict:
    """Save ``model`` for serving; returns the sidecar dict. x_calib: clean (N, C, H, W) in [0, 1]."""
    threshold = None
    if x_calib is not None:
        threshold = squeeze_detector(model.eval(), dataset).fit_threshold(x_calib, fpr).threshold
    side = {"architecture": architecture, "architecture_kwargs": dict(architecture_kwargs or {}), "dataset": dataset, "input_shape": list(input_shape),
            "detector_threshold": threshold, "detector_fpr": fpr if threshold is not None else None, **(meta or {})}
    side["sha256"] = training.save_checkpoint(model, path, side)
    return side


MAX_PARAMETERS = 20_000_000  # PreActResNet-18 has 11.2 M; refused before any weight is allocated
DATASETS = ("mnist", "cifar10")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kwarg_ok(v) -> bool:
    return (isinstance(v, str) or _number(v)
            or (isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)))


def check_sidecar(meta: dict, path="model") -> dict:
    """``meta`` if it matches the schema of this module's docstring, else ``ModelFileError`` (one line).

    The architecture is built on the ``meta`` device only (shapes, no memory), so a sidecar asking
    for a billion parameters is refused before anything is allocated."""
    def bad(what):
        raise ModelFileError(f"sidecar of {path}: {what}; refusing the model")

    sha = meta.get("sha256")
    if sha is None:
        bad("no SHA-256 of the weights (key 'sha256')")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        bad(f"'sha256' must be a SHA-256 of 64 lowercase hex digits, got {str(sha)[:80]!r}")
    name = meta.get("architecture")
    if name not in models.MODELS:
        bad(f"'architecture' must be one of {sorted(models.MODELS)}, got {str(name)[:80]!r}")
    kwargs = meta.get("architecture_kwargs", {})
    if not isinstance(kwargs, dict):
        bad(f"'architecture_kwargs' must be an object, got {type(kwargs).__name__}")
    accepted = set(inspect.signature(models.MODELS[name]).parameters)
    for k, v in kwargs.items():
        if k not in accepted:
            bad(f"architecture_kwargs: {name} takes {sorted(accepted)}, not {str(k)[:40]!r}")
        if not _kwarg_ok(v):
            bad(f"architecture_kwargs: {k} must be an int, a finite number, a string or a list of ints, got {str(v)[:40]!r}")
    if meta.get("dataset", "mnist") not in DATASETS:
        bad(f"'dataset' must be one of {list(DATASETS)}, got {str(meta.get('dataset'))[:40]!r}")
    shape = meta.get("input_shape", [1, 28, 28])
    if (not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] not in (1, 3) or not all(1 <= v <= 4096 for v in shape[1:])):
        bad(f"'input_shape' must be [C, H, W] with C 1 or 3 and 1 <= H, W <= 4096, got {str(shape)[:80]}")
    for key, low, high in (("detector_threshold", None, None), ("detector_fpr", 0.0, 1.0)):
        v = meta.get(key)
        if v is not None and (not _number(v) or (low is not None and not low < v < high)):
            rng = "a finite number" if low is None else f"a finite number in ({low:g}, {high:g})"
            bad(f"'{key}' must be null or {rng}, got {str(v)[:40]!r}")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            net = models.build_model(name, **kwargs)
            n_params = sum(p.numel() for p in net.parameters())
            if n_params > MAX_PARAMETERS:
                bad(f"{name} with {kwargs} has {n_params:,} parameters, more than the {MAX_PARAMETERS:,} allowed")
            out = net(torch.empty(1, *shape))
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - a builder or a forward pass that fails on these arguments
        bad(f"{name} with {kwargs} does not accept input_shape {shape} ({' '.join(str(e).split())[:120]})")
    if out.dim() != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        bad(f"{name} maps input_shape {shape} to {tuple(out.shape)}, not (1, num_classes)")
    return meta


def load_service_model(path):
    """(model in eval mode on the CPU, sidecar dict) from a file written by ``export_model``.

    The sidecar is validated first (``check_sidecar``), then the course's one safe loader,
    ``training.load_model_file``, builds the architecture and verifies the weights; any problem is
    a ``training.ModelFileError`` with a one-line message."""
    check_sidecar(training.read_sidecar(path), path)
    return load_model_file(path, models.build_model)


def course_model(profile: str | None = None, device=None, progress: bool = True):
    """The service's model: notebook 04's adversarially trained MNIST CNN (``zoo.robust_model``).

    Same weights and cache as notebooks 04 and 06 (PGD training in quick, FGSM with a random start
    in full; see ``course_utils.zoo``). Returns ``(model in eval mode, architecture_kwargs)``:
    pass the kwargs to ``export_model`` so the service rebuilds the same width.
    """
    from .. import zoo

    model = zoo.robust_model("mnist", profile, device=device, progress=progress)[0].eval()
    return model, {"width": zoo.recipe("mnist", profile)["width"]}
