"""Training throughput (images/s): ltkd against the papers' data pipeline, plus the fast-path A/B.

Three modes, one script::

    python benchmarks/throughput.py                 # ResNet-32, CIFAR-10-LT IF 100 (JPEG copy), ltkd vs reference
    python benchmarks/throughput.py --profile       # ... and where ltkd's CPU time goes (data / forward / backward / step)
    python benchmarks/throughput.py --ab            # channels-last and torch.compile A/B, cnn6 and resnet32

*Reference pipeline*: a torchvision-style ``Dataset`` (per-sample PIL image, ``RandomCrop(32, 4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) batched by a ``DataLoader`` with worker
processes, fp32 eager model — how the LDAM-DRW / GCL / H2T code trains on CIFAR
(``benchmarks/pipeline_speed.py`` holds it). *ltkd*: the whole long-tailed set as one uint8 tensor
on the device, batched crop/flip as tensor ops, and the engine's step (:func:`ltkd.train.fit`'s
fast path: bf16 autocast and channels-last on CUDA, ``torch.compile`` when ``LTKD_COMPILE=1``).
Same model, same batch size, same device, one run; the ratio ltkd / reference is printed.

The data default is the CIFAR-10 JPEG copy at ``../shared/data/cifar10-jpeg`` (label: "CIFAR-10
(JPEG copy)"); ``--dataset cifar10`` uses torchvision's CIFAR-10 where it is downloaded. When the
copy is absent the script says so and falls back to Fashion-MNIST-LT.

*A/B* (``--ab``): for each model, four variants of the same SGD step — eager NCHW (base),
channels-last, compiled, compiled + channels-last — each on its own copy of the model, timed in
interleaved rounds (A B C D A B C D ...) in one process so that load from other processes hits
all variants alike; the median images/s per variant and its ratio to base are printed.

Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from common import cifar10_jpeg  # noqa: E402  (experiments/common.py: where the CIFAR-10 JPEG copy is)
from pipeline_speed import PILDataset, time_pipeline  # noqa: E402  (the lead's reference pipeline)

from ltkd.data import ClassSampler, TensorLoader  # noqa: E402
from ltkd.experiment import environment, prepare_data  # noqa: E402
from ltkd.models import build_model  # noqa: E402
from ltkd.profiles import TrainConfig  # noqa: E402
from ltkd.train import LossObjective, fit, get_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JPEG_COPY = cifar10_jpeg()  # $LTKD_CIFAR10_JPEG, ../shared/data/cifar10-jpeg or benchmarks/out/


def resolve_dataset(name: str | None) -> tuple[str, str]:
    """(source for ltkd.data.load, label for tables); the JPEG copy by default, with a fallback."""
    if name in (None, "cifar10-jpeg"):
        if JPEG_COPY.exists():
            return str(JPEG_COPY), "CIFAR-10 (JPEG copy)"
        print(f"note: the CIFAR-10 JPEG copy is not at {JPEG_COPY}; falling back to Fashion-MNIST-LT "
              "(pass --dataset cifar10 with torchvision's CIFAR-10 downloaded for the CIFAR numbers)",
              flush=True)  # fmt: skip
        return "fashion-mnist", "Fashion-MNIST"
    label = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion-mnist": "Fashion-MNIST"}.get(name, name)
    return name, label


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------
# ltkd vs reference
# --------------------------------------------------------------------------------------
def engine_throughput(train, model_name: str, batch_size: int, dev: torch.device, images: int,
                      epochs: int = 3) -> tuple[float, list[float]]:  # fmt: skip
    """Images/s of ``ltkd.train.fit`` itself (its fast path as configured by the environment):
    ``epochs`` epochs on a ``images``-image subset, the first one (warm-up, compilation) dropped."""
    g = torch.Generator().manual_seed(0)
    sub = train if images >= len(train) else train.subset(torch.randperm(len(train), generator=g)[:images])
    torch.manual_seed(0)
    m = build_model(model_name, train.num_classes, train.in_channels)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, warmup_epochs=0, schedule="constant")
    hist = fit(m, LossObjective(F.cross_entropy), sub, cfg, device=dev, progress=False, seed=0)
    secs = [h["seconds"] for h in hist[1:]] or [hist[0]["seconds"]]
    return len(sub) / statistics.median(secs), secs


def where_time_goes(train, model_name: str, batch_size: int, dev: torch.device, steps: int = 12) -> dict:
    """Per-step wall-time split of ltkd's loop (CPU: each phase is synchronous, so this is exact)."""
    torch.manual_seed(0)
    m = build_model(model_name, train.num_classes, train.in_channels).to(dev).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = TensorLoader(train, batch_size, ClassSampler(train.labels), train=True, device=dev,
                          generator=torch.Generator().manual_seed(0), drop_last=True)  # fmt: skip
    parts = {"data (gather + crop/flip + normalise)": 0.0, "forward + loss": 0.0, "backward": 0.0,
             "optimiser step": 0.0}  # fmt: skip
    keys = list(parts)
    it = iter(loader)
    n = 0
    for i in range(steps + 2):
        t0 = time.perf_counter()
        try:
            x, y, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, y, _ = next(it)
        _sync(dev)
        t1 = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        _sync(dev)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(dev)
        t3 = time.perf_counter()
        opt.step()
        _sync(dev)
        t4 = time.perf_counter()
        if i >= 2:  # skip warm-up
            for k, a, b in zip(keys, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                parts[k] += b - a
            n += 1
    total = sum(parts.values())
    return {k: {"ms_per_step": 1000 * v / n, "share": v / total} for k, v in parts.items()}


def op_profile(train, model_name: str, batch_size: int, dev: torch.device, steps: int = 4, top: int = 12) -> str:
    """torch.profiler's table of the ops that take the most CPU time over a few ltkd steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    m = build_model(model_name, train.num_classes, train.in_channels).to(dev).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    loader = TensorLoader(train, batch_size, ClassSampler(train.labels), train=True, device=dev,
                          generator=torch.Generator().manual_seed(0), drop_last=True)  # fmt: skip
    it = iter(loader)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    x, y, _ = next(it)
    F.cross_entropy(m(x), y).backward()  # warm-up
    with profile(activities=acts) as prof:
        for _ in range(steps):
            x, y, _ = next(it)
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def paired_throughput(train, fresh, dev, batch_size: int, workers: int, images: int,
                      repeats: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Images/s of the papers' pipeline and of ltkd's tensor pipeline under the same fp32 eager step,
    timed in alternation (ref, ltkd, ref, ltkd, ...) ``repeats`` times on ``images / repeats`` images
    each, so that load from other processes hits both alike. The DataLoader's workers end on return."""
    ds = PILDataset(train.images.numpy(), train.labels.numpy(), train.pad, train.flip, train.mean, train.std)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                     pin_memory=dev.type == "cuda", persistent_workers=workers > 0,
                                     drop_last=True)  # fmt: skip
    loader = TensorLoader(train, batch_size, ClassSampler(train.labels), train=True, device=dev,
                          generator=torch.Generator().manual_seed(0), drop_last=True)  # fmt: skip
    (m_ref, o_ref), (m_ltkd, o_ltkd) = fresh(), fresh()
    ref, ours = [], []
    for r in range(repeats):
        ref.append(time_pipeline(lambda: iter(dl), m_ref, o_ref, dev, images // repeats))
        ours.append(time_pipeline(lambda: iter(loader), m_ltkd, o_ltkd, dev, images // repeats))
        print(f"  round {r + 1}: reference {ref[-1]:9.0f}, ltkd {ours[-1]:9.0f} images/s", flush=True)
    return ref, ours


def compare(a) -> dict:
    dev = get_device(a.device)
    source, label = resolve_dataset(a.dataset)
    train, _ = prepare_data(source, a.imbalance)
    print(f"{label}-LT IF {a.imbalance:g}: {len(train):,} training images {tuple(train.images.shape[1:])}; "
          f"model {a.model}, batch {a.batch_size}, device {dev}, {torch.get_num_threads()} threads, "
          f"{a.workers} DataLoader workers (reference)", flush=True)  # fmt: skip

    def fresh():
        torch.manual_seed(0)
        m = build_model(a.model, train.num_classes, train.in_channels).to(dev).train()
        return m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    t0 = time.perf_counter()
    refs, oursl = paired_throughput(train, fresh, dev, a.batch_size, a.workers, a.images, a.repeats)
    ref, same_step = statistics.median(refs), statistics.median(oursl)
    print(f"reference (PIL + DataLoader, fp32 eager):   {ref:9.0f} images/s  (median of {a.repeats})", flush=True)
    print(f"ltkd tensor pipeline, same fp32 eager step: {same_step:9.0f} images/s  "
          f"({time.perf_counter() - t0:.0f} s for both)", flush=True)  # fmt: skip

    eng, secs = engine_throughput(train, a.model, a.batch_size, dev, a.images, epochs=a.engine_epochs)
    print(f"ltkd engine (fit, fast path):               {eng:9.0f} images/s  (epoch seconds {secs})", flush=True)
    ratio = eng / ref
    print(f"ratio ltkd engine / reference:        {ratio:.2f}×")
    print(f"ratio ltkd pipeline / reference (same step): {same_step / ref:.2f}×")
    out = {"dataset": label, "source": source, "imbalance": a.imbalance, "train_images": len(train),
           "model": a.model, "batch_size": a.batch_size, "workers": a.workers, "device": str(dev),
           "environment": environment(dev), "images_timed": a.images,
           "compile": os.environ.get("LTKD_COMPILE", "0"),
           "repeats": a.repeats, "reference_rounds": refs, "ltkd_rounds": oursl, "reference_images_per_s": ref, "ltkd_pipeline_same_step_images_per_s": same_step,
           "ltkd_engine_images_per_s": eng, "ratio": ratio, "ratio_same_step": same_step / ref}  # fmt: skip
    if a.profile:
        split = where_time_goes(train, a.model, a.batch_size, dev)
        print("\nwhere ltkd's time goes (per step, synchronous timing):")
        for k, v in split.items():
            print(f"  {k:<40} {v['ms_per_step']:8.1f} ms  {100 * v['share']:5.1f} %")
        table = op_profile(train, a.model, a.batch_size, dev)
        print("\ntorch.profiler, ops by self CPU time (4 steps):\n" + table)
        out["time_split"] = split
        out["op_profile"] = table
    return out


# --------------------------------------------------------------------------------------
# A/B: channels-last and torch.compile
# --------------------------------------------------------------------------------------
def _ab_model(name: str, num_classes: int, in_channels: int) -> torch.nn.Module:
    """The A/B's models: the engine's cnn6 and resnet32, and chapter 8's two compact students."""
    if name == "tissuenet-resnet-m4":
        from ltkd.methods import tissuenet

        return tissuenet.build("resnet", num_classes, in_channels, m=4, widths=(16, 16, 32, 64), blocks_per_stage=1)
    if name == "binary-stack-m16-k8":
        from ltkd.methods import binary_stack

        return binary_stack.build("stack", num_classes, in_channels, m=16, k=8, widths=(16, 32, 64))
    return build_model(name, num_classes, in_channels)


def ab(a) -> dict:
    dev = get_device(a.device)
    results = {"device": str(dev), "environment": environment(dev), "threads": torch.get_num_threads(),
               "rounds": a.rounds, "steps_per_round": a.steps, "batch_size": a.batch_size, "models": {}}  # fmt: skip
    cases = [("cnn6", "fashion-mnist", "Fashion-MNIST"), ("resnet32", *resolve_dataset(a.dataset)),
             ("tissuenet-resnet-m4", "fashion-mnist", "Fashion-MNIST"),
             ("binary-stack-m16-k8", "fashion-mnist", "Fashion-MNIST")]
    for model_name, source, label in cases:
        if a.models and model_name not in a.models:
            continue
        train, _ = prepare_data(source, 100)
        loader = TensorLoader(train, a.batch_size, ClassSampler(train.labels), train=True, device=dev,
                              generator=torch.Generator().manual_seed(0), drop_last=True)  # fmt: skip
        batches = [(x, y) for (x, y, _), _ in zip(loader, range(a.steps))]
        torch.manual_seed(0)
        base = _ab_model(model_name, train.num_classes, train.in_channels).to(dev)
        variants = {}
        for name, cl, comp in (("base", False, False), ("channels_last", True, False),
                               ("compile", False, True), ("compile+channels_last", True, True)):  # fmt: skip
            if comp and a.no_compile:
                continue
            m = copy.deepcopy(base).train()
            if cl:
                m = m.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            run = torch.compile(m) if comp else m
            xs = [(x.contiguous(memory_format=torch.channels_last) if cl else x, y) for x, y in batches]
            variants[name] = (run, opt, xs)

        def step(run, opt, x, y):
            loss = F.cross_entropy(run(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        warm, failed = {}, {}
        for name, (run, opt, xs) in list(variants.items()):  # warm-up: compilation happens here
            t0 = time.perf_counter()
            try:
                for x, y in xs[:2]:
                    step(run, opt, x, y)
            except Exception as e:  # e.g. an inductor error compiling grouped convolutions: report it, go on
                failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                print(f"  {model_name} {name}: failed ({failed[name]})", flush=True)
                del variants[name]
                continue
            _sync(dev)
            warm[name] = time.perf_counter() - t0
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(a.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))  # alternate who goes first
            for name in order:
                run, opt, xs = variants[name]
                t0 = time.perf_counter()
                for x, y in xs:
                    step(run, opt, x, y)
                _sync(dev)
                rates[name].append(sum(len(y) for _, y in xs) / (time.perf_counter() - t0))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"\n{model_name} on {label}-LT IF 100, batch {a.batch_size}, {dev}, {torch.get_num_threads()} threads, "
              f"{a.rounds} interleaved rounds × {a.steps} steps", flush=True)  # fmt: skip
        print(f"  {'variant':<24}{'median img/s':>14}{'vs base':>9}{'min':>9}{'max':>9}{'warm-up s':>11}")
        for k in variants:
            print(f"  {k:<24}{med[k]:14.1f}{med[k] / med['base']:9.2f}{min(rates[k]):9.1f}{max(rates[k]):9.1f}"
                  f"{warm[k]:11.1f}", flush=True)  # fmt: skip
        results["models"][model_name] = {"dataset": label, "median_images_per_s": med, "all": rates,
                                         "ratio_vs_base": {k: med[k] / med["base"] for k in med},
                                         "warmup_seconds": warm, "failed": failed}  # fmt: skip
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="default: the CIFAR-10 JPEG copy, else Fashion-MNIST")
    p.add_argument("--imbalance", type=float, default=100)
    p.add_argument("--model", default="resnet32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--images", type=int, default=None,
                   help="images timed per pipeline (default 2,048 on CPU, 50,000 on a GPU)")
    p.add_argument("--repeats", type=int, default=None, help="alternating rounds (default 3 on CPU, 1 on GPU)")
    p.add_argument("--engine-epochs", type=int, default=3, help="fit epochs for the engine timing (first dropped)")
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers (default min(4, cores))")
    p.add_argument("--device", default=None)
    p.add_argument("--profile", action="store_true", help="also show where ltkd's time goes")
    p.add_argument("--ab", action="store_true", help="channels-last / torch.compile A/B instead")
    p.add_argument("--models", nargs="*", default=None, help="--ab: subset of cnn6 resnet32 tissuenet-resnet-m4 binary-stack-m16-k8")
    p.add_argument("--rounds", type=int, default=7, help="--ab: interleaved rounds")
    p.add_argument("--steps", type=int, default=4, help="--ab: steps per variant per round")
    p.add_argument("--no-compile", action="store_true", help="--ab: skip the compiled variants")
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args(argv)
    if a.workers is None:
        a.workers = min(4, os.cpu_count() or 1)
    cuda = get_device(a.device).type == "cuda"
    if a.images is None:
        a.images = 50_000 if cuda else 2048
    if a.repeats is None:
        a.repeats = 1 if cuda else 3
    out = ab(a) if a.ab else compare(a)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
