"""The engine under DistributedDataParallel: 2 CPU processes, gloo backend (ltkd.distributed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from ltkd.cli import main as cli_main
from ltkd.data import ClassSampler, load
from ltkd.distributed import ShardedSampler
from ltkd.experiment import run
from ltkd.profiles import TrainConfig
from ltkd.train import LossObjective, fit, predict

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")


class TinyNet(nn.Module):
    """No BatchNorm, so 2 ranks × batch B/2 equals 1 process × batch B exactly (up to float rounding)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    train, _ = load("digits")
    return train.subset(range(320))  # 320 = 10 global batches of 32


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyNet()


CFG = TrainConfig(epochs=2, batch_size=32, lr=0.1, warmup_epochs=0, schedule="cosine")


def _worker(rank: int, world: int, port: int, outdir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), LTKD_DEVICE="cpu", LTKD_PROGRESS="0")  # fmt: skip
    torch.set_num_threads(1)
    from ltkd.models import build_model

    try:
        out = {}
        model = _tiny()
        hist = fit(model, LossObjective(F.cross_entropy), _data(), CFG, device="cpu", augment=False, seed=3)
        out["tiny"] = {"params": {k: v.detach().clone() for k, v in model.named_parameters()}, "history": hist}
        # a real CIFAR ResNet with BatchNorm and augmentation; different initial weights per rank:
        # DDP must broadcast rank 0's, then keep the ranks in step
        torch.manual_seed(rank)
        model = build_model("resnet8", 10, 1)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=0)
        hist = fit(model, LossObjective(F.cross_entropy), _data().subset(range(0, 320, 2)), cfg, device="cpu",
                   seed=1)  # fmt: skip
        out["resnet"] = {"params": {k: v.detach().clone() for k, v in model.named_parameters()}, "history": hist,
                         "buffers": {k: v.detach().clone() for k, v in model.named_buffers()}}  # fmt: skip
        # evaluation shared by the ranks (101 images: shards of 51 and 50) against this rank's own full pass
        test = load("digits")[1].subset(range(101))
        out["resnet"]["own_logits"] = predict(model, test, device="cpu")
        out["resnet"]["shared_logits"] = predict(model, test, device="cpu", distributed=True)
        # the whole experiment: test curve every epoch, a two-stage recipe, rank 0 alone writes the results
        metrics, _ = run(method="crt", dataset="digits", model="resnet8", epochs=2, profile="quick", seed=0,
                         out=os.path.join(outdir, "run"), device="cpu", progress=False, eval_every=1)  # fmt: skip
        out["run"] = metrics
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # the command line: rank 0 reports
            rc = cli_main(["train", "--epochs", "1", "--out", os.path.join(outdir, "cli"), "--device", "cpu"])
        out["cli"] = (rc, printed.getvalue())
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """All scenarios in one launch of 2 processes (process start-up dominates the cost)."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp)), nprocs=2, join=True)
    out = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]
    out[0]["outdir"] = tmp / "run"
    return out


def test_sharded_sampler_splits_an_epoch_disjointly():
    labels = torch.arange(11) % 3
    base = ClassSampler(labels)
    shards = [ShardedSampler(base, r, 2).epoch(torch.Generator().manual_seed(5)) for r in range(2)]
    full = base.epoch(torch.Generator().manual_seed(5))
    assert len(shards[0]) == len(shards[1]) == 5 == len(ShardedSampler(base, 0, 2))
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    torch.testing.assert_close(torch.stack(shards, 1).flatten(), full[:10])  # interleaved = the same order


def test_ddp_two_processes_equal_one_process_on_the_concatenated_batch(ranks):
    ranks = [r["tiny"] for r in ranks]
    single = _tiny()
    hist = fit(single, LossObjective(F.cross_entropy), _data(), CFG, device="cpu", augment=False, seed=3,
               progress=False)  # fmt: skip
    for k, v in single.named_parameters():
        torch.testing.assert_close(ranks[0]["params"][k], v.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ranks[1]["params"][k], v.detach(), rtol=1e-4, atol=1e-5)
    # metrics reduced over ranks: the same as one process's (all 320 images counted)
    for a, b in zip(ranks[0]["history"], hist):
        assert abs(a["loss"] - b["loss"]) < 1e-4
        assert abs(a["train_acc"] - b["train_acc"]) < 1e-6
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_ddp_resnet_ranks_stay_identical_and_learn(ranks):
    r0, r1 = (r["resnet"] for r in ranks)
    for k in r0["params"]:
        torch.testing.assert_close(r0["params"][k], r1["params"][k], rtol=0, atol=0)
    assert r0["history"] == [dict(h, seconds=a["seconds"]) for h, a in zip(r1["history"], r0["history"])]
    assert r0["history"][-1]["loss"] < r0["history"][0]["loss"]


def test_ddp_ranks_end_with_rank_0s_batchnorm_statistics(ranks):
    """DDP keeps the parameters in step, not the running statistics (each rank sees its own shard);
    fit hands every rank rank 0's, so all ranks hold the model rank 0 saves."""
    r0, r1 = (r["resnet"] for r in ranks)
    assert any("running_mean" in k for k in r0["buffers"])
    for k in r0["buffers"]:
        torch.testing.assert_close(r0["buffers"][k], r1["buffers"][k], rtol=0, atol=0)


def test_shared_evaluation_equals_a_full_pass_on_every_rank(ranks):
    r0, r1 = (r["resnet"] for r in ranks)
    assert r0["shared_logits"].shape == (101, 10)
    torch.testing.assert_close(r0["own_logits"], r1["own_logits"])  # one model on both ranks
    for r in (r0, r1):  # every row computed by one rank, all rows on every rank
        torch.testing.assert_close(r["shared_logits"], r0["own_logits"], rtol=1e-5, atol=1e-5)


def test_experiment_under_ddp_agrees_on_every_rank_and_rank_0_writes(ranks):
    m0, m1 = (r["run"] for r in ranks)
    assert m0["overall"] == m1["overall"] and m0["per_class"] == m1["per_class"]
    curve = [(r["stage"], r["epoch"], r["test_acc"]) for r in m0["history"]]
    assert [c[:2] for c in curve] == [("stage1", 1), ("stage1", 2)] + [("crt", e) for e in range(1, len(curve) - 1)]
    assert len(curve) > 3 and all(0 <= c[2] <= 1 for c in curve)  # every epoch tested (eval_every=1)
    assert curve == [(r["stage"], r["epoch"], r["test_acc"]) for r in m1["history"]]
    assert abs(curve[-1][2] - m0["overall"]) < 1e-9  # the last evaluated epoch is the final model
    written = json.loads((ranks[0]["outdir"] / "metrics.json").read_text())
    assert written["overall"] == m0["overall"]
    assert not list((ranks[0]["outdir"] / "checkpoints").glob("*.ckpt"))


def test_command_line_under_ddp_reports_once(ranks):
    (rc0, out0), (rc1, out1) = ranks[0]["cli"], ranks[1]["cli"]
    assert rc0 == rc1 == 0
    assert "wrote" in out0 and "overall" in out0
    assert out1 == ""  # rank 1 trained too (the all-reduces need it) but prints nothing and writes nothing
