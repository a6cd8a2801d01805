"""Adapters to the attack libraries the course compares itself with (notebooks 03, 06, project p1).

- ``art_classifier(model, input_shape, num_classes, optimizer=None)``: a torch model (inputs in
  [0, 1], normalization inside) as ART's ``PyTorchClassifier`` on the model's device; pass an
  optimizer when ART's trainers (``AdversarialTrainer``) will train it.
- ``art_partition_votes(models, x)``: ART's ``DeepPartitionEnsemble`` vote counts over trained base
  models (notebook 06b's cross-check of ``poisoning.votes``).
- ``carlini_wagner``: ART's Carlini-Wagner L2 / L-infinity attacks (Carlini & Wagner 2017b).
- ``autoattack(eps, norm, impl=None)``: an ``AutoAttack`` run as ``attack(model, x, y)`` (Croce & Hein
  2020): the authors' reference code (``impl="official"``, the PyPI package ``pyautoattack``, what
  RobustBench uses; the default when installed) or torchattacks' port (``impl="torchattacks"``, the
  fallback and the cross-check). ``str(attack)`` names the implementation that ran. The course
  spells norms ``"linf"`` / ``"l2"``; the libraries' spellings stay here.
- ``square(eps, norm, n_queries)``: ``attack(model, x, y)`` running torchattacks' Square attack
  (Andriushchenko et al. 2020), gradient-free: the gradient-masking checklist's black-box row.
- ``jsma(theta, gamma)``: ``attack(model, x, y)`` running ART's ``SaliencyMapMethod`` (JSMA,
  Papernot et al. 2016), a sparse (L0) attack towards a seeded random wrong class: notebook 04's
  L-infinity trap table.

All take x: (B, C, H, W) in [0, 1] and return adversarial inputs in [0, 1] on x's device.
ART, torchattacks and pyautoattack are imported only when an adapter is called.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util

import torch
from torch import nn

from .attacks import format_number
from .validation import check_images, check_norm

_TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}


def art_device_type(model: nn.Module) -> str:
    """ART's ``device_type`` for the device the model's parameters are on: "gpu" for CUDA, else "cpu"."""
    return "gpu" if next(model.parameters()).device.type == "cuda" else "cpu"


def art_classifier(model: nn.Module, input_shape, num_classes: int = 10, optimizer=None):
    """Wrap a torch model (inputs in [0, 1], normalization inside) as ART's ``PyTorchClassifier``."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model.eval(), loss=nn.CrossEntropyLoss(), optimizer=optimizer,
                             input_shape=tuple(input_shape), nb_classes=num_classes, clip_values=(0.0, 1.0),
                             device_type=art_device_type(model))


def art_partition_votes(models, x: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """ART's ``DeepPartitionEnsemble`` over already trained base models (notebook 06b's cross-check of
    ``poisoning.votes``): its vote counts (N, num_classes) int64 for x (N, C, H, W) in [0, 1]."""
    from art.estimators.classification import DeepPartitionEnsemble

    check_images(x)
    clfs = [art_classifier(m, x.shape[1:], num_classes) for m in models]
    ensemble = DeepPartitionEnsemble(clfs, ensemble_size=len(clfs), channels_first=True, clip_values=(0.0, 1.0))
    counts = ensemble.predict(x.detach().cpu().numpy().astype("float32"), max_aggregate=True)
    return torch.from_numpy(counts).round().long()


def carlini_wagner(model: nn.Module, x: torch.Tensor, norm: str = "l2", num_classes: int = 10, **kwargs) -> torch.Tensor:
    """Carlini & Wagner (2017b, "Towards evaluating the robustness of neural networks") via ART.

    norm "l2": ``art.attacks.evasion.CarliniL2Method``; "linf": ``CarliniLInfMethod``. kwargs go to
    the ART attack (confidence, max_iter, binary_search_steps, learning_rate, batch_size, ...).
    Untargeted. x: (B, C, H, W) in [0, 1] -> x_adv on x.device.
    """
    from art.attacks.evasion import CarliniL2Method, CarliniLInfMethod

    check_images(x)
    check_norm(norm)
    clf = art_classifier(model, x.shape[1:], num_classes)
    kwargs.setdefault("verbose", False)
    attack = (CarliniL2Method if norm == "l2" else CarliniLInfMethod)(clf, **kwargs)
    x_adv = attack.generate(x=x.detach().cpu().numpy().astype("float32"))
    return torch.from_numpy(x_adv).to(device=x.device, dtype=x.dtype).clamp(0, 1)


AUTOATTACK_IMPLS = ("official", "torchattacks")


def official_autoattack_available() -> bool:
    """Whether Croce & Hein's reference AutoAttack (the PyPI package ``pyautoattack``) is installed."""
    return importlib.util.find_spec("pyautoattack") is not None


class AutoAttack:
    """AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks") as ``attack(model, x, y) -> x_adv``; notebooks 04, 05.

    version "standard": APGD-CE, APGD-T (9 target classes), FAB-T (9 targets) and Square (5,000
    queries), each run on the images the previous ones did not break. impl: ``"official"`` (the
    authors' code, ``pyautoattack``), ``"torchattacks"`` (torchattacks' port) or None: official when
    installed, else torchattacks. ``str(self)`` is the threat model with the implementation, e.g.
    ``AutoAttack (standard, official pyautoattack 0.2.0) linf eps=8/255``.
    x: (B, C, H, W) in [0, 1] -> x_adv on x's device, ``||x_adv - x|| <= eps``, in [0, 1]. The
    library's attack object is built once per model. Both implementations reseed torch's global
    generator with ``seed`` before each attack (the libraries' own behaviour).

    The two differ: the reference runs APGD-CE, APGD-T and FAB-T for 100 iterations each, while
    torchattacks 3.3's ``AutoAttack`` leaves them at its classes' default of 10 (``steps=10``), so it
    is the cheaper and possibly weaker one; ``tests/test_autoattack.py`` shows they agree within
    sampling noise on a standard MNIST CNN. ``pyautoattack`` 0.2.0 carries the attack files of
    fra31/auto-attack (identical up to imports and whitespace) behind a reworked ``AutoAttack``
    wrapper (logging instead of prints, keyword-only arguments).
    """

    def __init__(self, eps: float, norm: str = "linf", version: str = "standard", num_classes: int = 10,
                 seed: int = 0, impl: str | None = None):
        check_norm(norm)
        if impl is None:
            impl = "official" if official_autoattack_available() else "torchattacks"
        if impl not in AUTOATTACK_IMPLS:
            raise ValueError(f"impl must be one of {AUTOATTACK_IMPLS} or None, got {impl!r}")
        if impl == "official" and not official_autoattack_available():
            raise ImportError("impl='official' needs the reference AutoAttack: pip install pyautoattack "
                              "(or impl='torchattacks')")
        self.eps, self.norm, self.version, self.num_classes, self.seed, self.impl = eps, norm, version, num_classes, seed, impl
        package = "pyautoattack" if impl == "official" else "torchattacks"
        self.library = f"{package} {importlib.metadata.version(package)}"
        self._cache = {}

    def __str__(self):
        who = f"official {self.library}" if self.impl == "official" else self.library
        return f"AutoAttack ({self.version}, {who}) {self.norm} eps={format_number(self.eps)}"

    def __repr__(self):
        return f"interop.AutoAttack({self})"

    def _build(self, model, device):
        if self.impl == "official":
            import pyautoattack

            aa = pyautoattack.AutoAttack(model, norm=_TORCHATTACKS_NORM[self.norm], eps=self.eps, version=self.version,
                                         seed=self.seed, device=device)
            if self.version == "standard":  # the library fixes 9 targets (CIFAR-10); fewer classes, fewer targets
                aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = min(9, self.num_classes - 1)
            return aa
        import torchattacks

        return torchattacks.AutoAttack(model, norm=_TORCHATTACKS_NORM[self.norm], eps=self.eps, version=self.version,
                                       n_classes=self.num_classes, seed=self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_images(x)
        key = (id(model), x.device)
        if key not in self._cache:
            self._cache[key] = self._build(model, x.device)
        if self.impl == "official":
            x_adv, _ = self._cache[key].run_standard_evaluation(x, y, batch_size=len(x))
            return x_adv.detach()
        return self._cache[key](x, y).detach()


def autoattack(eps: float, norm: str = "linf", version: str = "standard", num_classes: int = 10, seed: int = 0,
               impl: str | None = None) -> AutoAttack:
    """``attack(model, x, y)`` running AutoAttack (Croce & Hein 2020) on [0, 1] inputs: an ``AutoAttack``.

    norm: ``"linf"`` or ``"l2"`` (the course's spelling). impl: ``"official"`` (``pyautoattack``, the
    default when installed), ``"torchattacks"`` (the fallback and cross-check) or None (that choice).
    ``str()`` of the result names the implementation; ``evaluation.evaluate`` prints it beside the number.
    """
    return AutoAttack(eps, norm=norm, version=version, num_classes=num_classes, seed=seed, impl=impl)


def square(eps: float, norm: str = "linf", n_queries: int = 1000, seed: int = 0):
    """``attack(model, x, y)`` running torchattacks' Square attack (Andriushchenko et al. 2020) on [0, 1] inputs.

    A score-based random search in the eps-ball (margin loss, one restart, ``n_queries`` queries per
    image): it never uses a gradient, so masked gradients do not stop it (notebook 03's checklist).
    norm: ``"linf"`` or ``"l2"``. Returns x_adv on x's device, ``||x_adv - x|| <= eps``.
    """
    import torchattacks

    check_norm(norm)

    def attack(model, x, y):
        check_images(x)
        atk = torchattacks.Square(model, norm=_TORCHATTACKS_NORM[norm], eps=eps, n_queries=n_queries, n_restarts=1,
                                  loss="margin", seed=seed)
        return atk(x, y).detach()

    return attack


def jsma(theta: float = 1.0, gamma: float = 0.1, num_classes: int = 10, seed: int = 0, batch_size: int = 128):
    """``attack(model, x, y)`` running ART's ``SaliencyMapMethod``: the Jacobian-based saliency map attack
    (Papernot et al. 2016), a sparse (L0) threat model.

    Each image is pushed towards a target class drawn uniformly among the 9 wrong ones (seeded by
    ``seed``, so the same images get the same targets): pairs of pixels are changed by ``theta``
    (1.0 = set to white) until the target is predicted or a fraction ``gamma`` of the pixels has
    changed (0.1 = at most 78 of MNIST's 784). Images the model already gets wrong are returned
    unchanged (a failed search may end on the true class), so accuracy under it is at most the clean
    accuracy. x: (B, C, H, W) in [0, 1] -> x_adv on x's device.
    """
    import numpy as np
    from art.attacks.evasion import SaliencyMapMethod

    def attack(model, x, y):
        check_images(x)
        g = torch.Generator().manual_seed(seed)
        offset = torch.randint(1, num_classes, (len(y),), generator=g)  # a wrong class per image, uniformly
        targets = (y.detach().cpu() + offset) % num_classes
        clf = art_classifier(model, x.shape[1:], num_classes)
        atk = SaliencyMapMethod(clf, theta=theta, gamma=gamma, batch_size=batch_size, verbose=False)
        x_adv = atk.generate(x=x.detach().cpu().numpy().astype("float32"), y=targets.numpy().astype(np.int64))
        x_adv = torch.from_numpy(x_adv).to(device=x.device, dtype=x.dtype).clamp(0, 1)
        with torch.no_grad():
            wrong = model(x).argmax(1) != y
        return torch.where(wrong.view(-1, *[1] * (x.ndim - 1)), x, x_adv)

    return attack
