"""The ``ltkd`` command: ``ltkd train``, ``ltkd distill``, ``ltkd datasets``, ``ltkd methods``, ``ltkd models``.

Every sub-command's parser is here; the work is in :mod:`ltkd.experiment` (``run``, ``distill``).

Bad input prints one line, ``ltkd: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path

from .errors import LtkdError, first_line, one_line
from .profiles import PROFILES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"ltkd: error: {message}\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _nonnegative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or positive, got {v}")
    return v


def _seed(s: str) -> int:
    from .checks import check_seed

    try:
        return check_seed(int(s))
    except ValueError as e:  # int("x"), or LtkdError (a ValueError): out of range
        raise argparse.ArgumentTypeError(str(e) if isinstance(e, LtkdError) else f"expected a whole number, got {s!r}") from None


def _out(s: str) -> str:
    if not s.strip():
        raise argparse.ArgumentTypeError("the output folder is an empty path; give a folder")
    return s


def _imbalance(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v < 1:
        raise argparse.ArgumentTypeError(f"imbalance factor must be ≥ 1 (n_max / n_min), got {v:g}")
    return v


def _summary(m: dict) -> str:
    def f(v):
        return "  –  " if v is None else f"{100 * v:5.1f}"

    lines = [
        f"{m['method']} on {m['dataset']} (IF {m['imbalance']:g}), {m['model']}, seed {m['seed']}, "
        f"profile {m['profile']}, {m['device']}, {m['seconds']:.0f} s",
        "  overall balanced |  many medium   few |  head middle  tail",
        f"  {f(m['overall'])}   {f(m['balanced'])}  | {f(m['many'])}  {f(m['medium'])} {f(m['few'])} | "
        f"{f(m['head'])}  {f(m['middle'])} {f(m['tail'])}",
        f"  params {m['params']:,}  FLOPs {m['flops']:,} (multiply-add = 2)",
    ]
    return "\n".join(lines)


# the method options that have a flag of their own besides --set, per sub-command: flag -> option name
TRAIN_FLAGS = {"--fusion-ratio": "fusion_ratio"}
DISTILL_FLAGS = {"--T": "T", "--alpha": "alpha", "--beta": "beta", "--warmup": "warmup", "--eta": "eta",
                 "--fraction": "fraction"}  # fmt: skip


def _add_common(p: argparse.ArgumentParser, *, imbalance: float, out: str, flags: dict[str, str]) -> None:
    """The arguments ``ltkd train`` and ``ltkd distill`` share: data, schedule, output, method options."""
    from .methods import OPTIONS

    p.add_argument("--dataset", default="digits", help="digits | fashion-mnist | cifar10 | cifar100 | PATH")
    p.add_argument("--imbalance", type=_imbalance, default=None,
                   help=f"imbalance factor n_max/n_min (1 = balanced; default {imbalance:g} for a named set, every "
                        "image as given for a PATH)")  # fmt: skip
    p.add_argument("--image-size", type=_positive_int, default=None, metavar="N",
                   help="resize a PATH's images to N×N (without it they must all have one size)")
    p.add_argument("--lt-profile", default="exp", choices=["exp", "step"])
    p.add_argument("--epochs", type=_positive_int, default=None, help="stage-1 epochs (default: the profile's)")
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**63 - 1")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="default: $LTKD_PROFILE or quick; `paper` is the long-tailed CIFAR recipe (200 epochs), "
                        "`kd-paper` the KD papers' CIFAR-100 one (240 epochs, batch 64, lr 0.05)")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: $LTKD_DEVICE, else the best there is)")
    p.add_argument("--out", type=_out, default=out, help=f"output folder for metrics.json and model.pt (default {out})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the finished run OUT holds (model.pt, metrics.json); without it such an OUT is refused")
    p.add_argument("--resume-unfingerprinted", action="store_true",
                   help="resume checkpoints in OUT/checkpoints that do not record the run (or the data) that wrote "
                        "them, from an older ltkd: you vouch they are this run's (without it they are refused)")
    for flag, key in flags.items():
        p.add_argument(flag, dest=f"flag_{key}", default=None, metavar="X", help=f"{OPTIONS[key].help} (= --set {key}=X)")
    p.add_argument("--import", action="append", default=[], metavar="MODULE", dest="imports",
                   help="a method file of your own (path/to/file.py or a module name), imported first: its recipes "
                        "and options join ltkd's (repeatable)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="a method option, e.g. --set gcl_eps=0.25 (repeatable; `ltkd methods` lists them)")
    p.add_argument("--eval-every", type=_nonnegative_int, default=0, metavar="N",
                   help="also test every N epochs (and at each stage's end) into the log: a learning curve "
                        "and the best evaluated epoch (default 0: off)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    p.set_defaults(flags=flags)


def _options(args) -> dict:
    """``--set KEY=VALUE`` and the option flags, each checked; an option given twice (also as a flag and by ``--set``)
    is an error, not the last one silently kept."""
    from .methods import check_option, parse_option

    opts: dict = {}
    for text in args.options:
        key, value = parse_option(text)
        if key in opts:
            raise LtkdError(f"--set {key} is given twice ({opts[key]!r} and {value!r}); give it once")
        opts[key] = value
    for flag, key in args.flags.items():
        if getattr(args, f"flag_{key}") is not None:
            if key in opts:
                raise LtkdError(f"{flag} and --set {key} both set {key}; give it once")
            opts[key] = check_option(key, getattr(args, f"flag_{key}"), flag)
    return opts


def _report(metrics: dict, out: str, json_out: bool) -> int:
    from .distributed import is_main

    if not is_main():  # under torchrun: rank 0 writes and reports
        return 0
    if json_out:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
        return 0
    t = metrics.get("teacher")
    if t is not None:
        print(f"teacher {t['model']}: test {100 * t['overall']:.1f} %, balanced {100 * t['balanced']:.1f} %, "
              f"training-set error {100 * t['train_error']:.1f} %  ({t['source']})")  # fmt: skip
    print(_summary(metrics))
    print(f"  wrote {out}/metrics.json and {out}/model.pt")
    return 0


def _noted(args, command, **kwargs):
    """``command(**kwargs)``, its notes (how a PATH's images are used) printed on stdout, or on stderr under
    ``--json`` (where stdout is the JSON)."""
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        return command(**kwargs)


def cmd_train(args) -> int:
    from .experiment import run

    metrics, _ = _noted(args, run,
        method=args.method, dataset=args.dataset, imbalance=args.imbalance, model=args.model,
        epochs=args.epochs, seed=args.seed, profile=args.profile, out=args.out, device=args.device,
        options=_options(args), lt_profile=args.lt_profile, eval_every=args.eval_every,
        resume_unfingerprinted=args.resume_unfingerprinted, image_size=args.image_size,
        overwrite=args.overwrite,
    )  # fmt: skip
    return _report(metrics, args.out, args.json)


def cmd_distill(args) -> int:
    from .experiment import distill

    metrics, _ = _noted(args, distill,
        method=args.method, teacher=args.teacher, student=args.student, dataset=args.dataset,
        imbalance=args.imbalance, lt_profile=args.lt_profile, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
        seed=args.seed, profile=args.profile, out=args.out, device=args.device, options=_options(args),
        eval_every=args.eval_every, resume_unfingerprinted=args.resume_unfingerprinted, image_size=args.image_size,
        overwrite=args.overwrite,
    )  # fmt: skip
    return _report(metrics, args.out, args.json)


def cmd_datasets(args) -> int:
    from .data import SOURCES, available

    av = available()
    w = max(map(len, SOURCES))
    for name, desc in SOURCES.items():
        print(f"{name:<{w}}  {av[name]}\n{'':<{w}}  {desc}")
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS, OPTIONS

    w = max(map(len, METHODS))
    for name in sorted(METHODS):
        print(f"{name:<{w}}  {METHODS[name].description}")
    print("\noptions (ltkd train --set KEY=VALUE): what each takes, and its default where it has one of its own")
    w = max(map(len, OPTIONS))
    for key, o in OPTIONS.items():
        kind = f"number {o.span()}".strip() if o.kind == "number" else " | ".join(o.kind)
        default = "" if o.default is None else f"; default {o.default:g}" if o.kind == "number" else f"; default {o.default}"
        print(f"  {key:<{w}}  {o.help}  [{kind}{default}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .experiment import teacher_methods

    p = _Parser(prog="ltkd", description="Long-tailed recognition and knowledge distillation, the book's helper.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train a method and write metrics.json")
    t.add_argument("--method", default="ce", help="ce | crt | ... (see `ltkd methods`)")
    t.add_argument("--model", default=None, help="model name (default: the profile's; `ltkd models` lists them)")
    _add_common(t, imbalance=100.0, out="runs/latest", flags=TRAIN_FLAGS)
    t.set_defaults(func=cmd_train)
    d = sub.add_parser("distill", help=f"distil a teacher into a student ({', '.join(teacher_methods())})")
    d.add_argument("--teacher", required=True, help="PATH to an ltkd checkpoint (model.pt) or a MODEL name to train "
                   "with CE first (quick profile unless --profile)")  # fmt: skip
    d.add_argument("--student", default=None,
                   help="student model name (default cnn6x0.5; resnet8x4 with --profile kd-paper)")
    d.add_argument("--method", default="kd", choices=teacher_methods())
    d.add_argument("--teacher-epochs", type=_positive_int, default=None,
                   help="epochs when training the teacher (default: the profile's; quick: 2.5× its stage-1 "
                        "epochs, 15 on Fashion-MNIST)")  # fmt: skip
    _add_common(d, imbalance=1.0, out="runs/distill", flags=DISTILL_FLAGS)
    d.set_defaults(func=cmd_distill)
    sub.add_parser("datasets", help="list data sources and whether they are here").set_defaults(func=cmd_datasets)
    sub.add_parser("methods", help="list methods and their options").set_defaults(func=cmd_methods)
    sub.add_parser("models", help="list models").set_defaults(func=cmd_models)
    return p


def cmd_models(args) -> int:
    from .models import MODELS

    print("\n".join(MODELS))
    return 0


def import_methods(argv: list[str]) -> None:
    """Import the ``--import MODULE`` arguments of ``argv`` (before the parsers are built, so that their recipes
    are among ``ltkd distill --method``'s choices): a path to a ``.py`` file, or a module name. Any failure of the
    file (a syntax error, an exception at import) is one line naming it; a file named like a module of Python's
    standard library, or one already imported, is refused (it would replace that module)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", action="append", default=[], dest="imports")
    for name in pre.parse_known_args(argv)[0].imports:
        path = Path(name)
        try:
            if path.suffix == ".py":
                _import_file(name, path)
            else:
                importlib.import_module(name)
        except LtkdError:
            raise
        except ImportError as e:
            raise LtkdError(f"--import {name}: {first_line(e)}") from e
        except SyntaxError as e:
            raise LtkdError(f"--import {name}: SyntaxError: {e.msg} ({e.filename}, line {e.lineno})") from e
        except Exception as e:  # an ImportError, or whatever the file raised while it ran
            raise LtkdError(f"--import {name}: {type(e).__name__} while importing it: {first_line(e)}") from e


def _import_file(name: str, path: Path) -> None:
    if not path.is_file():
        raise LtkdError(f"--import {name}: no such file")
    held = sys.modules.get(path.stem)
    other = held is not None and Path(getattr(held, "__file__", None) or "").resolve() != path.resolve()
    if path.stem in sys.stdlib_module_names or other:
        raise LtkdError(f"--import {name}: {path.stem!r} is the name of a module Python already has (standard "
                        "library or imported), which this file would replace; rename the file")  # fmt: skip
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[path.stem]
        raise


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except LtkdError as e:
        print(f"ltkd: error: {one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ltkd train --json | head`: the reader has gone; the run's files are written
        _quiet_stdout()
        return 0
    except OSError as e:  # the machine's, not the input's: a full disk, a folder made unwritable meanwhile
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"ltkd: error: {e.strerror or one_line(e) or type(e).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltkd: interrupted (checkpoints in OUT/checkpoints resume the run)", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    import_methods(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .progress import progress_mode

    progress_mode()  # a bad LTKD_PROGRESS is an error before anything is read or trained
    return args.func(args)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not report the closed pipe again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
