"""Input reconstruction (MagNet, Meng & Chen, CCS 2017): an autoencoder as detector and purifier (notebook 06).

An autoencoder AE trained on clean images only reconstructs what looks like clean data:

- detector: the reconstruction error ||x - AE(x)||_p (mean over pixels) is large off the data
  manifold (``ReconstructionDetector``, same interface as ``sanitization.Detector``);
- purifier ("reformer"): the classifier sees AE(x) instead of x (``Purified(model, ae)``).

Both are differentiable, so an attacker who knows them simply attacks through them
(``sanitization.adaptive``): that is the lesson of notebook 06.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training import fit
from ..validation import check_images, check_positive_int, eval_mode
from .squeeze import Detector


def magnet_autoencoder(channels: int = 1, width: int = 16, activation=nn.ReLU) -> nn.Sequential:
    """MagNet's MNIST autoencoder layout ("detector I"): x (B, C, H, W) in [0, 1] -> AE(x) in [0, 1].

    conv3x3-width, avgpool 2x2, conv3x3-width, conv3x3-width, upsample 2x2, conv3x3-width,
    conv3x3-C, sigmoid output (Meng & Chen 2017, Table 1). MagNet uses width 3 and sigmoid
    activations trained for 100 epochs; the defaults here (16 ReLU channels) learn in a few CPU
    epochs (``width=3, activation=nn.Sigmoid`` gives the paper's). H and W must be even.
    """
    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), activation()]

    return nn.Sequential(
        *conv(channels, width), nn.AvgPool2d(2),  # (B, width, H/2, W/2)
        *conv(width, width), *conv(width, width),
        nn.Upsample(scale_factor=2, mode="nearest"),  # (B, width, H, W)
        *conv(width, width),
        nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid(),  # back to [0, 1]
    )


def train_autoencoder(ae: nn.Module, loader, epochs: int = 1, lr: float = 3e-3, noise: float = 0.1,
                      weight_decay: float = 1e-9, progress: bool = True) -> list:
    """Fit AE to clean images: minimise mean ||AE(clip(x + noise * N(0, I))) - x||^2 with Adam.

    MagNet trains with Gaussian noise of volume 0.1 and L2 regularisation 1e-9. Labels in the
    loader are ignored. The course's training loop (``training.fit``) with this loss as its hook.
    Returns the mean loss of each epoch.
    """
    def denoising_loss(model, x, y, t):
        noisy = (x + noise * torch.randn_like(x)).clamp(0, 1)
        return F.mse_loss(model(noisy), x), None

    history = fit(ae, loader, check_positive_int(epochs, "epochs"), lr=lr, optimizer="adam", weight_decay=weight_decay,
                  schedule="constant", loss_fn=denoising_loss, progress=progress, desc="autoencoder")
    return [h["loss"] for h in history]


class ReconstructionDetector(Detector):
    """MagNet's detector: score(x) = mean_i |x_i - AE(x)_i|^p (p = 1 for MNIST, 2 also used).

    Use like every ``sanitization.Detector``: ``fit_threshold(x_clean, fpr)``, ``score``, ``detect``.
    """

    def __init__(self, autoencoder: nn.Module, p: int = 1):
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        self.autoencoder, self.p = autoencoder, p

    def differentiable_score(self, x, through=None):
        with eval_mode(self.autoencoder):
            return (x - self.autoencoder(x)).abs().pow(self.p).flatten(1).mean(1)


class Purified(nn.Module):
    """The reformer: ``model(AE(x))``. x: (B, C, H, W) in [0, 1] -> logits. Differentiable end to end."""

    def __init__(self, model: nn.Module, autoencoder: nn.Module):
        super().__init__()
        self.model, self.autoencoder = model, autoencoder

    def forward(self, x):
        return self.model(self.autoencoder(x))


@torch.no_grad()
def reconstruct(autoencoder: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """AE(x) for x (B, C, H, W) in [0, 1], batched, in eval mode."""
    check_images(x)
    with eval_mode(autoencoder):
        return torch.cat([autoencoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
