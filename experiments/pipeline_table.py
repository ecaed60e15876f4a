"""Chapter 8's table over seeds: a GCL two-stage teacher distilled with label revision and data
selection (KD + LR + DS) into two compact students, each also trained alone with CE, on
Fashion-MNIST-LT IF 100, ``quick`` profile, seeds 0, 1, 2.

Per seed: the teacher (``ltkd.experiment.run("gcl")``), then for each student — a TissueNet-style
ResNet of stacked units (m = 4) and a binary-stacked net (m = 16, k = 8) — one CE run, one
KD + LR + DS run (η = 0.8, the teacher supervises the 90 % of samples with the best margin), and the
two baselines a student could use instead: plain KD from the same teacher (``kd_objective``: 0.1·CE +
0.9·KD at T = 4) and CE + cRT (chapter 1's classifier re-training, the profile's stage 2) — :func:`train_student`. The
students and settings are chapter 8's; the chapter runs seed 0 of the TissueNet student live and
shows this file for the rest.

    LTKD_THREADS=2 python experiments/pipeline_table.py       # writes experiments/results/pipeline_quick.json

The JSON is rewritten after every run and a rerun skips the runs already there (teachers are cached
in ``runs/pipeline_table_cache``), so the script can be stopped and resumed. Seed 0's teacher is also
kept in the repository as the shipped model ``fmnist_lt100_gcl_teacher`` (``experiments/models/``, with
its provenance; float32, ≈ 0.3 MB; ``--save-teacher-seeds``), and chapter 8 loads it instead of training it — the
chapter's live students then distil the very teacher this table's seed-0 rows used. A teacher that has
to be retrained (its weights gone) takes its seed's distilled rows with it: they are dropped and rerun
with the new teacher, never mixed (a retrained teacher can match the old one's test accuracy class by
class and still differ in its weights: CPU kernels are not bit-for-bit deterministic).

"KD + LR + DS" is ``kd_lr_ds_objective``: since 3 Dec 2026 label revision as the paper's split loss
(``RevisionSplit``: teacher-right samples CE + λ1·logit MSE, teacher-wrong samples λ2·MSE to the revised
label; λ1 = 4, λ2 = 1). The rows this script wrote before that, with all-sample revision (every sample's
T = 4 soft label revised inside KD's KL term, the recipe ``kd-lr-all``), are kept under ``LEGACY_HOW``
and never rerun; a retrained teacher does not drop them (they name the teacher they used: the record it
replaces is moved to the file's ``legacy_teachers``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import shipped
import torch
import torch.nn.functional as F
from common import load_results, table_parser, write_results

from ltkd.checkpoint import atomic_write
from ltkd.experiment import environment, evaluate, prepare_data, run, run_stages
from ltkd.methods import Context, get_method
from ltkd.methods import binary_stack as BS
from ltkd.methods import tissuenet as TN
from ltkd.methods.distill import kd_objective, load_teacher, training_error
from ltkd.methods.label_revision import kd_lr_ds_objective
from ltkd.metrics import count_flops, count_params
from ltkd.profiles import get_profile
from ltkd.train import LossObjective, fit, get_device

ROOT = Path(__file__).resolve().parent
GROUPS = ("overall", "balanced", "head", "middle", "tail")
STUDENTS = ("stacked units (TissueNet, m=4)", "stacked binary (m=16, k=8)")
HOWS = ("CE alone", "KD + LR + DS", "KD", "CE + cRT")
TEACHER_HOWS = ("KD + LR + DS", "KD")  # the rows that learn from the seed's teacher
LEGACY_HOW = "KD + all-sample LR + DS"  # rows of the former all-sample revision (module docstring); not rerun


def make_student(name: str, num_classes: int, in_channels: int, seed: int) -> torch.nn.Module:
    """Chapter 8's two compact students, initialised from ``seed``."""
    torch.manual_seed(seed)
    if name == STUDENTS[0]:
        return TN.build("resnet", num_classes, in_channels, m=4, widths=(16, 16, 32, 64), blocks_per_stage=1)
    if name == STUDENTS[1]:
        return BS.build("stack", num_classes, in_channels, m=16, k=8, widths=(16, 32, 64))
    raise ValueError(f"unknown student {name!r}; known: {STUDENTS}")


SHIPPED = "fmnist_lt100_gcl_teacher"  # seed 0's teacher at chapter 8's settings (experiments/shipped.py)


def kept_teacher(dataset: str, imbalance: float, profile: str, seed: int, teacher_dir: str | Path) -> Path:
    """Where a kept teacher lives: seed 0's at chapter 8's settings is the shipped model :data:`SHIPPED`
    (``experiments/models/``, which chapter 8 loads); any other in ``teacher_dir``."""
    if (dataset, float(imbalance), profile, seed) == ("fashion-mnist", 100.0, "quick", 0):
        return shipped.files(SHIPPED)[0]
    return Path(teacher_dir) / f"pipeline_teacher_{dataset}_if{imbalance:g}_{profile}_seed{seed}.pt"


def saved_teacher(runs: dict, seed: int, kept: Path, cached: Path) -> Path | None:
    """The file holding the teacher that ``runs`` recorded for ``seed`` (the kept copy first), or None: train it."""
    if f"teacher|{seed}" not in runs:
        return None
    return next((f for f in (kept, cached) if f.is_file()), None)


def distilled_rows(runs: dict, seed: int) -> list[str]:
    """The keys of ``seed``'s students that learned from its teacher (the CE-alone rows never saw it; the
    ``LEGACY_HOW`` rows are a record of the teacher they used and are kept)."""
    return [k for k, r in runs.items() if r.get("seed") == seed and r.get("how", "CE alone") in TEACHER_HOWS]


def train_student(student: torch.nn.Module, how: str, train, profile, ctx: Context) -> None:
    """Train ``student`` as row ``how`` says: CE alone; KD + LR + DS or plain KD from ``ctx``'s teacher (the
    profile's stage 1); CE + cRT (chapter 1's recipe: CE, then the classifier re-trained on class-balanced
    batches, the profile's stage 2)."""
    if how == "CE + cRT":
        run_stages(get_method("crt"), student, train, profile, seed=ctx.seed, device=ctx.device, progress=False)
        return
    objective = {"CE alone": lambda: LossObjective(F.cross_entropy), "KD": lambda: kd_objective(ctx),
                 "KD + LR + DS": lambda: kd_lr_ds_objective(ctx)}[how]()  # fmt: skip
    fit(student, objective, train, profile.stage1, device=ctx.device, seed=ctx.seed, progress=False)


def _write(res: dict, out: Path) -> None:
    write_results(out, res)


def main(argv=None) -> None:
    ap = table_parser(__doc__)
    ap.add_argument("--eta", type=float, default=0.8)
    ap.add_argument("--hows", nargs="+", default=list(HOWS), choices=HOWS, help="the rows to run per student")
    ap.add_argument("--fraction", type=float, default=0.9)
    ap.add_argument("--out", default=str(ROOT / "results" / "pipeline_quick.json"))
    ap.add_argument("--cache", default="runs/pipeline_table_cache")
    ap.add_argument("--teacher-dir", default=str(ROOT / "results"), help="where the teachers of --save-teacher-seeds go")
    ap.add_argument("--save-teacher-seeds", type=int, nargs="*", default=[0],
                    help="seeds whose teacher is kept in --teacher-dir (chapter 8 loads seed 0's)")
    args = ap.parse_args(argv)

    out, cache = Path(args.out), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    dev = get_device()
    train, test = data = prepare_data(args.dataset, args.imbalance)
    profile = get_profile(args.profile).for_dataset(args.dataset)
    shape = tuple(train.images.shape[1:])
    res = load_results(out)
    runs = res.get("runs", {})
    res.update(dataset=train.name, imbalance=args.imbalance, profile=profile.name,
               seeds=sorted(set(args.seeds) | {r["seed"] for r in runs.values()}),  # this run's and the file's
               device=str(dev), eta=args.eta, fraction=args.fraction,
               train_counts=[int(c) for c in train.counts], classes=list(train.classes),
               grouping="head / middle / tail = thirds of the classes by training count",
               note="teacher: GCL two-stage on the profile's model; students trained for the profile's stage-1 "
                    "schedule; 'stored bytes' = exported file (binary bits + packed indices for the binary net, "
                    "float32 otherwise). 'KD + LR + DS' rows: label revision as the paper's split loss (since 3 Dec "
                    f"2026); '{LEGACY_HOW}' rows: the same students distilled with all-sample revision (every "
                    "sample's T = 4 soft label revised inside KD's KL term), as this script ran KD + LR + DS before "
                    "3 Dec 2026 (2 threads, another 2-core VM); rows with their own 'environment' were run later, "
                    "on the machine it names",
               runs=runs)  # fmt: skip
    env = environment(dev)
    res.setdefault("environment", env)  # the first session's; a row run in another one records its own
    own_env = {} if env == res["environment"] else {"environment": env}
    tmpdir = Path(tempfile.mkdtemp(prefix="ltkd-pipeline-"))
    for seed in args.seeds:
        key = f"teacher|{seed}"
        cached = cache / f"teacher_{seed}" / "model.pt"
        kept = kept_teacher(train.name, args.imbalance, profile.name, seed, args.teacher_dir)
        found = saved_teacher(res["runs"], seed, kept, cached)
        retrained = found is None
        if not retrained:
            teacher = load_teacher(found, train.num_classes, train.in_channels, dev)
        else:
            t0 = time.perf_counter()
            m, _ = run("gcl", data=data, seed=seed, profile=profile, device=dev, progress=False,
                       out=cached.parent)  # fmt: skip
            # the students learn from the teacher as saved and loaded, as the chapter loads it: the trained
            # model in memory is in channels-last memory format, whose soft labels differ in the last bits
            teacher = load_teacher(cached, train.num_classes, train.in_channels, dev)
            if key in res["runs"]:  # the recorded teacher's weights are gone: its distilled students go too
                stale = distilled_rows(res["runs"], seed)
                print(f"{key}: teacher retrained (no saved weights); rerunning its {len(stale)} distilled students",
                      flush=True)  # fmt: skip
                for k in stale:
                    del res["runs"][k]
                if any(r.get("seed") == seed and r.get("how") == LEGACY_HOW for r in res["runs"].values()):
                    res.setdefault("legacy_teachers", {})[str(seed)] = res["runs"][key]
            res["runs"][key] = {**{k: m[k] for k in GROUPS}, "per_class": m["per_class"], "model": m["model"],
                                "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                                "train_error": training_error(teacher, train, dev),
                                "parameters": count_params(teacher), "FLOPs": count_flops(teacher, shape),
                                "stored bytes": BS.stored_bytes(teacher, tmpdir / "t.npz"), **own_env}  # fmt: skip
            _write(res, out)
            print(f"{key:44s} overall {100 * m['overall']:.1f}  tail {100 * m['tail']:.1f}", flush=True)
        if seed in args.save_teacher_seeds and (retrained or not kept.is_file()):  # the teacher these rows used
            kept.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(kept, cached.read_bytes())
            if kept == shipped.files(SHIPPED)[0]:  # its provenance follows the new weights
                shipped.adopt(SHIPPED, cached, {"by": "experiments/pipeline_table.py", "seconds":
                              res["runs"][key]["seconds"], "environment": env, "weights": "float32"})  # fmt: skip
            print(f"{key}: kept as {kept}", flush=True)
        if kept.is_file() and (found == kept and not retrained or seed in args.save_teacher_seeds):
            res["runs"][key]["file"] = os.path.relpath(kept, ROOT.parent)
            _write(res, out)
        ctx = Context(train=train, profile=profile, device=dev, seed=seed,
                      options={"teacher": teacher, "eta": args.eta, "fraction": args.fraction})  # fmt: skip
        for how in args.hows:
            for name in STUDENTS:
                key = f"{name}|{how}|{seed}"
                if key in res["runs"]:
                    continue
                student = make_student(name, train.num_classes, train.in_channels, seed)
                t0 = time.perf_counter()
                train_student(student, how, train, profile, ctx)
                rep = evaluate(student, test, train.counts, dev)
                res["runs"][key] = {**{k: rep[k] for k in GROUPS}, "per_class": rep["per_class"], "seed": seed,
                                    "student": name, "how": how, "seconds": round(time.perf_counter() - t0, 1),
                                    "parameters": count_params(student), "FLOPs": count_flops(student, shape),
                                    "stored bytes": BS.stored_bytes(student, tmpdir / "s.npz"), **own_env}  # fmt: skip
                _write(res, out)
                print(f"{key:44s} overall {100 * rep['overall']:.1f}  tail {100 * rep['tail']:.1f}  "
                      f"({res['runs'][key]['seconds']:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
