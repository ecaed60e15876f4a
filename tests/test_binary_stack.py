"""Chapter 7's stacked binary filters: STEs, split–transform–merge, storage, export/load."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltkd.errors import LtkdError
from ltkd.methods import binary_stack as bs


def test_sign_ste_forward_is_pm1_and_gradient_passes_straight_through():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    b = bs.sign_ste(v)
    assert b.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    (b * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    assert v.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0]  # identity inside |v| ≤ 1, zero outside


def test_onehot_ste_is_onehot_with_softmax_gradient():
    logits = torch.tensor([[0.1, 2.0, -1.0]], requires_grad=True)
    s = bs.onehot_ste(logits)
    assert s.tolist() == [[0.0, 1.0, 0.0]]
    w = torch.tensor([[1.0, -1.0, 3.0]])
    (s * w).sum().backward()
    soft = F.softmax(logits.detach(), -1)
    expect = soft * (w - (soft * w).sum())  # d/dz of Σ softmax(z)·w
    torch.testing.assert_close(logits.grad, expect)


def test_layer_weights_are_exactly_pm1_and_gradients_reach_both_proxies():
    torch.manual_seed(0)
    layer = bs.BinaryStackConv2d(8, 6, m=4, k=4)
    w = layer.materialised_weight()
    assert set(w.unique().tolist()) == {-1.0, 1.0}
    assert w.shape == (6, 8, 3, 3)
    x = torch.randn(2, 8, 5, 5)
    layer(x).square().mean().backward()
    assert layer.proxy.grad is not None and layer.proxy.grad.abs().sum() > 0
    assert layer.select_logits.grad is not None and layer.select_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("c_in,c_out,m,k,stride", [(8, 6, 4, 4, 1), (16, 16, 8, 2, 2), (12, 5, 3, 12, 1), (4, 4, 1, 2, 1)])
def test_split_transform_merge_equals_materialised_convolution(c_in, c_out, m, k, stride):
    torch.manual_seed(1)
    layer = bs.BinaryStackConv2d(c_in, c_out, m, k, stride=stride)
    x = torch.randn(3, c_in, 7, 7)
    y_stm = layer(x)
    # materialise by hand from the bits and indices, independently of the layer's own code
    b = torch.where(layer.proxy >= 0, 1.0, -1.0)
    idx = layer.select_logits.argmax(-1)
    w = torch.stack([torch.cat([b[idx[o, j]] for j in range(c_in // k)]) for o in range(c_out)])
    y_ref = F.conv2d(x, w, None, stride, 1)
    torch.testing.assert_close(y_stm, y_ref, rtol=1e-4, atol=1e-4)
    layer.mode = "materialised"
    torch.testing.assert_close(layer(x), y_ref, rtol=1e-4, atol=1e-4)


def test_bad_k_raises():
    with pytest.raises(LtkdError):
        bs.BinaryStackConv2d(10, 8, m=4, k=4)
    with pytest.raises(LtkdError):
        bs.build("stack", m=8, k=24)


@pytest.mark.parametrize("m,bits", [(1, 0), (2, 1), (3, 2), (8, 3), (33, 6)])
def test_pack_indices_roundtrip(m, bits):
    assert bs.index_bits(m) == bits
    idx = np.random.RandomState(0).randint(0, m, size=37)
    packed = bs.pack_indices(idx, bits)
    assert packed.nbytes == math.ceil(37 * bits / 8)
    np.testing.assert_array_equal(bs.unpack_indices(packed, bits, 37), idx)


def test_compression_ratio_of_known_configuration():
    # d = 3, c_in = c_out = 256, k = 32, m = 64: 64·9·32 + 256·8·6 bits
    bits = bs.layer_storage_bits(256, 256, 64, 32)
    assert bits == 64 * 9 * 32 + 256 * 8 * 6 == 30720
    assert bs.compression_ratio(256, 256, 64, 32) == pytest.approx(32 * 9 * 256 * 256 / 30720)
    assert bs.compression_ratio(256, 256, 64, 32) == pytest.approx(614.4)
    assert bs.full_precision_bits(256, 256) / bs.plain_binary_bits(256, 256) == 32


def test_export_layer_stores_the_formula_bits_and_reloads_exactly():
    torch.manual_seed(2)
    layer = bs.BinaryStackConv2d(32, 16, m=8, k=8)
    arrays = bs.export_layer(layer)
    assert arrays["filters"].nbytes == math.ceil(8 * 9 * 8 / 8)
    assert arrays["indices"].nbytes == math.ceil(16 * 4 * 3 / 8)
    assert 8 * (arrays["filters"].nbytes + arrays["indices"].nbytes) == bs.layer_storage_bits(32, 16, 8, 8)
    again = bs.load_layer(arrays)
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        assert torch.equal(again(x), layer(x))
        assert torch.equal(again.materialised_weight(), layer.materialised_weight())


def test_network_export_load_reproduces_outputs(tmp_path):
    torch.manual_seed(3)
    net = bs.build("stack", 10, 1, m=8, k=4, widths=(4, 8, 8, 16))
    net.train()
    net(torch.randn(16, 1, 12, 12))  # move the BatchNorm running statistics away from defaults
    net.eval()
    info = bs.export(net, tmp_path / "net.npz")
    assert info["file_bytes"] == (tmp_path / "net.npz").stat().st_size
    again = bs.load(tmp_path / "net.npz")
    x = torch.randn(5, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    formula = sum(r["bits"] for r in bs.storage_report(net))
    assert info["binary_bytes"] * 8 >= formula and info["binary_bytes"] * 8 < formula + 8 * 2 * len(net.binary_layers())
    fp = bs.build("float", 10, 1, widths=(4, 8, 8, 16))
    assert bs.export_full_precision(fp, tmp_path / "fp.npz") > info["file_bytes"]


def test_export_is_written_whole_and_a_damaged_one_is_a_clear_error(tmp_path):
    net = bs.build("stack", 10, 1, m=8, k=4, widths=(4, 8, 8, 16))
    bs.export(net, tmp_path / "net.npz")
    assert [f.name for f in tmp_path.iterdir()] == ["net.npz"]  # no temporary file left beside it
    data = (tmp_path / "net.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LtkdError, match="not a binary-stack export"):
        bs.load(tmp_path / "cut.npz")


def test_export_rejects_non_stacked(tmp_path):
    with pytest.raises(LtkdError):
        bs.export(bs.build("float", 10, 1), tmp_path / "x.npz")
    with pytest.raises(LtkdError):
        bs.load(tmp_path / "missing.npz")


def test_engine_trains_a_binary_stacked_net(digits):
    from ltkd.profiles import TrainConfig
    from ltkd.train import LossObjective, fit

    train = digits[0].subset(range(100))
    net = bs.build("stack", train.num_classes, train.in_channels, m=4, k=4, widths=(4, 8, 8, 8))
    before = net.binary_layers()[0].proxy.detach().clone()
    hist = fit(net, LossObjective(F.cross_entropy), train, TrainConfig(epochs=2, batch_size=50, lr=0.05,
               warmup_epochs=0), progress=False)  # fmt: skip
    assert math.isfinite(hist[-1]["loss"])
    assert not torch.equal(before, net.binary_layers()[0].proxy)


def test_selection_is_the_exported_index_even_where_the_softmax_ties():
    """Two selection logits one float apart: the softmax rounds them to one value (and its argmax picks the
    first), the exported index is the larger logit; the forward pass must use the same one, or a reloaded
    network computes something else (chapter 7 found this after training)."""
    a = torch.tensor(0.1)
    logits = torch.stack([a, torch.nextafter(a, torch.tensor(1.0)), torch.tensor(-0.5)]).view(1, 1, 3)
    assert torch.softmax(logits, -1)[0, 0, 0] == torch.softmax(logits, -1)[0, 0, 1]  # the tie the test is about
    layer = bs.BinaryStackConv2d(4, 1, m=3, k=4)
    with torch.no_grad():
        layer.select_logits.copy_(logits)
    assert layer.indices().item() == 1
    assert layer.selections().argmax(-1).item() == 1
    again = bs.load_layer(bs.export_layer(layer))
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.equal(again(x), layer(x))
