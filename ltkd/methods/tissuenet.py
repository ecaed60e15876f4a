"""TissueNet / BUnit-Net: compact networks built by stacking small basic units.

Lan, Cheung, Jiang, Hu, Li, "Compact neural network via stacking hybrid units", IEEE TPAMI
46(1), 2024 (arXiv 2205.01508, "Compact neural networks via stacking designed basic units").
Chapter 6 (``notebooks/06_stacking_basic_units.ipynb``) builds every piece of this file.

* A **basic unit** {c'_in, c_h, c'_out} is a tiny two-layer net: a d×d convolution
  c'_in → c_h, BatchNorm, ReLU, a d×d convolution c_h → c'_out (:class:`BasicUnit`).
* A **stacked layer** splits its c_in input channels into m groups of c'_in = c_in / m, runs each
  group through its own unit and concatenates the m outputs (c_out = m · c'_out). Because the
  units never look at each other's channels this *is* a pair of grouped convolutions
  (``groups=m``), which is how :class:`StackedLayer` computes it; ``StackedLayer.units()``
  returns the m units as separate modules, and the tests check that both give the same output.
* **Normal layers** (ordinary convolutions) sit between stacked layers so information crosses
  between the units' channel groups.
* Networks: :func:`build` makes the VGG-style and ResNet-style networks, their "r" variants
  (first and last blocks kept ordinary), hybrid stacking (a seeded random unit type per stacked
  position) and the dense baselines, all with the package's model interface
  (``features``/``pool``/``embed``/``head``/``feature_dim``), so ``ltkd.train.fit`` trains them and
  ``ltkd.metrics.count_params``/``count_flops`` measure them.
* Cost (the paper's formula, convolution weights only): with m identical units a stacked layer
  has M_s = m · d² · c_h · (c'_in + c'_out) weights; the dense layer of the same widths
  (c_in → m·c_h → c_out, :func:`dense_params`) has m · M_s. FLOPs scale the same way
  (:func:`stacked_flops`).
* The paper's two trade-off metrics, :func:`tca` (FLOPs) and :func:`tsa` (parameters):
  TCA = exp(w1 · (f_b − f_n) / f_b) / exp(w2 · (a_b − a_n) / a_b), higher is better, with
  (w1, w2) ∈ {(1, 1), (1, 4), (4, 1)} (:data:`WEIGHT_PAIRS`).

Which blocks are stacked is a choice this file makes explicit with a *pattern* string, one
letter per block: ``S`` stacked, ``N`` normal; the defaults are stated in :func:`default_pattern`.

Against the paper and the authors' code. The paper's full text could not be read here: only its abstract and
the opening of its introduction were found (arXiv 2205.01508), so its tables — the placement per backbone, the
accuracies, and the compression it reports beyond the abstract's "around 80 % FLOPs and 89.7 % parameters"
(arXiv) or "around 80 % FLOPs and 73 % parameters" (TPAMI) — were not checked. The authors' public code
(github.com/Lanweichao/BUnit-Net) was read, and it differs from this file as follows:

* placement, ResNet (``Part II/bunit_resnet.py``, their ImageNet-style ResNet-18 on CIFAR): the first and the
  last stage are ordinary, every block of the two middle stages is stacked — whole stages, where the ``-r``
  styles here keep only the first and the last *block* ordinary (the same network when each stage has one block,
  ``blocks_per_stage=1``, build()'s default; not when it has more). Their projection shortcuts stay ordinary,
  as here;
* a stacked block there is ONE layer of units (each unit: 3×3 conv, BatchNorm, ReLU, 3×3 conv, BatchNorm) that
  replaces the block's two convolutions, followed by the residual addition — as a stacked block here;
* the units' size: theirs take 2 input channels each (so m = c_in / 2 units per layer, 64 in a 128-channel
  layer) with 4 hidden channels, where this file fixes m per layer (``m``, default 4) and sizes the units from
  it — a different point on the same cost formula, far fewer and wider units;
* placement, VGG-style (``Part I/bunitnet.py``, their exploration network): a normal layer, then a stacked
  layer, max-pool, normal, stacked, then the classifier — alternating but starting *normal*, where the ``vgg``
  style here starts stacked; their hybrid stacking draws a unit type per *unit* within a layer (1–3 channels in
  and out), where :func:`build` draws one type per block.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LtkdError
from ..models import _Backbone, make_head, register_model

__all__ = [
    "UnitType",
    "BasicUnit",
    "StackedLayer",
    "DenseLayer",
    "TissueNet",
    "STYLES",
    "HYBRID_UNITS",
    "build",
    "default_pattern",
    "stacked_params",
    "dense_params",
    "stacked_flops",
    "dense_flops",
    "WEIGHT_PAIRS",
    "tca",
    "tsa",
    "tradeoff_table",
]


# --------------------------------------------------------------------------------------
# The basic unit and the stacked layer
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitType:
    """A unit architecture: the two kernel sizes and c_h as a multiple of c'_out.

    ``UnitType(kernels=(3, 3), hidden=1.0)`` is the plain unit {c'_in, c'_out, c'_out} of two 3×3
    convolutions; ``hidden=0.5`` halves the unit's middle width; ``kernels=(1, 3)`` makes the first
    convolution pointwise. Hybrid stacking draws one of several types per position.
    """

    kernels: tuple[int, int] = (3, 3)
    hidden: float = 1.0
    name: str = "U3-3"

    def hidden_channels(self, c_out_unit: int) -> int:
        return max(1, int(round(self.hidden * c_out_unit)))


HYBRID_UNITS: tuple[UnitType, ...] = (
    UnitType((3, 3), 1.0, "U3-3"),
    UnitType((3, 3), 0.5, "U3-3/2"),
    UnitType((1, 3), 1.0, "U1-3"),
)
"""The default set {U_1, U_2, U_3} hybrid stacking draws from (our choice, not the paper's)."""


class BasicUnit(nn.Module):
    """One basic unit {c'_in, c_h, c'_out}: conv(d₁, c'_in→c_h) → BN → ReLU → conv(d₂, c_h→c'_out).

    The stride (if any) is on the first convolution; padding keeps the size ("same").
    """

    def __init__(self, c_in: int, c_h: int, c_out: int, kernels: tuple[int, int] = (3, 3), stride: int = 1):
        super().__init__()
        d1, d2 = kernels
        self.conv1 = nn.Conv2d(c_in, c_h, d1, stride, d1 // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c_h)
        self.conv2 = nn.Conv2d(c_h, c_out, d2, 1, d2 // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn1(self.conv1(x))))


class StackedLayer(nn.Module):
    """m basic units side by side: split c_in into m groups, one unit per group, concatenate.

    Computed as two grouped convolutions (``groups=m``) with a BatchNorm between; BatchNorm is
    per channel, so one BN over the m·c_h hidden channels is the m units' BNs side by side.
    ``units()`` returns the same computation as m separate :class:`BasicUnit` modules.
    """

    def __init__(self, c_in: int, c_out: int, m: int, unit: UnitType = UnitType(), stride: int = 1):
        super().__init__()
        if m < 1 or c_in % m or c_out % m:
            raise LtkdError(f"a stacked layer needs m to divide c_in and c_out; got c_in={c_in}, c_out={c_out}, m={m}")
        self.c_in, self.c_out, self.m, self.unit = c_in, c_out, m, unit
        self.c_h = unit.hidden_channels(c_out // m)  # hidden width of ONE unit
        d1, d2 = unit.kernels
        self.conv1 = nn.Conv2d(c_in, m * self.c_h, d1, stride, d1 // 2, groups=m, bias=False)
        self.bn1 = nn.BatchNorm2d(m * self.c_h)
        self.conv2 = nn.Conv2d(m * self.c_h, c_out, d2, 1, d2 // 2, groups=m, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn1(self.conv1(x))))

    def units(self) -> list[BasicUnit]:
        """The m units as separate modules holding copies of this layer's weights and BN state."""
        ci, co, ch = self.c_in // self.m, self.c_out // self.m, self.c_h
        out = []
        for g in range(self.m):
            u = BasicUnit(ci, ch, co, self.unit.kernels, self.conv1.stride[0])
            with torch.no_grad():
                u.conv1.weight.copy_(self.conv1.weight[g * ch : (g + 1) * ch])
                u.conv2.weight.copy_(self.conv2.weight[g * co : (g + 1) * co])
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(u.bn1, name).copy_(getattr(self.bn1, name)[g * ch : (g + 1) * ch])
            u.train(self.training)
            out.append(u)
        return out

    def extra_repr(self) -> str:
        return f"m={self.m}, unit={{c'_in={self.c_in // self.m}, c_h={self.c_h}, c'_out={self.c_out // self.m}}}"


class DenseLayer(StackedLayer):
    """The dense counterpart of a stacked layer: the same two convolutions with ``groups=1``.

    c_in → m·c_h → c_out, so every hidden channel sees every input channel: m times the weights.
    """

    def __init__(self, c_in: int, c_out: int, m: int, unit: UnitType = UnitType(), stride: int = 1):
        super().__init__(c_in, c_out, m, unit, stride)
        d1, d2 = unit.kernels
        self.conv1 = nn.Conv2d(c_in, m * self.c_h, d1, stride, d1 // 2, bias=False)
        self.conv2 = nn.Conv2d(m * self.c_h, c_out, d2, 1, d2 // 2, bias=False)

    def units(self):  # pragma: no cover - a dense layer has no units
        raise LtkdError("a dense layer is not made of units")


# --------------------------------------------------------------------------------------
# Cost formulas (convolution weights only; BatchNorm and biases are not counted)
# --------------------------------------------------------------------------------------
def stacked_params(c_in: int, c_out: int, m: int, c_h: int, d: int | tuple[int, int] = 3) -> int:
    """M_s = m · d² · c_h · (c'_in + c'_out) with c'_in = c_in/m, c'_out = c_out/m (paper's formula).

    With two kernel sizes (d₁, d₂) it is m · c_h · (d₁² c'_in + d₂² c'_out).
    """
    d1, d2 = (d, d) if isinstance(d, int) else d
    ci, co = c_in // m, c_out // m
    return m * c_h * (d1 * d1 * ci + d2 * d2 * co)


def dense_params(c_in: int, c_out: int, m: int, c_h: int, d: int | tuple[int, int] = 3) -> int:
    """The dense layer of the same widths, c_in → m·c_h → c_out: m · M_s."""
    d1, d2 = (d, d) if isinstance(d, int) else d
    return m * c_h * (d1 * d1 * c_in + d2 * d2 * c_out)


def stacked_flops(c_in: int, c_out: int, m: int, c_h: int, h_out: int, w_out: int,
                  d: int | tuple[int, int] = 3) -> int:  # fmt: skip
    """FLOPs of one stacked layer on one image: 2 · M_s · h_out · w_out (one multiply-add = 2 FLOPs;
    both convolutions run at the output resolution because the stride is on the first)."""
    return 2 * stacked_params(c_in, c_out, m, c_h, d) * h_out * w_out


def dense_flops(c_in: int, c_out: int, m: int, c_h: int, h_out: int, w_out: int,
                d: int | tuple[int, int] = 3) -> int:  # fmt: skip
    """FLOPs of the dense counterpart: m times :func:`stacked_flops`."""
    return 2 * dense_params(c_in, c_out, m, c_h, d) * h_out * w_out


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------
class _Block(nn.Module):
    """Two 3×3 layers' worth of computation: a stacked layer (``S``) or an ordinary pair (``N``),
    then BN; with ``residual`` a ResNet basic block (projection shortcut when the shape changes)."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: int, m: int, unit: UnitType, residual: bool):
        super().__init__()
        self.kind, self.residual = kind, residual
        if kind == "S":
            self.body = StackedLayer(c_in, c_out, m, unit, stride)
        elif kind == "N":  # an ordinary pair of 3×3 convolutions c_in → c_out → c_out
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            )  # fmt: skip
        else:
            raise LtkdError(f"block kind must be 'S' (stacked) or 'N' (normal), got {kind!r}")
        self.bn = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if residual and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.body(x))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class TissueNet(_Backbone):
    """A network of blocks (each = two 3×3 convolutions' worth), stacked or normal per ``pattern``.

    * ``style="vgg"``: stem conv, then per stage its blocks, 2×2 max-pool between stages, no
      shortcuts (like ``ltkd.models.ConvNet``, whose three stages of two convs are three blocks).
    * ``style="resnet"``: stem conv, then per stage its blocks as residual basic blocks, stride 2 at
      the first block of stages 2 and 3, projection shortcuts where the shape changes (like
      ``ltkd.models.ResNet``).

    ``pattern`` has one letter per block (``S``/``N``); ``units`` one :class:`UnitType` per block
    (used by ``S`` blocks). ``m`` is the number of units per stacked layer.
    """

    def __init__(self, style: str, pattern: str, units: Sequence[UnitType], m: int = 4,
                 widths: Sequence[int] = (16, 16, 32, 64), blocks_per_stage: int = 1,
                 num_classes: int = 10, in_channels: int = 3, head: str = "linear"):  # fmt: skip
        super().__init__()
        if style not in ("vgg", "resnet"):
            raise LtkdError(f"style must be 'vgg' or 'resnet', got {style!r}")
        n_blocks = blocks_per_stage * (len(widths) - 1)
        if len(pattern) != n_blocks or len(units) != n_blocks:
            raise LtkdError(f"pattern and units need one entry per block ({n_blocks}); got {pattern!r}")
        self.style, self.pattern, self.m = style, pattern, m
        self.unit_types = list(units)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))  # fmt: skip
        layers: list[nn.Module] = []
        cin, b = widths[0], 0
        for stage, w in enumerate(widths[1:]):
            for j in range(blocks_per_stage):
                stride = 1
                if stage > 0 and j == 0:
                    if style == "vgg":
                        layers.append(nn.MaxPool2d(2))
                    else:
                        stride = 2
                layers.append(_Block(pattern[b], cin, w, stride, m, units[b], residual=style == "resnet"))
                cin, b = w, b + 1
        self.body = nn.Sequential(*layers)
        self.feature_dim = cin
        self.head = make_head(head, cin, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def stacked_layers(self) -> list[StackedLayer]:
        return [mod for mod in self.modules() if type(mod) is StackedLayer]


STYLES = {
    "vgg": "VGG-style: stacked and normal blocks alternate (S N S N …)",
    "vgg-r": "VGG-style, first and last blocks normal, every block between stacked",
    "resnet": "ResNet-style: every residual block stacked; stem and projection shortcuts are the normal layers",
    "resnet-r": "ResNet-style, first and last blocks normal, every block between stacked",
    "vgg-dense": "the VGG-style baseline: every block normal",
    "resnet-dense": "the ResNet-style baseline: every block normal",
}


def default_pattern(style: str, n_blocks: int) -> str:
    """The stacking pattern of a named style (one letter per block, S = stacked, N = normal).

    This book's choices (the paper's tables could not be read; the authors' code places them otherwise in places,
    see the module docstring): VGG-style alternates stacked and normal layers, starting stacked; ResNet-style
    stacks every residual block, relying on the stem and the 1×1 projection shortcuts (ordinary layers) to mix
    the units' channel groups; the "r" variants keep the first and last blocks ordinary and stack everything
    between (the authors' ResNet-18 keeps its first and last *stages* ordinary: the same with one block per
    stage); the ``-dense`` styles are the baselines.
    """
    base, _, variant = style.partition("-")
    if base not in ("vgg", "resnet") or variant not in ("", "r", "dense"):
        raise LtkdError(f"unknown TissueNet style {style!r}; choose one of {', '.join(STYLES)}")
    if variant == "dense":
        return "N" * n_blocks
    if variant == "r":
        return "N" + "S" * max(0, n_blocks - 2) + ("N" if n_blocks > 1 else "")
    if base == "vgg":
        return "".join("S" if i % 2 == 0 else "N" for i in range(n_blocks))
    return "S" * n_blocks


def build(style: str = "resnet", num_classes: int = 10, in_channels: int = 3, *, m: int = 4,
          widths: Sequence[int] = (16, 16, 32, 64), blocks_per_stage: int = 1, pattern: str | None = None,
          unit: UnitType = UnitType(), hybrid: Sequence[UnitType] | None = None, seed: int = 0,
          head: str = "linear") -> TissueNet:  # fmt: skip
    """A TissueNet by style name (:data:`STYLES`), e.g. ``build("resnet-r", 10, 1, m=4)``.

    * ``widths`` = (stem, stage 1, stage 2, …); ``blocks_per_stage`` blocks of two 3×3 layers each.
      ``widths=(16, 16, 32, 64), blocks_per_stage=3`` with ``style="resnet-dense"`` is ResNet-20
      (with this file's block layout); ``(16, 16, 32, 64), 1`` with ``"vgg-dense"`` is ``cnn6``'s shape.
    * ``pattern`` overrides the style's :func:`default_pattern`.
    * ``unit``: the unit type of every stacked block; ``hybrid``: a set of unit types, one drawn per
      block with ``random.Random(seed)`` (hybrid stacking; the same seed gives the same network).
    """
    n_blocks = blocks_per_stage * (len(widths) - 1)
    pat = (pattern or default_pattern(style, n_blocks)).upper()
    if hybrid:
        rng = random.Random(seed)
        units = [rng.choice(list(hybrid)) for _ in range(n_blocks)]
    else:
        units = [unit] * n_blocks
    return TissueNet(style.split("-")[0], pat, units, m, widths, blocks_per_stage, num_classes, in_channels, head)


def _builder(style: str):
    def make(**kw) -> TissueNet:
        return build(style, **kw)

    return make


for _style in STYLES:  # `ltkd train --model tissuenet-resnet-r`: each style at build()'s defaults (m = 4)
    register_model(f"tissuenet-{_style}", _builder(_style))


# --------------------------------------------------------------------------------------
# TCA and TSA
# --------------------------------------------------------------------------------------
WEIGHT_PAIRS: tuple[tuple[float, float], ...] = ((1, 1), (1, 4), (4, 1))
"""The (w1, w2) pairs the paper reports: balanced, accuracy-weighted, resource-weighted."""


def _tradeoff(acc_base: float, acc_new: float, cost_base: float, cost_new: float, w1: float, w2: float) -> float:
    if cost_base <= 0 or acc_base <= 0:
        raise LtkdError("baseline cost and accuracy must be positive")
    saved = (cost_base - cost_new) / cost_base
    lost = (acc_base - acc_new) / acc_base
    return math.exp(w1 * saved) / math.exp(w2 * lost)


def tca(acc_base: float, acc_new: float, flops_base: float, flops_new: float, w1: float = 1, w2: float = 1) -> float:
    """TCA = exp(w1 · (f_b − f_n)/f_b) / exp(w2 · (a_b − a_n)/a_b): FLOPs saved over accuracy lost.

    1 means no change; > 1 the saving outweighs the loss. Accuracies in any unit (ratios only).
    """
    return _tradeoff(acc_base, acc_new, flops_base, flops_new, w1, w2)


def tsa(acc_base: float, acc_new: float, params_base: float, params_new: float, w1: float = 1, w2: float = 1) -> float:
    """TSA: :func:`tca` with parameters (storage) in place of FLOPs."""
    return _tradeoff(acc_base, acc_new, params_base, params_new, w1, w2)


def tradeoff_table(base: dict, new: dict) -> list[dict]:
    """TCA and TSA for every (w1, w2) in :data:`WEIGHT_PAIRS`; ``base``/``new`` hold acc, flops, params."""
    rows = []
    for w1, w2 in WEIGHT_PAIRS:
        rows.append({
            "w1": w1, "w2": w2,
            "TCA": tca(base["acc"], new["acc"], base["flops"], new["flops"], w1, w2),
            "TSA": tsa(base["acc"], new["acc"], base["params"], new["params"], w1, w2),
        })  # fmt: skip
    return rows
