"""Models used in the course. Every model takes pixels in [0, 1]: normalization is its first layer.

- ``mnist_small_cnn``: the small CNN of Wong, Rice & Kolter (2020), "Fast is better than free"
  (also Wong & Kolter 2018): two stride-2 convolutions and two linear layers. Sequential, so
  interval bounds (``course_utils.certify``) go through it.
- ``mnist_linear``: logistic regression on the pixels, the cheap base learner of notebook 06b's
  partition ensembles in the quick profile.
- ``mnist_madry_cnn``: the CNN of Madry et al. (2018): two 5x5 conv + max-pool blocks, 1024 units.
- ``cifar_small_cnn``: a 4-block CNN (32-64-128-256 channels, batch norm) that trains on a CPU.
- ``preact_resnet18``: PreActResNet-18 (He et al. 2016), the full-profile CIFAR-10 model of
  Wong et al. (2020) and Rice et al. (2020).
- ``resnet20``: the CIFAR ResNet-20 of He et al. (2016, section 4.2): 3 stages of 3 basic blocks,
  16-32-64 channels, about 0.27 M parameters; the course ships one trained by its own recipe
  (``zoo.pretrained("resnet20_cifar10")``, project p1).
- ``Preprocessed(model, transform)``: f(g(x)), a model behind a fixed input transformation,
  differentiated as written. Behind a quantizer (``sanitization.bit_depth``) its input gradient is
  zero: the fake-robust model of the gradient-masking checklist (notebooks 03, 04).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as a layer. x: (B, C, H, W) in [0, 1]."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Preprocessed(nn.Module):
    """f(g(x)): ``model`` behind a fixed input transformation ``transform`` (x -> x, in [0, 1]).

    Gradients flow through g as autograd computes them: through a quantizer such as
    ``sanitization.bit_depth`` (``torch.round``, derivative 0) the input gradient is exactly zero,
    so gradient attacks stall while the model is no more robust than f: gradient masking
    ("shattered gradients", Athalye, Carlini & Wagner 2018). ``sanitization.BPDAModel`` is the same
    f(g(x)) with the gradient an adaptive attacker uses. x: (B, C, H, W) in [0, 1] -> logits.
    """

    def __init__(self, model: nn.Module, transform):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x))

    def extra_repr(self):
        return f"transform={getattr(self.transform, '__name__', self.transform)!r}"


def mnist_small_cnn(width: int = 1) -> nn.Sequential:
    """Wong et al. (2020) MNIST CNN; ``width`` multiplies the channels (16, 32) and hidden units (100)."""
    c1, c2, h = 16 * width, 32 * width, 100 * width
    return nn.Sequential(
        Normalize(MNIST_MEAN, MNIST_STD),
        nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),  # (B, c1, 14, 14)
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # (B, c2, 7, 7)
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, h), nn.ReLU(),
        nn.Linear(h, 10),
    )


def mnist_linear() -> nn.Sequential:
    """Multinomial logistic regression on MNIST pixels (784 -> 10): notebook 06b's cheap DPA base learner."""
    return nn.Sequential(Normalize(MNIST_MEAN, MNIST_STD), nn.Flatten(), nn.Linear(28 * 28, 10))


def mnist_madry_cnn() -> nn.Sequential:
    """Madry et al. (2018) MNIST CNN: conv5-32, pool, conv5-64, pool, fc1024, fc10."""
    return nn.Sequential(
        Normalize(MNIST_MEAN, MNIST_STD),
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
        nn.Linear(1024, 10),
    )


def _conv_bn(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def cifar_small_cnn(num_classes: int = 10, widths=(32, 64, 128, 256)) -> nn.Sequential:
    """A small CIFAR-10 CNN for CPUs: four conv-BN-ReLU blocks, each followed by 2x2 max-pooling."""
    layers = [Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    cin = 3
    for w in widths:
        layers += _conv_bn(cin, w) + [nn.MaxPool2d(2)]  # 32 -> 16 -> 8 -> 4 -> 2
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        layers, cin = [], 64
        for i, (n, cout) in enumerate(zip(num_blocks, (64, 128, 256, 512))):
            for j in range(n):
                layers.append(PreActBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):  # x: (B, 3, 32, 32) in [0, 1]
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def preact_resnet18(num_classes: int = 10) -> PreActResNet:
    """PreActResNet-18 for 32x32 inputs in [0, 1] (CIFAR-10 normalization built in)."""
    return PreActResNet((2, 2, 2, 2), num_classes)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU (He et al. 2016); a 1x1 conv + BN shortcut
    where the shape changes (their option B)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet20(num_classes: int = 10, blocks: int = 3) -> nn.Sequential:
    """The CIFAR ResNet of He et al. (2016) with ``6 * blocks + 2`` layers (ResNet-20 for blocks = 3),
    for 32x32 inputs in [0, 1] (CIFAR-10 normalization built in)."""
    layers, cin = [Normalize(CIFAR10_MEAN, CIFAR10_STD), *_conv_bn(3, 16)], 16
    for stage, cout in enumerate((16, 32, 64)):
        for j in range(blocks):
            layers.append(BasicBlock(cin, cout, stride=2 if (stage > 0 and j == 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


MODELS = {
    "mnist_small_cnn": mnist_small_cnn,
    "mnist_linear": mnist_linear,
    "mnist_madry_cnn": mnist_madry_cnn,
    "cifar_small_cnn": cifar_small_cnn,
    "preact_resnet18": preact_resnet18,
    "resnet20": resnet20,
}


def build_model(name: str, **kwargs) -> nn.Module:
    """A model by name (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
