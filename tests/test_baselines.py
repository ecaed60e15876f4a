"""Chapter 2's baselines: each loss against a hand computation on a tiny batch."""

import math

import pytest
import torch

from ltkd.methods.baselines import (
    ClassBalancedCE,
    LDAMLoss,
    LogitAdjustedCE,
    effective_number_class_weights,
)

COUNTS = [100, 10, 1]
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [0.2, -0.4, 0.9]])
Y = torch.tensor([0, 1, 2])


def _ce(z, y):  # hand-written per-sample cross-entropy
    return [math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(z, y)]


def test_effective_number_weights():
    w = effective_number_class_weights(COUNTS, beta=0.9)
    raw = [(1 - 0.9) / (1 - 0.9**n) for n in COUNTS]
    exp = [3 * r / sum(raw) for r in raw]
    assert w.tolist() == pytest.approx(exp, rel=1e-6)
    assert w.sum().item() == pytest.approx(3)
    assert w[2] > w[1] > w[0]


def test_class_balanced_ce_by_hand():
    w = effective_number_class_weights(COUNTS, beta=0.9).tolist()
    ce = _ce(LOGITS.tolist(), Y.tolist())
    exp = sum(w[t] * c for t, c in zip(Y.tolist(), ce)) / sum(w[t] for t in Y.tolist())
    assert ClassBalancedCE(COUNTS, beta=0.9)(LOGITS, Y).item() == pytest.approx(exp, rel=1e-5)


def test_logit_adjustment_by_hand():
    prior = [n / 111 for n in COUNTS]
    z = [[v + 1.0 * math.log(p) for v, p in zip(row, prior)] for row in LOGITS.tolist()]
    exp = sum(_ce(z, Y.tolist())) / 3
    assert LogitAdjustedCE(COUNTS, tau=1.0)(LOGITS, Y).item() == pytest.approx(exp, rel=1e-5)
    # τ = 0 is plain CE
    assert LogitAdjustedCE(COUNTS, tau=0.0)(LOGITS, Y).item() == pytest.approx(sum(_ce(LOGITS.tolist(), Y.tolist())) / 3, rel=1e-5)


def test_ldam_drw_by_hand():
    cos = LOGITS / 3  # cosines in [-1, 1]
    m = [n**-0.25 for n in COUNTS]
    m = [0.5 * v / max(m) for v in m]  # largest margin 0.5 (the rarest class)
    assert m[2] == pytest.approx(0.5)
    z = [[30 * (c - (m[t] if j == t else 0)) for j, c in enumerate(row)] for row, t in zip(cos.tolist(), Y.tolist())]
    ce = _ce(z, Y.tolist())
    loss = LDAMLoss(COUNTS, max_margin=0.5, scale=30, drw_at=0.8, beta=0.9999)
    loss.on_epoch(0, 10)
    assert not loss.reweight
    assert loss(cos, Y).item() == pytest.approx(sum(ce) / 3, rel=1e-5)
    loss.on_epoch(8, 10)  # deferred re-weighting from 80 % of the epochs
    assert loss.reweight
    w = effective_number_class_weights(COUNTS, 0.9999).tolist()
    exp = sum(w[t] * c for t, c in zip(Y.tolist(), ce)) / sum(w[t] for t in Y.tolist())
    assert loss(cos, Y).item() == pytest.approx(exp, rel=1e-5)


def test_on_epoch_reaches_the_loss_through_the_engine():
    from ltkd.data import load, long_tail
    from ltkd.methods import Context
    from ltkd.methods.baselines import ldam_drw_objective
    from ltkd.profiles import get_profile

    train, _ = load("digits")
    ctx = Context(train=long_tail(train, 10), profile=get_profile("quick"), device=torch.device("cpu"))
    obj = ldam_drw_objective(ctx)
    obj.on_epoch(5, 6)
    assert obj.criterion.reweight


@pytest.mark.parametrize("method", ["ce", "crt", "reweight", "la", "ldam-drw"])
def test_baseline_recipes_registered(method):
    from ltkd.methods import get_method

    r = get_method(method)
    assert r.stages and r.name == method
    if method == "ldam-drw":
        assert r.head == "cosine"


def test_la_trains_on_digits():
    from ltkd.experiment import run

    m, _ = run("la", "digits", 20, epochs=2)
    assert m["overall"] > 0.2 and m["method"] == "la"


def test_ldam_drw_and_ce_step_their_learning_rate_by_100_in_the_paper_schedule():
    """Cao et al.'s schedule (LDAM-DRW's cifar_train.py, for CE too): lr ×0.01 at epoch 160 and ×0.0001 at 180.
    The paper profile's ce (and cRT's stage 1, the same stage) follows it; GCL and H2T step ×0.1 as their authors;
    the kd-paper profile's CE keeps its ×0.1 steps; ``ce_schedule=profile`` gives the profile's own."""
    from ltkd.methods import Context, get_method, stage_config
    from ltkd.profiles import get_profile
    from ltkd.train import _scheduler

    def lr_at(method: str, epoch: int, profile: str = "paper", **options) -> float:
        prof = get_profile(profile)
        ctx = Context(train=None, profile=prof, device=torch.device("cpu"), options=options)
        cfg = stage_config(prof, get_method(method).stages[0], ctx)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
        sched = _scheduler(opt, cfg, steps_per_epoch=1)
        for _ in range(epoch):
            opt.step()
            sched.step()
        return opt.param_groups[0]["lr"]

    for method in ("ldam-drw", "ce", "crt"):
        assert lr_at(method, 150) == pytest.approx(0.1)
        assert lr_at(method, 170) == pytest.approx(1e-3), method
        assert lr_at(method, 190) == pytest.approx(1e-5), method
    for method in ("gcl", "h2t"):
        assert lr_at(method, 170) == pytest.approx(1e-2) and lr_at(method, 190) == pytest.approx(1e-3)
    assert lr_at("ce", 170, ce_schedule="profile") == pytest.approx(1e-2)
    assert lr_at("ce", 160, "kd-paper") == pytest.approx(5e-3) and lr_at("ce", 200, "kd-paper") == pytest.approx(5e-4)
    paper = get_profile("paper")  # without a run's context, from the profile alone
    assert stage_config(paper, get_method("ce").stages[0]).gamma == 0.01
    quick = get_profile("quick")  # a cosine schedule: nothing to change
    assert stage_config(quick, get_method("ldam-drw").stages[0]) == quick.stage1
    assert stage_config(quick, get_method("ce").stages[0]) == quick.stage1


def test_metrics_record_each_stage_s_training_config():
    from ltkd.experiment import run
    from ltkd.profiles import get_profile

    m, _ = run("ldam-drw", "digits", 20, epochs=1, profile="quick")
    cfg = m["stage_configs"]["stage1"]
    assert cfg["epochs"] == 1 and cfg["schedule"] == "cosine" and tuple(cfg["milestones"]) == ()
    assert cfg["lr"] == get_profile("quick").stage1.lr
