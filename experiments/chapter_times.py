"""How long each chapter takes to execute: the "runs in" column of the book's introduction.

    python experiments/chapter_times.py                  # every chapter, outputs written back into notebooks/
    python experiments/chapter_times.py --chapters 02 04 # some of them (the file keeps the others' rows)
    python experiments/chapter_times.py --check          # how long the file's rows are, without executing

Each chapter is executed whole, as a reader's Jupyter would (``jupyter nbconvert --to notebook --execute``), one
after the other, in the ``quick`` profile; its wall time, the CPU time of the kernel, the 1-minute load average
before and after, the threads, CPU and torch version are written to ``experiments/results/chapter_times.json``
after each chapter. A chapter's row counts as measured on idle cores only when the other processes on the machine
used less CPU time during it than a tenth of its wall time (Linux's /proc/stat; elsewhere, when the load average
before it was below one): with other work on the machine the time is longer than a reader's, and the row says so
(``idle: false``). Chapter 5 runs with ``LTKD_THREADS=1``: its prose quotes numbers of its live runs, which can
change with the thread count.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, load_results, script_main, write_results  # noqa: E402

from ltkd.errors import LtkdError  # noqa: E402

OUT = RESULTS / "chapter_times.json"
TARGET_SECONDS = 180  # each chapter: at most three minutes on two idle CPU cores
ENV = {"05": {"LTKD_THREADS": "1"}}  # per chapter, on top of the caller's environment


def chapters() -> dict[str, Path]:
    return {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (Linux's /proc/stat), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def execute(nb: Path, env: dict[str, str], timeout: int) -> dict:
    """Execute ``nb`` in place; its wall seconds, the kernel's CPU seconds, the load average around it, and the
    CPU seconds other processes used meanwhile (``idle``: under a tenth of the wall time, where that is known;
    else a load average below one before the chapter)."""
    load0 = os.getloadavg()[0]
    busy0 = busy_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
           f"--ExecutePreprocessor.timeout={timeout}", str(nb)]  # fmt: skip
    done = subprocess.run(cmd, cwd=nb.parent, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise LtkdError(f"{nb.name} failed to execute:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    busy1 = busy_seconds()
    others = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu)
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "other_cpu_seconds": None if others is None else round(others, 1),
            "idle": load0 < 1.0 if others is None else others < 0.1 * wall}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chapters", nargs="+", default=None, help="two-digit chapter numbers (default: all)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a cell may run")
    ap.add_argument("--check", action="store_true", help="print the file's rows against the target; execute nothing")
    args = ap.parse_args(argv)
    from ltkd.experiment import cpu_name

    doc = load_results(OUT) or {"target_seconds": TARGET_SECONDS, "chapters": {}}
    known = chapters()
    wanted = args.chapters or list(known)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise LtkdError(f"no chapter {', '.join(unknown)}; there are {', '.join(known)}")
    if not args.check:
        import torch

        for ch in wanted:
            env = {"LTKD_PROFILE": "quick", **ENV.get(ch, {})}
            row = execute(known[ch], env, args.timeout)
            row |= {"notebook": known[ch].name, "threads": int(env.get("LTKD_THREADS", os.environ.get("LTKD_THREADS",
                    torch.get_num_threads()))), "cpu": cpu_name(), "torch": torch.__version__,
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
            doc["chapters"][ch] = row
            doc["chapters"] = dict(sorted(doc["chapters"].items()))
            write_results(OUT, doc, end="\n")
            print(f"chapter {ch}: {row['wall_seconds']:.0f} s wall, {row['cpu_seconds']:.0f} s CPU, load "
                  f"{row['load_average'][0]:.2f} → {row['load_average'][1]:.2f}", flush=True)  # fmt: skip
    rows = doc["chapters"]
    for ch, r in rows.items():
        flag = "" if r["idle"] else "  (not on idle cores)"
        over = "  OVER the target" if r["wall_seconds"] > doc["target_seconds"] else ""
        print(f"{ch} {r['notebook']:45s} {r['wall_seconds']:6.0f} s{over}{flag}")
    print(f"book: {sum(r['wall_seconds'] for r in rows.values()):.0f} s over {len(rows)} chapters")
    return 0


if __name__ == "__main__":
    script_main(main, "chapter_times.py")
