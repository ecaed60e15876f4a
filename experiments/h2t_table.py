"""Chapter 3's table and ablation: H2T against its ρ = 0 control on the same stage-1 models.

Writes ``experiments/results/h2t_quick.json`` (one record per (setting, seed), merged under a file
lock, so several copies of this script can run side by side and an interrupted run resumes):

    LTKD_THREADS=1 python experiments/h2t_table.py --part table --seeds 0 1 2
    LTKD_THREADS=1 python experiments/h2t_table.py --part ablation --seeds 0 1 2

* ``table``: on one CE stage-1 model: cRT, the ``h2t`` recipe (H2T ρ = 0.25 fine-tuning the stage-1
  classifier, as the authors) and its ρ = 0 control, and H2T with a fresh head (the former recipe, whose
  control is cRT); on one GCL stage-1 model: GCL's stage 2 with mixup (``gcl``, the authors' setting) and
  without (``gcl/nomix``, the ``gcl`` recipe's quick default) and H2T on GCL (``gcl-h2t``; its control is
  ``gcl/nomix``) — quick profile, as ``ltkd train`` runs them.
* ``ablation``: the ingredients in which the published recipe differs from the quick one, each
  with its own ρ = 0 control (all with the stage-1 classifier kept): stage-1 mixup (α = 1), backbone
  BatchNorm statistics updating in stage 2 (the two batches in separate passes; at ρ = 0 no donors
  are drawn, so there the statistics follow the class-balanced batches alone), class-balanced
  instead of instance-sampled donors, the published stage-2 length (10 epochs at lr 0.02) with all of
  the above, and the ρ sweep {0.1, 0.5}.

Stage-1 models are trained once per (kind, seed) and cached in ``$H2T_CACHE`` (default
/tmp/ltkd_h2t_cache). Data: Fashion-MNIST-LT IF 100 (exp), quick profile (cnn6), device from
``$LTKD_DEVICE`` or the best there is; the file records device, torch version, threads and the
wall time of every run.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path

import torch
from common import load_results, report, write_results

from ltkd.experiment import environment, evaluate, prepare_data, run_stages
from ltkd.methods import Recipe, get_method
from ltkd.methods.baselines import CE_STAGE, CRT_STAGE
from ltkd.methods.gcl import GCL_STAGE1, GCL_STAGE2
from ltkd.methods.h2t import gcl_h2t_stage, h2t_stage
from ltkd.models import build_model
from ltkd.profiles import get_profile
from ltkd.train import get_device

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "h2t_quick.json"
CACHE = Path(os.environ.get("H2T_CACHE", "/tmp/ltkd_h2t_cache"))
DATASET, IMBALANCE = "fashion-mnist", 100

# stage-1 kinds: (stage, head, stage-1 mixup α)
STAGE1 = {"ce": (CE_STAGE, "linear", 0.0), "ce-mixup": (CE_STAGE, "linear", 1.0), "gcl": (GCL_STAGE1, "cosine", 0.0)}



# setting -> (stage-1 kind, stage-2 Stage, options, stage-2 overrides, description)
# Since issue 22 the ``h2t`` and ``gcl-h2t`` recipes fine-tune the stage-1 classifier (as the authors'
# train_stage2.py) and GCL's stage 2 uses mixup (as the authors' cifar_train_classifier.py); every H2T
# setting below is paired with a ρ = 0 control that differs from it by the fusion only.
H2T_KEPT = h2t_stage()  # head=None: fine-tune the stage-1 classifier
H2T_FRESH = h2t_stage(head="linear")  # a fresh linear head (the book's former recipe)
H2T_KEPT_BN = h2t_stage(bn="train")
SETTINGS = {
    "crt": ("ce", CRT_STAGE, {}, {}, "cRT: CE stage 1, fresh linear head, class-balanced, BN frozen (= fresh-head H2T ρ=0)"),
    "h2t-fresh": ("ce", H2T_FRESH, {"fusion_ratio": 0.25}, {},
                  "H2T ρ=0.25 with a fresh linear head (the former h2t recipe; control: crt)"),
    "h2t/rho0": ("ce", H2T_KEPT, {"fusion_ratio": 0.0}, {},
                 "stage-1 classifier fine-tuned on class-balanced batches, no fusion (control of h2t)"),
    "h2t": ("ce", H2T_KEPT, {"fusion_ratio": 0.25}, {},
            "H2T ρ=0.25 fine-tuning the stage-1 classifier (the h2t recipe, quick profile)"),
    "gcl": ("gcl", GCL_STAGE2, {"gcl_mixup2": 1.0}, {},
            "GCL two-stage with stage-2 mixup α=1 (the authors' classifier stage; the gcl recipe's paper-profile default)"),
    "gcl/nomix": ("gcl", GCL_STAGE2, {"gcl_mixup2": 0.0}, {},
                  "GCL two-stage without stage-2 mixup (the gcl recipe's quick default; = GCL-H2T ρ=0, the control of "
                  "gcl-h2t)"),
    "gcl-h2t": ("gcl", gcl_h2t_stage(), {"fusion_ratio": 0.25}, {},
                "H2T ρ=0.25 on GCL: GCL's stage 2 (kept cosine head, no mixup) on fused maps (the gcl-h2t recipe)"),
    "mix/crt": ("ce-mixup", H2T_KEPT, {"fusion_ratio": 0.0}, {}, "stage 1 with mixup α=1; kept head, ρ=0"),
    "mix/h2t": ("ce-mixup", H2T_KEPT, {"fusion_ratio": 0.25}, {}, "stage 1 with mixup α=1; kept head, H2T ρ=0.25"),
    "bn/crt": ("ce", H2T_KEPT_BN, {"fusion_ratio": 0.0}, {}, "BN statistics updating in stage 2; kept head, ρ=0"),
    "bn/h2t": ("ce", H2T_KEPT_BN, {"fusion_ratio": 0.25}, {},
               "BN statistics updating (two separate passes); kept head, H2T ρ=0.25"),
    "mix+bn/crt": ("ce-mixup", H2T_KEPT_BN, {"fusion_ratio": 0.0}, {}, "mixup stage 1 + BN updating; kept head, ρ=0"),
    "mix+bn/h2t": ("ce-mixup", H2T_KEPT_BN, {"fusion_ratio": 0.25}, {},
                   "mixup stage 1 + BN updating; kept head, H2T ρ=0.25"),
    "donor-cb/h2t": ("ce", H2T_KEPT, {"fusion_ratio": 0.25, "h2t_donor": "class-balanced"}, {},
                     "donors class-balanced instead of instance-sampled; kept head, H2T ρ=0.25 (control: h2t/rho0)"),
    "published/crt": ("ce-mixup", H2T_KEPT_BN, {"fusion_ratio": 0.0}, {"epochs": 10, "lr": 0.02},
                      "the published stage 2 without fusion: mixup stage 1, kept head, BN updating, 10 epochs at lr "
                      "0.02; ρ=0"),
    "published/h2t": ("ce-mixup", H2T_KEPT_BN, {"fusion_ratio": 0.25}, {"epochs": 10, "lr": 0.02},
                      "the published stage 2 on a mixup stage 1: kept head, BN updating (separate passes), 10 epochs, "
                      "lr 0.02; H2T ρ=0.25"),
    "rho0.1": ("ce", H2T_KEPT, {"fusion_ratio": 0.1}, {}, "H2T ρ=0.1 on CE, kept head"),
    "rho0.5": ("ce", H2T_KEPT, {"fusion_ratio": 0.5}, {}, "H2T ρ=0.5 on CE, kept head"),
}
PARTS = {
    "table": ["crt", "h2t/rho0", "h2t", "h2t-fresh", "gcl", "gcl/nomix", "gcl-h2t"],
    "ablation": [
        "mix/crt",
        "mix/h2t",
        "bn/crt",
        "bn/h2t",
        "mix+bn/crt",
        "mix+bn/h2t",
        "donor-cb/h2t",
        "published/crt",
        "published/h2t",
        "rho0.1",
        "rho0.5",
    ],
}


def _update(fn) -> dict:
    """Read-modify-write the results file under an exclusive lock."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "h2t_quick.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = load_results(OUT)
        fn(doc)
        write_results(OUT, doc)
        return doc


def _done(setting: str, seed: int) -> bool:
    if not OUT.is_file():
        return False
    doc = json.loads(OUT.read_text())
    return any(r["seed"] == seed for r in doc.get("runs", {}).get(setting, []))


def stage1_state(kind: str, seed: int, data, profile, dev) -> tuple[dict, float]:
    path = CACHE / f"{kind}_seed{seed}.pt"
    if path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=True)
        return ck["state"], float(ck["seconds"])
    stage, head, mixup = STAGE1[kind]
    prof = profile.replace(stage1=profile.stage1.replace(mixup=mixup))
    torch.manual_seed(seed)  # as ltkd.experiment.run initialises
    net = build_model(prof.model, data[0].num_classes, data[0].in_channels, head=head)
    t0 = time.perf_counter()
    run_stages(Recipe(kind, "", [stage], head=head), net, data[0], prof, seed=seed, device=dev, progress=False)
    secs = time.perf_counter() - t0
    rep = evaluate(net, data[1], data[0].counts, dev)
    print(f"  stage 1 {kind} seed {seed}: overall {rep['overall']:.4f} tail {rep['tail']:.4f} ({secs:.0f} s)",
          flush=True)  # fmt: skip
    CACHE.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    torch.save({"state": state, "seconds": secs, "report": report(rep)}, path)
    _update(lambda d: d.setdefault("stage1", {}).setdefault(kind, []).append(
        {"seed": seed, "seconds": round(secs, 1), **report(rep)}))  # fmt: skip
    return state, secs


def run_setting(name: str, seed: int, data, profile, dev) -> None:
    kind, stage, options, over, _ = SETTINGS[name]
    state, s1 = stage1_state(kind, seed, data, profile, dev)
    _, head, mixup = STAGE1[kind]
    prof = profile.replace(stage1=profile.stage1.replace(mixup=mixup), stage2=profile.stage2.replace(**over))
    net = build_model(prof.model, data[0].num_classes, data[0].in_channels, head=head)
    net.load_state_dict(state)
    recipe = Recipe(name, "", [STAGE1[kind][0], stage], head=head)
    t0 = time.perf_counter()
    logs = run_stages(recipe, net, data[0], prof, seed=seed, device=dev, options=options, skip=1, progress=False)
    secs = time.perf_counter() - t0
    rep = evaluate(net, data[1], data[0].counts, dev)
    rec = {"seed": seed, **report(rep), "stage2_seconds": round(secs, 1),
           "stage1_seconds": round(s1, 1), "stage2_epochs": prof.stage2.epochs, "stage2_lr": prof.stage2.lr,
           "final_train_loss": logs[-1]["loss"]}  # fmt: skip
    print(f"  {name:14s} seed {seed}: overall {rep['overall']:.4f} head {rep['head']:.4f} "
          f"middle {rep['middle']:.4f} tail {rep['tail']:.4f} ({secs:.0f} s)", flush=True)  # fmt: skip
    _update(lambda d: d.setdefault("runs", {}).setdefault(name, []).append(rec))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=sorted(PARTS), default="table")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*", default=None, help="settings to run (default: the part's)")
    args = ap.parse_args()
    data = prepare_data(DATASET, IMBALANCE)
    profile = get_profile("quick").for_dataset(data[0].name)
    dev = get_device()
    get_method("gcl-h2t")  # fail early if a recipe is missing

    def header(d: dict) -> None:
        d.update(dataset=f"{DATASET}-LT", imbalance=IMBALANCE, profile=profile.name, model=profile.model,
                 stage1_epochs=profile.stage1.epochs, stage2=f"{profile.stage2.epochs} epochs, lr {profile.stage2.lr}",
                 device=str(dev), environment=environment(dev), torch=torch.__version__,
                 train_counts=[int(c) for c in data[0].counts],
                 settings={k: v[4] for k, v in SETTINGS.items()},
                 grouping="head/middle/tail = thirds of the classes by training count (4/3/3); "
                          "few (<20 images) is empty on Fashion-MNIST-LT IF 100")  # fmt: skip

    _update(header)
    for seed in args.seeds:
        for name in args.only or PARTS[args.part]:
            if _done(name, seed):
                continue
            run_setting(name, seed, data, profile, dev)


if __name__ == "__main__":
    main()
