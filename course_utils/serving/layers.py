"""The defense layers behind ``POST /predict`` (project p4), each small and testable on its own.

- ``squeeze_detector(model, dataset, threshold)``: the feature-squeezing detector of notebook 06
  (Xu, Evans & Qi, NDSS 2018), i.e. ``sanitization.SqueezeDetector`` with the paper's squeezers and a
  threshold tau calibrated offline for a false-positive rate (stored in the checkpoint's sidecar).
- ``Classifier``: the answer, either argmax f(x) or the smoothed classifier g of Cohen, Rosenfeld &
  Kolter (2019) via ``certify.Smooth.predict``, which abstains (label -1) when the top class does not
  beat the runner-up by a binomial test at level alpha.
- ``QueryPatternDetector``: stateful detection of query-based black-box attacks (Chen, Carlini &
  Wagner, "Stateful Detection of Black-Box Adversarial Attacks", AISec 2020). HopSkipJump, Square
  and boundary attacks send many near-duplicates of one image; for each client the detector keeps
  the signatures of its recent queries and flags a query whose mean distance to its k nearest
  predecessors is below a threshold delta.

Signatures: ``image_signature(x)`` = a (s x s) average-pooled copy of x, flattened: D = C * s * s
values in [0, 1]. Distances are root-mean-square per value, so delta is in pixel units.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import sanitization

SIGNATURE_SIZE = 7  # side of the pooled copy of each query that the query-pattern detector compares


def squeeze_detector(model, dataset: str = "mnist", threshold: float | None = None) -> sanitization.SqueezeDetector:
    """Xu et al.'s detector for ``dataset`` with threshold tau (None: call ``fit_threshold`` yourself)."""
    det = sanitization.SqueezeDetector(model, sanitization.paper_squeezers(dataset))
    if threshold is not None:
        det.threshold = float(threshold)
    return det


class Classifier:
    """The label the service returns: argmax f(x), or smoothed g(x) with abstention (``sigma`` > 0).

    x: (1, C, H, W) in [0, 1]. ``predict`` returns (label, abstained); label is -1 when abstaining.
    n: Monte-Carlo samples per request; alpha: the test's level (P(wrong non-abstained answer) <= alpha).
    """

    def __init__(self, model, num_classes: int = 10, sigma: float | None = None, n: int = 100,
                 alpha: float = 0.001, batch_size: int = 100, generator: torch.Generator | None = None):
        self.model = model
        self.smooth = None
        if sigma:
            from ..certify import Smooth

            self.smooth = Smooth(model, num_classes, sigma, generator)
        self.n, self.alpha, self.batch_size = n, alpha, batch_size

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[int, bool]:
        if self.smooth is None:
            return int(self.model(x).argmax(1)[0]), False
        label = self.smooth.predict(x[0], self.n, self.alpha, self.batch_size)
        return int(label), label == self.smooth.ABSTAIN


def image_signature(x: torch.Tensor, size: int = SIGNATURE_SIZE) -> torch.Tensor:
    """Signature of each image for near-duplicate search: x (B, C, H, W) in [0, 1] -> (B, C*size*size).

    Adaptive average pooling to size x size: robust to the small pixel changes of a query attack,
    cheap, and the same for every client (Chen et al. 2020 train a similarity encoder instead).
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    return F.adaptive_avg_pool2d(x.float(), size).flatten(1)


def knn_distance(history: torch.Tensor, s: torch.Tensor, k: int) -> float:
    """Mean distance from signature s (D,) to its k nearest rows of ``history`` (N, D), N >= k.

    Distance: root-mean-square difference per value, ||a - b||_2 / sqrt(D) (pixel units). The score
    of Chen et al. (2020): small = the client keeps sending near-copies of an earlier query.
    """
    if history.ndim != 2 or s.ndim != 1 or history.shape[1] != s.shape[0]:
        raise ValueError(f"history must be (N, D) and s (D,), got {tuple(history.shape)} and {tuple(s.shape)}")
    if not 1 <= k <= history.shape[0]:
        raise ValueError(f"k must be in 1..N = {history.shape[0]}, got {k!r}")
    d = (history - s).pow(2).mean(1).sqrt()
    return float(d.topk(k, largest=False).values.mean())


class QueryPatternDetector:
    """Flags near-duplicate bursts in each client's recent queries (Chen et al. 2020).

    k: neighbours averaged; delta: flag when the k-NN mean distance < delta (pixel units, RMS);
    history: signatures kept per client; window_s: signatures older than this are forgotten, so a
    slow, legitimate user retrying the same photo is not flagged; max_clients: LRU bound on clients.
    ``observe(client, x)`` -> (score or None when the client has < k recent queries, flagged).

    Where the histories live: ``histories``, any object with ``push(client, s, now) -> (N, D)``
    earlier signatures within the window; by default a ``state.LocalHistories`` in this process
    (``service.state`` passes a ``state.LocalState`` or ``state.RedisState`` shared by every worker).
    Memory of the local one: one preallocated ring of ``history`` float32 signatures and times per
    client, at most ``memory_bound_bytes`` = max_clients x history x (D + 1) x 4 bytes (D = C x 7 x 7;
    2,000 x 100 x 50 x 4 = 40 MB by default for MNIST); clients idle for longer than ``window_s``
    are dropped, and beyond ``max_clients`` the least recently seen go first.
    """

    def __init__(self, k: int = 5, delta: float = 0.02, history: int = 100, window_s: float = 60.0,
                 max_clients: int = 2_000, signature_size: int = SIGNATURE_SIZE, channels: int = 1, histories=None):
        from .state import LocalHistories

        if k < 1 or history < k:
            raise ValueError(f"need 1 <= k <= history, got k={k!r}, history={history!r}")
        if not delta > 0 or not window_s > 0:
            raise ValueError(f"delta and window_s must be > 0, got {delta!r}, {window_s!r}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients!r}")
        self.k, self.delta, self.history, self.window_s = k, float(delta), history, float(window_s)
        self.max_clients, self.signature_size = max_clients, signature_size
        self.dim = channels * signature_size * signature_size
        self.histories = histories if histories is not None else LocalHistories(history, window_s, max_clients, self.dim)

    @property
    def memory_bound_bytes(self) -> int:
        return self.max_clients * self.history * (self.dim + 1) * 4

    def __len__(self):
        return len(self.histories)

    def observe(self, client: str, x: torch.Tensor, now: float | None = None) -> tuple[float | None, bool]:
        s = image_signature(x, self.signature_size)[0]
        if s.shape[0] != self.dim:
            raise ValueError(f"x has {x.shape[1]} channels; the detector was made for {self.dim // self.signature_size ** 2}")
        past = self.histories.push(client, s, now)
        if past.shape[0] < self.k:
            return None, False
        score = knn_distance(past, s, self.k)
        return score, score < self.delta

    def forget(self, client: str):
        self.histories.forget(client)
