"""The ``ltkd`` command: ``ltkd train``, ``ltkd datasets``, ``ltkd methods``.

Bad input prints one line, ``ltkd: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .errors import LtkdError, one_line
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
    from .experiment import check_seed

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


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits | fashion-mnist | cifar10 | cifar100 | PATH")
    p.add_argument("--imbalance", type=_imbalance, default=100.0, help="imbalance factor n_max/n_min (1 = balanced)")
    p.add_argument("--lt-profile", default="exp", choices=["exp", "step"])
    p.add_argument("--model", default=None, help="model name (default: the profile's)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="stage-1 epochs (default: the profile's)")
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**63 - 1")
    p.add_argument("--profile", default=None, choices=list(PROFILES), help="default: $LTKD_PROFILE or quick")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: $LTKD_DEVICE, else the best there is)")
    p.add_argument("--out", type=_out, default="runs/latest", help="output folder for metrics.json and model.pt")
    p.add_argument("--fusion-ratio", type=float, default=None, help="H2T: fraction of channels fused (default 0.25)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="a method option, e.g. --set gcl_eps=0.25 (repeatable; `ltkd methods` lists them)")
    _add_eval_every(p)
    _add_resume_unfingerprinted(p)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")


def _add_resume_unfingerprinted(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume-unfingerprinted", action="store_true",
                   help="resume checkpoints in OUT/checkpoints that do not record the run (or the data) that wrote "
                        "them, from an older ltkd: you vouch they are this run's (without it they are refused)")


def _add_eval_every(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-every", type=_nonnegative_int, default=0, metavar="N",
                   help="also test every N epochs (and at each stage's end) into the log: a learning curve "
                        "and the best evaluated epoch (default 0: off)")


def _options(args) -> dict:
    from .methods import parse_option

    opts = dict(parse_option(text) for text in getattr(args, "options", None) or [])
    if getattr(args, "fusion_ratio", None) is not None:
        opts["fusion_ratio"] = args.fusion_ratio
    if "fusion_ratio" in opts and not 0 <= opts["fusion_ratio"] <= 1:
        raise LtkdError(f"--fusion-ratio must be in [0, 1], got {opts['fusion_ratio']}")
    return opts


def cmd_train(args) -> int:
    from .experiment import run

    metrics, _ = run(
        method=args.method, dataset=args.dataset, imbalance=args.imbalance, model=args.model,
        epochs=args.epochs, seed=args.seed, profile=args.profile, out=args.out, device=args.device,
        options=_options(args), lt_profile=args.lt_profile, eval_every=args.eval_every,
        resume_unfingerprinted=args.resume_unfingerprinted,
    )  # fmt: skip
    from .distributed import is_main

    if not is_main():  # under torchrun: rank 0 writes and reports
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    else:
        print(_summary(metrics))
        print(f"  wrote {args.out}/metrics.json and {args.out}/model.pt")
    return 0


def cmd_datasets(args) -> int:
    from .data import SOURCES, available

    av = available()
    w = max(map(len, SOURCES))
    for name, desc in SOURCES.items():
        print(f"{name:<{w}}  {av[name]}\n{'':<{w}}  {desc}")
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS, _load_all

    _load_all()
    w = max(map(len, METHODS))
    for name in sorted(METHODS):
        print(f"{name:<{w}}  {METHODS[name].description}")
    from .methods import OPTIONS

    print("\noptions (ltkd train --set KEY=VALUE; defaults in brackets):")
    w = max(map(len, OPTIONS))
    for key, (values, text) in OPTIONS.items():
        kind = "number" if values == "number" else " | ".join(values)
        print(f"  {key:<{w}}  {text}  [{kind}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ltkd", description="Long-tailed recognition and knowledge distillation, the book's helper.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train a method and write metrics.json")
    t.add_argument("--method", default="ce", help="ce | crt | ... (see `ltkd methods`)")
    _add_run_args(t)
    t.set_defaults(func=cmd_train)
    sub.add_parser("datasets", help="list data sources and whether they are here").set_defaults(func=cmd_datasets)
    sub.add_parser("methods", help="list methods").set_defaults(func=cmd_methods)
    for hook in _EXTRA_COMMANDS:
        hook(sub)
    return p


# Method files add sub-commands (e.g. `ltkd distill`) by appending a function(sub) here.
_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    try:
        from . import methods

        methods._load_all()
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
            return int(e.code or 0)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except LtkdError as e:
        print(f"ltkd: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltkd: interrupted (checkpoints in OUT/checkpoints resume the run)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # `python -m ltkd.cli`: run the importable module's main, whose _EXTRA_COMMANDS the method files fill
    # (this file, run as __main__, is a second copy of the module that they never see)
    from ltkd.cli import main as _main

    sys.exit(_main())
