import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltkd.data import long_tail
from ltkd.errors import LtkdError
from ltkd.experiment import run
from ltkd.methods import get_method
from ltkd.methods.h2t import H2T, fuse, fused_channels
from ltkd.models import build_model
from ltkd.profiles import TrainConfig, get_profile
from ltkd.train import fit


def _maps(b=5, c=16, h=3, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g) + 10.0


@pytest.mark.parametrize("rho,c", [(0.25, 16), (0.1, 64), (0.5, 10), (0.3, 10), (1.0, 7), (0.33, 9)])
def test_exactly_floor_rho_c_channels_change_and_the_rest_are_untouched(rho, c):
    f1, f2 = _maps(c=c)
    fused, chans = fuse(f1, f2, rho, torch.Generator().manual_seed(1))
    k = math.floor(rho * c + 1e-9)
    assert fused_channels(c, rho) == k
    assert len(chans) == k == len(set(chans.tolist()))
    changed = (fused != f1).flatten(2).any(2)  # B×C: which channels of which sample changed
    assert changed.sum(1).tolist() == [k] * len(f1)
    torch.testing.assert_close(fused[:, chans], f2[:, chans])
    rest = torch.ones(c, dtype=torch.bool)
    rest[chans] = False
    torch.testing.assert_close(fused[:, rest], f1[:, rest])
    assert not torch.equal(f1, f2) and not fused.data_ptr() == f1.data_ptr()


def test_rho_zero_is_the_identity():
    f1, f2 = _maps()
    fused, chans = fuse(f1, f2, 0.0)
    assert len(chans) == 0
    torch.testing.assert_close(fused, f1)


def test_one_channel_set_is_shared_by_the_whole_batch_and_changes_between_batches():
    f1, f2 = _maps(b=8, c=32)
    g = torch.Generator().manual_seed(0)
    fused, chans = fuse(f1, f2, 0.25, g)
    changed = (fused != f1).flatten(2).any(2)
    assert all(torch.equal(changed[i], changed[0]) for i in range(len(f1)))
    assert torch.equal(torch.nonzero(changed[0]).flatten(), chans)
    sets = {tuple(fuse(f1, f2, 0.25, g)[1].tolist()) for _ in range(5)}
    assert len(sets) > 1  # a fresh set per batch


def test_fusion_ratio_is_validated():
    with pytest.raises(LtkdError):
        fused_channels(10, 1.5)
    with pytest.raises(LtkdError):
        fuse(*_maps(), -0.1)
    with pytest.raises(LtkdError):
        fuse(torch.zeros(2, 4, 1, 1), torch.zeros(2, 5, 1, 1), 0.5)


@pytest.fixture()
def small(digits):
    train = long_tail(digits[0], 10)
    torch.manual_seed(0)
    model = build_model("cnn6", 10, 1)
    return train, model


def _batch(train, n=16, offset=0):
    x = train.normalise(train.images[offset : offset + n])
    return x, train.labels[offset : offset + n]


def test_loss_is_ce_of_fused_logits_with_the_fused_batch_labels(small):
    train, model = small
    seen = {}

    def recording_fuse(f1, f2, rho, generator):
        fused, chans = fuse(f1, f2, rho, generator)
        seen.update(f1=f1, f2=f2, fused=fused)
        return fused, chans

    obj = H2T(train, 0.5, fuse_fn=recording_fuse, seed=0)
    model.eval()  # BN statistics fixed, as in stage 2 with bn="frozen"
    x, y = _batch(train, offset=len(train) - 16)  # the last (rarest) classes
    logits, losses = obj(model, x, y)
    torch.testing.assert_close(seen["f1"], model.features(x))
    expected = model.head(model.pool(seen["fused"]))
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(losses["ce"], F.cross_entropy(expected, y))
    donor_y = train.labels[obj.last_donors]
    assert not torch.equal(donor_y, y)
    assert not torch.isclose(losses["ce"], F.cross_entropy(expected, donor_y))
    assert len(obj.last_channels) == fused_channels(model.feature_dim, 0.5)


def test_no_gradient_reaches_the_backbone(small):
    train, model = small
    obj = H2T(train, 0.25, seed=0)
    x, y = _batch(train)
    _, losses = obj(model, x, y)  # even with every parameter trainable
    losses["ce"].backward()
    for name, p in model.named_parameters():
        if name.startswith("head."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_evaluation_does_not_fuse(small):
    train, model = small
    calls = []
    obj = H2T(train, 0.5, fuse_fn=lambda *a: calls.append(1) or fuse(*a))
    model.eval()
    obj.eval()
    x, y = _batch(train)
    logits, losses = obj(model, x, y)
    assert calls == []
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(losses["ce"], F.cross_entropy(model(x), y))
    obj.train()
    logits_train, _ = obj(model, x, y)
    assert calls == [1] and not torch.allclose(logits_train, logits)


def test_donor_sampling_instance_versus_class_balanced(small):
    train, _ = small
    counts = train.counts
    inst = H2T(train, 0.25, donor="instance", seed=0)
    cb = H2T(train, 0.25, donor="class-balanced", seed=0)
    draws = {}
    for name, obj in (("inst", inst), ("cb", cb)):
        ys = []
        for _ in range(40):
            obj._donor_batch(64, torch.device("cpu"))
            ys.append(train.labels[obj.last_donors])
        draws[name] = np.bincount(torch.cat(ys).numpy(), minlength=10) / (40 * 64)
    assert abs(draws["inst"][0] - counts[0] / counts.sum()) < 0.05  # mostly head donors
    assert draws["inst"][0] > 3 * draws["inst"][-1]
    assert np.abs(draws["cb"] - 0.1).max() < 0.04  # donors spread evenly over classes


def test_head_only_stage_trains_only_the_head_and_bn_option_controls_statistics(small):
    train, model = small
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.02)
    for bn, stats_change in (("frozen", False), ("train", True)):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        fit(model, H2T(train, 0.25), train, cfg, sampler="class-balanced", trainable="head", bn=bn, device="cpu")
        after = model.state_dict()
        for k in before:
            changed = not torch.equal(before[k], after[k])
            if k.startswith("head."):
                assert changed, k
            elif "running" in k:
                assert changed == stats_change, (bn, k)
            elif "num_batches" not in k:
                assert not changed, k  # conv and BN weights never move


def test_recipes_rho_zero_is_crt_and_fusion_ratio_option(digits):
    data = (long_tail(digits[0], 10), digits[1])
    assert [s.name for s in get_method("h2t").stages] == ["stage1", "h2t"]
    gh = get_method("gcl-h2t")
    assert gh.head == "cosine"
    quick = get_profile("quick")  # without the digits overrides: 2 + 1 epochs, seconds
    prof = quick.replace(
        extra={},
        stage1=quick.stage1.replace(epochs=2, batch_size=32),
        stage2=quick.stage2.replace(epochs=1, batch_size=32),
    )
    _, ce_net = run("ce", data=data, seed=1, profile=prof, device="cpu")
    s1 = ce_net.state_dict()
    fresh = {"fusion_ratio": 0.0, "h2t_head": "fresh"}
    h0, _ = run("h2t", data=data, seed=1, stage1_state=s1, options=fresh, profile=prof, device="cpu")
    c0, _ = run("crt", data=data, seed=1, stage1_state=s1, profile=prof, device="cpu")
    assert h0["per_class"] == c0["per_class"]  # same stage-1 model: ρ = 0 with a fresh head is cRT to the last digit
    k0, _ = run("h2t", data=data, seed=1, stage1_state=s1, options={"fusion_ratio": 0.0}, profile=prof, device="cpu")
    assert [r["loss"] for r in k0["history"]] != [r["loss"] for r in h0["history"]]  # the kept head is not cRT's
    h5, _ = run("h2t", data=data, seed=1, stage1_state=s1, options={"fusion_ratio": 0.5, "h2t_head": "fresh"},
                profile=prof, device="cpu")  # fmt: skip
    assert [r["loss"] for r in h5["history"]] != [r["loss"] for r in h0["history"]]


def test_cli_lists_the_recipes_and_checks_the_fusion_ratio(capsys):
    from ltkd.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "h2t" in out and "gcl-h2t" in out
    assert main(["train", "--method", "h2t", "--fusion-ratio", "1.5"]) == 2
    assert "--fusion-ratio must be in [0, 1]" in capsys.readouterr().err


def test_h2t_stage1_uses_mixup_in_the_paper_profile_only():
    from ltkd.methods import Context

    stage1 = get_method("h2t").stages[0]

    def alpha(profile, **options):
        ctx = Context(train=None, profile=get_profile(profile), device="cpu", seed=0, options=options)
        return stage1.objective(ctx).mixup

    assert alpha("paper") == 1.0  # the published recipe: CE with mixup α = 1
    assert alpha("quick") == 0.0  # chapter 3's quick runs: plain CE, as cRT's stage 1
    assert alpha("paper", h2t_mixup=0) == 0.0
    assert alpha("quick", h2t_mixup=0.5) == 0.5


def test_h2t_stage2_batchnorm_follows_the_profile(digits):
    """Paper profile: BN statistics keep updating in stage 2 (as published); quick: frozen (ρ = 0 is cRT)."""
    from ltkd.experiment import run_stages
    from ltkd.methods import Context
    from ltkd.methods.h2t import h2t_bn

    train = long_tail(digits[0], 10)
    quick = get_profile("quick")
    tiny = quick.replace(extra={}, stage2=quick.stage2.replace(epochs=1, batch_size=32))

    def bn_moves(profile, **options):
        torch.manual_seed(0)
        model = build_model("cnn6", num_classes=10, in_channels=1)
        before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
        run_stages(get_method("h2t"), model, train, profile, skip=1, device="cpu", options=options, progress=False)
        after = model.state_dict()
        return any(not torch.equal(before[k], after[k]) for k in before)

    published = tiny.replace(stage2=tiny.stage2.replace(option_defaults={"h2t_bn": "train"}))  # as the paper profile
    assert get_profile("paper").stage2.option_defaults["h2t_bn"] == "train"
    assert not bn_moves(tiny)
    assert bn_moves(published)
    assert not bn_moves(tiny.replace(name="paper"))  # the profile's stage config decides, not its name
    assert bn_moves(tiny, h2t_bn="train")
    assert not bn_moves(published, h2t_bn="frozen")
    ctx = Context(train=train, profile=tiny, device="cpu", seed=0, options={"h2t_bn": "yes"})
    with pytest.raises(LtkdError, match="h2t_bn"):
        h2t_bn(ctx)


@pytest.mark.parametrize("method,kind", [("h2t", "LinearHead"), ("gcl-h2t", "CosineHead")])
def test_stage2_fine_tunes_the_stage1_classifier_and_fresh_head_is_an_option(digits, method, kind, monkeypatch):
    """As the authors' train_stage2.py: stage 2 starts from the stage-1 classifier's weights (default); with
    ``h2t_head=fresh`` it starts from newly initialised ones."""
    from ltkd.experiment import run_stages
    from ltkd.models import build_model

    train = long_tail(digits[0], 10)
    quick = get_profile("quick")
    tiny = quick.replace(extra={}, stage2=quick.stage2.replace(epochs=1, batch_size=32, lr=0.0, weight_decay=0.0))
    recipe = get_method(method)
    for choice in ("stage1", "fresh"):
        torch.manual_seed(3)
        model = build_model("cnn6x0.5", train.num_classes, train.in_channels, head=recipe.head)
        assert type(model.head).__name__ == kind
        with torch.no_grad():
            for p in model.head.parameters():
                p.add_(1.0)  # weights no fresh initialisation would give
        start = {k: v.clone() for k, v in model.head.state_dict().items()}
        seen = []
        import ltkd.experiment as ex

        real_fit = ex.fit

        def spy(model_, *a, seen=seen, real_fit=real_fit, **kw):
            seen.append({k: v.clone() for k, v in model_.head.state_dict().items()})
            return real_fit(model_, *a, **kw)

        monkeypatch.setattr(ex, "fit", spy)
        run_stages(recipe, model, train, tiny, skip=1, device="cpu", options={"h2t_head": choice}, progress=False)
        monkeypatch.setattr(ex, "fit", real_fit)
        same = all(torch.equal(seen[0][k], start[k]) for k in start)
        assert same == (choice == "stage1"), (method, choice)


def test_two_batches_are_forwarded_separately_as_the_authors(small):
    """With backbone BatchNorm in training mode each batch is normalised with its own statistics."""
    train, model = small
    calls = []
    orig = model.features

    def features(x):
        calls.append(len(x))
        return orig(x)

    model.features = features
    model.train()
    x, y = _batch(train)
    H2T(train, 0.5).train()(model, x, y)
    assert calls == [16, 16]  # two passes of one batch each, not one pass of 32
    calls.clear()
    H2T(train, 0.5, joint_pass=True).train()(model, x, y)
    assert calls == [32]


def _lt_set(classes: int, imbalance: float, n_max: int, shape=(3, 32, 32)):
    """A long-tailed set of blank images with CIFAR's (or another) shape, made by long_tail as a real one is."""
    from ltkd.data import ImageData, lt_counts

    labels = torch.repeat_interleave(torch.arange(classes), torch.as_tensor(lt_counts(n_max, classes, imbalance)))
    full = ImageData(torch.zeros(len(labels), *shape, dtype=torch.uint8), labels, [str(i) for i in range(classes)], "x")
    return long_tail(full, imbalance, n_max=n_max)


def test_h2t_paper_stage2_settings_follow_the_authors_config_for_the_data_set_and_imbalance_factor(digits):
    """The authors' stage-2 weight decay by (data set, IF): CIFAR-100-LT 2e-4 / 5e-4 / 2e-4 at IF 200 / 100 / 50,
    CIFAR-10-LT 5e-4 at IF 100 (their ResLT + H2T config); other pairs the profile's. CIFAR-100-LT at IF 200 keeps
    500 and 2 images (a count ratio of 250): the key is the IF the set was made with, not the ratio."""
    from ltkd.methods import Context, stage_config
    from ltkd.methods.h2t import h2t_benchmark

    paper, quick = get_profile("paper"), get_profile("quick")
    stage = get_method("h2t").stages[1]
    c100_200 = _lt_set(100, 200, 500)
    assert c100_200.counts.max() / c100_200.counts.min() == 250 and h2t_benchmark(c100_200) == ("cifar100", 200)
    cases = [(c100_200, 2e-4), (_lt_set(100, 100, 100), 5e-4), (_lt_set(100, 50, 50), 2e-4),
             (_lt_set(10, 100, 100), 5e-4), (_lt_set(10, 50, 50), paper.stage2.weight_decay),
             (_lt_set(10, 100, 100, shape=(1, 28, 28)), paper.stage2.weight_decay),  # not CIFAR: no config
             (long_tail(digits[0], 10), paper.stage2.weight_decay)]  # fmt: skip
    assert paper.stage2.weight_decay != 5e-4
    for train, wd in cases:
        cfg = stage_config(paper, stage, Context(train=train, profile=paper, device=torch.device("cpu")))
        assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.schedule) == (10, 128, 0.02, "cosine")
        assert cfg.weight_decay == wd, h2t_benchmark(train)
    ctx = Context(train=long_tail(digits[0], 10), profile=quick, device=torch.device("cpu"))
    assert stage_config(quick, stage, ctx) == quick.stage2
