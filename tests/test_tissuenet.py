"""Chapter 6's TissueNet pieces: units, stacked layers, formulas, builders, TCA/TSA."""

import math

import pytest
import torch

from ltkd.errors import LtkdError
from ltkd.methods import tissuenet as tn
from ltkd.metrics import count_flops, count_params
from ltkd.train import LossObjective, fit


def _conv_params(module):
    return sum(p.numel() for n, p in module.named_parameters() if n.endswith("conv1.weight") or n.endswith("conv2.weight"))


@pytest.mark.parametrize("c_in,c_out,m,unit", [
    (8, 8, 2, tn.UnitType()),
    (16, 32, 4, tn.UnitType()),
    (12, 6, 3, tn.UnitType((3, 3), 0.5)),
    (16, 16, 8, tn.UnitType((1, 3), 1.0)),
    (64, 64, 16, tn.UnitType((5, 5), 2.0)),
])  # fmt: skip
def test_params_match_formula(c_in, c_out, m, unit):
    layer = tn.StackedLayer(c_in, c_out, m, unit)
    dense = tn.DenseLayer(c_in, c_out, m, unit)
    c_h = unit.hidden_channels(c_out // m)
    assert layer.c_h == c_h
    assert _conv_params(layer) == tn.stacked_params(c_in, c_out, m, c_h, unit.kernels)
    assert _conv_params(dense) == tn.dense_params(c_in, c_out, m, c_h, unit.kernels)
    assert tn.dense_params(c_in, c_out, m, c_h, unit.kernels) == m * tn.stacked_params(c_in, c_out, m, c_h, unit.kernels)
    if unit.kernels[0] == unit.kernels[1]:  # the paper's form m · d² · c_h · (c'_in + c'_out)
        d = unit.kernels[0]
        assert tn.stacked_params(c_in, c_out, m, c_h, d) == m * d * d * c_h * (c_in // m + c_out // m)


@pytest.mark.parametrize("stride", [1, 2])
def test_flops_match_formula(stride):
    c_in, c_out, m, h = 16, 32, 4, 12
    layer, dense = tn.StackedLayer(c_in, c_out, m, stride=stride), tn.DenseLayer(c_in, c_out, m, stride=stride)
    ho = h // stride

    class Wrap(torch.nn.Module):  # count_flops wants a model taking one image
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    assert count_flops(Wrap(layer), (c_in, h, h)) == tn.stacked_flops(c_in, c_out, m, c_out // m, ho, ho)
    assert count_flops(Wrap(dense), (c_in, h, h)) == tn.dense_flops(c_in, c_out, m, c_out // m, ho, ho)


@pytest.mark.parametrize("training", [False, True])
def test_stacked_layer_equals_units_run_one_by_one(training):
    torch.manual_seed(0)
    layer = tn.StackedLayer(12, 18, 3, tn.UnitType((3, 3), 0.5), stride=2)
    with torch.no_grad():  # non-trivial BN state
        layer.bn1.running_mean.normal_()
        layer.bn1.running_var.uniform_(0.5, 2)
        layer.bn1.weight.normal_()
        layer.bn1.bias.normal_()
    layer.train(training)
    x = torch.randn(4, 12, 9, 9)
    units = layer.units()
    assert len(units) == 3
    y_units = torch.cat([u(xg) for u, xg in zip(units, x.chunk(3, dim=1))], dim=1)
    torch.testing.assert_close(layer(x), y_units, rtol=1e-5, atol=1e-5)
    # a unit only sees its own group: perturbing group 0 leaves the other outputs alone
    x2 = x.clone()
    x2[:, :4] += 1
    layer.eval()
    d = (layer(x2) - layer(x)).abs().sum(dim=(0, 2, 3))
    assert d[:6].sum() > 0 and d[6:].sum() == 0


def test_bad_group_count_raises():
    with pytest.raises(LtkdError):
        tn.StackedLayer(10, 12, 4)


def test_patterns_and_styles():
    assert tn.default_pattern("vgg", 5) == "SNSNS"
    assert tn.default_pattern("resnet", 3) == "SSS"
    assert tn.default_pattern("resnet-r", 6) == "NSSSSN"
    assert tn.default_pattern("vgg-dense", 3) == "NNN"
    with pytest.raises(LtkdError):
        tn.default_pattern("mlp", 3)
    net = tn.build("resnet-r", 10, 1, m=4, blocks_per_stage=2)
    assert net.pattern == "NSSSSN" and len(net.stacked_layers()) == 4


def test_networks_follow_model_interface_and_shrink():
    x = torch.randn(2, 1, 8, 8)
    for style in ("vgg", "resnet"):
        dense = tn.build(f"{style}-dense", 10, 1)
        stacked = tn.build(style, 10, 1, m=4)
        for net in (dense, stacked):
            net.eval()
            f = net.features(x)
            assert f.shape[1] == net.feature_dim == 64
            torch.testing.assert_close(net(x), net.head(net.embed(x)))
        assert count_params(stacked) < count_params(dense)
        assert count_flops(stacked, (1, 8, 8)) < count_flops(dense, (1, 8, 8))
    # every stacked block of the all-stacked ResNet saves exactly (m − 1)/m of its body weights
    d, s = tn.build("resnet-dense", 10, 1), tn.build("resnet", 10, 1, m=4)
    for bd, bs in zip(d.body, s.body):
        assert sum(p.numel() for p in bd.body.parameters() if p.ndim == 4) == 4 * _conv_params(bs.body)


def test_hybrid_is_seeded():
    a = tn.build("resnet", 10, 1, m=4, blocks_per_stage=3, hybrid=tn.HYBRID_UNITS, seed=1)
    b = tn.build("resnet", 10, 1, m=4, blocks_per_stage=3, hybrid=tn.HYBRID_UNITS, seed=1)
    c = tn.build("resnet", 10, 1, m=4, blocks_per_stage=3, hybrid=tn.HYBRID_UNITS, seed=2)
    names = lambda n: [u.name for u in n.unit_types]
    assert names(a) == names(b)
    assert names(a) != names(c)
    assert len(set(names(a)) | set(names(c))) > 1


def test_engine_trains_a_tissuenet(digits):
    from ltkd.profiles import TrainConfig

    train = digits[0].subset(range(100))
    net = tn.build("resnet", train.num_classes, train.in_channels, m=2, widths=(8, 8, 16, 16))
    before = [p.detach().clone() for p in net.parameters()]
    hist = fit(net, LossObjective(torch.nn.functional.cross_entropy), train,
               TrainConfig(epochs=2, batch_size=50, lr=0.05, warmup_epochs=0), progress=False)  # fmt: skip
    assert len(hist) == 2 and math.isfinite(hist[-1]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_tca_tsa_on_hand_numbers():
    # baseline 90 %, 100 MFLOPs, 1 M params; compressed 88.2 % (2 % relative loss), 40 MFLOPs, 0.5 M params
    assert tn.tca(90, 88.2, 100, 40) == pytest.approx(math.exp(0.6) / math.exp(0.02))
    assert tn.tsa(90, 88.2, 1.0, 0.5, 1, 4) == pytest.approx(math.exp(0.5 - 0.08))
    assert tn.tca(90, 88.2, 100, 40, 4, 1) == pytest.approx(math.exp(2.4 - 0.02))
    assert tn.tca(90, 90, 100, 100) == 1.0  # nothing saved, nothing lost
    assert tn.tsa(90, 80, 1.0, 1.0) < 1  # loss without saving is penalised
    rows = tn.tradeoff_table({"acc": 90, "flops": 100, "params": 1.0}, {"acc": 88.2, "flops": 40, "params": 0.5})
    assert [(r["w1"], r["w2"]) for r in rows] == [(1, 1), (1, 4), (4, 1)]
    assert rows[2]["TCA"] > rows[0]["TCA"] > rows[1]["TCA"]
