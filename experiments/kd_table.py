"""Chapters 4–5 tables: knowledge distillation, label revision (LR) and data selection (DS).

Two parts, each its own results file (rewritten after every run; a rerun skips the runs
already there, so the script can be stopped and resumed):

* ``--part balanced`` → ``experiments/results/kd_quick.json``: balanced Fashion-MNIST subsample
  (200 training images per class, seed-0 draw; the full 10,000-image test set). Teacher cnn6
  trained with CE (quick profile, 15 epochs, seed 0); students cnn6x0.5 (quick profile, 6 epochs,
  batch 64), seeds 0, 1, 2: student alone (CE), KD, KD+LR, KD+DS, KD+LR+DS, DKD, DKD+LR+DS (LR as the
  paper's split loss, ``RevisionSplit``), all-sample revision (kd-lr-all) and its control (kd-mix: the
  label mixed in at the constant β = η on every sample), and the selected-fraction ablation of KD+DS
  (r = 0.5, 0.7; 0.9 is the table's KD+DS, 1.0 is KD).
* ``--part strong`` → ``experiments/results/kd_strong_quick.json`` (chapter 4): the same students and
  subsample, distilled from a teacher that has seen more than they have — cnn6 trained with CE on all
  60,000 Fashion-MNIST training images (15 epochs; ``experiments/shipped.py``'s ``fmnist_ce_teacher``),
  Hinton et al.'s setting: student alone (CE), KD, DKD, seeds 0, 1, 2.
  ``--student-epochs 6 15 30`` adds the same rows with longer student schedules (tables ``strong-e15``,
  ``strong-e30``): whether KD's gain needs more than six epochs; ``--dkd-beta 1`` adds DKD with β = 1
  (tables ``strong-eN-beta1``): whether DKD's default β = 8 is what costs it here.
* ``--part lt`` → ``experiments/results/kd_lt_quick.json``: Fashion-MNIST-LT (IF 100, n_max 500,
  1,236 training images, so every shot group is present). Teachers cnn6 trained on the long
  tail with CE and with GCL two-stage (15 + 3 epochs, seed 0); students cnn6x0.5 alone (CE), KD
  and KD+LR+DS from each teacher, the single ingredients (kd-lr, kd-ds), all-sample revision (kd-lr-all)
  and its control kd-mix, seeds 0, 1, 2, with shot-group accuracies.

Rows recorded, not rerun: ``kd-lr-all-ds`` and ``dkd-lr-all-ds`` (``LEGACY``) are KD+LR+DS and DKD+LR+DS as
this script ran them before 3 Dec 2026, with all-sample revision (then the recipes ``kd-lr-ds`` /
``dkd-lr-ds``); no recipe of that name exists, so the script keeps those rows and never schedules them. The
``kd-lr-all`` rows of the same date are the recipe ``kd-lr-all`` (the former ``kd-lr``) and are rerun as such.

Sizes are chosen so that everything runs in minutes on two shared CPU cores; the teacher is a
cnn6 (4× the student's parameters) because the teacher's forward pass dominates a KD step.

The teachers are shipped models (``experiments/shipped.py``, files and provenance in
``experiments/models/``; :data:`TEACHERS`), which chapters 4–5 load instead of training them; the
runs here use the saved weights too, so notebook and table distil the same teacher.

    LTKD_THREADS=1 python experiments/kd_table.py --part balanced
    LTKD_THREADS=1 python experiments/kd_table.py --part lt

In parallel: ``--teachers-only`` first, then one process per ``--seeds N --out PART.json``, then
``--merge PART*.json --out experiments/results/kd_quick.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import shipped
import torch
from common import load_results, report, write_results

from ltkd.data import load, long_tail
from ltkd.experiment import environment, prepare_data, run
from ltkd.profiles import get_profile
from ltkd.train import get_device

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
TEACHER, STUDENT = "cnn6", "cnn6x0.5"
N_PER_CLASS = 200
TEACHER_EPOCHS, STUDENT_EPOCHS, STUDENT_BATCH = 15, 6, 64
LT_IF, LT_NMAX = 100, 500
SEEDS = (0, 1, 2)
METHODS = ("ce", "kd", "kd-lr", "kd-ds", "kd-lr-ds", "dkd", "dkd-lr-ds", "kd-lr-all", "kd-mix")
FRACTIONS = (0.5, 0.7)
STRONG_METHODS = ("ce", "kd", "dkd")
LT_METHODS = ("kd", "kd-lr-ds", "kd-lr", "kd-ds", "kd-lr-all", "kd-mix")
LEGACY = ("kd-lr-all-ds", "dkd-lr-all-ds")  # recorded rows of a former recipe (module docstring); not rerun


def balanced_data():
    """200 training images per class (seed-0 draw) and the full balanced test set."""
    train, test = load("fashion-mnist")
    return long_tail(train, 1, n_max=N_PER_CLASS, seed=0), test


def lt_data():
    return prepare_data("fashion-mnist", LT_IF, n_max=LT_NMAX)


def student_profile(epochs: int = STUDENT_EPOCHS):
    p = get_profile("quick")
    return p.replace(stage1=p.stage1.replace(epochs=epochs, batch_size=STUDENT_BATCH))


# the teachers, shipped in experiments/models/ (experiments/shipped.py: recipe and provenance)
TEACHERS = {"fmnist": "fmnist200_ce_teacher", "fmnist_lt_ce": "fmnist_lt100_n500_ce_teacher",
            "fmnist_lt_gcl": "fmnist_lt100_n500_gcl_teacher", "fmnist_full": "fmnist_ce_teacher"}  # fmt: skip


def get_teacher(key: str, data, dev, doc: dict) -> torch.nn.Module:
    """Teacher ``key``, shipped in ``experiments/models/`` (trained there first if its file is missing), with
    its metrics recorded in ``doc['teachers']``. Students distil the saved weights, as the chapters do."""
    name = TEACHERS[key]
    if not shipped.files(name)[0].is_file():
        net, metrics = shipped.train(name, data=data, device=dev, progress=False)
        shipped.save(name, net, metrics, *data)
    teacher, prov = shipped.load(name, device=dev)
    if key not in doc["teachers"]:
        spec = shipped.MODELS[name]
        doc["teachers"][key] = {"model": spec.model, "method": spec.method, "file": prov["file"],
                                "train_error": prov["test"]["train_error"], **report(prov["test"]),
                                "seconds": prov["trained"].get("seconds")}  # fmt: skip
    return teacher


def epochs_of(table: str) -> int:
    """The student schedule of a table: ``strong-eN`` (and ``strong-eN-betaB``) → N epochs, every other table the
    default 6."""
    return int(table.split("-e")[1].split("-")[0]) if table.startswith("strong-e") else STUDENT_EPOCHS


def beta_of(table: str) -> float | None:
    """DKD's β of a ``strong-eN-betaB`` table (the β ablation), else None (DKD's default 8)."""
    return float(table.split("-beta")[1]) if "-beta" in table else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["balanced", "lt", "strong"], required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="student seeds to run")
    ap.add_argument("--out", default=None, help="results file (default experiments/results/kd[_lt]_quick.json)")
    ap.add_argument("--teachers-only", action="store_true", help="train/record the teachers, run no student")
    ap.add_argument("--tables", nargs="+", default=None, help="run only these tables (main, ablation, lt)")
    ap.add_argument("--methods", nargs="+", default=None, help="run only these methods")
    ap.add_argument("--teachers", nargs="+", default=None, help="run only students of these teachers")
    ap.add_argument("--merge", nargs="+", default=None, help="merge these part files into --out and stop")
    ap.add_argument("--dkd-beta", type=float, nargs="+", default=[],
                    help="--part strong: DKD rows with these β too (tables 'strong-eN-betaB'): is β = 8 what "
                         "costs DKD here?")
    ap.add_argument("--student-epochs", type=int, nargs="+", default=[STUDENT_EPOCHS],
                    help="--part strong: student schedules to run (table 'strong' at 6 epochs, 'strong-eN' else)")
    args = ap.parse_args()
    if args.merge:
        merged = None
        for f in args.merge:
            d = json.loads(Path(f).read_text())
            if merged is None:
                merged = d
                continue
            have = {(r["table"], r["teacher"], r["method"], r["seed"], r["fraction"]) for r in merged["runs"]}
            merged["runs"] += [r for r in d["runs"]
                               if (r["table"], r["teacher"], r["method"], r["seed"], r["fraction"]) not in have]
            merged["teachers"].update(d["teachers"])
        merged["seeds"] = sorted({r["seed"] for r in merged["runs"]})
        write_results(args.out, merged)
        return
    dev = get_device(args.device)
    RESULTS.mkdir(parents=True, exist_ok=True)
    files = {"balanced": "kd_quick.json", "lt": "kd_lt_quick.json", "strong": "kd_strong_quick.json"}
    out = Path(args.out) if args.out else RESULTS / files[args.part]
    doc = load_results(out)
    data = lt_data() if args.part == "lt" else balanced_data()
    doc.update(
        dataset="fashion-mnist" + (f"-LT IF {LT_IF}, n_max {LT_NMAX}" if args.part == "lt"
                                   else f" balanced, {N_PER_CLASS}/class"),  # fmt: skip
        train_counts=[int(c) for c in data[0].counts],
        test_size=len(data[1]),
        profile=f"quick (teachers {TEACHER} {TEACHER_EPOCHS} epochs"
                + (" on all 60,000 training images" if args.part == "strong" else "")
                + f"; students {STUDENT} {STUDENT_EPOCHS} epochs"
                + (" in table 'strong', N epochs in tables 'strong-eN'" if args.part == "strong" else "")
                + f", batch {STUDENT_BATCH})",
        teacher_model=TEACHER, student_model=STUDENT, seeds=sorted(args.seeds),
        device=str(dev), torch=torch.__version__,
        defaults={"T": 4, "kd": "0.1·CE + 0.9·KD", "dkd": "α=1, β=8, warm-up 20/240 of the student's epochs, at least 1 (1 at 6 and 15 epochs, 2 at 30)", "eta": 0.8, "fraction": 0.9,
                  "selection": "teacher true-class margin, top fraction",
                  "lr": "kd-lr, kd-lr-ds: teacher-right CE + 4·logit MSE, teacher-wrong 1·MSE to the revised label "
                        "(RevisionSplit, λ1=4, λ2=1, η=0.8); dkd-lr-ds: teacher-right CE + 1·DKD; kd-lr-all and "
                        "the legacy *-lr-all-ds rows: every sample's T=4 soft label revised inside KD's KL term"},
        script="experiments/kd_table.py --part " + args.part,
    )  # fmt: skip
    if args.part == "strong":
        doc["note"] = ("Teacher: experiments/models/fmnist_ce_teacher.pt (experiments/shipped.py), trained on all "
                       "60,000 training images; students on the 2,000-image subsample. All rows on one idle-to-"
                       "moderately-loaded 2-core CPU, 2 threads, 3 Dec 2026 (seconds are not a speed): "
                       "python experiments/kd_table.py --part strong --student-epochs 6 15 30")  # fmt: skip
    env = environment(dev)
    doc.setdefault("environment", env)  # the first session's; a row run in another one records its own
    doc.setdefault("teachers", {})
    doc.setdefault("runs", [])

    def save():
        write_results(out, doc)

    if args.part == "balanced":
        teachers = {"fmnist": get_teacher("fmnist", data, dev, doc)}
        jobs = [("main", "fmnist", m, s, None) for s in args.seeds for m in METHODS]
        jobs += [("ablation", "fmnist", "kd-ds", s, f) for s in args.seeds for f in FRACTIONS]
    elif args.part == "strong":
        teachers = {"fmnist_full": get_teacher("fmnist_full", data, dev, doc)}
        tables = {e: "strong" if e == STUDENT_EPOCHS else f"strong-e{e}" for e in args.student_epochs}
        jobs = [(tables[e], "fmnist_full", m, s, None) for e in args.student_epochs for s in args.seeds
                for m in STRONG_METHODS]  # fmt: skip
        jobs += [(f"strong-e{e}-beta{b:g}", "fmnist_full", "dkd", s, None) for b in args.dkd_beta
                 for e in args.student_epochs for s in args.seeds]  # fmt: skip
    else:
        teachers = {"fmnist_lt_ce": get_teacher("fmnist_lt_ce", data, dev, doc)}
        save()
        teachers["fmnist_lt_gcl"] = get_teacher("fmnist_lt_gcl", data, dev, doc)
        jobs = [("lt", None, "ce", s, None) for s in args.seeds]
        jobs += [("lt", t, m, s, None) for s in args.seeds for t in teachers for m in LT_METHODS]
    save()
    if args.teachers_only:
        return
    if args.tables:
        jobs = [j for j in jobs if j[0] in args.tables]
    if args.methods:
        jobs = [j for j in jobs if j[2] in args.methods]
    if args.teachers:
        jobs = [j for j in jobs if j[1] in args.teachers]
    done = {(r["table"], r["teacher"], r["method"], r["seed"], r["fraction"]) for r in doc["runs"]}
    for table, tkey, method, seed, frac in jobs:
        tkey = tkey if method != "ce" else None
        if (table, tkey, method, seed, frac) in done:
            continue
        opts = {}
        if method != "ce":
            opts["teacher"] = teachers[tkey]
        if frac is not None:
            opts["fraction"] = frac
        if beta_of(table) is not None and method.startswith("dkd"):  # the others do not read DKD's β
            opts["beta"] = beta_of(table)
        t0 = time.perf_counter()
        m, _ = run(method=method, dataset="fashion-mnist", imbalance=data[0].meta.get("imbalance", 1), model=STUDENT,
                   seed=seed, profile=student_profile(epochs_of(table)), device=str(dev), options=opts, data=data,
                   progress=False)  # fmt: skip
        doc["runs"].append({"table": table, "teacher": tkey, "method": method,
                            "seed": seed, "fraction": frac, **report(m),
                            "seconds": round(time.perf_counter() - t0, 1),
                            **({} if env == doc["environment"] else {"environment": env})})  # fmt: skip
        save()
        print(f"{table} {tkey} {method} seed {seed} fraction {frac}: {100 * m['overall']:.2f} % "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
