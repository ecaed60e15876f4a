"""Chapter 2's table: CE, CE+cRT, re-weighting, logit adjustment, LDAM-DRW, GCL stage 1, GCL two-stage
(and GCL angular) on Fashion-MNIST-LT, IF 100, ``quick`` profile, seeds 0, 1, 2.

One CE stage 1 per seed serves both CE and CE+cRT, and one GCL stage 1 per seed serves both "GCL
stage 1" and "GCL two-stage" (``ltkd.experiment.run(..., stage1_state=...)``), so each pair
differs only by its stage 2.

    LTKD_THREADS=1 python experiments/gcl_table.py            # writes experiments/results/gcl_quick.json

The JSON is rewritten after every run, and a rerun skips the (method, seed) pairs already there
(stage-1 states are cached in ``runs/gcl_table_cache``), so the script can be stopped and resumed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from common import REPORT_KEYS, load_results, table_parser, write_results

from ltkd.experiment import clone_state, environment, prepare_data, run
from ltkd.train import get_device

ROOT = Path(__file__).resolve().parent
# (label, method, stage-1 source): a label with a source reuses that label's stage-1 model
RUNS = [
    ("CE", "ce", None),
    ("CE + cRT", "crt", "CE"),
    ("GCL stage 1", "gcl-stage1", None),
    ("GCL two-stage", "gcl", "GCL stage 1"),
    ("re-weighting (CB)", "reweight", None),
    ("logit adjustment", "la", None),
    ("LDAM-DRW", "ldam-drw", None),
    ("GCL angular two-stage", "gcl-angular", None),
]
KEEP = (*REPORT_KEYS, "groups", "grouping")


def main(argv=None) -> None:
    ap = table_parser(__doc__)
    ap.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    ap.add_argument("--out", default=str(ROOT / "results" / "gcl_quick.json"))
    ap.add_argument("--cache", default="runs/gcl_table_cache")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="instead of training: merge these result files (e.g. one per seed, run in parallel) into --out")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args.merge, Path(args.out))
        return

    out = Path(args.out)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.dataset, args.imbalance)
    dev = get_device()
    res = load_results(out)
    res.update(dataset=data[0].name, imbalance=args.imbalance, profile=args.profile, seeds=args.seeds,
               device=str(dev), environment=environment(dev), torch=torch.__version__,
               train_counts=[int(c) for c in data[0].counts], classes=list(data[0].classes),
               note="stage 2 of 'CE + cRT' reuses the seed's 'CE' model and 'GCL two-stage' the seed's "
                    "'GCL stage 1' model; their seconds count stage 2 only",
               runs=res.get("runs", {}))  # fmt: skip
    runs = [r for r in RUNS if args.only is None or r[0] in args.only]
    for seed in args.seeds:
        for label, method, source in runs:
            key = f"{label}|{seed}"
            if key in res["runs"]:
                continue
            state = None
            if source is not None:
                p = cache / f"{source}_{seed}.pt".replace(" ", "_")
                if not p.is_file():
                    print(f"skip {key}: no cached stage 1 of {source!r}", flush=True)
                    continue
                state = torch.load(p, weights_only=True)
            t0 = time.perf_counter()
            m, model = run(method, args.dataset, args.imbalance, seed=seed, profile=args.profile, data=data,
                           stage1_state=state, progress=False)  # fmt: skip
            wall = time.perf_counter() - t0
            torch.save(clone_state(model), cache / f"{label}_{seed}.pt".replace(" ", "_"))
            row = {k: m[k] for k in KEEP}
            row.update(method=method, seed=seed, seconds=round(wall, 1), stage1_from=source,
                       stage_epochs=m["stage_epochs"], model=m["model"])  # fmt: skip
            res["runs"][key] = row
            write_results(out, res)
            print(f"{key:28s} overall {100 * m['overall']:.1f}  head {100 * m['head']:.1f}  "
                  f"middle {100 * m['middle']:.1f}  tail {100 * m['tail']:.1f}  ({wall:.0f} s)", flush=True)


def merge(files: list[str], out: Path) -> None:
    """Merge result files written by parallel runs (say one per seed) into ``out``."""
    res: dict = load_results(out) or {"runs": {}}
    for f in files:
        part = json.loads(Path(f).read_text())
        runs = {**res.get("runs", {}), **part.pop("runs", {})}
        res = {**part, **{k: v for k, v in res.items() if k != "runs"}, "runs": runs} if res.get("dataset") else {
            **part, "runs": runs}
    res["seeds"] = sorted({r["seed"] for r in res["runs"].values()})
    write_results(out, res)
    print(f"merged {len(files)} files into {out}: {len(res['runs'])} runs, seeds {res['seeds']}")


if __name__ == "__main__":
    main()
