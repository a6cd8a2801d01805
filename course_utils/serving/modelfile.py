"""Model files for the service (project p4): export with a calibrated detector, load safely.

``export_model(model, path, architecture, dataset, x_calib, fpr)`` calibrates the squeeze
detector's threshold tau on clean images (at most ``fpr`` of them flagged) and writes the weights
with ``training.save_checkpoint``: a state dict plus a sidecar ``path.json`` holding its SHA-256,
the architecture name (``models.build_model``) and tau. ``load_service_model(path)`` rebuilds the
architecture and loads with ``training.load_checkpoint`` (checksum verified, ``weights_only=True``):
a modified file raises ``training.ModelFileError`` and the service refuses to start. The sidecar itself is
not signed: protect it like the weights (read-only deployment, or an HMAC / signature in production).

``course_model()``: the adversarially trained MNIST CNN the notebook and the benchmark serve.
"""
from __future__ import annotations

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


def load_service_model(path):
    """(model in eval mode on the CPU, sidecar dict) from a file written by ``export_model``.

    The course's one safe loader, ``training.load_model_file``, with ``models.build_model``'s
    architectures; any problem is a ``training.ModelFileError``."""
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
