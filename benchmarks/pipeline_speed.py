"""Training throughput: ltkd's tensor pipeline against the papers' data pipeline, same model and data.

Reference: a torchvision-style ``Dataset`` that turns each uint8 array into a PIL image and
applies ``RandomCrop(padding) + RandomHorizontalFlip + ToTensor + Normalize``, batched by a
``DataLoader`` with worker processes — how the LDAM-DRW / GCL / H2T code loads CIFAR.
ltkd: the whole (long-tailed) training set as one uint8 tensor on the device, batched random
crop and flip as tensor ops (``ltkd.data.TensorLoader``).

Both train the same freshly initialised model with the same SGD step for the same number of
images; the script prints images/s for each and the ratio ltkd / reference. Run, e.g.::

    python benchmarks/pipeline_speed.py                                  # Fashion-MNIST-LT, cnn6
    python benchmarks/pipeline_speed.py --dataset ../shared/data/cifar10-jpeg --model resnet32 --images 4096

Not a test: timings depend on the machine; the ratio is measured in one run on one device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ltkd.data import ClassSampler, TensorLoader
from ltkd.experiment import environment, prepare_data
from ltkd.models import build_model
from ltkd.train import get_device


class PILDataset(torch.utils.data.Dataset):
    """The reference: per-sample PIL conversion and torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pad: int, flip: bool, mean, std):
        from torchvision import transforms as T

        self.images, self.labels = images, labels
        self.grey = images.shape[1] == 1
        ops = [T.RandomCrop(images.shape[2], padding=pad)]
        if flip:
            ops.append(T.RandomHorizontalFlip())
        ops += [T.ToTensor(), T.Normalize(mean, std)]
        self.transform = T.Compose(ops)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        a = self.images[i]
        img = Image.fromarray(a[0] if self.grey else a.transpose(1, 2, 0))
        return self.transform(img), int(self.labels[i])


def _step(model, opt, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def time_pipeline(batches, model, opt, device, n_images: int, warmup: int = 3) -> float:
    """Images per second over ``n_images`` images, after ``warmup`` batches."""
    seen, t0, it = 0, None, 0
    last = None
    while seen < n_images:
        for x, y, *_ in batches():
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            last = _step(model, opt, x, y)
            it += 1
            if it == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            elif it > warmup:
                seen += len(y)
                if seen >= n_images:
                    break
    if last is not None:
        float(last)  # one host sync at the end
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--imbalance", type=float, default=100)
    p.add_argument("--model", default="cnn6")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--images", type=int, default=6000, help="images timed per pipeline (after warm-up)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args(argv)

    dev = get_device(a.device)
    train, _ = prepare_data(a.dataset, a.imbalance)
    print(f"{train.name}-LT IF {a.imbalance:g}: {len(train):,} images {tuple(train.images.shape[1:])}, "
          f"model {a.model}, batch {a.batch_size}, device {dev}, {torch.get_num_threads()} threads, "
          f"{a.workers} DataLoader workers", flush=True)  # fmt: skip

    def fresh():
        torch.manual_seed(0)
        m = build_model(a.model, train.num_classes, train.in_channels).to(dev).train()
        return m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    # reference pipeline
    ds = PILDataset(train.images.numpy(), train.labels.numpy(), train.pad, train.flip, train.mean, train.std)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers,
                                     pin_memory=dev.type == "cuda", persistent_workers=a.workers > 0,
                                     drop_last=True)  # fmt: skip
    m, opt = fresh()
    ref = time_pipeline(lambda: iter(dl), m, opt, dev, a.images)
    print(f"reference (PIL + DataLoader): {ref:8.0f} images/s", flush=True)

    # ltkd pipeline
    loader = TensorLoader(train, a.batch_size, ClassSampler(train.labels), train=True, device=dev,
                          generator=torch.Generator().manual_seed(0), drop_last=True)  # fmt: skip
    m, opt = fresh()
    ours = time_pipeline(lambda: iter(loader), m, opt, dev, a.images)
    print(f"ltkd tensor pipeline:         {ours:8.0f} images/s", flush=True)
    ratio = ours / ref
    print(f"ratio ltkd / reference: {ratio:.2f}×")
    out = {"dataset": train.name, "imbalance": a.imbalance, "model": a.model, "batch_size": a.batch_size,
           "workers": a.workers, "device": str(dev), "environment": environment(dev), "images_timed": a.images,
           "reference_images_per_s": ref, "ltkd_images_per_s": ours, "ratio": ratio}  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
