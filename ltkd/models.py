"""Models for small images: the CIFAR ResNet family, a fast 6-conv net, and swappable heads.

Every model has the same three parts, so every method can reach the piece it needs:

* ``model.features(x)`` — the last feature map before pooling (B×C×h×w; H2T fuses these),
* ``model.embed(x)``    — the pooled embedding (B×D; GCL's cosine head and UMAP use these),
* ``model.head``        — the classifier, a :class:`LinearHead` or :class:`CosineHead`,
  replaceable with :func:`set_head` (cRT re-trains only this).

``model(x) == model.head(model.embed(x))``.

Two ResNet-32s: ``resnet32`` is the long-tail papers' network (LDAM-DRW, GCL, H2T: zero-padded shortcuts, fan-in
initialisation) and ``resnet32b`` the KD papers' convention (projection shortcuts, fan-out), which the other CIFAR
ResNets here (resnet8, resnet20, resnet56, resnet8x4, resnet32x4) follow; see :class:`ResNet`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LtkdError

__all__ = ["LinearHead", "CosineHead", "ResNet", "ConvNet", "ZeroPadShortcut", "MODELS", "build_model", "register_model", "set_head", "make_head"]


# --------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------
class LinearHead(nn.Linear):
    """The usual linear classifier z = W f + b."""


class CosineHead(nn.Module):
    """Normalised linear classifier: z_j = s · cos θ_j = s · ⟨f/‖f‖, w_j/‖w_j‖⟩.

    With the default ``scale=1`` it returns cos θ itself; GCL's loss (``ltkd.methods.gcl``)
    applies its own scale and clouds. The argmax, and so accuracy, does not depend on s.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.scale = in_features, out_features, scale
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(f, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}"


def make_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return LinearHead(in_features, num_classes)
    if kind == "cosine":
        return CosineHead(in_features, num_classes)
    raise LtkdError(f"unknown head {kind!r}; choose 'linear' or 'cosine'")


def set_head(model: nn.Module, kind: str = "linear") -> nn.Module:
    """Replace ``model.head`` with a freshly initialised head of ``kind`` (on the same device)."""
    old = model.head
    dev = next(old.parameters()).device
    model.head = make_head(kind, old.in_features, old.out_features).to(dev)
    return model.head


class _Backbone(nn.Module):
    """Shared plumbing: embed = pool(features); forward = head(embed)."""

    head: nn.Module
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def backbone_parameters(self):
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in head]


# --------------------------------------------------------------------------------------
# ResNets for small images
# --------------------------------------------------------------------------------------
class ZeroPadShortcut(nn.Module):
    """He et al.'s option-A shortcut (2016, §4.2): the identity, subsampled by ``stride`` (every other pixel) and
    zero-padded with the missing channels, half before and half after — no parameters. The CIFAR ResNet-32 of
    LDAM-DRW, GCL and H2T (``resnet_cifar.py`` in each of their repositories) joins its stages this way."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        if cout < cin:
            raise LtkdError(f"a zero-padded shortcut cannot shrink {cin} channels to {cout}")
        self.stride, self.before = stride, (cout - cin) // 2
        self.after = cout - cin - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a shortcut; where the shape changes the shortcut is ``"B"`` (a 1×1 projection
    with BatchNorm, as CRD's and mdistiller's CIFAR ResNets) or ``"A"`` (:class:`ZeroPadShortcut`)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            if shortcut == "A":
                self.shortcut = ZeroPadShortcut(cin, cout, stride)
            elif shortcut == "B":
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            else:
                raise LtkdError(f"unknown shortcut {shortcut!r}; choose 'A' (zero padding) or 'B' (projection)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(_Backbone):
    """CIFAR-style ResNet (He et al. 2016, §4.2): a 3×3 stem, three stages of basic blocks.

    ``depth`` = 6n + 2 gives n blocks per stage (resnet8: 1, resnet20: 3, resnet32: 5,
    resnet56: 9); ``widths`` = (stem, stage1, stage2, stage3), (16, 16, 32, 64) for the thin
    family and (32, 64, 128, 256) for resnet8x4 / resnet32x4.

    Two conventions, both published, differ where the shape changes and in the initialisation:

    * ``shortcut="A", init="fan_in"`` — the long-tail papers' ResNet-32 (LDAM-DRW, GCL and H2T all train the
      ``resnet_cifar.py`` of Cao et al.'s code): zero-padded identity shortcuts (:class:`ZeroPadShortcut`) and
      ``kaiming_normal_`` in its default fan-in mode on every convolution and on a linear head; 0.46 M
      parameters with 10 classes. :data:`MODELS`' ``resnet32``.
    * ``shortcut="B", init="fan_out"`` (the defaults) — the KD papers' CIFAR ResNets (CRD's and mdistiller's
      ``resnet.py``, whose resnet8x4 / resnet32x4, resnet56 / resnet20 and resnet110 / resnet32 are their
      teacher–student pairs): 1×1-projection shortcuts with BatchNorm and ``kaiming_normal_(mode="fan_out")``
      on the convolutions, the head left at PyTorch's default; ResNet-32 has 0.47 M parameters. ``resnet8``,
      ``resnet20``, ``resnet56``, ``resnet8x4`` and ``resnet32x4`` are built this way, as those papers build
      them, and ``resnet32b`` is ResNet-32 this way (mdistiller's student of resnet110).
    """

    def __init__(self, depth: int = 32, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int, int] = (16, 16, 32, 64), head: str = "linear", shortcut: str = "B",
                 init: str = "fan_out"):  # fmt: skip
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise LtkdError(f"ResNet depth must be 6n+2 (8, 20, 32, 56, 110), got {depth}")
        if init not in ("fan_in", "fan_out"):
            raise LtkdError(f"unknown initialisation {init!r}; choose 'fan_in' or 'fan_out'")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for stage, w in enumerate(widths[1:]):
            for b in range(n):
                layers.append(BasicBlock(cin, w, 2 if (stage > 0 and b == 0) else 1, shortcut))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.feature_dim = cin
        self.head = make_head(head, cin, num_classes)
        for m in self.modules():
            if init == "fan_in" and isinstance(m, (nn.Conv2d, nn.Linear)):  # the authors' _weights_init
                nn.init.kaiming_normal_(m.weight)
            elif init == "fan_out" and isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.relu(self.bn1(self.conv1(x))))


class ConvNet(_Backbone):
    """A plain 6-conv net (three stages of two 3×3 conv-BN-ReLU, 2×2 max-pool between stages).

    The ``quick`` profile's model: about 10× cheaper than ResNet-8 on 28×28 images, so a
    chapter trains on Fashion-MNIST-LT in seconds per epoch on two CPU cores.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, head: str = "linear"):
        super().__init__()
        w = (width, 2 * width, 4 * width)
        layers, cin = [], in_channels
        for i, c in enumerate(w):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                cin = c
        self.body = nn.Sequential(*layers)
        self.feature_dim = cin
        self.head = make_head(head, cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


MODELS = {
    "cnn6": lambda **k: ConvNet(width=16, **k),
    "cnn6x2": lambda **k: ConvNet(width=32, **k),
    "cnn6x0.5": lambda **k: ConvNet(width=8, **k),  # a small student for the KD chapters
    "resnet8": lambda **k: ResNet(8, **k),
    "resnet20": lambda **k: ResNet(20, **k),
    "resnet32": lambda **k: ResNet(32, shortcut="A", init="fan_in", **k),  # the long-tail papers' ResNet-32
    "resnet32b": lambda **k: ResNet(32, **k),  # projection shortcuts, fan-out: the KD papers' convention
    "resnet56": lambda **k: ResNet(56, **k),
    "resnet8x4": lambda **k: ResNet(8, widths=(32, 64, 128, 256), **k),
    "resnet32x4": lambda **k: ResNet(32, widths=(32, 64, 128, 256), **k),
}


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``name`` a model :func:`build_model`, ``ltkd train --model`` and ``ltkd distill --student`` know:
    ``builder(num_classes=..., in_channels=..., head=...)`` returns it (the networks of the compact-network
    chapters register themselves in their method files, ``ltkd.methods.tissuenet`` and ``.binary_stack``)."""
    if name in MODELS and MODELS[name] is not builder:
        raise LtkdError(f"model {name!r} is registered twice")
    MODELS[name] = builder


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, head: str = "linear") -> nn.Module:
    """A model from :data:`MODELS` by name, e.g. ``build_model("resnet32", 100, 3)``."""
    if name not in MODELS:
        raise LtkdError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if num_classes < 2:
        raise LtkdError(f"need at least two classes, got {num_classes}")
    net = MODELS[name](num_classes=num_classes, in_channels=in_channels, head=head)
    net.arch = name  # the name it was built by (DKD looks its teacher–student pair up by these names)
    return net
