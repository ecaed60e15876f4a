"""Grade one submission so that the submission cannot change its own grade (used by build.py --grade).

Two processes per submission:

* the **worker** (``python grader.py --worker``, started by the parent) runs the submission's code cells, in
  order, each with a time limit and a memory cap. It first runs the assignment's reference solution into a
  namespace of its own; after each of the student's cells it takes every function the assignment asks for
  (``lt_counts``, ``kd_loss``, ...) out of the student's namespace and puts the reference in its place, so a
  later measurement cell computes with the reference functions (a slip in a function is charged once, to its
  own question). Then it answers calls: "``kd_loss(these inputs)``" -> the student's function's result.
* the **parent** (this module, :func:`grade_notebook`) never runs a line of the submission. It runs the
  assignment's tests (the autograder's ``tests/qN.py``, written by ``otter assign`` from the master) here,
  with stand-ins for the student's functions that forward each call to the worker, and with the student's
  measured values. Everything that crosses between the two is tagged JSON (numbers, strings, lists, dicts,
  arrays, tensors): nothing the worker sends can run code here, and nothing the submission does in the worker
  (replacing ``ltkd.grading.close``, ``abs``, ``torch.allclose``, ...) reaches the tests, which compare here.

A static scan (:func:`tamper_scan`) also flags every cell that changes the machinery (assignments to
attributes of imported modules or of builtins, ``sys.modules``, ``setattr``/``delattr``, ``importlib``,
reloads): the CSV names the cell. A failing hidden test's feedback is its docstring (the property it checks)
and the kind of failure, never its inputs, its source or its expected value.

    python assignments/grader.py AUTOGRADER_DIR STUDENT_DIR SUBMISSION    # one JSON line on stdout
    python assignments/grader.py AUTOGRADER_DIR STUDENT_DIR -             # a path a line on stdin, as many
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

CELL_SECONDS = float(os.environ.get("LTKD_GRADING_CELL_SECONDS", 60))  # one cell of the submission
TEST_SECONDS = float(os.environ.get("LTKD_GRADING_TEST_SECONDS", 10))  # one call of a student's function
NOTEBOOK_SECONDS = float(os.environ.get("LTKD_GRADING_NOTEBOOK_SECONDS", 600))  # the whole notebook
MEMORY_GB = float(os.environ.get("LTKD_GRADING_MEMORY_GB", 6))  # the worker's data segment
MAX_REPLY = 64 * 2**20
TIMEOUTS_PER_FUNCTION = 2  # after that many calls past the limit, a function's further calls fail at once


# ----------------------------------------------------------------------------------------------------------
# tagged JSON: the only form in which values cross between the parent and the worker
def encode(v: Any, depth: int = 0) -> Any:
    import numpy as np

    torch = sys.modules.get("torch")
    if depth > 20:
        return {"object": "nested too deep"}
    if v is None or isinstance(v, (bool, str)) or type(v) is int:
        return v
    if type(v) is float:
        return v if math.isfinite(v) else {"float": repr(v)}
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        return {"tensor": encode(t.tolist(), depth + 1), "dtype": str(t.dtype).replace("torch.", ""),
                "shape": list(t.shape), "grad": bool(v.requires_grad)}
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        return {"ndarray": encode(v.tolist(), depth + 1), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        return {"npscalar": encode(v.item(), depth + 1), "dtype": str(v.dtype)}
    if isinstance(v, (int, float)):  # subclasses (bool handled above)
        return encode(float(v) if isinstance(v, float) else int(v), depth + 1)
    if isinstance(v, (list, tuple)):
        return {"list" if isinstance(v, list) else "tuple": [encode(x, depth + 1) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in v.items()]}
    return {"object": type(v).__name__}


class Opaque:
    """A value of a kind that does not cross (a model, a function, ...): it equals nothing."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<a {self.kind}>"


def decode(v: Any) -> Any:
    import numpy as np

    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):  # the plain lists inside a tensor's or array's values
        return [decode(x) for x in v]
    if not isinstance(v, dict) or len(v) == 0:
        return Opaque("value")
    if "float" in v:
        return float(v["float"])
    if "tensor" in v:
        import torch

        data = decode(v["tensor"])
        t = torch.tensor(data, dtype=getattr(torch, str(v["dtype"]), torch.float32)).reshape(v["shape"])
        return t.requires_grad_() if v.get("grad") is True and t.is_floating_point() else t
    if "ndarray" in v:
        return np.array(decode(v["ndarray"]), dtype=np.dtype(str(v["dtype"]))).reshape(v["shape"])
    if "npscalar" in v:
        return np.dtype(str(v["dtype"])).type(decode(v["npscalar"]))
    if "list" in v:
        return [decode(x) for x in v["list"]]
    if "tuple" in v:
        return tuple(decode(x) for x in v["tuple"])
    if "dict" in v:
        return {_key(decode(k)): decode(x) for k, x in v["dict"]}
    return Opaque(str(v.get("object", "value"))[:40])


def _key(k: Any) -> Any:
    try:
        hash(k)
        return k
    except TypeError:
        return repr(k)


# ----------------------------------------------------------------------------------------------------------
# the static scan
_MACHINERY = {"sys", "builtins", "importlib", "ltkd", "otter", "torch", "numpy", "np", "F", "nn", "math", "signal"}


def _imported_names(tree: ast.AST) -> set[str]:
    """Names bound to modules by ``import x`` / ``import x as y`` / ``from x import y`` (y may be a module)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _scan_tree(tree: ast.AST, modules: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            while isinstance(t, ast.Subscript):  # `np.x[0] = ...` changes np.x; `a[np.argmax(b)] = ...` does not
                t = t.value
            if isinstance(t, ast.Attribute) and _root(t) in modules | {"__builtins__"}:
                found.append((node.lineno, f"changes {ast.unparse(t)}"))
        if isinstance(node, ast.Attribute) and node.attr in ("modules", "meta_path", "path_hooks") \
                and _root(node) == "sys":
            found.append((node.lineno, f"uses sys.{node.attr}"))
        if isinstance(node, ast.Name) and node.id == "__builtins__":
            found.append((node.lineno, "uses __builtins__"))
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if isinstance(f, ast.Attribute) and _root(f) == "signal":
                found.append((node.lineno, f"calls {ast.unparse(f)} (the time limits)"))
            if fname in ("setattr", "delattr", "reload", "__import__", "exec", "eval", "compile", "globals",
                         "import_module"):
                found.append((node.lineno, f"calls {fname}"))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                if m.split(".")[0] in ("importlib", "builtins", "ctypes", "gc", "inspect") and m != "importlib.util":
                    found.append((node.lineno, f"imports {m}"))
    return found


def tamper_scan(cells: list[str]) -> list[str]:
    """One line per suspicious statement: ``cell N, line L: changes ltkd.grading.close``. Cells are numbered
    from 1 among the notebook's code cells; a cell that does not parse is skipped (it fails on its own)."""
    flags = []
    for i, src in enumerate(cells, 1):
        try:
            tree = ast.parse(_python_only(src))
        except SyntaxError:
            continue
        modules = _imported_names(tree) | _MACHINERY
        flags += [f"code cell {i}, line {line}: {what}" for line, what in _scan_tree(tree, modules)]
    return sorted(set(flags), key=lambda s: [int(x) for x in re.findall(r"\d+", s)[:2]])


def _python_only(src: str) -> str:
    """A cell without IPython's ``%magic`` and ``!shell`` lines (they do not run while grading)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


# ----------------------------------------------------------------------------------------------------------
# the worker: runs the submission; everything here may be changed by it
def _worker_main() -> None:  # pragma: no cover - runs in the worker process
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    inp = sys.stdin
    init = json.loads(inp.readline())
    _limit_memory(init["memory_gb"])
    _stub_otter()
    import numpy  # noqa: F401 - encode needs it
    import torch

    torch.set_num_threads(1)
    ref: dict[str, Any] = {"__name__": "__reference__"}
    for src in init["reference"]:
        exec(compile(src, "<reference>", "exec"), ref)
    names = init["functions"]
    ns: dict[str, Any] = {"__name__": "__main__"}
    student: dict[str, Any] = {}
    errors = []
    for i, src in enumerate(init["cells"], 1):
        _send(out, {"cell": i})
        try:
            code = compile(_python_only(src), f"<cell {i}>", "exec")
            with _alarm(init["cell_seconds"]):
                exec(code, ns)
        except BaseException as e:  # noqa: BLE001 - the student's error: that cell stops, the next runs
            if isinstance(e, (KeyboardInterrupt,)):
                e = TimeoutError("stopped")
            errors.append(f"code cell {i}: {type(e).__name__}")
        for n in names:
            f = ns.get(n)
            if f is not None and f is not ref.get(n):
                student[n] = f
                ns[n] = ref.get(n)
    values = {n: encode(ns.get(n)) for n in init["values"]}
    _send(out, {"ready": True, "values": values, "errors": errors, "defined": sorted(student)})
    for line in inp:
        req = json.loads(line)
        _send(out, _answer(student, req))


def _answer(student: dict, req: dict) -> dict:  # pragma: no cover - runs in the worker process
    fn = student.get(req["fn"])
    if fn is None:
        return {"missing": True}
    import base64
    import pickle

    import torch

    args, kwargs = pickle.loads(base64.b64decode(req["call"]))  # from the parent: trusted
    try:
        with _alarm(req["seconds"]):
            result = fn(*args, **kwargs)
            grads = None
            if isinstance(result, torch.Tensor) and result.requires_grad:  # d(sum of the result)/d(each input)
                leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                if leaves:
                    grads = [encode(g) for g in torch.autograd.grad(result.sum(), leaves, allow_unused=True)]
        reply = {"result": encode(result), "args": [encode(a) for a in args], "grads": grads}
        json.dumps(reply)
        return reply
    except TimeoutError:
        return {"timeout": True}
    except BaseException as e:  # noqa: BLE001
        return {"raised": type(e).__name__, "message": str(e)[:200]}


def _send(out, msg: dict) -> None:  # pragma: no cover - runs in the worker process
    out.write(json.dumps(msg) + "\n")
    out.flush()


class _alarm:  # pragma: no cover - runs in the worker process
    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        def stop(signum, frame):
            raise TimeoutError(f"ran longer than {self.seconds:g} s")

        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        return False


def _limit_memory(gb: float) -> None:  # pragma: no cover - runs in the worker process
    try:
        import resource

        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def _stub_otter() -> None:  # pragma: no cover - runs in the worker process
    """The submission's ``import otter`` / ``grader.check(...)`` do nothing while it is graded."""
    import types

    class Notebook:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return lambda *a, **k: None

    mod = types.ModuleType("otter")
    mod.Notebook = Notebook
    sys.modules["otter"] = mod


# ----------------------------------------------------------------------------------------------------------
# the parent
class WorkerDied(Exception):
    pass


class Worker:
    """The submission's process; restarted (the notebook run again) if a call kills it or runs past its time."""

    def __init__(self, cells: list[str], key: dict, workdir: Path):
        self.cells, self.key, self.workdir = cells, key, workdir
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None
        self.starts = 0
        self.buffer = b""
        self.timeouts: dict[str, int] = {}  # function -> calls that ran past the limit

    def start(self) -> dict:
        self.starts += 1
        env = {**os.environ, "PYTHONHASHSEED": "0", "LTKD_PROGRESS": "0"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=self.workdir,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.buffer = b""
        init = {"cells": self.cells, "reference": self.key["reference"], "functions": self.key["functions"],
                "values": self.key["values"], "cell_seconds": CELL_SECONDS, "memory_gb": MEMORY_GB}
        self.proc.stdin.write(json.dumps(init) + "\n")
        self.proc.stdin.flush()
        deadline, cell = time.monotonic() + NOTEBOOK_SECONDS, 0
        while True:
            msg = self._read(deadline - time.monotonic(), f"in code cell {cell}")
            if "cell" in msg:
                cell = msg["cell"]
            elif msg.get("ready"):
                self.ready = msg
                return msg

    def _read(self, seconds: float, where: str) -> dict:
        """The worker's next line (one JSON message), read from the raw pipe with a deadline."""
        assert self.proc is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + seconds
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise WorkerDied(f"the notebook ran past its time limit {where}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                code = self.proc.wait()
                self.proc = None
                why = "was killed (out of memory?)" if code == -9 else f"exited with code {code}"
                raise WorkerDied(f"the notebook's process {why} {where}")
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY:
                self.stop()
                raise WorkerDied(f"the notebook's process sent more than {MAX_REPLY >> 20} MB {where}")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            self.stop()
            raise WorkerDied(f"the notebook's process sent garbage {where}") from None

    def call(self, name: str, args: tuple, kwargs: dict, seconds: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            if self.starts >= 3:
                raise WorkerDied("the notebook's process died three times")
            self.start()
        import base64
        import pickle

        req = {"fn": name, "call": base64.b64encode(pickle.dumps((args, kwargs))).decode(), "seconds": seconds}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            return self._read(seconds + 10, f"while `{name}` ran")
        except BaseException:  # a time limit of the test itself, a broken pipe: this process is out of step
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None


class StudentFunction:
    """Stands in for the student's function in a test: calls it in the worker, returns its result here."""

    def __init__(self, worker: Worker, name: str):
        self.worker, self.name = worker, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stopped = f"ran longer than {TEST_SECONDS:g} s (an endless loop?) and was stopped"
        if self.worker.timeouts.get(self.name, 0) >= TIMEOUTS_PER_FUNCTION:
            raise TimeoutError(stopped + f" (as in {TIMEOUTS_PER_FUNCTION} calls before: not run again)")
        try:  # the worker's own limit fires first, so that it answers and goes on
            r = self.worker.call(self.name, args, kwargs, max(TEST_SECONDS - 1, 0.8 * TEST_SECONDS))
        except WorkerDied as e:
            raise RuntimeError(str(e)) from None
        if r.get("timeout"):
            self.worker.timeouts[self.name] = self.worker.timeouts.get(self.name, 0) + 1
            raise TimeoutError(stopped)
        if "raised" in r:
            raise _student_error(r["raised"], r.get("message", ""))
        if r.get("missing"):
            raise NameError(f"`{self.name}` is not defined")
        for a, after in zip(args, r.get("args", [])):
            _copy_back(a, decode(after))  # an input the function changed in place is changed here too
        result = decode(r["result"])
        if r.get("grads"):
            result = _with_gradient(args, result, [decode(g) for g in r["grads"]])
        return result


def _with_gradient(args: tuple, result: Any, grads: list) -> Any:
    """The result, carrying the gradient the student's function gave its input: exact for an elementwise
    function of one input (``sign_ste``), which is all the tests ask for."""
    import torch

    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    if len(leaves) != 1 or not isinstance(grads[0], torch.Tensor) or grads[0].shape != result.shape:
        return result
    d = grads[0].detach()

    class Elementwise(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return result.detach().clone()

        @staticmethod
        def backward(ctx, g):
            return g * d

    return Elementwise.apply(leaves[0])


def _student_error(kind: str, message: str) -> Exception:
    cls = type(re.sub(r"\W", "", kind) or "Error", (Exception,), {})
    return cls(message)


def _copy_back(arg: Any, after: Any) -> None:
    import numpy as np
    import torch

    try:
        if isinstance(arg, torch.Tensor) and isinstance(after, torch.Tensor) and arg.shape == after.shape:
            if not torch.equal(arg, after.to(arg.dtype)):
                arg.copy_(after)
        elif isinstance(arg, np.ndarray) and isinstance(after, np.ndarray) and arg.shape == after.shape:
            if not np.array_equal(arg, after):
                arg[...] = after
    except (RuntimeError, TypeError, ValueError):
        pass


def load_tests(tests_dir: Path) -> list[dict]:
    """The autograder's tests (``otter assign``'s ``tests/qN.py``): question, name, points, hidden, function."""
    found = []
    for path in sorted(tests_dir.glob("*.py")):
        cases: list[dict] = []

        def test_case(points=None, hidden=False, success_message=None, failure_message=None, name=None,
                      cases=cases):
            def add(fn):
                cases.append({"function": fn, "points": float(points or 0), "hidden": bool(hidden),
                              "name": name or fn.__name__})
                return fn

            return add

        src = path.read_text().replace("from otter.test_files import test_case", "")
        ns = {"test_case": test_case, "__name__": f"tests.{path.stem}"}
        exec(compile(src, str(path), "exec"), ns)
        for c in cases:
            c["question"] = ns.get("name", path.stem)
            found.append(c)
    return found


def assignment_key(autograder: Path) -> dict:
    """What the worker needs: the reference solution's code cells, the functions asked, the values measured."""
    tests = load_tests(autograder / "tests")
    solution = json.loads(next(p for p in autograder.glob("*.ipynb")).read_text())
    cells = ["".join(c["source"]) for c in solution["cells"] if c["cell_type"] == "code"]
    asked = {a for t in tests for a in inspect.signature(t["function"]).parameters}
    defined, reference = set(), []
    for src in cells:
        try:
            tree = ast.parse(_python_only(src))
        except SyntaxError:
            continue
        defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} & asked
        if defs:  # the cell's imports and function definitions, nothing it computes
            defined |= defs
            keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
            reference.append(ast.unparse(ast.Module(keep, [])))
    return {"tests": tests, "functions": sorted(defined), "values": sorted(asked - defined), "reference": reference}


def read_submission(path: Path, name: str) -> dict:
    """The submission's notebook (a .ipynb, or otter's export zip holding ``<name>.ipynb``), or ValueError."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                inside = [n for n in z.namelist() if n.endswith(".ipynb") and not n.startswith("__MACOSX")]
                want = [n for n in inside if Path(n).name == f"{name}.ipynb"]
                if not want:
                    raise ValueError(f"the zip holds no {name}.ipynb (it holds {inside or 'no notebook'})")
                text = z.read(want[0]).decode("utf-8", "replace")
        except zipfile.BadZipFile:
            raise ValueError("not a zip file") from None
    else:
        text = path.read_text(errors="replace")
    try:
        nb = json.loads(text)
        cells = nb["cells"]
        assert isinstance(cells, list)
        return {"cells": ["".join(c["source"]) if isinstance(c["source"], list) else str(c["source"])
                          for c in cells if c.get("cell_type") == "code"]}
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ValueError("not a notebook (invalid JSON or no cells)") from None


def _feedback(test: dict, error: BaseException) -> str:
    """Public test: its own message. Hidden test: the property it checks and the kind of failure only."""
    msg = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not test["hidden"]:
        return msg
    prop = (test["function"].__doc__ or "a hidden check").strip().splitlines()[0]
    kind = ""
    m = re.search(r"(`\w+` is not defined|raised \w+|ran longer than [\d.]+ s|should be a function)", msg)
    if m:
        kind = f" ({m.group(1)})"
    elif not isinstance(error, AssertionError):
        kind = f" (the result has the wrong type or shape: {type(error).__name__})"
    return f"hidden test failed: {prop}{kind}"


def grade_notebook(submission: Path, autograder: Path, student: Path) -> dict:
    """Grade one submission: {"scores": {q: [score, possible]}, "feedback", "flags", "error", "seconds"}."""
    t0 = time.monotonic()
    key = assignment_key(autograder)
    possible: dict[str, list[float]] = {}
    for t in key["tests"]:
        possible.setdefault(t["question"], [0.0, 0.0])[1] += t["points"]
    result = {"scores": possible, "feedback": {}, "flags": [], "error": "", "seconds": 0.0}
    try:
        nb = read_submission(submission, autograder.parent.name)
    except (ValueError, OSError) as e:
        result["error"] = str(e)
        return result
    handout = set(read_submission(student / f"{autograder.parent.name}.ipynb", "")["cells"])
    result["flags"] = tamper_scan([c if c not in handout else "" for c in nb["cells"]])  # the handout's own cells
    with tempfile.TemporaryDirectory(prefix="ltkd-grade-") as tmp:
        for p in student.iterdir():  # the handout's files (public tests, models): nothing hidden
            if p.suffix != ".ipynb":
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, Path(tmp) / p.name)
        worker = Worker(nb["cells"], key, Path(tmp))
        try:
            ready = worker.start()
        except WorkerDied as e:
            result["error"] = str(e)
            return result
        here = os.getcwd()
        os.chdir(autograder)  # the tests read the assignment's files from the autograder's copy, not the worker's
        try:
            _run_tests(key, worker, ready, result)
        finally:
            os.chdir(here)
            worker.stop()
    result["seconds"] = time.monotonic() - t0
    return result


def _run_tests(key: dict, worker: Worker, ready: dict, result: dict) -> None:
    values = {n: decode(v) for n, v in ready["values"].items()}
    for t in key["tests"]:
        q = t["question"]
        args = [(StudentFunction(worker, a) if a in ready["defined"] else None) if a in key["functions"]
                else values.get(a)
                for a in inspect.signature(t["function"]).parameters]
        try:
            t["function"](*args)
            result["scores"][q][0] += t["points"]
        except BaseException as e:  # noqa: BLE001 - any failure of a test costs that test, nothing more
            if isinstance(e, KeyboardInterrupt):
                raise
            result["feedback"].setdefault(q, []).append(f"{t['name']} ({t['points']:g} pt): {_feedback(t, e)}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        _worker_main()
        return 0
    autograder, student, submission = (Path(a) for a in argv)
    if str(submission) != "-":
        print(json.dumps(grade_notebook(submission, autograder, student)))
        return 0
    out, sys.stdout = sys.stdout, sys.stderr  # whatever else prints here cannot mix with the answers
    for line in sys.stdin:  # one path a line -> one JSON line each: torch and the tests are loaded once
        try:
            g = grade_notebook(Path(line.strip()), autograder, student)
        except Exception as e:  # noqa: BLE001 - a fault of this grader: that submission's row says so
            g = {"scores": {}, "feedback": {}, "flags": [], "error": f"the grader failed: {type(e).__name__}: {e}"}
        print(json.dumps(g), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
