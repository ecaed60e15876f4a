"""Does ``ltkd distill`` with its defaults give a student at least as good as the same student trained alone?

On balanced Fashion-MNIST (all 60,000 training images, the 10,000 test images), ``quick`` profile, seeds 0, 1, 2:

* distilled: ``ltkd distill --dataset fashion-mnist --seed S`` — every other setting the command's default
  (method ``kd``; teacher ``cnn6`` trained there with CE, seed S — since 3 Dec 2026 for 15 epochs, the quick
  profile's ``teacher_epoch_factor`` 2.5 × 6; student ``cnn6x0.5``; 6 epochs). The rows
  ``distilled (teacher 6 epochs)|S`` are the former default, a teacher trained for the student's 6 epochs,
  kept as measured (they are why the default changed);
* alone: ``ltkd train --dataset fashion-mnist --imbalance 1 --model cnn6x0.5 --method ce --seed S``.

Both go through the library calls the commands make (:func:`ltkd.experiment.distill` and
:func:`ltkd.experiment.run`). Writes ``experiments/results/distill_defaults.json`` after every run (a rerun
skips the runs already there) and prints the three-seed means.

    python experiments/distill_defaults.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import RESULTS, load_results, write_results

from ltkd.experiment import distill, environment, run
from ltkd.train import get_device

OUT = RESULTS / "distill_defaults.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    doc = load_results(args.out)
    doc.update(dataset="fashion-mnist (balanced, 60,000 training images)", profile="quick",
               commands={"distilled": "ltkd distill --dataset fashion-mnist --seed S",
                         "alone": "ltkd train --dataset fashion-mnist --imbalance 1 --model cnn6x0.5 --method ce "
                                  "--seed S"},
               environment=environment(get_device()))  # fmt: skip
    runs = doc.setdefault("runs", {})
    work = Path(tempfile.mkdtemp(prefix="ltkd-distill-defaults-"))
    for seed in args.seeds:
        for how in ("alone", "distilled"):
            key = f"{how}|{seed}"
            if key in runs:
                continue
            t0 = time.perf_counter()
            if how == "alone":
                m, _ = run("ce", dataset="fashion-mnist", imbalance=1, model="cnn6x0.5", seed=seed, progress=False)
            else:
                m, _ = distill(dataset="fashion-mnist", seed=seed, out=work / f"distill{seed}", progress=False)
            runs[key] = {"overall": m["overall"], "per_class": m["per_class"], "model": m["model"], "seed": seed,
                         "seconds": round(time.perf_counter() - t0, 1),
                         **({"teacher": {k: m["teacher"].get(k) for k in ("model", "epochs", "overall", "train_error")}}
                            if how == "distilled" else {})}  # fmt: skip
            write_results(args.out, doc)
            print(f"{key}: {100 * m['overall']:.2f} % ({runs[key]['seconds']:.0f} s)", flush=True)
    for how in ("alone", "distilled (teacher 6 epochs)", "distilled"):
        acc = [100 * r["overall"] for k, r in runs.items() if k.startswith(how + "|")]
        if acc:
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            print(f"{how}: {statistics.mean(acc):.2f} ± {sd:.2f} % over {len(acc)} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
