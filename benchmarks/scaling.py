"""Scaling: training epoch time and peak memory as the training set grows (IF 200 → 10, then balanced).

    python benchmarks/scaling.py                       # ResNet-32, CIFAR-10 (JPEG copy); full epochs on a GPU
    python benchmarks/scaling.py --model cnn6 --steps 10    # CPU: time 10 steps per size, extrapolate the epoch

Each size runs in its own child process, so "peak memory" is that size's own: the peak GPU memory
allocated by torch on CUDA (``torch.cuda.max_memory_allocated``), the process's peak resident set
size on the CPU (data, model and the engine together). The epoch time is ``ltkd.train.fit``'s
second epoch (the first warms up caches / cuDNN / compilation); with ``--steps N`` it is N timed
steps after 2 warm-up steps, scaled to the epoch's step count, and marked as estimated.
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from common import cifar10_jpeg  # noqa: E402  (experiments/common.py: where the CIFAR-10 JPEG copy is)

ROOT = Path(__file__).resolve().parents[1]
JPEG_COPY = cifar10_jpeg()  # $LTKD_CIFAR10_JPEG, ../shared/data/cifar10-jpeg or benchmarks/out/
SIZES = [200.0, 100.0, 50.0, 10.0, 1.0]


def child(a) -> dict:
    import torch
    import torch.nn.functional as F

    from ltkd.data import ClassSampler, TensorLoader
    from ltkd.experiment import prepare_data
    from ltkd.models import build_model
    from ltkd.profiles import TrainConfig
    from ltkd.train import LossObjective, fit, get_device, use_channels_last

    dev = get_device(a.device)
    train, _ = prepare_data(a.source, a.child)
    torch.manual_seed(0)
    model = build_model(a.model, train.num_classes, train.in_channels)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps_per_epoch = -(-len(train) // a.batch_size)
    if a.steps:
        cl = use_channels_last(dev)
        model = model.to(dev).train()
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        loader = TensorLoader(train, a.batch_size, ClassSampler(train.labels), train=True, device=dev,
                              generator=torch.Generator().manual_seed(0), channels_last=cl)  # fmt: skip
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
        it, t0, n = iter(loader), None, 0
        for i in range(a.steps + 2):
            try:
                x, y, _ = next(it)
            except StopIteration:
                it = iter(loader)
                x, y, _ = next(it)
            if i == 2:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with amp:
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += i >= 2
        float(loss)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_s = (time.perf_counter() - t0) / n * steps_per_epoch
        estimated = True
    else:
        cfg = TrainConfig(epochs=2, batch_size=a.batch_size, lr=0.05, warmup_epochs=0, schedule="constant")
        hist = fit(model, LossObjective(F.cross_entropy), train, cfg, device=dev, progress=False)
        epoch_s, estimated = hist[1]["seconds"], False
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        kind = "GPU MiB allocated (peak)"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        kind = "process RSS MiB (peak)"
    return {"imbalance": a.child, "images": len(train), "steps_per_epoch": steps_per_epoch, "epoch_seconds": epoch_s,
            "images_per_s": len(train) / epoch_s, "estimated": estimated, "peak_mib": peak, "memory_kind": kind,
            "device": str(dev)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the CIFAR-10 JPEG copy, else fashion-mnist")
    p.add_argument("--model", default="resnet32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sizes", nargs="+", type=float, default=SIZES, help="imbalance factors (1 = balanced)")
    p.add_argument("--steps", type=int, default=0, help="time N steps and extrapolate (0 = a whole epoch)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--source", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(a)))
        return 0
    if a.dataset is None:
        if JPEG_COPY.exists():
            a.source, label = str(JPEG_COPY), "CIFAR-10 (JPEG copy)"
        else:
            print(f"note: no CIFAR-10 JPEG copy at {JPEG_COPY}; using Fashion-MNIST", flush=True)
            a.source, label = "fashion-mnist", "Fashion-MNIST"
    else:
        a.source, label = a.dataset, a.dataset
    print(f"{label}, {a.model}, batch {a.batch_size}; "
          f"{'whole epochs' if not a.steps else f'{a.steps} timed steps per size, epoch time extrapolated'}",
          flush=True)  # fmt: skip
    rows = []
    for imb in a.sizes:
        cmd = [sys.executable, __file__, "--child", str(imb), "--source", a.source, "--model", a.model,
               "--batch-size", str(a.batch_size), "--steps", str(a.steps)] + (["--device", a.device] if a.device else [])  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"IF {imb:g}: failed\n{r.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        if len(rows) == 1:
            print(f"{'set':>10} {'images':>8} {'steps':>6} {'epoch s':>9} {'img/s':>8} {row['memory_kind']:>26}")
        name = "balanced" if imb == 1 else f"IF {imb:g}"
        est = "~" if row["estimated"] else " "
        print(f"{name:>10} {row['images']:8,} {row['steps_per_epoch']:6} {est}{row['epoch_seconds']:8.2f} "
              f"{row['images_per_s']:8.0f} {row['peak_mib']:26.0f}", flush=True)  # fmt: skip
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"data": label, "model": a.model, "batch_size": a.batch_size,
                                            "steps": a.steps, "rows": rows}, indent=2))  # fmt: skip
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
