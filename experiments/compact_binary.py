"""Chapter 7's sweep: binary-stacked networks for several (m, k) against full precision and a plain
binary network — accuracy against the exported file's compression ratio.

Fashion-MNIST (balanced, a seeded subsample of the training set, the full 10,000-image test set),
the ``quick`` profile's stage-1 recipe with fewer epochs. The stacked layers train in their
materialised form (the same function as split–transform–merge, faster here).

    LTKD_THREADS=1 python experiments/compact_binary.py   # writes experiments/results/compact_binary_quick.json

The results file is rewritten after every run; a rerun skips runs already there.
"""

from __future__ import annotations

import argparse
import tempfile
from functools import partial
from pathlib import Path

from common import load_results
from compact_common import environment, get_data, record, trained, write

from ltkd.methods import binary_stack as bs

ROOT = Path(__file__).resolve().parent
WIDTHS = (16, 32, 64, 128)
PER_CLASS, EPOCHS = 400, 3
# (label, kind, m, k)
RUNS = [
    ("full precision", "float", 0, 0),
    ("stack m=32 k=16", "stack", 32, 16),
    ("plain binary", "binary", 0, 0),
    ("stack m=8 k=16", "stack", 8, 16),
    ("stack m=32 k=8", "stack", 32, 8),
    ("stack m=128 k=16", "stack", 128, 16),
    ("stack m=16 k=4", "stack", 16, 4),
]


def file_sizes(net, kind: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg = net.config  # the full-precision counterpart: same widths, ordinary convolutions
        fp_net = bs.build("float", cfg["num_classes"], cfg["in_channels"], widths=cfg["widths"])
        fp = bs.export_full_precision(fp_net, Path(d) / "fp.npz")
        if kind != "stack":
            return {"file_bytes": fp if kind == "float" else None, "fp32_file_bytes": fp}
        info = bs.export(net, Path(d) / "stack.npz")
    conv_fp = sum(r["fp32_bits"] for r in bs.storage_report(net)) // 8
    conv_bits = sum(r["bits"] for r in bs.storage_report(net))
    return {**info, "fp32_file_bytes": fp, "stacked_layers_fp32_bytes": conv_fp, "stacked_layers_formula_bits": conv_bits}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "compact_binary_quick.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    payload = load_results(out)
    train, test = get_data("fashion-mnist", PER_CLASS)
    payload.update(chapter="07", dataset="fashion-mnist", profile="quick (stage-1 recipe, epochs reduced, batch 32)",
                   train_images=len(train), per_class=PER_CLASS, test_images=len(test), epochs=EPOCHS, widths=list(WIDTHS),
                   environment=environment())  # fmt: skip
    runs = payload.setdefault("runs", [])
    done = {(r["label"], r["seed"]) for r in runs}
    for label, kind, m, k in RUNS:
        if (label, args.seed) in done:
            continue
        net, res, secs = trained(partial(bs.build, kind, train.num_classes, train.in_channels, m=m or 32, k=k or 16,
                                         widths=WIDTHS, mode="materialised"), train, test, EPOCHS, args.seed)
        row = {"label": label, "kind": kind, "m": m or None, "k": k or None, **res, **file_sizes(net, kind)}
        if kind == "binary":  # its file: 1 bit per conv weight + the same float32 rest as the stacked nets
            conv = sum(p.numel() for n, p in net.named_parameters() if n.endswith("proxy"))
            row["file_bytes"] = row["fp32_file_bytes"] - 4 * conv + (conv + 7) // 8
            row["file_bytes_note"] = "computed: fp32 file minus 4 bytes per binary weight plus 1 bit each"
        record(out, payload, row, f"{label}: acc {100 * res['acc']:.2f} %, file {row.get('file_bytes')} B "
               f"(fp32 {row['fp32_file_bytes']} B), {secs:.0f} s")  # fmt: skip
    write(out, payload)


if __name__ == "__main__":
    main()
