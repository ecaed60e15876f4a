"""The models the chapters load instead of training them: stage-1 backbones and teachers, trained to
convergence by this script and kept in ``experiments/models/`` with their provenance.

Each model ``NAME`` is two files:

* ``experiments/models/NAME.pt`` — an ``ltkd`` model file (float32 weights with their checksum, the
  architecture, classes, channels, head and image size; :func:`ltkd.checkpoint.save_model`);
* ``experiments/models/NAME.json`` — its provenance: the recipe (:data:`MODELS`), the command that trained
  it, seed, data, epochs, every epoch's training loss and accuracy, its test metrics (with the number of
  test images it gets right), its training-set error, the machine, and the ``.pt`` file's sha256.

A chapter calls :func:`get`. With ``live=True`` (the ``RETRAIN`` flag at the top of each chapter) the same
recipe is trained there and then instead, and nothing is written.

    python experiments/shipped.py                  # train every model whose files are missing
    python experiments/shipped.py --force NAME ..  # retrain these ("all": every model)
    python experiments/shipped.py --check          # reload each: sha256, then its recorded test accuracy
    python experiments/shipped.py --list           # name, chapters, recipe, test accuracy, size
    python experiments/shipped.py --out DIR --force all   # regenerate everything elsewhere (timing runs)

Convergence: the stage-1 backbones train for 30 epochs where the ``quick`` profile's chapters' three-seed
tables use 6 (see each recipe's ``why``); every model's per-epoch training loss and accuracy are in its
JSON, and ``tests/test_shipped_models.py`` checks that the last epochs' training loss has levelled off.

Test accuracy is measured with one CPU thread (:func:`test_report`): the same weights then give the same
predictions bit for bit on this kind of machine, so the test can ask for the recorded count exactly.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import script_main
from torch import nn

from ltkd.checkpoint import atomic_write, save_model
from ltkd.errors import LtkdError
from ltkd.experiment import environment, evaluate, prepare_data, run
from ltkd.methods.distill import load_teacher, training_error
from ltkd.profiles import get_profile
from ltkd.train import get_device

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "experiments" / "models"
DATASET = "fashion-mnist"


@dataclass(frozen=True)
class Spec:
    """How one shipped model is trained: ``ltkd.experiment.run(method, ...)`` on Fashion-MNIST(-LT) with the
    ``quick`` profile and ``epochs`` of stage 1 (a two-stage recipe keeps the profile's stage 2)."""

    method: str  # an ltkd recipe: ce, gcl-stage1, gcl (two stages)
    imbalance: float  # imbalance factor of the training set (1: balanced)
    epochs: int  # stage-1 epochs
    n_max: int | None = None  # images of the largest class (None: all 6,000 of Fashion-MNIST)
    model: str = "cnn6"
    seed: int = 0
    chapters: tuple[int, ...] = ()
    why: str = ""
    # a model trained before this script existed, by the table script named here: its file was moved into
    # experiments/models/ unchanged (float16 weights), the JSON records its recipe and what it scores; a
    # retrained one (--force) would be float32 and could differ in the last bits, so the tables that
    # distil it would have to be rerun
    adopted_from: str = ""


MODELS: dict[str, Spec] = {
    "fmnist_lt100_ce": Spec(
        "ce", 100, 30, chapters=(2, 3),
        why="CE stage 1 on Fashion-MNIST-LT IF 100: the backbone chapter 2's UMAPs and chapter 3's classifier "
        "re-training and fusion start from. 30 epochs: the quick profile's 6 stop while the training loss "
        "is still falling (the chapters' three-seed tables keep 6 epochs for every method)."),
    "fmnist_lt100_gcl_stage1": Spec(
        "gcl-stage1", 100, 30, chapters=(2,),
        why="GCL stage 1 (clouded logits) on Fashion-MNIST-LT IF 100, the same 30 epochs as the CE backbone: "
        "chapter 2's clouds, UMAPs and stage 2 start from it."),
    "fmnist_ce_teacher": Spec(
        "ce", 1, 15, chapters=(4,),
        why="Chapter 4's teacher: cnn6 trained on the whole balanced Fashion-MNIST training set (60,000 images) "
        "while the students see 200 images per class — Hinton et al.'s setting, a teacher that knows more "
        "than the student can learn from its own data."),
    "fmnist200_ce_teacher": Spec(
        "ce", 1, 15, n_max=200, chapters=(5,),
        why="Chapter 5's balanced teacher: cnn6 trained on the same 200 images per class as its students, so it "
        "makes mistakes on its own training images (15 % training-set error) for label revision to correct.",
        adopted_from="experiments/kd_table.py (--part balanced), 26 Nov 2026: kd_teacher_fmnist.pt"),
    "fmnist_lt100_n500_ce_teacher": Spec(
        "ce", 100, 15, n_max=500, chapters=(5,),
        why="Chapter 5's broken long-tail teacher: CE on 1,236 long-tailed images; it never predicts the "
        "four rarest classes (a demonstration of what revision cannot fix).",
        adopted_from="experiments/kd_table.py (--part lt), 26 Nov 2026: kd_teacher_fmnist_lt_ce.pt"),
    "fmnist_lt100_n500_gcl_teacher": Spec(
        "gcl", 100, 15, n_max=500, chapters=(5,),
        why="Chapter 5's GCL long-tail teacher: GCL two-stage on the same 1,236 images; it over-corrects "
        "(few-shot 73.4 %, but many-shot 56.0 % against the CE teacher's 91.0 %).",
        adopted_from="experiments/kd_table.py (--part lt), 26 Nov 2026: kd_teacher_fmnist_lt_gcl.pt"),
    "fmnist_lt100_gcl_teacher": Spec(
        "gcl", 100, 6, chapters=(8,),
        why="Chapter 8's teacher: GCL two-stage on Fashion-MNIST-LT IF 100 (the quick profile, seed 0), the "
        "teacher of experiments/pipeline_table.py's seed-0 rows.",
        adopted_from="experiments/pipeline_table.py, 27 Nov 2026: "
        "pipeline_teacher_fashion-mnist_if100_quick_seed0.pt (float32)"),
}


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------
def files(name: str, folder: Path = MODELS_DIR) -> tuple[Path, Path]:
    """(``NAME.pt``, ``NAME.json``) in ``folder``."""
    if name not in MODELS:
        raise LtkdError(f"unknown shipped model {name!r}; choose one of {', '.join(MODELS)}")
    return folder / f"{name}.pt", folder / f"{name}.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(name: str, folder: Path = MODELS_DIR) -> dict:
    """The JSON beside ``NAME.pt``."""
    _, meta = files(name, folder)
    if not meta.is_file():
        raise LtkdError(f"{meta} not found: train it with `python experiments/shipped.py --force {name}`")
    return json.loads(meta.read_text())


def data_for(spec: Spec):
    """(train, test) of a recipe: Fashion-MNIST(-LT), the data set's fixed seed-0 draw."""
    return prepare_data(DATASET, spec.imbalance, n_max=spec.n_max)


@contextmanager
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def test_report(net: nn.Module, train, test, with_train_error: bool = True) -> dict:
    """Test metrics on the CPU with one thread (reproducible bit for bit), plus ``correct`` and ``n`` (and the
    training-set error unless ``with_train_error=False``)."""
    with one_thread():
        rep = evaluate(net.cpu().eval(), test, train.counts, torch.device("cpu"))
        err = training_error(net, train, torch.device("cpu")) if with_train_error else None
    keep = ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail", "per_class")
    out = {k: rep[k] for k in keep}
    out["correct"] = int(round(rep["overall"] * len(test)))
    out["n"] = len(test)
    if with_train_error:
        out["train_error"] = err
    return out


# --------------------------------------------------------------------------------------------------------------
# Training and loading
# --------------------------------------------------------------------------------------------------------------
def train(name: str, data=None, device=None, progress: bool | str | None = None) -> tuple[nn.Module, dict]:
    """Train model ``name`` by its recipe; ``(model, metrics)`` (``ltkd.experiment.run``'s), nothing written."""
    spec = MODELS[name]
    profile = get_profile("quick").with_epochs(spec.epochs)
    metrics, net = run(method=spec.method, dataset=DATASET, imbalance=spec.imbalance, model=spec.model,
                       seed=spec.seed, profile=profile, device=device, data=data or data_for(spec),
                       progress=progress)  # fmt: skip
    return net.eval(), metrics


def _record(name: str, folder: Path, train_data, test_data, recipe: dict, trained: dict, history) -> dict:
    """Write ``NAME.json`` for the ``NAME.pt`` already in ``folder``: the reloaded file's test metrics, its sha256
    and what the caller knows of how it was trained; return the provenance."""
    pt, meta = files(name, folder)
    reloaded = load_teacher(pt, train_data.num_classes, train_data.in_channels)
    doc = {
        "name": name, "file": f"experiments/models/{pt.name}", "sha256": sha256(pt), "bytes": pt.stat().st_size,
        "recipe": {**asdict(MODELS[name]), "dataset": DATASET, "profile": "quick", **recipe,
                   "train_images": len(train_data), "train_counts": [int(c) for c in train_data.counts]},
        "command": f"python experiments/shipped.py --force {name}",
        "trained": trained,
        "history": history,
        "test": test_report(reloaded, train_data, test_data),
    }  # fmt: skip
    atomic_write(meta, json.dumps(doc, indent=1) + "\n")
    return doc


def save(name: str, net: nn.Module, metrics: dict, train_data, test_data, folder: Path = MODELS_DIR) -> dict:
    """Write ``NAME.pt`` and ``NAME.json``; return the provenance."""
    spec = MODELS[name]
    pt, _ = files(name, folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(net.cpu(), pt, arch=spec.model, num_classes=train_data.num_classes,
               in_channels=train_data.in_channels, head=type(net.head).__name__, method=spec.method,
               image_size=list(train_data.images.shape[2:]), dataset=DATASET)  # fmt: skip
    trained = {"date": _dt.date.today().isoformat(), "seconds": metrics.get("train_seconds"),
               "environment": metrics.get("environment")}  # fmt: skip
    history = [{k: r[k] for k in ("stage", "epoch", "loss", "train_acc", "lr") if k in r}
               for r in metrics.get("history", [])]  # fmt: skip
    return _record(name, folder, train_data, test_data, {"stage_epochs": metrics.get("stage_epochs")}, trained,
                   history)  # fmt: skip


def adopt(name: str, src: Path, trained: dict, folder: Path = MODELS_DIR) -> dict:
    """Record a model an earlier table script trained (``Spec.adopted_from``): its file, moved here unchanged
    (``src`` already moved to ``NAME.pt``), gets a provenance JSON whose test metrics are measured now (no
    per-epoch history: the script that trained it kept none)."""
    return _record(name, folder, *data_for(MODELS[name]), {}, {**trained, "moved_from": str(src)}, None)


def load(name: str, folder: Path = MODELS_DIR, device=None) -> tuple[nn.Module, dict]:
    """The shipped model and its provenance; the file's sha256 must be the one recorded."""
    doc = provenance(name, folder)
    pt, _ = files(name, folder)
    if not pt.is_file():
        raise LtkdError(f"{pt} not found: train it with `python experiments/shipped.py --force {name}`")
    if sha256(pt) != doc["sha256"]:
        raise LtkdError(f"{pt} is not the file its provenance records (sha256 differs): retrain it with "
                        f"`python experiments/shipped.py --force {name}`")  # fmt: skip
    net = load_teacher(pt, 10, 1, device)
    return net, doc


def get(name: str, data=None, device=None, live: bool = False) -> tuple[nn.Module, dict]:
    """A chapter's way in: the shipped model ``name`` (``live=False``) or the same recipe trained now
    (``live=True``); ``(model, info)`` where ``info["source"]`` says which, in one line."""
    if live:
        t0 = time.perf_counter()
        net, metrics = train(name, data=data, device=device, progress=False)
        spec = MODELS[name]
        return net.to(get_device(device)), {
            "source": f"trained here: {spec.method}, {spec.epochs} epochs, seed {spec.seed}, "
            f"{time.perf_counter() - t0:.0f} s",
            "metrics": metrics,
        }
    net, doc = load(name, device=get_device(device))
    r = doc["recipe"]
    doc["source"] = (f"loaded from {doc['file']} ({r['method']}, {r['epochs']} epochs, seed {r['seed']}, "
                     f"trained {doc['trained']['date']}; `python experiments/shipped.py --force {name}` "
                     "retrains it)")  # fmt: skip
    return net, doc


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------
def check(name: str, folder: Path = MODELS_DIR) -> str:
    """Reload ``name`` and reproduce its recorded test result exactly; a line saying so, else LtkdError."""
    net, doc = load(name, folder)
    spec = MODELS[name]
    rep = test_report(net, *data_for(spec), with_train_error=False)
    want = doc["test"]
    if rep["correct"] != want["correct"] or rep["per_class"] != want["per_class"]:
        raise LtkdError(f"{name}: {rep['correct']} of {rep['n']} test images right, recorded {want['correct']}")
    return f"{name}: sha256 ok, {rep['correct']:,} of {rep['n']:,} test images right, as recorded"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", nargs="+", default=[], metavar="NAME", help='retrain these ("all": every one)')
    ap.add_argument("--check", action="store_true", help="reload every model and reproduce its test accuracy")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=str(MODELS_DIR), help="folder to write (default experiments/models)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    folder = Path(args.out)
    if args.list or args.check:
        for name, spec in MODELS.items():
            if args.check:
                print(check(name, folder))
            else:
                d = provenance(name, folder) if files(name, folder)[1].is_file() else None
                acc = f"{100 * d['test']['overall']:.2f} %, {d['bytes'] / 1e6:.2f} MB" if d else "not trained"
                print(f"{name}: chapters {list(spec.chapters)}; {spec.method}, IF {spec.imbalance:g}, "
                      f"{spec.epochs} epochs, {spec.model}; test {acc}")  # fmt: skip
        return 0
    force = set(MODELS) if "all" in args.force else set(args.force)
    for name in force - set(MODELS):
        raise LtkdError(f"unknown shipped model {name!r}; choose one of {', '.join(MODELS)}")
    t_all = time.perf_counter()
    for name, spec in MODELS.items():
        pt, meta = files(name, folder)
        if name not in force and pt.is_file() and meta.is_file():
            continue
        t0 = time.perf_counter()
        tr, te = data_for(spec)
        net, metrics = train(name, data=(tr, te), device=args.device)
        doc = save(name, net, metrics, tr, te, folder)
        print(f"{name}: {time.perf_counter() - t0:.0f} s, test {100 * doc['test']['overall']:.2f} %, "
              f"training-set error {100 * doc['test']['train_error']:.2f} %, {doc['bytes'] / 1e6:.2f} MB", flush=True)  # fmt: skip
    print(f"all done in {time.perf_counter() - t_all:.0f} s on {environment(get_device(args.device))}")
    return 0


if __name__ == "__main__":
    script_main(main, "shipped.py")
