"""GCL (chapter 2): cloud sizes, noise, the cosine and angular forms, the effective-number sampler."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltkd.errors import LtkdError
from ltkd.methods.gcl import (
    GCL_ANGULAR_STAGE1,
    GCL_HEAD,
    GCL_STAGE1,
    GCLAngularLoss,
    GCLLoss,
    cloud_sizes,
    cos_plus,
    effective_number_class_probs,
    effective_number_sampler,
    effective_number_weights,
    gaussian_noise,
)

COUNTS = [500, 200, 80, 30, 5]


def _batch(n=16, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, c, generator=g) * 2 - 1
    y = torch.randint(c, (n,), generator=g)
    return cos, y


def test_cloud_sizes_largest_zero_smallest_one():
    a = cloud_sizes(COUNTS)
    assert a[0] == 0 and a[-1] == 1
    assert torch.all(a[1:] > a[:-1])  # rarer class, bigger cloud
    expected = (math.log(500) - math.log(80)) / (math.log(500) - math.log(5))
    assert a[2].item() == pytest.approx(expected, rel=1e-6)
    assert torch.all(cloud_sizes([7, 7, 7]) == 0)


def test_noise_is_clipped_gaussian():
    d = gaussian_noise((200_000,), generator=torch.Generator().manual_seed(0))
    assert d.abs().max() <= 1
    assert d.std().item() == pytest.approx(1 / 3, rel=0.02)
    assert abs(d.mean().item()) < 0.01


def test_cosine_form_without_clouds_or_margin_is_scaled_ce():
    cos, y = _batch()
    loss = GCLLoss(COUNTS, scale=30, eps=0.0, margin=0.0).train()
    torch.testing.assert_close(loss(cos, y), F.cross_entropy(30 * cos, y))


def test_cosine_form_matches_formula_with_given_noise():
    cos, y = _batch()
    noise = gaussian_noise(cos.shape, generator=torch.Generator().manual_seed(1))
    a = cloud_sizes(COUNTS)
    z = 20 * (cos - 0.5 * noise.abs() * a - 0.1 * F.one_hot(y, 5))
    ce = F.cross_entropy(z, y, reduction="none")
    expected = ((1 - torch.exp(-ce).detach()) * ce).mean()  # focal weighting, γ = 1
    loss = GCLLoss(COUNTS, scale=20, eps=0.5, margin=0.1, gamma=1.0)
    torch.testing.assert_close(loss(cos, y, noise=noise), expected)


def test_noise_in_training_mode_only():
    cos, y = _batch()
    loss = GCLLoss(COUNTS)
    loss.train()
    z1, z2 = loss.logits(cos, y), loss.logits(cos, y)
    assert not torch.equal(z1, z2)  # fresh draw every call
    assert torch.all(z1 <= 30 * cos + 1e-6)  # clouds only lower logits (|δ|)
    torch.testing.assert_close(z1[:, 0], 30 * cos[:, 0])  # the largest class has no cloud
    loss.eval()
    torch.testing.assert_close(loss.logits(cos, y), 30 * cos)
    ang = GCLAngularLoss(COUNTS, margin=0.0).eval()
    torch.testing.assert_close(ang.logits(cos, y), 30 * cos)
    ang.train()
    assert not torch.equal(ang.logits(cos, y), ang.logits(cos, y))


def test_angular_form_matches_cos_of_shifted_angle():
    cos = torch.tensor([[0.9, 0.2, -0.3], [0.5, -0.1, 0.7]])
    y = torch.tensor([0, 2])
    noise = torch.tensor([[0.3, -0.6, 1.0], [0.0, 0.5, -0.2]])
    counts = [100, 30, 10]
    loss = GCLAngularLoss(counts, scale=30, eps=0.1, margin=0.5)
    delta = (math.pi / 2) * 0.1 * noise.abs() * cloud_sizes(counts) + 0.5 * F.one_hot(y, 3)
    expected = 30 * torch.cos(torch.acos(cos) + delta)  # θ + Δ < π everywhere here
    torch.testing.assert_close(loss.logits(cos, y, noise=noise), expected)


def test_angular_fallback_finite_near_pi():
    cos = torch.tensor([[-1.0, -0.99999, 1.0, 0.0], [-0.9999999, 1.0, -1.0, 0.3]], requires_grad=True)
    y = torch.tensor([0, 2])
    loss = GCLAngularLoss([100, 50, 20, 5], margin=0.5, eps=0.1).train()
    z = loss.logits(cos, y)
    assert torch.isfinite(z).all()
    loss(cos, y).backward()
    assert torch.isfinite(cos.grad).all()
    # past π the fallback keeps cos(θ + Δ) decreasing in θ, i.e. increasing in cos θ
    c = torch.linspace(-1, 1, 401)
    out = cos_plus(c, torch.full_like(c, 0.5))
    assert torch.all(out[1:] >= out[:-1])
    assert out[0].item() == pytest.approx(-1 - math.sin(0.5), abs=1e-5)  # GCLAngLoss: cos θ − sin(π − Δ)


def test_angular_fallback_is_the_authors_cos_minus_sin_of_pi_minus_delta():
    cos = torch.tensor([[-0.99, -0.95, 0.2]])
    delta = torch.tensor([[0.5, 0.5, 0.5]])  # cos(π − 0.5) = −0.8776: the first two are past the threshold
    out = cos_plus(cos, delta)
    torch.testing.assert_close(out[0, :2], cos[0, :2] - math.sin(math.pi - 0.5))
    torch.testing.assert_close(out[0, 2], torch.cos(torch.acos(cos[0, 2]) + 0.5))


def test_focal_weight_is_detached_as_in_the_authors_focal_loss():
    """The gradient equals that of (1 − p.detach())^γ · CE: the weight rescales CE's gradient, adds none."""
    cos, y = _batch()
    noise = gaussian_noise(cos.shape, generator=torch.Generator().manual_seed(2))
    loss = GCLLoss(COUNTS, scale=20, eps=0.5, margin=0.1, gamma=1.0)
    c1 = cos.clone().requires_grad_(True)
    loss(c1, y, noise=noise).backward()
    c2 = cos.clone().requires_grad_(True)
    ce = F.cross_entropy(loss.logits(c2, y, noise=noise), y, reduction="none")
    ((1 - torch.exp(-ce).detach()) * ce).mean().backward()
    torch.testing.assert_close(c1.grad, c2.grad)
    c3 = cos.clone().requires_grad_(True)
    ce3 = F.cross_entropy(loss.logits(c3, y, noise=noise), y, reduction="none")
    ((1 - torch.exp(-ce3)) * ce3).mean().backward()  # the undetached form has another gradient
    assert not torch.allclose(c1.grad, c3.grad)


def test_stage2_uses_mixup_and_the_paper_schedule_is_the_authors():
    from ltkd.data import ImageData
    from ltkd.methods import Context, get_method, stage_config
    from ltkd.profiles import get_profile

    labels = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))
    train = ImageData(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels, [str(i) for i in range(5)], "toy")
    for name in ("gcl", "gcl-angular"):
        stage2 = get_method(name).stages[1]
        for prof in ("quick", "paper"):
            p = get_profile(prof)
            ctx = Context(train=train, profile=p, device=torch.device("cpu"))
            # the authors' classifier stage: mixup α = 1 (paper); quick measured worse with it, so 0 there
            assert stage2.objective(ctx).mixup == (1.0 if prof == "paper" else 0.0)
            cfg = stage_config(p, stage2, ctx)
            if prof == "paper":  # cifar_train_classifier.py: 30 epochs, batch 64, cosine from 0.002, wd 2e-4
                assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.schedule) == (30, 64, 0.002, 2e-4,
                                                                                                 "cosine")  # fmt: skip
            else:
                assert cfg == p.stage2
        ctx = Context(train=train, profile=get_profile("quick"), device=torch.device("cpu"), options={"gcl_mixup2": 1})
        assert stage2.objective(ctx).mixup == 1.0


def test_paper_profile_trains_gcl_stage1_at_the_authors_batch_64():
    """cifar_train_backbone.py of the GCL authors: batch 64 at lr 0.1. The paper profile's stage config says so for
    GCL's stage 1 (both forms, and gcl-h2t, which reuses it); CE and H2T's stage 1 keep the profile's 128; the user's
    gcl_batch wins; quick keeps its own batch."""
    from ltkd.methods import Context, get_method, stage_config
    from ltkd.profiles import get_profile

    def batch(method: str, profile: str, **options) -> int:
        p = get_profile(profile)
        ctx = Context(train=None, profile=p, device=torch.device("cpu"), options=options)
        return stage_config(p, get_method(method).stages[0], ctx).batch_size

    for name in ("gcl", "gcl-stage1", "gcl-angular", "gcl-h2t"):
        assert batch(name, "paper") == 64 and batch(name, "quick") == 128, name
        assert batch(name, "paper", gcl_batch=32) == 32
    assert stage_config(get_profile("paper"), get_method("gcl").stages[0]).lr == 0.1
    for name in ("ce", "h2t", "ldam-drw"):
        assert batch(name, "paper") == 128
    with pytest.raises(LtkdError, match="whole number"):
        batch("gcl", "paper", gcl_batch=48.5)


def test_effective_number_weights_and_sampler_frequencies():
    w = effective_number_weights(COUNTS)
    b = 0.9999 + 1e-5 * cloud_sizes(COUNTS).double().numpy()
    np.testing.assert_allclose(w, (1 - b) / (1 - b ** np.asarray(COUNTS)))
    p = effective_number_class_probs(COUNTS)
    assert p.sum() == pytest.approx(1.0)
    labels = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))
    s = effective_number_sampler(labels)
    s.num_samples = 200_000
    idx = s.epoch(torch.Generator().manual_seed(0))
    freq = torch.bincount(labels[idx], minlength=5).double().numpy() / len(idx)
    np.testing.assert_allclose(freq, p, atol=0.005)


def test_class_balanced_sampler_frequencies():
    from ltkd.data import ClassSampler

    labels = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))
    s = ClassSampler.of("class-balanced", labels)
    s.num_samples = 100_000
    freq = torch.bincount(labels[s.epoch(torch.Generator().manual_seed(0))], minlength=5).double() / 100_000
    np.testing.assert_allclose(freq.numpy(), 0.2, atol=0.006)


def test_gcl_recipes_train_on_digits():
    from ltkd.experiment import run
    from ltkd.methods import get_method
    from ltkd.models import CosineHead

    assert GCL_HEAD == "cosine" and GCL_STAGE1.trainable == "all" and GCL_ANGULAR_STAGE1.config == "stage1"
    assert get_method("gcl").stages[0] is GCL_STAGE1
    from ltkd.profiles import get_profile

    q = get_profile("quick")  # tiny: 3 + 1 epochs of batch 32, no per-dataset overrides
    prof = q.replace(extra={}, stage1=q.stage1.replace(epochs=3, batch_size=32),
                     stage2=q.stage2.replace(epochs=1, batch_size=32))  # fmt: skip
    m, model = run("gcl", "digits", 20, profile=prof)
    assert isinstance(model.head, CosineHead)
    assert [s for s in m["stage_epochs"]] == ["stage1", "gcl-stage2"]
    assert m["overall"] > 0.2  # learns something in three epochs
    m2, _ = run("gcl-angular", "digits", 20, profile=prof.with_epochs(1))
    assert np.isfinite(m2["history"][-1]["loss"])
