"""Finding poison in a training set (notebook 06b): spectral signatures and activation clustering.

- ``features(model, x, layer)``: the activations of one *named* layer (B, D), by a forward hook;
  a missing name is a ``ValueError``. The defenses read the penultimate layer, never the logits by
  default (ART's ``ActivationDefence`` and ``SpectralSignatureDefense`` read the last layer in
  ``layer_names``, the logits of a ``PyTorchClassifier``: ART issue #1810).
- ``spectral_signature(r)`` and ``spectral_scores(features, labels)``: Tran, Li & Madry (2018),
  "Spectral signatures in backdoor attacks" (NeurIPS), Algorithm 1: for the images of one class,
  centre the representations R (n, d), take the top right singular vector v of the centred matrix,
  score tau_i = ((R_i - mean R) . v)^2, higher is more suspicious. ART 1.20 centres to find v but
  scores the *uncentred* R_i (|R_i . v|), as the authors' code does (BackdoorBench #44);
  ``centre=False`` reproduces that.
- ``spectral_filter``: remove the top ``multiplier`` (1.5, Tran et al.) x the expected poison count
  from one class: the ``suspect_class`` (the heaviest tail of scores; a backdoor with one target
  class puts all its poison there) or a class the defender names. ``remove_from="every"`` is
  Algorithm 1 as printed (the same share removed from every class) and ART's rule.
- ``activation_clustering``: Chen et al. (2018), "Detecting backdoor attacks on deep neural networks
  by activation clustering", through ART's ``ActivationDefence`` on activations chosen here (PCA to
  10 dimensions, 2-means per class, the smaller cluster flagged when under 35% of the class).
- ``knn_label_disagreement``: Deep k-NN (Peri et al. 2020) against trusted references, the screen
  of project p4 for uploads that arrive with untrusted labels.
- ``detection_report``: poison recall and the share of clean images removed, with intervals.
"""
from __future__ import annotations

import numpy as np
import torch

from ..evaluation import EvalResult
from ..validation import check_images, check_positive_int, eval_mode

PENULTIMATE = {"mnist_small_cnn": "7"}  # name of the penultimate ReLU in models.mnist_small_cnn (100 units)


@torch.no_grad()
def features(model, x: torch.Tensor, layer: str, batch_size: int = 512) -> torch.Tensor:
    """Activations (B, D) of the module named ``layer`` (``dict(model.named_modules())``) for x (B, C, H, W)
    in [0, 1], flattened, on the CPU, in eval mode. The layer is named, never "the last one"."""
    check_images(x)
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        raise ValueError(f"model has no layer named {layer!r}; its layers: {[n for n in modules if n]}")
    out = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: out.append(o.detach().flatten(1).cpu()))
    device = next(iter(model.parameters())).device
    try:
        with eval_mode(model):
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(device))
    finally:
        handle.remove()
    return torch.cat(out) if out else torch.empty(0, 0)


def spectral_signature(r: torch.Tensor, centre: bool = True) -> torch.Tensor:
    """Tran et al.'s outlier score for the representations r (n, d) of ONE class: (n,), higher is more
    suspicious. centre=False: ART's and the authors' uncentred score (projection of r, not r - mean)."""
    dtype = r.dtype if r.is_floating_point() else torch.float32
    r = r.double()
    m = r - r.mean(0, keepdim=True)  # (n, d): centred representations
    _, _, vh = torch.linalg.svd(m, full_matrices=False)  # vh (k, d): rows are right singular vectors
    v = vh[0]  # (d,): top right singular vector
    return ((m if centre else r) @ v).pow(2).to(dtype)  # (n,), in r's dtype


def _check_features(feats, labels):
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2:
        raise ValueError(f"features must be a (N, D) tensor, got {getattr(feats, 'shape', type(feats))}")
    labels = torch.as_tensor(labels)
    if labels.shape != (len(feats),):
        raise ValueError(f"labels must have shape ({len(feats)},), got {tuple(labels.shape)}")
    return labels


def spectral_scores(features: torch.Tensor, labels: torch.Tensor, centre: bool = True) -> torch.Tensor:
    """Spectral-signature scores (N,) of penultimate features (N, D), computed per class (``labels`` (N,)):
    higher is more suspicious; scores are comparable only within a class. A class with one image scores 0."""
    labels = _check_features(features, labels)
    scores = torch.zeros(len(features))
    for c in labels.unique().tolist():
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) > 1:
            scores[rows] = spectral_signature(features[rows], centre)
    return scores


def tail_ratio(scores: torch.Tensor, n_top: int) -> float:
    """mean of the ``n_top`` highest scores / mean of all scores: how heavy one class's outlier tail is."""
    top = scores.sort(descending=True).values[:n_top]
    return float(top.mean() / scores.mean().clamp_min(1e-12)) if len(scores) else 0.0


def suspect_class(features: torch.Tensor, labels: torch.Tensor, n_top: int, centre: bool = True) -> int:
    """The class whose spectral scores have the heaviest tail (``tail_ratio`` of its ``n_top`` highest):
    where a one-target backdoor would put its poison. A guess, to be checked (notebook 06b measures it)."""
    labels = _check_features(features, labels)
    classes = labels.unique().tolist()
    ratios = [tail_ratio(spectral_signature(features[labels == c], centre), n_top) if (labels == c).sum() > 1 else 0.0
              for c in classes]
    return int(classes[int(np.argmax(ratios))])


def spectral_filter(features: torch.Tensor, labels: torch.Tensor, expected_poison: int, multiplier: float = 1.5,
                    remove_from="suspect", centre: bool = True) -> torch.Tensor:
    """Images to remove (N,) bool: the ``round(multiplier * expected_poison)`` highest spectral scores of one
    class: ``remove_from="suspect"`` (``suspect_class``) or a class index the defender names; ``"every"``
    removes that many from every class (Algorithm 1 of Tran et al. as printed, with its per-class eps,
    and ART's rule: about num_classes times the clean images). ``expected_poison``: the defender's guess
    of the number of poisoned images (all in one class for a one-target backdoor)."""
    labels = _check_features(features, labels)
    n_remove = int(round(multiplier * check_positive_int(expected_poison, "expected_poison")))
    if remove_from == "every":
        classes = labels.unique().tolist()
    elif remove_from == "suspect":
        classes = [suspect_class(features, labels, n_remove, centre)]
    elif isinstance(remove_from, int) and not isinstance(remove_from, bool):
        classes = [remove_from]
    else:
        raise ValueError(f"remove_from must be 'suspect', 'every' or a class index, got {remove_from!r}")
    scores = torch.zeros(len(labels))
    for c in classes:
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) > 1:
            scores[rows] = spectral_signature(features[rows], centre)
    return remove_top(scores, labels, expected_poison, classes, multiplier)


def remove_top(scores: torch.Tensor, labels: torch.Tensor, expected_poison: int, classes, multiplier: float = 1.5):
    """(N,) bool: in each class of ``classes``, the ``round(multiplier * expected_poison)`` images with the
    highest ``scores`` (N,) (all of the class when it is smaller). Tran et al.'s removal step."""
    labels = torch.as_tensor(labels)
    n_remove = int(round(multiplier * check_positive_int(expected_poison, "expected_poison")))
    removed = torch.zeros(len(labels), dtype=torch.bool)
    for c in classes:
        rows = torch.nonzero(labels == c).flatten()
        removed[rows[torch.as_tensor(scores)[rows].argsort(descending=True)[:n_remove]]] = True
    return removed


def activation_clustering(features: torch.Tensor, labels: torch.Tensor, num_classes: int = 10, nb_dims: int = 10,
                          reduce: str = "PCA", size_threshold: float = 0.35, seed: int = 0) -> torch.Tensor:
    """Chen et al. (2018) through ART's ``ActivationDefence``, on the activations passed here (N, D) (not the
    logits ART would read): per class, ART reduces to ``nb_dims`` (``reduce``) and runs 2-means; the
    smaller cluster is flagged only when it holds under ``size_threshold`` of its class (Chen et al.'s
    relative size). ART's "smaller" rule flags the smaller cluster of *every* class, and its
    "relative-size" rule fails on NumPy 2 (ART 1.20), so the threshold is applied here to ART's
    clusters. Returns flagged (N,) bool. Seeded (ART draws from NumPy's global generator)."""
    from art.defences.detector.poison import ActivationDefence

    labels = _check_features(features, labels)
    feats, lab = features.numpy().astype(np.float32), labels.numpy()
    y_onehot = np.eye(num_classes, dtype=np.float32)[lab]
    defence = ActivationDefence(_NoClassifier(num_classes), feats, y_onehot)  # x_train only sizes the report
    defence.activations_by_class = [feats[lab == c] for c in range(num_classes)]
    np.random.seed(seed)
    defence.detect_poison(nb_clusters=2, nb_dims=nb_dims, reduce=reduce, cluster_analysis="smaller")
    flagged = torch.zeros(len(lab), dtype=torch.bool)
    for c, clusters in enumerate(defence.clusters_by_class):
        if len(clusters) < 2:
            continue
        sizes = np.bincount(clusters, minlength=2)
        small = int(np.argmin(sizes))
        if sizes[small] / sizes.sum() < size_threshold:
            flagged[torch.from_numpy(np.nonzero(lab == c)[0][clusters == small])] = True
    return flagged


def knn_label_disagreement(features: torch.Tensor, labels: torch.Tensor, trusted_features: torch.Tensor,
                           trusted_labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Deep k-NN (Peri et al. 2020, "Deep k-NN defense against clean-label data poisoning attacks"), against
    trusted references: flag an image (N,) bool when the plurality label of its ``k`` nearest trusted images
    (Euclidean, in the feature space of a model trained on trusted data) is not its own label. A
    dirty-label poison (a 7 with a trigger, labelled 0) sits among 7s. Ties go to the smaller class."""
    labels = _check_features(features, labels)
    trusted_labels = _check_features(trusted_features, trusted_labels)
    k = check_positive_int(k, "k")
    num_classes = int(torch.cat([labels, trusted_labels]).max()) + 1
    flagged = torch.zeros(len(labels), dtype=torch.bool)
    for i in range(0, len(labels), 512):
        d = torch.cdist(features[i:i + 512].float(), trusted_features.float())  # (b, M)
        nearest = trusted_labels[d.topk(min(k, d.shape[1]), largest=False).indices]  # (b, k)
        counts = torch.zeros(len(nearest), num_classes, dtype=torch.long).scatter_add_(1, nearest, torch.ones_like(nearest))
        flagged[i:i + 512] = counts.argmax(1) != labels[i:i + 512]
    return flagged


class _NoClassifier:
    """Stands in for ART's classifier: the activations are given, so ART never calls it."""

    def __init__(self, num_classes):
        self.nb_classes = num_classes
        self.layer_names = None


def detection_report(removed: torch.Tensor, is_poison: torch.Tensor) -> dict:
    """Poison recall (poisoned images removed / poisoned) and clean removal (clean images removed / clean),
    each an ``EvalResult`` with its 95% interval; ``kept`` the (N,) bool mask of what is left and
    ``poison_removed`` one bool per poisoned image (the paired data for comparing two detectors)."""
    removed, is_poison = torch.as_tensor(removed, dtype=torch.bool), torch.as_tensor(is_poison, dtype=torch.bool)
    if removed.shape != is_poison.shape:
        raise ValueError(f"removed {tuple(removed.shape)} and is_poison {tuple(is_poison.shape)} differ")
    recall = EvalResult(int((removed & is_poison).sum()), int(is_poison.sum()), "poison removed")
    clean = EvalResult(int((removed & ~is_poison).sum()), int((~is_poison).sum()), "clean removed")
    return {"recall": recall, "clean_removed": clean, "kept": ~removed, "poison_removed": removed[is_poison]}
