"""Paper-profile reproduction on CIFAR-10-LT IF 100: CE, cRT, LDAM-DRW, logit adjustment, GCL, H2T × 3 seeds.

For a GPU (the paper profile is 200 epochs of ResNet-32; see ``ltkd.profiles``)::

    python experiments/reproduce.py                      # all methods, seeds 0 1 2; resumes finished runs
    python experiments/reproduce.py --time-budget 540    # start no run that would not finish in 540 s
    python experiments/reproduce.py --collect            # only gather finished runs into the results file
    python experiments/reproduce.py --status             # how far each run has got (epoch, s/epoch, time left)
    python experiments/reproduce.py --smoke              # CPU check of the whole path (1 epoch, tiny data)
    python experiments/reproduce.py --park               # copy unfinished runs' checkpoints into the repository

Each run writes ``OUT/<method>/seed<k>/metrics.json`` (``ltkd.experiment.run``'s metrics, with the
environment: device name, torch / torchvision / numpy versions, ltkd commit, wall time).
Seeds are the outer loop, so a short GPU session finishes one seed of every method first.
cRT starts from the CE run's stage-1 model of the same seed (its stage 1 *is* CE's, as the
papers' two-stage code loads a stage-1 checkpoint); its ``seconds`` count stage 2 only and
``reproduction.stage1_seconds`` gives the CE stage's time. H2T trains its own stage 1: CE with
mixup α = 1, as published (``ltkd.methods.h2t.H2T_STAGE1``); its stage 2 fine-tunes the stage-1 classifier
and lets backbone BatchNorm statistics update, as published (``ltkd.methods.h2t.h2t_head``, ``h2t_bn``;
chapter 3's quick runs keep them frozen). GCL's stage 2 follows the authors' classifier stage (30 epochs, batch
64, lr 0.002, mixup; ``ltkd.methods.gcl.gcl_stage2_schedule``); a GCL run recorded before issue 22 used ltkd's
former 10-epoch stage 2, and its metrics.json's ``stage_configs`` say so.
Every 10th epoch of each stage and its last are also evaluated on the test set (``--eval-every``; a
pass over 10,000 images: seconds on a GPU; 23–27 s for ResNet-32 on two CPU cores, ≈ 9 min over a
200 + 10-epoch run, ≈ 4 % of it): the results file keeps the curve
and the best evaluated epoch, which is model selection on the test set — what the published numbers
report — and is shown beside the last epoch's accuracy, never in its place.

After the runs, ``experiments/results/reproduction.json`` collects every finished paper-profile run
(smoke runs never: they are marked and skipped) and ``book/reproduction.md``'s table is rewritten
from it. Data: the CIFAR-10 JPEG copy at ``../shared/data/cifar10-jpeg`` when present (labelled
"CIFAR-10 (JPEG copy)"), else torchvision's CIFAR-10 (``--dataset cifar10``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS as RESULTS_DIR  # noqa: E402
from common import ROOT, cifar10_jpeg, write_results  # noqa: E402

from ltkd.checkpoint import atomic_write  # noqa: E402

JPEG_COPY = cifar10_jpeg()  # $LTKD_CIFAR10_JPEG, ../shared/data/cifar10-jpeg or benchmarks/out/
RESULTS = RESULTS_DIR / "reproduction.json"
BOOK_PAGE = ROOT / "book" / "reproduction.md"
METHODS = ["ce", "crt", "ldam-drw", "la", "gcl", "h2t"]
LABELS = {"ce": "CE", "crt": "CE + cRT", "ldam-drw": "LDAM-DRW", "la": "logit adjustment", "gcl": "GCL (two-stage)",
          "h2t": "H2T (CE + mixup stage 1)"}  # fmt: skip
# Published top-1 (%), CIFAR-10-LT IF 100, ResNet-32, each checked against its paper's table (issue 22).
PUBLISHED = {
    "ce": (70.4, "Table 2 of Cao et al. 2019: ERM top-1 error 29.64"),
    "crt": (None, "no CIFAR-10-LT number quoted"),
    "ldam-drw": (77.0, "Table 2 of Cao et al. 2019: top-1 error 22.97"),
    "la": (77.7, "Table 2 of Menon et al. 2021: balanced error 22.33, 5 trials; different data split, TensorFlow"),
    "gcl": (None, "Li et al. 2022 report CIFAR-10-LT; not checked against the paper's table here, so not quoted"),
    "h2t": (None, "H2T publishes CIFAR-100-LT only"),
}
PARKED = RESULTS_DIR / "unfinished"  # --park: unfinished runs' checkpoints, to commit
EVAL_EVERY = 10  # --eval-every's default: test every 10th epoch of each stage (and its last)
SMOKE = {"epochs": 1, "stage2_epochs": 1, "n_max": 100, "test_per_class": 20}  # n_max ≥ IF 100: a tail of one image


def resolve_dataset(name: str | None) -> tuple[str, str]:
    if name in (None, "cifar10-jpeg"):
        if JPEG_COPY.exists():
            return str(JPEG_COPY), "CIFAR-10 (JPEG copy)"
        print(f"note: no CIFAR-10 JPEG copy at {JPEG_COPY}; using torchvision's CIFAR-10", flush=True)
        return "cifar10", "CIFAR-10"
    return name, {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(name, name)


def versions() -> dict:
    import torchvision

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None  # fmt: skip
    except Exception:
        commit = None
    env = {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "ltkd_commit": commit, "host": platform.node(),
           "LTKD_COMPILE": os.environ.get("LTKD_COMPILE", "0"),
           "LTKD_CHANNELS_LAST": os.environ.get("LTKD_CHANNELS_LAST")}  # fmt: skip
    if torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name()
    return env


def load_data(source: str, smoke: bool):
    from ltkd.experiment import prepare_data

    train, test = prepare_data(source, 100, n_max=SMOKE["n_max"] if smoke else None)
    if smoke:  # a balanced slice of the test set
        keep = np.concatenate([np.flatnonzero(test.labels.numpy() == c)[: SMOKE["test_per_class"]]
                               for c in range(test.num_classes)])  # fmt: skip
        test = test.subset(keep)
    return train, test


def run_one(method: str, seed: int, data, label: str, outdir: Path, smoke: bool, stage1_state=None,
            stage1_info: dict | None = None, eval_every: int = 0) -> dict:  # fmt: skip
    from ltkd.experiment import run
    from ltkd.profiles import get_profile

    prof = get_profile("paper")
    if smoke:
        prof = prof.replace(stage1=prof.stage1.replace(epochs=SMOKE["epochs"], warmup_epochs=0, milestones=()),
                            stage2=prof.stage2.replace(epochs=SMOKE["stage2_epochs"]))  # fmt: skip
    t0 = time.perf_counter()
    metrics, _ = run(method, data=data, imbalance=100, seed=seed, profile=prof, out=outdir, progress=None,
                     stage1_state=stage1_state, eval_every=eval_every)  # fmt: skip
    from ltkd.distributed import is_main

    if not is_main():  # under torchrun rank 0 writes the files
        return metrics
    extra = {"data_label": label, "smoke": smoke, "wall_seconds": round(time.perf_counter() - t0, 2),
             "versions": versions(), **(stage1_info or {})}  # fmt: skip
    path = outdir / "metrics.json"
    m = json.loads(path.read_text())
    m["reproduction"] = extra
    write_results(path, m, indent=2)
    return m


def run_all(a) -> None:
    from ltkd.methods import get_method
    from ltkd.methods.baselines import CE_STAGE

    source, label = resolve_dataset(a.dataset)
    data = load_data(source, a.smoke)
    print(f"{label}-LT IF 100: {len(data[0]):,} training images, {len(data[1]):,} test; methods {a.methods}; "
          f"seeds {a.seeds}; {'SMOKE (not a reproduction)' if a.smoke else 'paper profile'}; out {a.out}",
          flush=True)  # fmt: skip
    t_start = time.perf_counter()
    durations: dict[str, float] = {}
    collected = set() if a.smoke or a.rerun else in_results(Path(a.results), label)
    for seed in a.seeds:
        for method in a.methods:
            outdir = Path(a.out) / method / f"seed{seed}"
            if (outdir / "metrics.json").is_file():
                print(f"  {method} seed {seed}: done already", flush=True)
                continue
            if (method, seed) in collected:
                print(f"  {method} seed {seed}: in {a.results} already, on this kind of device (--rerun to train it "
                      "again)", flush=True)  # fmt: skip
                continue
            recipe = get_method(method)
            reuse = method != "ce" and recipe.stages[0] is CE_STAGE and recipe.head == "linear"
            ce_dir = Path(a.out) / "ce" / f"seed{seed}"
            est = durations.get(method, max(durations.values(), default=0.0))
            if a.time_budget and time.perf_counter() - t_start + est > a.time_budget:
                print(f"  {method} seed {seed}: skipped, {est:.0f} s would pass the {a.time_budget} s budget", flush=True)
                continue
            if not a.smoke:  # a smoke run is never a parked paper run
                unpark(method, seed, outdir, Path(a.parked))
            state, info = None, {}
            if reuse and (ce_dir / "model.pt").is_file():
                from ltkd.train import load_model_state

                state = load_model_state(ce_dir / "model.pt")["state_dict"]
                ce_m = json.loads((ce_dir / "metrics.json").read_text())
                info = {"stage1_from": str(ce_dir), "stage1_seconds": train_seconds(ce_m)}
            t0 = time.perf_counter()
            try:
                m = run_one(method, seed, data, label, outdir, a.smoke, state, info, a.eval_every)
            except Exception as e:  # keep going: one failing method should not lose the others
                print(f"  {method} seed {seed}: FAILED {type(e).__name__}: {e}", flush=True)
                continue
            durations[method] = time.perf_counter() - t0
            print(f"  {method} seed {seed}: overall {100 * m['overall']:.2f} %, balanced {100 * m['balanced']:.2f} %, "
                  f"{durations[method]:.0f} s on {m['environment'].get('device_name')}", flush=True)  # fmt: skip


def in_results(results: Path, label: str) -> set[tuple[str, int]]:
    """(method, seed) of the runs the results file holds on this data, this kind of device (the GPU's name, or
    the same processor and threads) and the paper profile's network: a fresh checkout, whose ``runs/`` is empty,
    does not train them again (a run of another network, e.g. ``resnet32b``, is trained again)."""
    from ltkd.profiles import get_profile

    if not results.is_file():
        return set()
    here, model = device_here(), get_profile("paper").model
    runs = json.loads(results.read_text()).get("runs", [])
    return {(r["method"], r["seed"]) for r in runs
            if r.get("data") == label and r.get("device_name") == here and r.get("model") == model}  # fmt: skip


def device_here() -> str:
    """:func:`device_label` of the device a run started now would train on."""
    from ltkd.experiment import environment
    from ltkd.train import get_device

    dev = get_device(None)
    return device_label({"device": dev.type, "environment": environment(dev)})


# --------------------------------------------------------------------------------------
# Runs that span machines: parked checkpoints
# --------------------------------------------------------------------------------------
def park(out: Path, parked: Path) -> list[str]:
    """Copy the checkpoints of every unfinished run under ``out`` to ``parked/<method>/seed<k>/`` (a folder in
    the repository): committed, they let the run continue on another machine or in a fresh checkout, where
    ``runs/`` is empty. A run starting without checkpoints of its own takes its parked ones (``unpark``); the
    fingerprint in every checkpoint makes sure they belong to the same run."""

    lines, here = [], device_here()
    for run_dir in sorted(Path(out).glob("*/seed*")):
        cks = sorted((run_dir / "checkpoints").glob("*.ckpt"))
        if (run_dir / "metrics.json").is_file() or not cks:
            continue
        dest = parked / run_dir.parent.name / run_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.ckpt"):
            old.unlink()
        (dest / "parked.json").write_text(json.dumps({"device_name": here, "parked": time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions()}, indent=2) + "\n")  # fmt: skip
        for ck in cks:
            atomic_write(dest / ck.name, ck.read_bytes())
            epoch = torch.load(dest / ck.name, map_location="cpu", weights_only=True)["epoch"]
            lines.append(f"{run_dir.parent.name} {run_dir.name}: {ck.stem} epoch {epoch} parked in {dest / ck.name}")
    return lines or [f"no unfinished runs under {out}"]


def parked_status(parked: Path, out: Path) -> list[str]:
    """One line per parked run that has no folder of its own under ``out`` yet (a fresh checkout's)."""
    lines = []
    for d in sorted(Path(parked).glob("*/seed*")):
        if (Path(out) / d.parent.name / d.name).exists():
            continue
        info = json.loads((d / "parked.json").read_text()) if (d / "parked.json").is_file() else {}
        for ck in sorted(d.glob("*.ckpt")):
            epoch = torch.load(ck, map_location="cpu", weights_only=True)["epoch"]
            lines.append(f"{d.parent.name} {d.name}: parked at {ck.stem} epoch {epoch} ({info.get('device_name')}, "
                         f"{info.get('parked', '?')}); continues when this run starts on that kind of device")  # fmt: skip
    return lines


def unpark(method: str, seed: int, outdir: Path, parked: Path) -> bool:
    """Before a run starts: if it has no checkpoint of its own but one is parked, continue from the parked one."""
    import shutil

    src = parked / method / f"seed{seed}"
    mine = outdir / "checkpoints"
    if not src.is_dir() or any(mine.glob("*.ckpt")) or not any(src.glob("*.ckpt")):
        return False
    info = json.loads((src / "parked.json").read_text()) if (src / "parked.json").is_file() else {}
    if info.get("device_name") != device_here():  # one run, one kind of device: its times and label stay true
        print(f"  {method} seed {seed}: a run parked in {src} trained on {info.get('device_name')}; not continued "
              f"on {device_here()}", flush=True)  # fmt: skip
        return False
    mine.mkdir(parents=True, exist_ok=True)
    for ck in sorted(src.glob("*.ckpt")):
        shutil.copy2(ck, mine / ck.name)
    print(f"  {method} seed {seed}: continuing the run parked in {src}", flush=True)
    return True


# --------------------------------------------------------------------------------------
# Where the runs stand
# --------------------------------------------------------------------------------------
def status(out: Path) -> list[str]:
    """One line per run under ``out``: finished (its accuracy) or how far its checkpoints got, with time left."""
    from ltkd.methods import get_method
    from ltkd.profiles import get_profile

    prof = get_profile("paper")
    lines = []
    for run_dir in sorted(Path(out).glob("*/seed*")):
        method, seed = run_dir.parent.name, run_dir.name
        metrics = run_dir / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            kind = "smoke" if m.get("reproduction", {}).get("smoke") else "finished"
            lines.append(f"{method} {seed}: {kind}, overall {100 * m['overall']:.2f} %, balanced "
                         f"{100 * m['balanced']:.2f} %, {train_seconds(m) or m.get('seconds', 0):.0f} s of training on "
                         f"{m.get('environment', {}).get('device_name')}"
                         + (f", resumed at {', '.join(resumed_at(m))}" if resumed_at(m) else ""))  # fmt: skip
            continue
        try:
            stages = {st.name: getattr(prof, st.config).epochs for st in get_method(method).stages}
        except Exception:
            stages = {}
        cks = sorted((run_dir / "checkpoints").glob("*.ckpt"))
        if not cks:
            lines.append(f"{method} {seed}: started, no epoch finished yet")
        for ck in cks:
            try:
                c = torch.load(ck, map_location="cpu", weights_only=True)
            except Exception as e:
                lines.append(f"{method} {seed}: {ck.name} unreadable ({type(e).__name__})")
                continue
            done, rows = int(c["epoch"]), c.get("history_rows", [])
            total = stages.get(ck.stem)
            recent = [r["seconds"] for r in rows[-10:] if "seconds" in r]
            per = statistics.median(recent) if recent else None  # robust to an epoch slowed by other work
            last = rows[-1] if rows else {}
            tested = [r for r in rows if r.get("test_acc") is not None]
            evals = evaluations_left(tested, done, total) if total else 0
            eval_s = statistics.median(r["test_seconds"] for r in tested[-5:]) if evals and all(
                "test_seconds" in r for r in tested[-5:]) else 0.0
            left = f", ≈ {(per * (total - done) + evals * eval_s) / 60:.0f} min left in this stage" if per and total else ""
            lines.append(f"{method} {seed}: {ck.stem} epoch {done}/{total or '?'}"
                         + (f", loss {last['loss']:.3f}, train acc {100 * last['train_acc']:.1f} %" if last else "")
                         + (f", test acc {100 * tested[-1]['test_acc']:.1f} % at epoch {tested[-1]['epoch']}"
                            if tested else "")
                         + (f", {per:.1f} s/epoch" if per else "") + left)  # fmt: skip
    return lines or [f"no runs under {out}"]


def evaluations_left(tested: list[dict], done: int, total: int) -> int:
    """Test-set evaluations still to come in a stage, the interval read off the epochs evaluated so far
    (``--eval-every`` is not in the checkpoint): every N-th epoch, and the stage's last."""
    epochs = sorted(int(r["epoch"]) for r in tested)
    gaps = [b - a for a, b in zip(epochs, epochs[1:]) if b > a]
    if gaps:
        every = min(gaps)
    elif epochs:  # one evaluation so far (e.g. --eval-every switched on at a resume): the default, if it fits
        every = EVAL_EVERY if epochs[0] % EVAL_EVERY == 0 else epochs[0]
    else:
        every = 0
    if every <= 0:
        return 0
    return sum(1 for e in range(done + 1, total + 1) if e % every == 0 or e == total)


# --------------------------------------------------------------------------------------
# Collect finished runs into the results file and the book page
# --------------------------------------------------------------------------------------
def is_reproduction(m: dict) -> bool:
    """A finished paper-profile run: not a smoke run, the paper profile's full stage-1 epochs."""
    from ltkd.profiles import get_profile

    r = m.get("reproduction", {})
    return (not r.get("smoke", True)) and m.get("profile") == "paper" and m.get("epochs") == get_profile(
        "paper").stage1.epochs and m.get("imbalance") == 100


def device_label(m: dict) -> str:
    """The GPU's name, or for a CPU run the processor and the number of threads it trained with."""
    env = m.get("environment", {})
    name = env.get("device_name") or m.get("device", "?")
    if m.get("device") == "cpu":
        threads = env.get("threads")
        return f"CPU ({name}, {threads} threads)" if threads else f"CPU ({name})"
    return name


def epoch_seconds_median(m: dict) -> dict:
    """Median epoch time per stage: the speed of a run even where some epochs were slowed (or paused) by other work."""
    by_stage: dict[str, list[float]] = {}
    for h in m.get("history", []):
        if "seconds" in h:
            by_stage.setdefault(h.get("stage", "stage1"), []).append(h["seconds"])
    return {k: round(statistics.median(v), 3) for k, v in by_stage.items()}


def train_seconds(m: dict) -> float:
    """Training time of a run: its epochs' times summed over stages and resumes (a resumed run's
    ``seconds`` count only the process that finished it). Includes whatever slowed or paused an epoch."""
    if "train_seconds" in m:
        return m["train_seconds"]
    return round(sum(h.get("seconds", 0.0) for h in m.get("history", [])), 2)


def resumed_at(m: dict) -> list[str]:
    return m.get("resumed_at", [f"{h.get('stage', 'stage1')} epoch {h['epoch'] - 1}"
                                for h in m.get("history", []) if h.get("resumed")])  # fmt: skip


FIGURE = "_static/reproduction_curves.png"  # beside the book page


def test_curve(m: dict) -> list[list]:
    """[stage, epoch, overall, head, middle, tail] (test top-1) for every epoch the run evaluated on the
    test set (``--eval-every``)."""
    r5 = lambda v: None if v is None else round(v, 5)  # noqa: E731
    return [[h.get("stage", "stage1"), h["epoch"], *(r5(h.get(k)) for k in ("test_acc", "test_head", "test_middle",
                                                                           "test_tail"))]
            for h in m.get("history", []) if h.get("test_acc") is not None]  # fmt: skip


def plot_curves(runs: list[dict], path: Path) -> bool:
    """The test-set curves of the runs that have one, overall and tail third, into ``path``; False if none has."""
    have = [r for r in runs if any(row[2] is not None for row in r.get("test_curve") or [])]
    if not have:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltkd.viz import plot_test_curves

    keys = ["stage", "epoch", "test_acc", "test_head", "test_middle", "test_tail"]
    histories = {f"{LABELS.get(r['method'], r['method'])}, seed {r['seed']} ({r['device_name']})":
                 [dict(zip(keys, row)) for row in r["test_curve"]] for r in have}  # fmt: skip
    stage_epochs = {}  # every stage at its place: a cRT run's stage 2 after the CE run's 200 epochs
    for r in have:
        stage_epochs.update(r.get("stage_epochs", {}))
    axes = plot_test_curves(histories, stage_epochs=stage_epochs,
                            title="Paper profile, CIFAR-10-LT IF 100: test top-1 during training")
    path.parent.mkdir(parents=True, exist_ok=True)
    axes[0].figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(axes[0].figure)
    return True


def best_cell(r: dict) -> str:
    b = r.get("best_evaluated")
    if not b:
        return "– (not evaluated during training)"
    return f"{100 * b['overall']:.2f} ({b['stage']} epoch {b['epoch']}, of {b['evaluated_epochs']} evaluated)"


def stage1_seconds(r: dict) -> float | None:
    """The CE stage 1 a two-stage run started from: its training time, read from that run if it is here."""
    src = r.get("stage1_from")
    if src and (Path(src) / "metrics.json").is_file():
        return train_seconds(json.loads((Path(src) / "metrics.json").read_text()))
    return r.get("stage1_seconds")


def collect(out_dirs: list[str], results: Path = RESULTS, page: Path = BOOK_PAGE) -> dict:
    runs = []
    for d in out_dirs:
        for f in sorted(Path(d).glob("*/seed*/metrics.json")):
            m = json.loads(f.read_text())
            if not is_reproduction(m):
                continue
            r = m["reproduction"]
            runs.append({"method": m["method"], "seed": m["seed"], "data": r["data_label"], "dataset": m["dataset"],
                         "imbalance": m["imbalance"], "model": m["model"], "profile": m["profile"],
                         "stage_epochs": m["stage_epochs"], "overall": m["overall"], "balanced": m["balanced"],
                         "head": m["head"], "middle": m["middle"], "tail": m["tail"], "many": m["many"],
                         "medium": m["medium"], "few": m["few"], "device": m["device"],
                         "device_name": device_label(m), "seconds": m["seconds"],
                         "train_seconds": train_seconds(m), "resumed_at": resumed_at(m),
                         "stage1_seconds": stage1_seconds(r), "stage1_from": r.get("stage1_from"),
                         "epoch_seconds_median": epoch_seconds_median(m),
                         "best_evaluated": m.get("best_evaluated"), "test_curve": test_curve(m),
                         "versions": r["versions"], "path": str(f)})  # fmt: skip
    if results.is_file():  # keep runs collected earlier (e.g. on another machine) unless re-run here
        key = lambda r: (r["method"], r["seed"], r["data"], r["device_name"])
        new = {key(r) for r in runs}
        runs = [r for r in json.loads(results.read_text()).get("runs", []) if key(r) not in new] + runs
    summary = {}
    for method in METHODS + sorted({r["method"] for r in runs} - set(METHODS)):
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        acc = [100 * r["overall"] for r in rs]
        summary[method] = {"seeds": sorted(r["seed"] for r in rs), "mean": statistics.mean(acc),
                           "std": statistics.stdev(acc) if len(acc) > 1 else None,
                           "data": sorted({r["data"] for r in rs}), "devices": sorted({r["device_name"] for r in rs}),
                           "published": PUBLISHED.get(method, (None, ""))[0]}  # fmt: skip
    doc = {"description": "Paper-profile runs (ResNet-32, 200 epochs, CIFAR-10-LT IF 100) that finished; "
                          "accuracy of the last epoch on the balanced test set (best_evaluated / test_curve: the epochs "
                          "evaluated during training, model selection on the test set). Only real runs: smoke runs "
                          "are excluded.",
           "published": {k: {"top1": v[0], "source": v[1]} for k, v in PUBLISHED.items()},
           "summary": summary, "runs": runs}  # fmt: skip
    write_results(results, doc, indent=2, end="\n")
    if page.is_file():
        plot_curves(runs, page.parent / FIGURE)
        write_table(page, doc)
    print(f"collected {len(runs)} finished run(s) into {results}")
    return doc


START, END = "<!-- reproduction-table:start -->", "<!-- reproduction-table:end -->"


def table_markdown(doc: dict) -> str:
    if not doc["runs"]:
        return ("**No paper-profile run has finished yet.** A run is 200 epochs of ResNet-32 (minutes on a GPU, "
                "about four hours on two CPU cores), so the measured column is empty rather than filled with "
                "numbers nobody measured. `python experiments/reproduce.py` fills it.")  # fmt: skip
    lines = ["| method | published top-1 (%) | measured top-1 (%), mean ± std | seeds | data | device |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for method, s in doc["summary"].items():
        pub, src = PUBLISHED.get(method, (None, ""))
        pub_s = f"{pub:.1f} ({src})" if pub is not None else f"– ({src})"
        std = f" ± {s['std']:.2f}" if s["std"] is not None else ""
        lines.append(f"| {LABELS.get(method, method)} | {pub_s} | {s['mean']:.2f}{std} | "
                     f"{', '.join(map(str, s['seeds']))} | {', '.join(s['data'])} | {', '.join(s['devices'])} |")  # fmt: skip
    lines += ["", "Each run (last-epoch top-1 %; head / middle / tail = the classes in thirds by training count; "
              "best evaluated = the highest test top-1 among the epochs the run evaluated with `--eval-every`, "
              "i.e. model selection on the test set as in the published numbers, never the headline; "
              "training time = the run's epoch times summed, including any epoch slowed or paused by other work "
              "on the machine; median epoch = the undisturbed speed):", "",
              "| method | seed | overall | head / middle / tail | best evaluated epoch | device | training time "
              "| median epoch (s) | notes |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    order = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(doc["runs"], key=lambda r: (order.get(r["method"], len(order)), r["method"], r["seed"])):
        groups = " / ".join("–" if r.get(g) is None else f"{100 * r[g]:.1f}" for g in ("head", "middle", "tail"))
        med = ", ".join(f"{k} {v:.1f}" for k, v in r.get("epoch_seconds_median", {}).items())
        notes = []
        if r.get("stage1_from"):
            s1 = r.get("stage1_seconds")
            notes.append("stage 1: the CE run of this seed" + (f" ({_duration(s1)})" if s1 else ""))
        if r.get("resumed_at"):
            notes.append("resumed from a checkpoint at " + ", ".join(r["resumed_at"]))
        train_s = r.get("train_seconds", r.get("seconds"))
        lines.append(f"| {LABELS.get(r['method'], r['method'])} | {r['seed']} | {100 * r['overall']:.2f} | {groups} | "
                     f"{best_cell(r)} | {r['device_name']} | {_duration(train_s)} | {med} | {'; '.join(notes)} |")  # fmt: skip
    if any(row[2] is not None for r in doc["runs"] for row in r.get("test_curve") or []):
        lines += ["", f"```{{figure}} {FIGURE}", ":name: reproduction-curves", "",
                  "Test top-1 during training of the runs that evaluated the test set (every 10th epoch and each "
                  "stage's end), overall and on the tail third of the classes; a dotted line where the second stage "
                  "starts. Drawn by `python experiments/reproduce.py --collect` from the results file.", "```"]  # fmt: skip
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else (f"{m} min" if m else f"{seconds:.0f} s")


def write_table(page: Path, doc: dict) -> None:
    text = page.read_text()
    if START not in text or END not in text:
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{table_markdown(doc)}\n{END}{tail}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--dataset", default=None, help="default: the CIFAR-10 JPEG copy, else cifar10 (torchvision)")
    p.add_argument("--out", default=None, help="default runs/reproduce (runs/reproduce-smoke with --smoke)")
    p.add_argument("--eval-every", type=int, default=EVAL_EVERY, metavar="N",
                   help="test every N epochs of each stage and at its end, into the run's log (0: off; default 10): "
                        "the learning curve and the best evaluated epoch beside the last one")
    p.add_argument("--time-budget", type=float, default=None, help="seconds; start no run expected to pass it")
    p.add_argument("--smoke", action="store_true", help="1 epoch on a tiny long tail: tests the path, not a result")
    p.add_argument("--collect", action="store_true", help="only collect finished runs")
    p.add_argument("--status", action="store_true", help="only show how far each run under --out has got")
    p.add_argument("--rerun", action="store_true",
                   help="train runs the results file holds already on this kind of device (default: skip them)")
    p.add_argument("--park", action="store_true",
                   help="only copy unfinished runs' checkpoints to --parked, to commit and continue elsewhere")
    p.add_argument("--parked", default=str(PARKED),
                   help="where --park puts checkpoints and where a run without its own looks for them "
                        "(default experiments/results/unfinished)")
    p.add_argument("--results", default=str(RESULTS), help="results file to (re)write")
    p.add_argument("--no-collect", action="store_true", help="do not touch the results file or the book page")
    p.add_argument("--no-page", action="store_true", help="collect into --results but leave the book page alone")
    a = p.parse_args(argv)
    if a.eval_every < 0:
        p.error(f"--eval-every must be 0 (off) or positive, got {a.eval_every}")
    a.out = a.out or str(ROOT / "runs" / ("reproduce-smoke" if a.smoke else "reproduce"))
    if a.status:
        print("\n".join(status(Path(a.out)) + parked_status(Path(a.parked), Path(a.out))))
        return 0
    if a.park:
        print("\n".join(park(Path(a.out), Path(a.parked))))
        return 0
    if not a.collect:
        # one line per epoch in a log file (a bar in a terminal); LTKD_PROGRESS=0 silences both
        os.environ.setdefault("LTKD_PROGRESS", "1" if sys.stderr.isatty() else "log")
        run_all(a)
    from ltkd.distributed import is_main

    if not a.no_collect and is_main():
        collect([a.out], Path(a.results), page=Path("/nonexistent") if a.no_page else BOOK_PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
