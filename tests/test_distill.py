"""Distillers (chapter 4): KD and DKD against hand computations, the frozen teacher, warm-up, the engine
hook for indices, ``ltkd distill``."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ltkd.cli import main
from ltkd.data import load
from ltkd.methods.distill import DKD, KD, dkd_loss, kd_loss, load_teacher, soften
from ltkd.models import build_model
from ltkd.profiles import TrainConfig, get_profile
from ltkd.train import fit, save_model

ZS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.5, 3.0]])
ZT = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5]])
Y = torch.tensor([0, 2])


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _softmax(z, T):
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_hand_computation():
    T = 2.0
    got = kd_loss(ZS, soften(ZT, T), T)
    for i in range(2):
        want = T * T * _kl(_softmax(ZT[i].tolist(), T), _softmax(ZS[i].tolist(), T))
        assert got[i].item() == pytest.approx(want, rel=1e-5)


def test_dkd_loss_matches_hand_computation():
    T, a, b = 2.0, 1.0, 8.0
    tckd, nckd = dkd_loss(ZS, soften(ZT, T), Y, a, b, T)
    for i in range(2):
        y = int(Y[i])
        pt, ps = _softmax(ZT[i].tolist(), T), _softmax(ZS[i].tolist(), T)
        want_t = T * T * _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        nt = [pt[j] / (1 - pt[y]) for j in range(3) if j != y]
        ns = [ps[j] / (1 - ps[y]) for j in range(3) if j != y]
        want_n = T * T * _kl(nt, ns)
        assert tckd[i].item() == pytest.approx(a * want_t, rel=1e-4)
        assert nckd[i].item() == pytest.approx(b * want_n, rel=1e-4)


def test_dkd_with_alpha_one_and_beta_one_minus_pt_is_kd():
    """Zhao et al.'s identity: KD = TCKD + (1 − p^t_y) · NCKD."""
    T = 3.0
    pt = soften(ZT, T)
    tckd, nckd = dkd_loss(ZS, pt, Y, 1.0, 1.0, T)
    w = 1 - pt[torch.arange(2), Y]
    torch.testing.assert_close(tckd + w * nckd, kd_loss(ZS, pt, T), rtol=1e-4, atol=1e-5)


class _Linear(torch.nn.Module):
    def __init__(self, d=4, c=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(d, c)
        self.bn = torch.nn.BatchNorm1d(d)

    def forward(self, x):
        return self.lin(self.bn(x))


def test_kd_objective_value_and_no_gradient_to_teacher():
    teacher, student = _Linear(seed=1), _Linear(seed=2)
    obj = KD(teacher, T=4.0, ce_weight=0.1, kd_weight=0.9).train()
    x = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 0, 1])
    logits, losses = obj(student, x, y)
    assert set(losses) == {"ce", "kd"}
    with torch.no_grad():
        zt = teacher(x)
    assert losses["ce"].item() == pytest.approx(0.1 * F.cross_entropy(logits, y).item(), rel=1e-5)
    assert losses["kd"].item() == pytest.approx(0.9 * kd_loss(logits, soften(zt, 4.0), 4.0).mean().item(), rel=1e-5)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    assert student.lin.weight.grad is not None and student.lin.weight.grad.abs().sum() > 0


def test_teacher_stays_in_eval_mode_and_unchanged_through_training(digits):
    train, _ = digits
    teacher = build_model("cnn6x0.5", 10, 1).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    obj = DKD(teacher, warmup=2)
    obj.train()
    assert obj.training and not teacher.training
    seen = []
    orig = obj.forward

    def spy(model, x, y, idx=None):
        seen.append((teacher.training, idx is not None))
        return orig(model, x, y, idx)

    obj.forward = spy
    student = build_model("cnn6x0.5", 10, 1)
    fit(student, obj, train.subset(range(64)), TrainConfig(epochs=2, batch_size=32, lr=0.05), progress=False)
    assert seen and all(not t and has_idx for t, has_idx in seen)  # eval mode; the engine passed indices
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running stats did not move
    assert obj.warm == 1.0


def test_dkd_warmup_is_linear():
    obj = DKD(_Linear(), warmup=4)
    obj.on_epoch(0, 10)
    assert obj.warm == pytest.approx(0.25)
    obj.on_epoch(1, 10)
    assert obj.warm == pytest.approx(0.5)
    obj.on_epoch(7, 10)
    assert obj.warm == 1.0
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    obj.on_epoch(0, 10)
    _, a = obj(_Linear(seed=3), x, y)
    obj.on_epoch(3, 10)
    _, b = obj(_Linear(seed=3), x, y)
    assert a["kd"].item() == pytest.approx(0.25 * b["kd"].item(), rel=1e-5)


def test_selection_mask_gives_ce_only_to_unselected():
    teacher, student = _Linear(seed=1), _Linear(seed=2)
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    obj = KD(teacher, selected=torch.tensor([True, False, True, False, True, True])).train()
    idx = torch.tensor([0, 1, 2, 3])
    logits, losses = obj(student, x, y, idx)
    ce = F.cross_entropy(logits, y, reduction="none")
    m = torch.tensor([1.0, 0, 1, 0])
    assert losses["ce"].item() == pytest.approx(((0.1 * m + (1 - m)) * ce).mean().item(), rel=1e-5)
    per = kd_loss(logits, soften(teacher(x), 4.0), 4.0)
    assert losses["kd"].item() == pytest.approx(0.9 * (per * m).mean().item(), rel=1e-5)


def test_load_teacher_round_trip_and_errors(tmp_path):
    net = build_model("cnn6x0.5", 10, 1)
    save_model(net, tmp_path / "t.pt", arch="cnn6x0.5", num_classes=10, in_channels=1, head="LinearHead")
    t = load_teacher(tmp_path / "t.pt", 10, 1)
    assert not t.training
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(t(x), net.eval()(x))
    from ltkd.errors import LtkdError

    with pytest.raises(LtkdError, match="classes"):
        load_teacher(tmp_path / "t.pt", 5, 1)


def test_a_teacher_trained_on_other_image_sizes_is_refused(tmp_path, capsys):
    """`ltkd train` records the image size; a digits (8×8) teacher cannot distil into a Fashion-MNIST student."""
    from ltkd.errors import LtkdError

    assert main(["train", "--model", "cnn6x0.5", "--epochs", "1", "--out", str(tmp_path / "t")]) == 0  # digits
    ck = torch.load(tmp_path / "t" / "model.pt", weights_only=True)
    assert ck["image_size"] == [8, 8] and ck["dataset"] == "digits"
    with pytest.raises(LtkdError, match=r"trained on 8×8 images \(digits\), the data are 28×28"):
        load_teacher(tmp_path / "t" / "model.pt", 10, 1, image_size=(28, 28))
    assert load_teacher(tmp_path / "t" / "model.pt", 10, 1, image_size=(8, 8)) is not None


def test_cli_distill_writes_metrics_with_teacher(tmp_path, capsys):
    train, _ = load("digits")
    teacher = build_model("cnn6x0.5", 10, 1)
    save_model(teacher, tmp_path / "t.pt", arch="cnn6x0.5", num_classes=10, in_channels=1, head="LinearHead")
    out = tmp_path / "run"
    rc = main(["distill", "--teacher", str(tmp_path / "t.pt"), "--student", "cnn6x0.5", "--method", "kd-lr-ds",
               "--dataset", "digits", "--epochs", "1", "--out", str(out), "--fraction", "0.5",
               "--eval-every", "1"])  # fmt: skip
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "kd-lr-ds" and m["model"] == "cnn6x0.5"
    assert m["history"][-1]["test_acc"] == m["overall"] and m["best_evaluated"]["epoch"] == 1  # --eval-every
    assert 0 <= m["overall"] <= 1 and "many" in m and "history" in m
    assert m["teacher"]["model"] == "cnn6x0.5" and 0 <= m["teacher"]["train_error"] <= 1
    assert m["options"]["fraction"] == 0.5
    assert (out / "model.pt").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--teacher", "nonexistent-model"], "neither a checkpoint"),
        (["--teacher", "cnn6", "--student", "vgg"], "unknown student"),
        (["--teacher", "cnn6", "--eta", "1.5"], "--eta"),
    ],
)
def test_cli_distill_errors(args, needle, capsys):
    assert main(["distill", *args]) == 2
    assert needle in capsys.readouterr().err


def test_train_without_teacher_explains(tmp_path, capsys):
    assert main(["train", "--method", "kd", "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "needs a teacher" in capsys.readouterr().err


def test_student_checkpoint_names_its_teacher(tmp_path):
    from ltkd.errors import LtkdError
    from ltkd.experiment import run_stages
    from ltkd.methods import get_method
    from ltkd.profiles import get_profile

    train, _ = load("digits")
    prof = get_profile("quick").with_epochs(1)
    torch.manual_seed(0)
    a, b = build_model("cnn6x0.5", 10, 1), build_model("cnn6x0.5", 10, 1)
    a_again = build_model("cnn6x0.5", 10, 1)
    a_again.load_state_dict(a.state_dict())  # another object, the same weights
    kw = dict(device="cpu", checkpoint_dir=tmp_path, progress=False)
    first = run_stages(get_method("kd"), build_model("cnn6x0.5", 10, 1), train, prof, options={"teacher": a}, **kw)
    assert not first[0].get("resumed") and (tmp_path / "kd.ckpt").is_file()
    with pytest.raises(LtkdError, match=r"different run(.|\n)*options"):
        run_stages(get_method("kd"), build_model("cnn6x0.5", 10, 1), train, prof, options={"teacher": b}, **kw)
    again = run_stages(get_method("kd"), build_model("cnn6x0.5", 10, 1), train, prof, options={"teacher": a_again},
                       **kw)  # fmt: skip
    assert again == first  # resumed from the finished checkpoint: its log, nothing trained again


def test_cli_distill_reuses_the_teacher_it_finished(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--teacher", "cnn6x0.5", "--student", "cnn6x0.5", "--dataset", "digits", "--imbalance", "10",
            "--epochs", "1", "--teacher-epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    t_file = out / "teacher" / "model.pt"
    stamp, first = t_file.stat().st_mtime_ns, json.loads((out / "metrics.json").read_text())["teacher"]
    assert first["source"].startswith("trained here:")
    capsys.readouterr()
    assert main(args) == 2  # a finished run is not replaced unasked
    assert main([*args, "--overwrite"]) == 0  # asked: the student again, under the teacher it finished
    second = json.loads((out / "metrics.json").read_text())["teacher"]
    assert "reused" in second["source"] and t_file.stat().st_mtime_ns == stamp
    assert second["overall"] == first["overall"] and second["train_error"] == first["train_error"]
    assert main([*args[:-4], "--teacher-epochs", "2", "--out", str(out), "--overwrite"]) == 0  # another teacher
    third = json.loads((out / "metrics.json").read_text())["teacher"]
    assert third["source"].startswith("trained here:") and t_file.stat().st_mtime_ns != stamp


def test_cli_distill_kd_paper_profile_trains_both_with_the_kd_recipe(tmp_path):
    """--profile kd-paper: teacher and student on the KD papers' recipe, the student resnet8x4 unless named."""
    out = tmp_path / "run"
    assert main(["distill", "--teacher", "resnet8", "--profile", "kd-paper", "--method", "dkd", "--dataset", "digits",
                 "--epochs", "2", "--teacher-epochs", "1", "--out", str(out)]) == 0  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    t = json.loads((out / "teacher" / "metrics.json").read_text())
    assert m["model"] == "resnet8x4" and m["profile"] == "kd-paper" and t["model"] == "resnet8"
    for cfg in (m["stage_configs"]["dkd"], t["stage_configs"]["stage1"]):
        assert cfg["batch_size"] == 64 and cfg["lr"] == 0.05 and cfg["weight_decay"] == 5e-4
    assert m["stage_configs"]["dkd"]["milestones"] == [1, 1, 1]  # 150/180/210 of 240, moved in proportion to 2


def test_distill_trains_a_named_teacher_longer_than_its_student_under_quick(tmp_path, monkeypatch):
    """quick: the teacher gets teacher_epoch_factor × quick's own 6 stage-1 epochs (15 on Fashion-MNIST), but not
    × a tiny set's override: on digits (30 epochs at batch 32) it trains the student's 30 — multiplied, 75 epochs of
    a resnet32x4 teacher took about 10 minutes; kd-paper: its own 240."""
    import ltkd.experiment as E

    seen = []

    class Stop(Exception):
        pass

    def spy(teacher, data, prof, epochs, *a, **k):
        seen.append(epochs)
        raise Stop

    monkeypatch.setattr(E, "_teacher_for", spy)
    for profile, want in (("quick", 30), ("kd-paper", None)):
        with pytest.raises(Stop):
            E.distill(teacher="cnn6", dataset="digits", profile=profile, out=tmp_path / profile)
        assert seen[-1] == want
    with pytest.raises(Stop):
        E.distill(teacher="cnn6", dataset="digits", teacher_epochs=3, out=tmp_path / "given")
    assert seen[-1] == 3
    quick = get_profile("quick")
    assert quick.for_dataset("digits").stage1.epochs == 30 and quick.teacher_epochs("fashion-mnist") == 15


def test_dkd_beta_is_the_authors_for_the_teacher_student_pair():
    """mdistiller's CIFAR-100 configs: β = 2 for resnet56 -> resnet20, 8 (the default) for resnet32x4 -> resnet8x4,
    6 for the VGG / WRN pairs; a pair they do not list gets 8, named as such; the user's β wins."""
    from ltkd.methods import Context, get_method
    from ltkd.methods.distill import DKD_BETA, dkd_beta
    from ltkd.profiles import get_profile

    assert dkd_beta("resnet56", "resnet20") == (2.0, "resnet56 -> resnet20")
    assert dkd_beta("resnet32x4", "resnet8x4") == (8.0, "resnet32x4 -> resnet8x4")
    assert dkd_beta("wrn_40_2", "wrn_16_2")[0] == 6.0 and DKD_BETA[("resnet110", "resnet32b")] == 2.0
    assert dkd_beta("cnn6", "cnn6x0.5") == (8.0, "cnn6 -> cnn6x0.5 (other pair: default)")
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])

    def beta_in_a_run(teacher: str, student: str, **options) -> float:
        torch.manual_seed(0)
        ctx = Context(train=None, profile=get_profile("quick"), device=torch.device("cpu"),
                      options={"teacher": build_model(teacher, 4, 3), **options})  # fmt: skip
        obj = get_method("dkd").stages[0].objective(ctx)
        obj.train()
        obj(build_model(student, 4, 3), x, y, torch.arange(4))
        return obj.beta

    assert beta_in_a_run("resnet56", "resnet20") == 2.0
    assert beta_in_a_run("resnet32x4", "resnet8x4") == 8.0
    assert beta_in_a_run("cnn6", "cnn6x0.5") == 8.0
    assert beta_in_a_run("resnet56", "resnet20", beta=1.0) == 1.0

