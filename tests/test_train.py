import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from ltkd.data import long_tail
from ltkd.errors import LtkdError
from ltkd.experiment import run
from ltkd.models import build_model
from ltkd.profiles import TrainConfig, get_profile
from ltkd.train import LossObjective, fit, load_model_state, predict, progress_mode


def test_same_seed_same_metrics_on_cpu(digits):
    data = (long_tail(digits[0], 10), digits[1])
    a, _ = run("crt", data=data, seed=3, epochs=3, device="cpu")
    b, _ = run("crt", data=data, seed=3, epochs=3, device="cpu")
    c, _ = run("crt", data=data, seed=4, epochs=3, device="cpu")
    keys = ["overall", "balanced", "per_class", "head", "tail"]
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert [h["loss"] for h in a["history"]] != [h["loss"] for h in c["history"]]


def test_training_learns_digits(digits):
    m, _ = run("ce", data=(long_tail(digits[0], 1), digits[1]), seed=0, epochs=8, device="cpu")
    assert m["overall"] > 0.85


def test_crt_trains_only_the_head(digits):
    train = long_tail(digits[0], 10)
    model = build_model("cnn6", 10, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, LossObjective(F.cross_entropy), train, TrainConfig(epochs=1, batch_size=32),
        sampler="class-balanced", trainable="head", device="cpu")
    after = model.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == k.startswith("head."), k  # BN running stats frozen too
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_resume_after_interruption_gives_the_same_model(digits, tmp_path, capsys):
    train = long_tail(digits[0], 10)
    cfg = TrainConfig(epochs=3, batch_size=32)
    torch.manual_seed(0)
    ref = build_model("cnn6", 10, 1)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    fit(ref, LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1)

    class Stop(Exception):
        pass

    def stop_after_2(epoch, row):
        row["test_acc"] = 0.5  # what a callback adds to the row is saved with it (a test-set curve survives a resume)
        if epoch == 2:
            raise Stop

    m = build_model("cnn6", 10, 1)
    m.load_state_dict(init)
    ck = tmp_path / "run.ckpt"
    with pytest.raises(Stop):
        fit(m, LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1, checkpoint=ck, on_epoch_end=stop_after_2)
    m2 = build_model("cnn6", 10, 1)
    capsys.readouterr()
    hist = fit(m2, LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1, checkpoint=ck, progress="log")
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h.get("resumed", False) for h in hist] == [False, True, False]  # the first epoch after the resume
    assert [h.get("test_acc") for h in hist] == [0.5, None, None]
    lines = capsys.readouterr().err.splitlines()  # progress="log": one line per epoch run here, for log files
    assert lines[0] == "train: resuming at epoch 2/3"  # stopped inside epoch 2, before its checkpoint
    assert len(lines) == 3 and lines[1].startswith("train: epoch 2/3  loss ") and " s/epoch, " in lines[1]
    assert lines[2].startswith("train: epoch 3/3  loss ") and lines[2].endswith("0m00s left")
    x = train.images[:16]
    torch.testing.assert_close(predict(m2, train.subset(range(16))), predict(ref, train.subset(range(16))))
    assert x.shape[0] == 16


class _Stop(Exception):
    pass


def _interrupted_then_resumed(make_objective, train, cfg, ck, **kw):
    """Train ``cfg`` once uninterrupted and once stopped in epoch 2 (after epoch 1's checkpoint) and resumed (fresh
    model and objective, as a new process would build them); return both models."""
    torch.manual_seed(0)
    init = build_model("cnn6", 10, 1).state_dict()
    models = []
    for stop in (None, 2):
        m = build_model("cnn6", 10, 1)
        m.load_state_dict(init)
        if stop is not None:

            def halt(epoch, row, stop=stop):
                if epoch == stop:
                    raise _Stop

            with pytest.raises(_Stop):
                fit(m, make_objective(), train, cfg, device="cpu", seed=3, checkpoint=ck, on_epoch_end=halt, **kw)
            assert torch.load(ck, weights_only=True)["epoch"] == 1
            m = build_model("cnn6", 10, 1)
            m.load_state_dict(init)  # a later process: nothing carried over but the checkpoint
        fit(m, make_objective(), train, cfg, device="cpu", seed=3, checkpoint=ck if stop else None, **kw)
        models.append(m)
    return models


def test_resume_continues_every_random_stream(digits, tmp_path):
    """Mixup draws λ from NumPy and H2T draws donors and channels from its own generators: a resumed run
    continues those streams where the checkpoint left them (before, NumPy restarted from the seed)."""
    from ltkd.methods.h2t import H2T

    train = long_tail(digits[0], 10)
    cfg = TrainConfig(epochs=3, batch_size=32, mixup=1.0)
    ref, resumed = _interrupted_then_resumed(lambda: LossObjective(F.cross_entropy, mixup=1.0), train, cfg,
                                             tmp_path / "mixup.ckpt")  # fmt: skip
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, msg=k)
    cfg2 = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    ref, resumed = _interrupted_then_resumed(lambda: H2T(train, 0.5, seed=1), train, cfg2, tmp_path / "h2t.ckpt",
                                             trainable="head", sampler="class-balanced")  # fmt: skip
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, msg=k)


def test_a_checkpoint_of_another_run_is_not_resumed(digits, tmp_path):
    train = long_tail(digits[0], 10)
    cfg = TrainConfig(epochs=3, batch_size=32)
    ck = tmp_path / "stage1.ckpt"

    def halt(epoch, row):
        if epoch == 2:  # inside epoch 2, after epoch 1's checkpoint
            raise _Stop

    with pytest.raises(_Stop):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1,
            checkpoint=ck, desc="ce:stage1", on_epoch_end=halt)  # fmt: skip
    assert torch.load(ck, weights_only=True)["epoch"] == 1
    others = {
        "run": dict(desc="la:stage1"),  # another method's stage of the same name
        "seed": dict(seed=2),
        "config.epochs": dict(config=cfg.replace(epochs=2)),
        "data": dict(data=long_tail(digits[0], 20)),
        "model": dict(model=build_model("resnet8", 10, 1)),
        "options": dict(identity={"options": {"tau": 2.0}}),
        # the same labels, other pixels (another image folder with the same classes and counts): the content digest
        "data_content": dict(data=dataclasses.replace(train, images=train.images.flip(3))),
    }
    for field, change in others.items():
        kw = dict(model=build_model("cnn6", 10, 1), data=train, config=cfg, seed=1, desc="ce:stage1") | change
        with pytest.raises(LtkdError, match=rf"^checkpoint \S+ was written by a different run.*: {field}[.:]"):
            fit(kw.pop("model"), LossObjective(F.cross_entropy), kw.pop("data"), kw.pop("config"), device="cpu",
                checkpoint=ck, **kw)  # fmt: skip
    # the same run resumes, on another memory format too
    hist = fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1,
               checkpoint=ck, desc="ce:stage1", channels_last=False)  # fmt: skip
    assert [h.get("resumed", False) for h in hist] == [False, True, False]
    # a checkpoint from before fingerprints were recorded cannot show whose it is: refused, unless the user vouches
    old = torch.load(ck, weights_only=True)
    del old["fingerprint"], old["numpy_rng"], old["digest"]  # none of these was written then
    old["epoch"], old["history_rows"] = 1, old["history_rows"][:1]
    torch.save(old, ck)
    with pytest.raises(LtkdError, match="does not record the run that wrote it.*--resume-unfingerprinted"):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=5,
            checkpoint=ck)  # fmt: skip
    hist = fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=5,
               checkpoint=ck, resume_unfingerprinted=True)  # fmt: skip
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[1]["resumed"]
    # one written by an older ltkd (a fingerprint without the data's content): the same, and with the flag the rest
    # of its fingerprint must still match
    with pytest.raises(_Stop):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1,
            checkpoint=tmp_path / "older.ckpt", desc="ce:stage1", on_epoch_end=halt)  # fmt: skip
    older = torch.load(tmp_path / "older.ckpt", weights_only=True)
    del older["fingerprint"]["data_content"], older["digest"]
    torch.save(older, tmp_path / "older.ckpt")
    with pytest.raises(LtkdError, match="does not record the data it trained on"):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1,
            checkpoint=tmp_path / "older.ckpt", desc="ce:stage1")  # fmt: skip
    with pytest.raises(LtkdError, match=r"written by a different run.*: seed: 1 in the checkpoint, 2 now"):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=2,
            checkpoint=tmp_path / "older.ckpt", desc="ce:stage1", resume_unfingerprinted=True)  # fmt: skip
    hist = fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", seed=1,
               checkpoint=tmp_path / "older.ckpt", desc="ce:stage1", resume_unfingerprinted=True)  # fmt: skip
    assert [h.get("resumed", False) for h in hist] == [False, True, False]
    ck.write_bytes(b"truncated")
    with pytest.raises(LtkdError, match="cannot read"):
        fit(build_model("cnn6", 10, 1), LossObjective(F.cross_entropy), train, cfg, device="cpu", checkpoint=ck)


def test_test_set_curve_does_not_change_the_run(digits):
    data = (long_tail(digits[0], 10), digits[1])
    plain, _ = run("crt", data=data, seed=2, epochs=5, device="cpu")
    m, _ = run("crt", data=data, seed=2, epochs=5, device="cpu", eval_every=2)
    assert [h["loss"] for h in m["history"]] == [h["loss"] for h in plain["history"]]  # same training
    assert m["per_class"] == plain["per_class"] and "test_acc" not in plain["history"][0]
    assert plain["best_evaluated"] is None and m["eval_every"] == 2
    n2 = m["stage_epochs"]["crt"]
    tested = [(h["stage"], h["epoch"]) for h in m["history"] if "test_acc" in h]
    assert tested == [("stage1", 2), ("stage1", 4), ("stage1", 5)] + [("crt", e) for e in range(2, n2 + 1, 2)] + (
        [("crt", n2)] if n2 % 2 else [])  # every 2nd epoch and each stage's last
    last = m["history"][-1]
    assert last["test_acc"] == m["overall"] and last["test_tail"] == m["tail"]  # the last evaluation is the report
    s1_end = next(h for h in m["history"] if h["stage"] == "stage1" and h["epoch"] == 5)
    assert s1_end["test_acc"] != last["test_acc"]  # stage 2 changed the model between the two evaluations
    best = m["best_evaluated"]
    assert best["overall"] == max(h["test_acc"] for h in m["history"] if "test_acc" in h)
    assert best["evaluated_epochs"] == len(tested) and best["overall"] >= m["overall"]
    with pytest.raises(LtkdError, match="eval_every must be"):
        run("ce", data=data, epochs=1, device="cpu", eval_every=-1)


def test_checkpoint_roundtrip_and_bad_checkpoint(tmp_path, digits):
    from ltkd.train import save_model

    m = build_model("cnn6", 10, 1)
    save_model(m, tmp_path / "m.pt", arch="cnn6")
    ck = load_model_state(tmp_path / "m.pt")
    m2 = build_model("cnn6", 10, 1)
    m2.load_state_dict(ck["state_dict"])
    assert ck["arch"] == "cnn6"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LtkdError, match=r"cannot read \S+junk.pt: not a PyTorch weights file"):
        load_model_state(tmp_path / "junk.pt")
    with pytest.raises(LtkdError, match="not found"):
        load_model_state(tmp_path / "missing.pt")


def test_metrics_json_is_complete(tmp_path):
    m, _ = run("ce", epochs=2, out=tmp_path, device="cpu")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for k in ["overall", "balanced", "many", "medium", "few", "head", "middle", "tail", "per_class",
              "train_counts", "dataset", "imbalance", "method", "model", "seed", "profile", "epochs",
              "params", "flops", "device", "seconds"]:  # fmt: skip
        assert k in saved, k
    assert saved["dataset"] == "digits" and saved["epochs"] == 2 and len(saved["per_class"]) == 10
    assert (tmp_path / "model.pt").is_file()
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


def test_profiles():
    q, p = get_profile("quick"), get_profile("paper")
    assert p.model == "resnet32" and p.stage1.epochs == 200 and p.stage1.milestones == (160, 180)
    assert p.stage1.batch_size == 128 and p.stage1.weight_decay == 2e-4 and p.stage1.warmup_epochs == 5
    assert q.for_dataset("digits").stage1.epochs > q.stage1.epochs
    with pytest.raises(LtkdError):
        get_profile("huge")
    # fewer epochs keep the step schedule's shape: a 100-epoch paper run still lowers its learning rate
    assert p.with_epochs(100).stage1.milestones == (80, 90) and p.with_epochs(100).stage1.warmup_epochs == 5
    assert p.with_epochs(200).stage1 == p.stage1 and p.with_epochs(400).stage1.milestones == (320, 360)
    short = p.with_epochs(3).stage1
    assert short.warmup_epochs < 3 and all(1 <= m < 3 for m in short.milestones)
    assert q.with_epochs(30).stage1 == q.stage1.replace(epochs=30)  # cosine: nothing else to move
    # the KD papers' CIFAR-100 recipe (../shared/METHODS.md): 240 epochs, batch 64, lr 0.05, x0.1 at 150/180/210
    k = get_profile("kd-paper").stage1
    assert (k.epochs, k.batch_size, k.lr, k.weight_decay, k.milestones, k.gamma, k.warmup_epochs) == (
        240, 64, 0.05, 5e-4, (150, 180, 210), 0.1, 0)
    assert get_profile("kd-paper").model == "resnet8x4" and get_profile("kd-paper").extra["teacher"] == "resnet32x4"


def test_lr_schedule_warmup_then_steps():
    from ltkd.train import _scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="step", milestones=(6, 8), gamma=0.1)
    s = _scheduler(opt, cfg, steps_per_epoch=1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(1.0) and lrs[6] == pytest.approx(0.1) and lrs[8] == pytest.approx(0.01)


def test_progress_mode(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    for env, mode in [("0", None), ("false", None), ("1", "bar"), ("log", "log"), (" LOG ", "log")]:
        monkeypatch.setenv("LTKD_PROGRESS", env)
        assert progress_mode() == mode, env
    assert progress_mode(False) is None and progress_mode(True) == "bar" and progress_mode("log") == "log"
    monkeypatch.delenv("LTKD_PROGRESS")
    monkeypatch.setenv("CI", "1")
    assert progress_mode() is None  # quiet under CI unless asked
    with pytest.raises(LtkdError, match="progress must be"):
        progress_mode("verbose")


def test_epoch_lines_estimate_ignores_a_paused_epoch(monkeypatch, capsys):
    """LTKD_PROGRESS=log: each line shows that epoch's time; the time left comes from the median of recent
    epochs, so one epoch paused for an hour does not turn the rest of a long run's estimate into hours."""
    from types import SimpleNamespace

    import ltkd.progress as P

    clock = iter([0.0, 60.0, 120.0, 3720.0, 3780.0])  # 60 s epochs; the third one paused for an hour
    monkeypatch.setattr(P, "time", SimpleNamespace(perf_counter=lambda: next(clock)))  # ltkd.progress's clock only
    bar = P.epoch_progress(200, "stage1", "log", initial=10)
    for _ in range(4):
        bar.set_postfix(loss="1.000")
        bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "stage1: resuming at epoch 11/200"
    assert lines[1] == "stage1: epoch 11/200  loss 1.000  60.0 s/epoch, 3h09m left"  # 189 epochs x 60 s
    assert lines[3] == "stage1: epoch 13/200  loss 1.000  3600.0 s/epoch, 3h07m left"  # median of 60, 60, 3600
    assert lines[4].endswith("60.0 s/epoch, 3h06m left")  # a running mean (945 s) would say 48h49m
