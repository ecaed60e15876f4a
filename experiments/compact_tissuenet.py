"""Chapter 6's sweep: TissueNet styles against their dense baselines (accuracy vs parameters/FLOPs).

Fashion-MNIST (balanced, a seeded subsample of the training set, the full 10,000-image test set)
and, where ``../shared/data/cifar10-jpeg`` exists, CIFAR-10 (JPEG copy, subsampled the same way);
the ``quick`` profile's stage-1 recipe (SGD, lr 0.1, cosine, batch 128) with fewer epochs.

    LTKD_THREADS=1 python experiments/compact_tissuenet.py   # writes experiments/results/compact_tissuenet_quick.json

The results file is rewritten after every run; a rerun skips runs already there.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common import load_results
from compact_common import environment, get_data, record, trained, write

from ltkd.methods import tissuenet as tn

ROOT = Path(__file__).resolve().parent
WIDTHS = (16, 16, 32, 64)
# (label, style, m, hybrid)
RUNS = [
    ("resnet-dense", "resnet-dense", 4, False),
    ("resnet m=4", "resnet", 4, False),
    ("resnet m=2", "resnet", 2, False),
    ("resnet-r m=4", "resnet-r", 4, False),
    ("vgg-dense", "vgg-dense", 4, False),
    ("vgg m=4", "vgg", 4, False),
    ("resnet hybrid m=4", "resnet", 4, True),
]
DATASETS = {  # name: (images per class, epochs, labels to run)
    "fashion-mnist": (400, 3, [r[0] for r in RUNS]),
    "cifar10-jpeg": (200, 3, ["resnet-dense", "resnet m=4"]),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "compact_tissuenet_quick.json"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    payload = load_results(out)
    payload.setdefault("datasets", {})
    payload.update(chapter="06", profile="quick (stage-1 recipe, epochs reduced, batch 32)", widths=list(WIDTHS),
                   blocks_per_stage=1, environment=environment())  # fmt: skip
    runs = payload.setdefault("runs", [])
    done = {(r["dataset"], r["label"], r["seed"]) for r in runs}
    for ds in args.datasets:
        per_class, epochs, labels = DATASETS[ds]
        data = get_data(ds, per_class)
        if data is None:
            payload["datasets"][ds] = "skipped: data not found"
            print(f"{ds}: skipped (not found)")
            continue
        train, test = data
        payload["datasets"][ds] = {"train_images": len(train), "test_images": len(test), "epochs": epochs,
                                   "per_class": per_class}  # fmt: skip
        for label, style, m, hybrid in RUNS:
            if label not in labels or (ds, label, args.seed) in done:
                continue
            build = partial(tn.build, style, train.num_classes, train.in_channels, m=m, widths=WIDTHS,
                            hybrid=tn.HYBRID_UNITS if hybrid else None, seed=args.seed)  # fmt: skip
            net, res, secs = trained(build, train, test, epochs, args.seed)
            row = {"dataset": ds, "label": label, "style": style, "m": m, "pattern": net.pattern,
                   "units": [u.name for u in net.unit_types], **res}  # fmt: skip
            record(out, payload, row, f"{ds} {label}: acc {100 * res['acc']:.2f} %, params {res['params']}, "
                   f"{res['flops'] / 1e6:.1f} MFLOPs, {secs:.0f} s")  # fmt: skip
    write(out, payload)


if __name__ == "__main__":
    main()
