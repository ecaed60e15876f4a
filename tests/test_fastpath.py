"""The engine's fast path: channels-last, the torch.compile switch, no per-step host reads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ltkd.errors import LtkdError
from ltkd.models import build_model
from ltkd.profiles import TrainConfig
from ltkd.train import LossObjective, compile_mode, fit, predict, use_channels_last


def test_compile_switch_parses_env_and_arguments(monkeypatch):
    monkeypatch.delenv("LTKD_COMPILE", raising=False)
    assert compile_mode() is None  # default: off
    for v, want in [("0", None), ("off", None), ("1", "default"), ("true", "default"),
                    ("reduce-overhead", "reduce-overhead"), ("max-autotune", "max-autotune")]:  # fmt: skip
        monkeypatch.setenv("LTKD_COMPILE", v)
        assert compile_mode() == want, v
    monkeypatch.setenv("LTKD_COMPILE", "1")
    assert compile_mode(False) is None  # an argument beats the environment
    assert compile_mode(True) == "default"
    with pytest.raises(LtkdError, match="LTKD_COMPILE"):
        compile_mode("fastest")


def test_channels_last_default_is_on_and_overridable(monkeypatch):
    monkeypatch.delenv("LTKD_CHANNELS_LAST", raising=False)
    assert use_channels_last(torch.device("cpu")) is True
    assert use_channels_last(torch.device("cuda")) is True
    assert use_channels_last(torch.device("mps")) is False  # not measured there
    monkeypatch.setenv("LTKD_CHANNELS_LAST", "0")
    assert use_channels_last(torch.device("cpu")) is False
    assert use_channels_last(torch.device("cuda")) is False
    assert use_channels_last(torch.device("cpu"), True) is True
    monkeypatch.setenv("LTKD_CHANNELS_LAST", "1")
    assert use_channels_last(torch.device("cpu"), False) is False


def _train(digits, **kw):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0)
    hist = fit(model, LossObjective(F.cross_entropy), digits[0].subset(range(0, 320, 2)), cfg, progress=False,
               device="cpu", **kw)  # fmt: skip
    return model, hist


def test_channels_last_trains_the_same_model(digits):
    a, ha = _train(digits, channels_last=False)
    b, hb = _train(digits, channels_last=True)
    conv = next(m for m in b.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert abs(ha[0]["loss"] - hb[0]["loss"]) < 1e-4
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-3, atol=1e-4, msg=k)
    torch.testing.assert_close(predict(a, digits[1]), predict(b, digits[1]), rtol=1e-3, atol=1e-3)


def test_compiled_fit_matches_eager_and_keeps_plain_state_dict(digits, monkeypatch):
    monkeypatch.setenv("LTKD_COMPILE_BACKEND", "eager")  # dynamo tracing without the slow C++ codegen
    a, ha = _train(digits, compile=False)
    b, hb = _train(digits, compile=True)
    assert list(a.state_dict()) == list(b.state_dict())  # no "_orig_mod." prefixes
    assert abs(ha[0]["loss"] - hb[0]["loss"]) < 1e-4
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=1e-3, atol=1e-4, msg=k)


def test_no_host_reads_per_step(digits, monkeypatch):
    """Tensor → Python conversions (each a device sync on a GPU) happen per epoch, not per step."""
    data = digits[0].subset(range(160))  # (building a data set checks its labels: not part of training)
    calls = {"n": 0}
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, **k):
            calls["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    counts = []
    for bs in (8, 64):  # 20 steps vs 3 steps per epoch
        calls["n"] = 0
        torch.manual_seed(0)
        model = build_model("cnn6", 10, 1)
        fit(model, LossObjective(F.cross_entropy), data,
            TrainConfig(epochs=2, batch_size=bs, lr=0.05, warmup_epochs=0), progress=False, device="cpu")  # fmt: skip
        counts.append(calls["n"])
    assert counts[0] == counts[1], counts  # independent of the number of steps
    assert counts[0] <= 2 * 6, counts  # a handful per epoch


def _reproduce_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "reproduce.py"
    spec = importlib.util.spec_from_file_location("ltkd_reproduce", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reproduction_results_keep_only_finished_paper_runs(tmp_path):
    """experiments/reproduce.py: smoke runs and shortened runs never reach the results file."""
    import json

    rep = _reproduce_module()
    base = {"method": "ce", "seed": 0, "dataset": "imagefolder:cifar10-jpeg", "imbalance": 100, "model": "resnet32",
            "profile": "paper", "epochs": 200, "stage_epochs": {"stage1": 200}, "overall": 0.7, "balanced": 0.7,
            "head": 0.9, "middle": 0.7, "tail": 0.5, "many": 0.8, "medium": None, "few": None, "device": "cuda",
            "environment": {"device_name": "GPU X"}, "seconds": 100.0,
            "history": [{"stage": "stage1", "seconds": t} for t in (0.5, 0.4, 9.0)]}  # fmt: skip
    r = {"data_label": "CIFAR-10 (JPEG copy)", "smoke": False, "versions": {}}
    runs = {"ce/seed0": {**base, "reproduction": r}, "ce/seed1": {**base, "seed": 1, "overall": 0.72, "reproduction": r},
            "ce/seed2": {**base, "seed": 2, "reproduction": {**r, "smoke": True}},
            "la/seed0": {**base, "method": "la", "epochs": 1, "reproduction": r}}  # fmt: skip
    for k, m in runs.items():
        (tmp_path / k).mkdir(parents=True)
        (tmp_path / k / "metrics.json").write_text(json.dumps(m))
    page = tmp_path / "page.md"
    page.write_text(f"before\n{rep.START}\nold\n{rep.END}\nafter\n")
    doc = rep.collect([str(tmp_path)], tmp_path / "results.json", page)
    assert sorted((x["method"], x["seed"]) for x in doc["runs"]) == [("ce", 0), ("ce", 1)]
    assert abs(doc["summary"]["ce"]["mean"] - 71.0) < 1e-9 and doc["summary"]["ce"]["seeds"] == [0, 1]
    assert doc["runs"][0]["epoch_seconds_median"] == {"stage1": 0.5}  # one slow epoch does not move it
    assert doc["runs"][0]["train_seconds"] == 9.9 and doc["runs"][0]["resumed_at"] == []  # all epochs summed
    text = page.read_text()
    assert "{figure}" not in text and not (tmp_path / rep.FIGURE).exists()  # no run evaluated during training
    assert "71.00 ± 1.41" in text and "70.4" in text and "old" not in text and text.endswith("after\n")
    assert ("| CE | 1 | 72.00 | 90.0 / 70.0 / 50.0 | – (not evaluated during training) | GPU X | 10 s | stage1 0.5 "
            "|  |") in text  # the per-run table; this run had no test-set curve  # fmt: skip
    # a resumed CPU run, and a cRT run on its stage 1: times summed over the resume, the stage-1 time from the CE run
    hist = [{"stage": "stage1", "epoch": e, "seconds": 60.0, **({"resumed": True} if e == 3 else {}),
             **({"test_acc": 0.6 + e / 100} if e % 2 == 0 else {})} for e in (1, 2, 3, 4)]  # fmt: skip
    cpu = {**base, "seed": 5, "device": "cpu", "environment": {"device_name": "CPU Y", "threads": 2}, "history": hist,
           "seconds": 130.0, "reproduction": r,
           "best_evaluated": {"stage": "stage1", "epoch": 4, "overall": 0.64, "evaluated_epochs": 2}}  # fmt: skip
    crt = {**cpu, "method": "crt", "history": [{"stage": "crt", "epoch": 1, "seconds": 30.0}], "seconds": 35.0,
           "best_evaluated": None,
           "reproduction": {**r, "stage1_from": str(tmp_path / "cpu" / "ce" / "seed5"), "stage1_seconds": 130.0}}
    for k, m in {"ce/seed5": cpu, "crt/seed5": crt}.items():
        (tmp_path / "cpu" / k).mkdir(parents=True)
        (tmp_path / "cpu" / k / "metrics.json").write_text(json.dumps(m))
    doc = rep.collect([str(tmp_path / "cpu")], tmp_path / "cpu.json", page)
    ce5, crt5 = doc["runs"]
    assert ce5["train_seconds"] == 240.0 and ce5["resumed_at"] == ["stage1 epoch 2"]
    assert ce5["test_curve"] == [["stage1", 2, 0.62, None, None, None], ["stage1", 4, 0.64, None, None, None]]
    assert crt5["test_curve"] == []
    assert crt5["train_seconds"] == 30.0 and crt5["stage1_seconds"] == 240.0  # read from the CE run, not its 130 s
    text = page.read_text()
    assert ("| CE | 5 | 70.00 | 90.0 / 70.0 / 50.0 | 64.00 (stage1 epoch 4, of 2 evaluated) | CPU (CPU Y, 2 threads) "
            "| 4 min | stage1 60.0 | resumed from a checkpoint at stage1 epoch 2 |") in text  # fmt: skip
    assert "| CE + cRT | 5 | 70.00 |" in text and "stage 1: the CE run of this seed (4 min)" in text
    figure = tmp_path / rep.FIGURE  # the curves, drawn beside the page, shown only once a run has one
    assert f"```{{figure}} {rep.FIGURE}" in text and figure.stat().st_size > 1000
    assert "{figure}" not in rep.table_markdown({**doc, "runs": [crt5]})
    empty = rep.collect([str(tmp_path / "nothing")], tmp_path / "empty.json", page)
    assert empty["runs"] == [] and "No paper-profile run has finished yet" in page.read_text()


def test_reproduction_status_and_cpu_device_label(tmp_path):
    """reproduce.py --status: finished runs with their accuracy, running ones with epoch and time left."""
    import json

    import torch

    rep = _reproduce_module()
    assert rep.status(tmp_path) == [f"no runs under {tmp_path}"]
    ck_dir = tmp_path / "ce" / "seed0" / "checkpoints"
    ck_dir.mkdir(parents=True)
    rows = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.5, "seconds": 60.0, **({"test_acc": 0.4} if e == 2 else {})}
            for e in (1, 2, 3)]  # fmt: skip
    torch.save({"epoch": 3, "history_rows": rows}, ck_dir / "stage1.ckpt")
    (tmp_path / "la" / "seed1").mkdir(parents=True)
    m = {"overall": 0.75, "balanced": 0.75, "seconds": 3600.0, "device": "cpu",
         "environment": {"device_name": "AMD EPYC (x86_64)", "threads": 2}, "reproduction": {"smoke": False}}  # fmt: skip
    (tmp_path / "la" / "seed1" / "metrics.json").write_text(json.dumps(m))
    lines = rep.status(tmp_path)
    assert lines[0] == ("ce seed0: stage1 epoch 3/200, loss 0.333, train acc 50.0 %, test acc 40.0 % at epoch 2, "
                        "60.0 s/epoch, ≈ 197 min left in this stage")  # fmt: skip
    assert lines[1].startswith("la seed1: finished, overall 75.00 %") and "3600 s of training" in lines[1]
    rows = [{"epoch": e, "loss": 0.5, "train_acc": 0.5, "seconds": 60.0,
             **({"test_acc": 0.4, "test_seconds": 30.0} if e % 10 == 0 else {})} for e in range(1, 21)]  # fmt: skip
    torch.save({"epoch": 20, "history_rows": rows}, ck_dir / "stage1.ckpt")  # 180 epochs and 18 evaluations to go
    assert rep.status(tmp_path)[0].endswith("60.0 s/epoch, ≈ 189 min left in this stage")
    assert rep.evaluations_left([{"epoch": 10}, {"epoch": 20}], 20, 25) == 1  # only the stage's last epoch
    assert rep.evaluations_left([], 3, 200) == 0
    # one evaluation so far (evaluation switched on at a resume): the default interval, not that epoch
    assert rep.evaluations_left([{"epoch": 60}], 60, 200) == 14  # 70, 80, ..., 200
    assert rep.evaluations_left([{"epoch": 7}], 7, 20) == 2  # 14 and the stage's last
    m["history"] = [{"stage": "stage1", "epoch": e, "seconds": 1000.0, **({"resumed": True} if e == 2 else {})}
                    for e in (1, 2, 3)]  # fmt: skip
    (tmp_path / "la" / "seed1" / "metrics.json").write_text(json.dumps(m))  # resumed: epochs summed, not `seconds`
    assert rep.status(tmp_path)[1].endswith("3000 s of training on AMD EPYC (x86_64), resumed at stage1 epoch 1")
    assert rep.device_label(m) == "CPU (AMD EPYC (x86_64), 2 threads)"
    assert rep.device_label({"device": "cuda", "environment": {"device_name": "NVIDIA H100"}}) == "NVIDIA H100"


def test_parked_runs_continue_in_a_fresh_checkout(tmp_path, capsys):
    """reproduce.py --park copies unfinished runs' checkpoints into the repository; a run without its own takes them."""
    import json

    import torch

    rep = _reproduce_module()
    out, parked, fresh = tmp_path / "runs", tmp_path / "unfinished", tmp_path / "fresh"
    (out / "ce" / "seed0" / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 3, "history_rows": []}, out / "ce" / "seed0" / "checkpoints" / "stage1.ckpt")
    (out / "la" / "seed1" / "checkpoints").mkdir(parents=True)  # finished: nothing to park
    torch.save({"epoch": 200, "history_rows": []}, out / "la" / "seed1" / "checkpoints" / "stage1.ckpt")
    (out / "la" / "seed1" / "metrics.json").write_text(json.dumps({"overall": 0.7}))
    assert rep.park(out, parked) == [f"ce seed0: stage1 epoch 3 parked in {parked / 'ce' / 'seed0' / 'stage1.ckpt'}"]
    assert not (parked / "la").exists() and not list(parked.rglob("*.tmp"))
    assert rep.parked_status(parked, fresh)[0].startswith(f"ce seed0: parked at stage1 epoch 3 ({rep.device_here()}, ")
    assert rep.unpark("ce", 0, fresh / "ce" / "seed0", parked)
    assert rep.parked_status(parked, fresh) == []  # it has its own folder now
    assert torch.load(fresh / "ce" / "seed0" / "checkpoints" / "stage1.ckpt", weights_only=True)["epoch"] == 3
    assert "continuing the run parked in" in capsys.readouterr().out
    torch.save({"epoch": 5, "history_rows": []}, fresh / "ce" / "seed0" / "checkpoints" / "stage1.ckpt")
    assert not rep.unpark("ce", 0, fresh / "ce" / "seed0", parked)  # its own checkpoint wins
    assert torch.load(fresh / "ce" / "seed0" / "checkpoints" / "stage1.ckpt", weights_only=True)["epoch"] == 5
    assert not rep.unpark("la", 0, fresh / "la" / "seed0", parked)  # nothing parked
    info = json.loads((parked / "ce" / "seed0" / "parked.json").read_text())
    assert info["device_name"] == rep.device_here()
    (parked / "ce" / "seed0" / "parked.json").write_text(json.dumps({**info, "device_name": "NVIDIA H200"}))
    assert not rep.unpark("ce", 0, tmp_path / "elsewhere" / "ce" / "seed0", parked)  # another kind of device
    assert "trained on NVIDIA H200; not continued" in capsys.readouterr().out
    assert rep.park(tmp_path / "empty", parked) == [f"no unfinished runs under {tmp_path / 'empty'}"]


def test_runs_in_the_results_file_are_not_trained_again_on_the_same_kind_of_device(tmp_path):
    import json

    from ltkd.experiment import environment
    from ltkd.train import get_device

    rep = _reproduce_module()
    dev = get_device(None)
    here = rep.device_label({"device": dev.type, "environment": environment(dev)})
    runs = [{"method": "ce", "seed": 0, "data": "D", "device_name": here, "model": "resnet32"},
            {"method": "la", "seed": 0, "data": "D", "device_name": "NVIDIA H100 80GB HBM3", "model": "resnet32"},
            {"method": "gcl", "seed": 1, "data": "other data", "device_name": here, "model": "resnet32"},
            {"method": "crt", "seed": 0, "data": "D", "device_name": here, "model": "resnet32b"}]  # another network
    (tmp_path / "r.json").write_text(json.dumps({"runs": runs}))
    assert rep.in_results(tmp_path / "r.json", "D") == {("ce", 0)}
    assert rep.in_results(tmp_path / "missing.json", "D") == set()


def test_committed_reproduction_page_matches_the_results_file():
    """The book's reproduction table is the one the committed results file produces: no number edited by hand."""
    import json

    rep = _reproduce_module()
    doc = json.loads(rep.RESULTS.read_text())
    for r in doc["runs"]:  # only finished paper-profile runs on CIFAR-10-LT IF 100
        assert r["profile"] == "paper" and r["imbalance"] == 100 and r["model"] in ("resnet32", "resnet32b")
        assert r["stage_epochs"].get("stage1", 200) == 200 and 0 <= r["overall"] <= 1
        assert r["device_name"] and r["data"] and r["versions"].get("torch")
    # the published numbers the file carries are the script's checked ones (a stale file kept 77.9 and an
    # unchecked GCL number after the script had been corrected)
    assert doc["published"] == {k: {"top1": v[0], "source": v[1]} for k, v in rep.PUBLISHED.items()}
    assert all(s.get("published") == rep.PUBLISHED[m][0] for m, s in doc["summary"].items() if m in rep.PUBLISHED)
    text = rep.BOOK_PAGE.read_text()
    table = text.split(rep.START, 1)[1].split(rep.END, 1)[0].strip()
    assert table == rep.table_markdown(doc).strip()
