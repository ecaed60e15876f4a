"""Stacking low-dimensional binary convolution filters.

Lan & Lan, "Compressing deep convolutional neural networks by stacking low-dimensional binary
convolution filters", AAAI 2021. Chapter 7 (``notebooks/07_binary_filter_stacking.ipynb``)
builds every piece of this file.

A convolution layer has c_out filters of size d×d×c_in. Cut every filter along its channels into
G = c_in / k pieces of d×d×k. The layer keeps ONE shared set of m binary filters
B_1..B_m ∈ {−1, +1}^{d×d×k}; piece j of filter o is whichever B_i its one-hot selection
S[o, j] ∈ {0, 1}^m picks, and the full filter is the G selected pieces stacked:

    W[o, jk:(j+1)k] = Σ_i S[o, j, i] · B_i.

Because convolution is linear, W * x = split–transform–merge (:meth:`BinaryStackConv2d.forward`):
*split* x into G groups of k channels, *transform* every group with all m binary filters
(m·G response maps), *merge*: output o = Σ_j (response of group j to B_{sel[o, j]}).

Training keeps real-valued proxies for both (the engine's SGD updates them):

* the filters: B = sign(V) in the forward pass, gradient passed straight through where |V| ≤ 1
  (:func:`sign_ste`; Courbariaux et al. 2016's clipped straight-through estimator);
* the selections: S = one_hot(argmax L) in the forward pass, gradient of softmax(L) in the
  backward pass (:func:`onehot_ste`, the straight-through estimator for a categorical choice).

Storage (:func:`layer_storage_bits`): m·d²·k bits for the filter set plus c_out·G·⌈log₂ m⌉ bits
of indices, against 32·d²·c_in·c_out for full precision and d²·c_in·c_out for a plain binary
layer (:func:`compression_ratio`). :func:`export` writes exactly those bits (``numpy.packbits``)
plus the full-precision rest of the network to an ``.npz`` file; :func:`load` rebuilds the
network from it with identical outputs (compared in the same memory format: a channels-last copy, as
training leaves a model, rounds differently).

Against the paper: its text could be read here only in part — the abstract and the introduction (arXiv
2010.02778; a LaTeX copy whose later sections the search tools do not return) — and no code of the authors was
found. So neither where the paper stacks binary filters (which layers it keeps in full precision: this file's
networks keep the stem convolution, BatchNorm and the classifier in full precision, :func:`layer_storage_bits`
counts the stacked convolutions only) nor the compression ratios and accuracies of its tables could be compared
with this file; the storage formula above is derived from the method as the abstract and introduction describe
it (a shared set of low-dimensional binary filters per layer, selected and stacked, trained by
split-transform-merge), and the abstract's claim — compression beyond binary networks' bound of about 32× — is
what :func:`compression_ratio` lets chapter 7 check on its own networks.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import atomic_write
from ..errors import LtkdError, first_line
from ..models import _Backbone, make_head, register_model

__all__ = [
    "stored_bytes",
    "sign_ste",
    "onehot_ste",
    "BinaryStackConv2d",
    "BinaryConv2d",
    "BinaryNet",
    "build",
    "index_bits",
    "layer_storage_bits",
    "full_precision_bits",
    "plain_binary_bits",
    "compression_ratio",
    "pack_indices",
    "unpack_indices",
    "export_layer",
    "load_layer",
    "export",
    "load",
    "export_full_precision",
    "storage_report",
]


# --------------------------------------------------------------------------------------
# Straight-through estimators
# --------------------------------------------------------------------------------------
class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v)
        return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (v,) = ctx.saved_tensors
        return g * (v.abs() <= 1).to(g.dtype)


def sign_ste(v: torch.Tensor) -> torch.Tensor:
    """+1 where v ≥ 0, −1 elsewhere (never 0); backward: the gradient passes where |v| ≤ 1.

    d sign(v)/dv is 0 almost everywhere, so training would stop; the straight-through estimator
    pretends the forward was the clipped identity ``hardtanh(v)`` when differentiating.
    """
    return _SignSTE.apply(v)


def onehot_ste(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """One-hot of the argmax over the last axis in the forward pass; softmax(logits/τ)'s gradient
    in the backward pass (``hard − soft.detach() + soft``).

    The argmax is the logits', the one :meth:`BinaryStackConv2d.indices` exports: the softmax can round two
    logits one float apart to the same value and pick the other one."""
    soft = F.softmax(logits / tau, dim=-1)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


# --------------------------------------------------------------------------------------
# The layers
# --------------------------------------------------------------------------------------
class BinaryStackConv2d(nn.Module):
    """A d×d convolution c_in → c_out whose filters are stacked from m shared binary d×d×k filters.

    Parameters (real-valued proxies): ``proxy`` (m×k×d×d, its sign is the filter set) and
    ``select_logits`` (c_out×G×m, its argmax is each piece's choice). ``mode`` picks how the
    forward pass is computed: ``"stm"`` (split–transform–merge, default) or ``"materialised"``
    (build W, one ordinary convolution); both give the same output up to float rounding.
    """

    def __init__(self, c_in: int, c_out: int, m: int, k: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, tau: float = 1.0, mode: str = "stm"):  # fmt: skip
        super().__init__()
        if k < 1 or c_in % k:
            raise LtkdError(f"k must divide c_in; got c_in={c_in}, k={k}")
        if m < 1:
            raise LtkdError(f"need at least one binary filter, got m={m}")
        self.c_in, self.c_out, self.m, self.k, self.d = c_in, c_out, m, k, kernel_size
        self.groups = c_in // k
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.tau, self.mode = tau, mode
        self.proxy = nn.Parameter(torch.empty(m, k, kernel_size, kernel_size).uniform_(-1, 1))
        self.select_logits = nn.Parameter(0.01 * torch.randn(c_out, self.groups, m))

    # the binary filter set and the selections, as the forward pass sees them
    def binary_filters(self) -> torch.Tensor:
        """B: m×k×d×d, entries exactly ±1 (straight-through gradient to ``proxy``)."""
        return sign_ste(self.proxy)

    def selections(self) -> torch.Tensor:
        """S: c_out×G×m one-hot (straight-through gradient to ``select_logits``)."""
        return onehot_ste(self.select_logits, self.tau)

    def indices(self) -> torch.Tensor:
        """sel[o, j] ∈ {0..m−1}: which binary filter piece j of filter o uses."""
        return self.select_logits.argmax(-1)

    def materialised_weight(self) -> torch.Tensor:
        """W (c_out×c_in×d×d): the selected binary pieces stacked along the input channels."""
        w = torch.einsum("ogm,mkhw->ogkhw", self.selections(), self.binary_filters())
        return w.reshape(self.c_out, self.c_in, self.d, self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "materialised":
            return F.conv2d(x, self.materialised_weight(), None, self.stride, self.padding)
        if self.mode != "stm":
            raise LtkdError(f"mode must be 'stm' or 'materialised', got {self.mode!r}")
        b = self.binary_filters()
        # split + transform: group j (channels jk..jk+k−1) against all m binary filters → G·m maps
        r = F.conv2d(x, b.repeat(self.groups, 1, 1, 1), None, self.stride, self.padding, groups=self.groups)
        r = r.view(r.shape[0], self.groups, self.m, r.shape[-2], r.shape[-1])
        # merge: output o sums, over groups j, the map its selection S[o, j] picks
        return torch.einsum("bgmhw,ogm->bohw", r, self.selections())

    def extra_repr(self) -> str:
        return (f"{self.c_in}, {self.c_out}, m={self.m}, k={self.k}, kernel_size={self.d}, stride={self.stride}, "
                f"mode={self.mode!r}")  # fmt: skip


class BinaryConv2d(nn.Module):
    """A plain binary convolution (every weight its own ±1 bit, BinaryConnect-style): the 1-bit
    baseline, 32× smaller than full precision."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None):
        super().__init__()
        self.c_in, self.c_out, self.d, self.stride = c_in, c_out, kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.proxy = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size).uniform_(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, sign_ste(self.proxy), None, self.stride, self.padding)


# --------------------------------------------------------------------------------------
# A network of them
# --------------------------------------------------------------------------------------
class BinaryNet(_Backbone):
    """A VGG-style net: a full-precision 3×3 stem, then per stage a 2×2 max-pool and two 3×3
    conv–BN–ReLU layers (28×28 input: stages at 14, 7, 3), global average pool, classifier.

    ``kind`` sets the convolutions after the stem: ``"stack"`` (:class:`BinaryStackConv2d` with
    ``m``, ``k``), ``"binary"`` (:class:`BinaryConv2d`) or ``"float"`` (ordinary, the
    full-precision counterpart). The stem and the classifier stay full precision, as in most
    binary networks; they and the BatchNorms are the "rest" that :func:`export` stores as float32.
    """

    def __init__(self, kind: str = "stack", m: int = 32, k: int = 16, widths: Sequence[int] = (16, 32, 64, 128),
                 num_classes: int = 10, in_channels: int = 1, head: str = "linear", mode: str = "stm"):  # fmt: skip
        super().__init__()
        if kind not in ("stack", "binary", "float"):
            raise LtkdError(f"kind must be 'stack', 'binary' or 'float', got {kind!r}")
        self.config = {"kind": kind, "m": m, "k": k, "widths": list(widths), "num_classes": num_classes,
                       "in_channels": in_channels, "head": head}  # fmt: skip
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))  # fmt: skip
        layers: list[nn.Module] = []
        cin = widths[0]
        for w in widths[1:]:
            layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                if kind == "stack":
                    conv: nn.Module = BinaryStackConv2d(cin, w, m, k, mode=mode)
                elif kind == "binary":
                    conv = BinaryConv2d(cin, w)
                else:
                    conv = nn.Conv2d(cin, w, 3, 1, 1, bias=False)
                layers += [conv, nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                cin = w
        self.body = nn.Sequential(*layers)
        self.feature_dim = cin
        self.head = make_head(head, cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def binary_layers(self) -> list[BinaryStackConv2d]:
        return [mod for mod in self.modules() if isinstance(mod, BinaryStackConv2d)]


def build(kind: str = "stack", num_classes: int = 10, in_channels: int = 1, *, m: int = 32, k: int = 16,
          widths: Sequence[int] = (16, 32, 64, 128), head: str = "linear", mode: str = "stm") -> BinaryNet:  # fmt: skip
    """``build("stack", 10, 1, m=32, k=16)``; ``kind="binary"`` / ``"float"`` give the baselines.

    ``mode`` ("stm" or "materialised") is how the stacked layers compute their forward pass; the
    two are the same function (chapter 7 checks it), so a network can train in one and run in the
    other (``for l in net.binary_layers(): l.mode = ...``)."""
    if kind == "stack":
        bad = [c for c in widths[:-1] if c % k]
        if bad:
            raise LtkdError(f"k={k} must divide every layer's input width; {bad} are not multiples")
    return BinaryNet(kind, m, k, widths, num_classes, in_channels, head, mode)


def _builder(kind: str):
    def make(**kw) -> BinaryNet:
        return build(kind, **kw)

    return make


for _kind, _name in (("stack", "binary-stack"), ("binary", "binary-plain"), ("float", "binary-float")):
    register_model(_name, _builder(_kind))  # `ltkd train --model binary-stack`: build()'s defaults (m = 32, k = 16)


# --------------------------------------------------------------------------------------
# Storage: formula, packing, export and load
# --------------------------------------------------------------------------------------
def index_bits(m: int) -> int:
    """⌈log₂ m⌉ bits per selection index (0 when m = 1: there is nothing to choose)."""
    return math.ceil(math.log2(m)) if m > 1 else 0


def layer_storage_bits(c_in: int, c_out: int, m: int, k: int, d: int = 3) -> int:
    """m·d²·k bits of binary filters + c_out·(c_in/k)·⌈log₂ m⌉ bits of indices."""
    return m * d * d * k + c_out * (c_in // k) * index_bits(m)


def full_precision_bits(c_in: int, c_out: int, d: int = 3) -> int:
    return 32 * d * d * c_in * c_out


def plain_binary_bits(c_in: int, c_out: int, d: int = 3) -> int:
    return d * d * c_in * c_out


def compression_ratio(c_in: int, c_out: int, m: int, k: int, d: int = 3) -> float:
    """32·d²·c_in·c_out / (m·d²·k + c_out·(c_in/k)·⌈log₂ m⌉); a plain binary layer gives 32."""
    return full_precision_bits(c_in, c_out, d) / layer_storage_bits(c_in, c_out, m, k, d)


def pack_indices(idx: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers < 2**bits into a uint8 array, ``bits`` bits each (big-endian)."""
    idx = np.asarray(idx, dtype=np.int64).ravel()
    if bits == 0:
        return np.zeros(0, np.uint8)
    if idx.size and (idx.min() < 0 or idx.max() >= 2**bits):
        raise LtkdError(f"indices must lie in [0, {2**bits}) to fit {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((idx[:, None] >> shifts) & 1).astype(np.uint8).ravel())


def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: ``count`` integers of ``bits`` bits each."""
    if bits == 0:
        return np.zeros(count, np.int64)
    flat = np.unpackbits(np.asarray(packed, np.uint8), count=count * bits).reshape(count, bits).astype(np.int64)
    return (flat << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(1)


def export_layer(layer: BinaryStackConv2d) -> dict[str, np.ndarray]:
    """The layer as bits: ``filters`` (packbits of B > 0, m·d²·k bits) and ``indices``
    (c_out·G indices, ⌈log₂ m⌉ bits each), plus its shape in ``shape`` (7 small ints)."""
    with torch.no_grad():
        b = (layer.binary_filters() > 0).cpu().numpy().astype(np.uint8).ravel()
        idx = layer.indices().cpu().numpy()
    return {
        "filters": np.packbits(b),
        "indices": pack_indices(idx, index_bits(layer.m)),
        "shape": np.array([layer.c_in, layer.c_out, layer.m, layer.k, layer.d, layer.stride, layer.padding], np.int32),
    }


def _set_from_bits(layer: BinaryStackConv2d, filters: np.ndarray, indices: np.ndarray) -> None:
    n = layer.m * layer.k * layer.d * layer.d
    b = np.unpackbits(np.asarray(filters, np.uint8), count=n).astype(np.float32) * 2 - 1
    idx = unpack_indices(indices, index_bits(layer.m), layer.c_out * layer.groups)
    with torch.no_grad():
        layer.proxy.copy_(torch.from_numpy(b).view_as(layer.proxy))
        onehot = F.one_hot(torch.from_numpy(idx), layer.m).float().view_as(layer.select_logits)
        layer.select_logits.copy_(onehot)  # argmax = the stored index; sign(±1) = the stored bit


def load_layer(arrays: dict[str, np.ndarray]) -> BinaryStackConv2d:
    """Rebuild a :class:`BinaryStackConv2d` from :func:`export_layer`'s arrays (same forward output)."""
    c_in, c_out, m, k, d, stride, padding = (int(v) for v in arrays["shape"])
    layer = BinaryStackConv2d(c_in, c_out, m, k, d, stride, padding)
    _set_from_bits(layer, arrays["filters"], arrays["indices"])
    return layer


def export(model: BinaryNet, path: str | os.PathLike) -> dict:
    """Write ``model`` to ``path`` (.npz, uncompressed) as four arrays: ``filters`` (every
    binary-stacked layer's packed filter bits, each layer starting on a byte), ``indices`` (every
    layer's packed selection indices, likewise), ``rest`` (everything else — stem, BatchNorm,
    classifier — as ONE float32 array) and ``header`` (JSON: build config, byte offsets, layout).
    Returns the byte counts."""
    if not isinstance(model, BinaryNet) or model.config["kind"] != "stack":
        raise LtkdError("export writes binary-stacked networks (binary_stack.build('stack', ...))")
    names = [n for n, mod in model.named_modules() if isinstance(mod, BinaryStackConv2d)]
    filt, idx, offsets = [], [], []
    fo = io_ = 0
    for n in names:
        a = export_layer(model.get_submodule(n))
        filt.append(a["filters"])
        idx.append(a["indices"])
        offsets.append([fo, a["filters"].size, io_, a["indices"].size])
        fo, io_ = fo + a["filters"].size, io_ + a["indices"].size
    rest, layout, offset = [], [], 0
    for key, t in model.state_dict().items():
        if key.rsplit(".", 1)[0] in names:
            continue
        a = t.detach().cpu().numpy()
        layout.append([key, list(a.shape), str(a.dtype), offset])
        rest.append(a.astype(np.float32).ravel())
        offset += a.size
    header = {"config": model.config, "binary_layers": names, "offsets": offsets, "rest_layout": layout}
    arrays = {
        "filters": np.concatenate(filt) if filt else np.zeros(0, np.uint8),
        "indices": np.concatenate(idx) if idx else np.zeros(0, np.uint8),
        "rest": np.concatenate(rest) if rest else np.zeros(0, np.float32),
        "header": np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), dtype=np.uint8),
    }
    p = _export_path(path)
    _write_atomic(p, arrays)
    return {"file_bytes": p.stat().st_size, "binary_bytes": int(arrays["filters"].nbytes + arrays["indices"].nbytes),
            "rest_bytes": int(arrays["rest"].nbytes), "header_bytes": int(arrays["header"].nbytes)}  # fmt: skip


def _export_path(path: str | os.PathLike) -> Path:
    """``path`` as the file an export writes: a path (not a folder) whose folder can be made."""
    if not isinstance(path, (str, os.PathLike)) or not str(os.fspath(path)).strip():
        raise LtkdError(f"export path must be a file path (str or pathlib.Path), got {path!r}")
    p = Path(path)
    if p.is_dir():
        raise LtkdError(f"export path {p} is a folder; give a file name (e.g. {p / 'model.npz'})")
    return p


def _write_atomic(p: Path, arrays: dict) -> None:
    """One .npz written whole or not at all (:func:`ltkd.checkpoint.atomic_write`): a crash leaves no truncated
    export; a path that cannot be written is one :class:`LtkdError` naming it."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, buf.getvalue())
    except OSError as e:
        raise LtkdError(f"cannot write export {p}: {e.strerror or first_line(e)}") from e


_EXPORT_DTYPES = {"filters": np.dtype(np.uint8), "indices": np.dtype(np.uint8), "rest": np.dtype(np.float32),
                  "header": np.dtype(np.uint8)}  # fmt: skip
_MAX_ARRAY_BYTES = 2**31  # 2 GiB: far above any network this book exports, far below a header's wild request
_MAX_PARAMS = 2 * 10**8  # the largest network load() builds (800 MB of float32)


def _read_export_arrays(p: Path) -> dict[str, np.ndarray]:
    """The export's four arrays, each checked before it is read: present, 1-d, of its dtype, no larger than its zip
    member (and 2 GiB), the member's CRC verified (zipfile checks it as the member is read whole)."""
    arrays = {}
    try:
        with zipfile.ZipFile(p) as zf:
            members = {i.filename: i for i in zf.infolist()}
            for key, dtype in _EXPORT_DTYPES.items():
                info = members.get(f"{key}.npy")
                if info is None:
                    raise LtkdError(f"{p}: not a binary-stack export (no {key} array)")
                if info.file_size > _MAX_ARRAY_BYTES:
                    raise LtkdError(f"{p}: damaged export: {key} claims {info.file_size} bytes")
                raw = zf.read(info)
                f = io.BytesIO(raw)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
                else:
                    raise LtkdError(f"{p}: damaged export: {key} has .npy format version {version}")
                if dt != dtype or len(shape) != 1 or len(raw) - f.tell() != shape[0] * dtype.itemsize:
                    raise LtkdError(f"{p}: damaged export: {key} is {dt} {shape} in {len(raw) - f.tell()} bytes, "
                                    f"not a 1-d {dtype} array filling them")  # fmt: skip
                arrays[key] = np.frombuffer(raw, dtype, shape[0], offset=f.tell())
    except LtkdError:
        raise
    except Exception as e:  # a bad zip, a bad CRC, a truncated member, a bad .npy header: this file's fault
        raise LtkdError(f"{p}: not a binary-stack export, or a damaged one ({type(e).__name__}: {first_line(e)})") from e
    return arrays


def _is_int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _checked_model(p: Path, arrays: dict[str, np.ndarray]) -> tuple[dict, BinaryNet]:
    """The header, checked key by key against the network it describes (built first on the ``meta`` device, which
    allocates nothing), and every array's length against that network: only then is anything real built."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise LtkdError(f"{p}: damaged export header: {what}")

    try:
        header = json.loads(bytes(arrays["header"]).decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise LtkdError(f"{p}: damaged export header: not JSON ({type(e).__name__})") from e
    need(isinstance(header, dict) and {"config", "binary_layers", "offsets", "rest_layout"} <= set(header),
         "needs config, binary_layers, offsets and rest_layout")  # fmt: skip
    cfg = header["config"]
    need(isinstance(cfg, dict), "config is not an object")
    need(cfg.get("kind") == "stack", "config.kind must be 'stack'")
    need(_is_int(cfg.get("m"), 1, 2**16), "config.m must be a whole number in 1..65536")
    need(_is_int(cfg.get("k"), 1, 8192), "config.k must be a whole number in 1..8192")
    widths = cfg.get("widths")
    need(isinstance(widths, list) and 1 <= len(widths) <= 64 and all(_is_int(w, 1, 8192) for w in widths),
         "config.widths must be 1..64 whole numbers in 1..8192")  # fmt: skip
    need(_is_int(cfg.get("num_classes"), 1, 10**6), "config.num_classes must be a whole number in 1..10**6")
    need(_is_int(cfg.get("in_channels"), 1, 64), "config.in_channels must be a whole number in 1..64")
    need(cfg.get("head") in ("linear", "cosine"), "config.head must be 'linear' or 'cosine'")
    try:
        with torch.device("meta"):
            shell = BinaryNet("stack", cfg["m"], cfg["k"], widths, cfg["num_classes"], cfg["in_channels"], cfg["head"])
    except LtkdError as e:
        raise LtkdError(f"{p}: damaged export header: {e}") from e
    need(sum(t.numel() for t in shell.state_dict().values()) <= _MAX_PARAMS, f"a network over {_MAX_PARAMS} values")
    names = [n for n, mod in shell.named_modules() if isinstance(mod, BinaryStackConv2d)]
    need(header["binary_layers"] == names, "binary_layers do not match the network config describes")
    offsets = header["offsets"]
    need(isinstance(offsets, list) and len(offsets) == len(names), "one offsets row per binary layer")
    fo = io_ = 0
    for n, row in zip(names, offsets):
        layer = shell.get_submodule(n)
        want = [fo, -(-layer.m * layer.k * layer.d * layer.d // 8), io_,
                -(-layer.c_out * layer.groups * index_bits(layer.m) // 8)]  # fmt: skip
        need(row == want, f"offsets of {n} are {row}, the layer needs {want}")
        fo, io_ = fo + want[1], io_ + want[3]
    need(fo == arrays["filters"].size, f"filters hold {arrays['filters'].size} bytes, the layers need {fo}")
    need(io_ == arrays["indices"].size, f"indices hold {arrays['indices'].size} bytes, the layers need {io_}")
    state = {k: v for k, v in shell.state_dict().items() if k.rsplit(".", 1)[0] not in names}
    layout = header["rest_layout"]
    need(isinstance(layout, list) and len(layout) == len(state), f"rest_layout needs {len(state)} entries")
    off = 0
    for entry, (key, t) in zip(layout, state.items()):
        want_entry = [key, list(t.shape), str(t.dtype).removeprefix("torch."), off]
        need(entry == want_entry, f"rest_layout entry {entry!r:.120} should be {want_entry!r}")
        off += t.numel()
    need(off == arrays["rest"].size, f"rest holds {arrays['rest'].size} values, the network needs {off}")
    need(bool(np.isfinite(arrays["rest"]).all()), "rest holds values that are not finite (NaN or infinity)")
    return header, shell


def load(path: str | os.PathLike) -> BinaryNet:
    """Rebuild the network :func:`export` wrote (same outputs as the exported model in eval mode).

    Everything is checked before the network is built — the zip and its CRCs, each array's dtype and length, the
    header's keys, types and sizes (bounded), the layout against the network it describes, every value finite and
    every index below ``m`` — so a damaged file is an :class:`LtkdError`, never a different model."""
    p = Path(path)
    if not p.is_file():
        raise LtkdError(f"{p}: no such export file")
    arrays = _read_export_arrays(p)
    header, _ = _checked_model(p, arrays)
    cfg = header["config"]
    model = BinaryNet(cfg["kind"], cfg["m"], cfg["k"], cfg["widths"], cfg["num_classes"], cfg["in_channels"],
                      cfg["head"])  # fmt: skip
    state = model.state_dict()
    rest = arrays["rest"]
    for key, shape, dtype, off in header["rest_layout"]:
        n = int(np.prod(shape)) if shape else 1
        values = rest[off : off + n]
        if dtype != "float32" and not (values == np.round(values)).all():
            raise LtkdError(f"{p}: damaged export: {key} ({dtype}) holds fractions")
        state[key] = torch.from_numpy(values.astype(dtype).reshape(shape))
    model.load_state_dict(state)
    filters, indices = arrays["filters"], arrays["indices"]
    for n, (fo, fn, io_, in_) in zip(header["binary_layers"], header["offsets"]):
        layer = model.get_submodule(n)
        idx = unpack_indices(indices[io_ : io_ + in_], index_bits(layer.m), layer.c_out * layer.groups)
        if idx.size and idx.max() >= layer.m:
            raise LtkdError(f"{p}: damaged export: {n} selects filter {int(idx.max())} of {layer.m}")
        _set_from_bits(layer, filters[fo : fo + fn], indices[io_ : io_ + in_])
    model.eval()
    return model


def export_full_precision(model: nn.Module, path: str | os.PathLike) -> int:
    """Write every tensor of ``model``'s state dict as float32 into one .npz (the full-precision
    counterpart's file in the same container format); returns its size in bytes."""
    arrays = {k.replace(".", "_"): v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    p = _export_path(path)
    _write_atomic(p, arrays)
    return p.stat().st_size


def stored_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """What ``model`` costs on disk, written to ``path``: a binary-stacked net as its exported bits and
    packed indices (plus its float rest), any other model as float32 (:func:`export_full_precision`)."""
    if isinstance(model, BinaryNet) and model.binary_layers():
        return export(model, path)["file_bytes"]
    return export_full_precision(model, path)


def storage_report(model: BinaryNet) -> list[dict]:
    """Per binary-stacked layer: c_in, c_out, m, k, formula bits, full-precision and 1-bit bits, ratio."""
    rows = []
    for layer in model.binary_layers():
        ci, co, m, k, d = layer.c_in, layer.c_out, layer.m, layer.k, layer.d
        rows.append({
            "c_in": ci, "c_out": co, "m": m, "k": k,
            "bits": layer_storage_bits(ci, co, m, k, d),
            "fp32_bits": full_precision_bits(ci, co, d),
            "binary_bits": plain_binary_bits(ci, co, d),
            "ratio_vs_fp32": compression_ratio(ci, co, m, k, d),
        })  # fmt: skip
    return rows
