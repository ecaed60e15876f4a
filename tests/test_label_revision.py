"""Label revision and data selection (chapter 5)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ltkd.errors import LtkdError
from ltkd.methods.distill import KD, soften
from ltkd.methods.label_revision import (
    LabelRevision,
    mix_label,
    revise,
    revision_beta,
    select_fraction,
    selection_mask,
    selection_scores,
)
from ltkd.models import build_model


@settings(max_examples=200, deadline=None)
@given(
    logits=st.lists(st.lists(st.floats(-30, 30), min_size=2, max_size=12), min_size=1, max_size=8).filter(
        lambda rows: len({len(r) for r in rows}) == 1
    ),
    eta=st.floats(0.01, 0.99),
    T=st.floats(0.5, 8.0),
    data=st.data(),
)
def test_revised_argmax_is_the_label_and_rows_sum_to_one(logits, eta, T, data):
    z = torch.tensor(logits, dtype=torch.float32)
    y = torch.tensor([data.draw(st.integers(0, z.shape[1] - 1)) for _ in range(len(z))])
    p = soften(z, T)
    r = revise(p, y, eta)
    assert torch.equal(r.argmax(1), y)
    # strictly: the label beats every other class by at least 1 − η (up to rounding)
    other = r.scatter(1, y[:, None], -1.0).max(1).values
    assert torch.all(r.gather(1, y[:, None]).squeeze(1) - other >= (1 - eta) - 1e-5)
    torch.testing.assert_close(r.sum(1), torch.ones(len(z)), atol=1e-5, rtol=0)
    assert torch.all(r >= 0)


def test_beta_is_eta_where_teacher_right_and_smaller_where_wrong():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 0, 1])
    b = revision_beta(p, y, 0.8)
    assert b[0].item() == pytest.approx(0.8)  # right
    assert b[1].item() == pytest.approx(0.8 / (0.8 - 0.1 + 1))  # confidently wrong
    assert b[2].item() == pytest.approx(0.8)  # tie counts as right
    r = revise(p, y, 0.8)
    want1 = [b[1] * 0.1 + (1 - b[1]), b[1] * 0.8, b[1] * 0.1]
    torch.testing.assert_close(r[1], torch.stack([torch.as_tensor(v) for v in want1]).float())
    with pytest.raises(LtkdError):
        revise(p, y, 1.0)
    with pytest.raises(LtkdError):
        LabelRevision(0.0)


@pytest.mark.parametrize("n, frac", [(10, 0.5), (7, 0.33), (100, 0.9), (5, 0.0), (5, 1.0), (3, 0.5)])
def test_selection_keeps_exactly_the_fraction(n, frac):
    scores = torch.randn(n)
    m = select_fraction(scores, frac)
    k = math.floor(frac * n + 0.5)
    assert m.dtype == torch.bool and len(m) == n and int(m.sum()) == k
    if 0 < k < n:
        assert scores[m].min() >= scores[~m].max()  # the highest scores are kept


def test_selection_ties_broken_by_index():
    m = select_fraction(torch.zeros(6), 0.5)
    assert m.tolist() == [True, True, True, False, False, False]
    with pytest.raises(LtkdError):
        select_fraction(torch.zeros(3), 1.5)


def test_selection_scores_are_teacher_margins(digits):
    train, _ = digits
    data = train.subset(range(50))
    teacher = build_model("cnn6x0.5", 10, 1).eval()
    s = selection_scores(teacher, data)
    from ltkd.train import predict

    p = torch.softmax(predict(teacher, data), 1)
    y = data.labels
    py = p[torch.arange(len(y)), y]
    other = p.clone()
    other[torch.arange(len(y)), y] = -1
    torch.testing.assert_close(s, py - other.max(1).values, atol=1e-5, rtol=0)
    assert torch.all((s < 0) == (p.argmax(1) != y) | (s == 0))
    m = selection_mask(teacher, data, 0.4)
    assert int(m.sum()) == 20


def test_kd_with_revision_uses_revised_targets():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    obj = KD(teacher, T=2.0, revision=LabelRevision(0.8))
    targets = obj.teacher_targets(x, y)
    torch.testing.assert_close(targets, revise(soften(teacher(x).detach(), 2.0), y, 0.8))
    assert torch.equal(targets.argmax(1), y)


def test_the_control_mixes_the_label_in_at_eta_everywhere():
    """kd-mix, the control for label revision: the same targets where the teacher is right, not where it is wrong."""
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    y = torch.tensor([0, 0])
    mixed = LabelRevision(0.8, constant=True)(p, y)
    torch.testing.assert_close(mixed, 0.8 * p + 0.2 * torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
    torch.testing.assert_close(mixed[0], revise(p, y, 0.8)[0])  # teacher right: β = η either way
    assert mixed[1].argmax() == 1 and revise(p, y, 0.8)[1].argmax() == 0  # wrong: only revision rectifies
    torch.testing.assert_close(mix_label(p, y, torch.tensor([1.0, 0.0])), torch.tensor([[0.7, 0.2, 0.1], [1.0, 0, 0]]))
    assert "constant=True" in repr(LabelRevision(0.5, constant=True))
    with pytest.raises(LtkdError):
        LabelRevision(1.0, constant=True)


def test_kd_mix_recipe_trains_with_the_constant_mix(digits):
    from ltkd.experiment import run

    teacher = build_model("cnn6x0.5", 10, 1)
    m, _ = run("kd-mix", data=digits, epochs=1, device="cpu", options={"teacher": teacher, "eta": 0.6})
    assert m["method"] == "kd-mix" and 0 <= m["overall"] <= 1 and m["options"]["eta"] == 0.6


def _split_batch():
    # teacher logits: samples 0, 1, 3 right (argmax = y), sample 2 and 4 wrong
    zt = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
    zs = torch.tensor([[1.0, 0.5, -1.0], [0.2, 0.1, 0.0], [0.0, 1.0, 0.5], [1.0, -1.0, 0.0], [0.5, 0.5, 0.5]],
                      requires_grad=True)  # fmt: skip
    y = torch.tensor([0, 1, 2, 2, 0])
    return zs, zt, y


def test_split_loss_equals_a_hand_computation():
    """The paper's loss (as the public re-implementation): CE + λ1·logit MSE on the teacher's right samples,
    λ2·MSE(softmax, revised label) on its wrong ones; unselected samples get CE only; each a mean over its subset."""
    from ltkd.methods.label_revision import RevisionSplit, logit_mse

    zs, zt, y = _split_batch()
    mask = torch.tensor([True, True, True, False, True])  # sample 3 (right) is not selected
    split = RevisionSplit(eta=0.8, lambda1=4.0, lambda2=1.0, right_term=logit_mse)
    obj = KD(torch.nn.Identity(), split=split)
    out = split(obj, zs, zt, y, mask)
    # by hand: G = {0, 1, 3} (right or unselected), R = {0, 1}, W = {2, 4}
    ce = sum(-torch.log_softmax(zs[i], 0)[y[i]] for i in (0, 1, 3)) / 3
    mse1 = sum(((zs[i] - zt[i]) ** 2).sum() for i in (0, 1)) / (2 * 3)
    mse2 = 0.0
    for i in (2, 4):
        pt = torch.softmax(zt[i], 0)
        beta = 0.8 / (pt.max() - pt[y[i]] + 1)
        target = beta * pt + (1 - beta) * torch.nn.functional.one_hot(y[i], 3)
        mse2 = mse2 + ((torch.softmax(zs[i], 0) - target) ** 2).sum()
    mse2 = mse2 / (2 * 3)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["kd"], 4.0 * mse1)
    torch.testing.assert_close(out["lr"], 1.0 * mse2)
    sum(out.values()).backward()
    assert torch.isfinite(zs.grad).all()


def test_split_leaves_the_targets_of_samples_the_teacher_gets_right():
    """Where the teacher is right the paper keeps its prediction: η changes nothing there (all-sample revision,
    kd-lr-all, moves those targets too)."""
    from ltkd.methods.label_revision import RevisionSplit, logit_mse

    zs, zt, y = _split_batch()
    right = torch.tensor([0, 1, 3])
    obj = KD(torch.nn.Identity())
    a = RevisionSplit(0.3, right_term=logit_mse)(obj, zs[right], zt[right], y[right])
    b = RevisionSplit(0.9, right_term=logit_mse)(obj, zs[right], zt[right], y[right])
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert float(a["lr"].detach()) == 0.0
    p = soften(zt[right], 4.0)
    assert not torch.allclose(LabelRevision(0.3)(p, y[right]), LabelRevision(0.9)(p, y[right]))


def test_kd_lr_recipes_use_the_split_and_kd_lr_all_the_former_revision(digits):
    from ltkd.experiment import run
    from ltkd.methods import Context, get_method
    from ltkd.methods.label_revision import RevisionSplit
    from ltkd.profiles import get_profile

    teacher = build_model("cnn6x0.5", 10, 1)
    ctx = Context(train=digits[0], profile=get_profile("quick"), device=torch.device("cpu"),
                  options={"teacher": teacher, "lr_lambda2": 2.0})  # fmt: skip
    for name, l1 in (("kd-lr", 4.0), ("kd-lr-ds", 4.0), ("dkd-lr-ds", 1.0)):
        obj = get_method(name).stages[0].objective(ctx)
        assert isinstance(obj.split, RevisionSplit) and obj.revision is None, name
        assert (obj.split.lambda1, obj.split.lambda2, obj.split.eta) == (l1, 2.0, 0.8), name
        assert (obj.selected is not None) == name.endswith("-ds")
    old = get_method("kd-lr-all").stages[0].objective(ctx)
    assert old.split is None and isinstance(old.revision, LabelRevision) and not old.revision.constant
    m, _ = run("kd-lr", data=digits, epochs=1, device="cpu", options={"teacher": teacher})
    assert 0 <= m["overall"] <= 1 and {"ce", "kd", "lr"} <= set(m["history"][-1])
    with pytest.raises(LtkdError, match="ds_criterion"):
        get_method("kd-lr-ds").stages[0].objective(Context(train=digits[0], profile=get_profile("quick"),
                                                           device=torch.device("cpu"),
                                                           options={"teacher": teacher, "ds_criterion": "x"}))  # fmt: skip
