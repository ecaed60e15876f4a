"""Check functions for the chapters' exercises.

A student writes a function in the notebook and calls, e.g., ``ltkd.exercises.check_lt_counts(my_counts)``.
Each check compares the student's function with ltkd's on several inputs (including edge cases),
prints what it found — ``✓`` with what was checked, or the first input where they differ and a
hint — and returns ``True`` or ``False``. Nothing here raises on a wrong answer, so a notebook keeps
running; ``tests/test_exercises.py`` checks that every check accepts the reference and rejects
typical mistakes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "check_lt_counts",
    "check_sampler_probs",
    "check_shot_groups",
    "check_gcl_loss",
    "check_label_revision",
    "check_fusion",
    "check_kd_loss",
]


def _report(ok: bool, name: str, detail: str) -> bool:
    print(("✓ " if ok else "✗ ") + name + ": " + detail)
    return ok


def _close(a, b, atol=1e-5) -> bool:
    try:
        a = torch.as_tensor(np.asarray(a, dtype=np.float64) if not torch.is_tensor(a) else a).double()
        b = torch.as_tensor(np.asarray(b, dtype=np.float64) if not torch.is_tensor(b) else b).double()
        return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-4))
    except Exception:
        return False


# -- chapter 1 ----------------------------------------------------------------------------
def check_lt_counts(fn: Callable[[int, int, float], np.ndarray | list]) -> bool:
    """Chapter 1: ``fn(n_max, C, IF)`` must give the exponential long-tail counts, exactly."""
    from .data import lt_counts

    cases = [(5000, 10, 100), (500, 100, 100), (6000, 10, 100), (5000, 10, 1), (100, 3, 10), (5000, 10, 10)]
    for n_max, c, imb in cases:
        want = lt_counts(n_max, c, imb).tolist()
        try:
            got = [int(v) for v in fn(n_max, c, imb)]
        except Exception as e:  # show the student's error, don't raise
            return _report(False, "lt_counts", f"fn({n_max}, {c}, {imb}) raised {type(e).__name__}: {e}")
        if got != want:
            hint = ""
            if len(got) == len(want) and sum(got) != sum(want) and abs(sum(got) - sum(want)) <= len(want):
                hint = " — off by rounding: truncate with int() and compute n_max·(1/IF)^(i/(C−1))"
            elif len(got) == len(want) and got[::-1] == want:
                hint = " — reversed: class 0 keeps the most images"
            return _report(False, "lt_counts", f"fn({n_max}, {c}, {imb}) = {got[:5]}…, expected {want[:5]}…{hint}")
    return _report(True, "lt_counts", f"matches on {len(cases)} cases, incl. CIFAR-10/100-LT (12,406 and 10,847 images)")


def check_sampler_probs(fn: Callable[[np.ndarray, float], np.ndarray]) -> bool:
    """Chapter 1: ``fn(counts, q)`` = the probability of drawing each class, ∝ n_j^q."""
    from .data import class_sampler_weights

    counts = np.array([5000, 1000, 200, 40, 8])
    for q in (1.0, 0.5, 0.0):
        want = class_sampler_weights(counts, q=q)
        try:
            got = np.asarray(fn(counts, q), dtype=float)
        except Exception as e:
            return _report(False, "sampler_probs", f"q={q} raised {type(e).__name__}: {e}")
        if not _close(got, want):
            hint = " — do the probabilities sum to 1?" if not np.isclose(got.sum(), 1) else ""
            return _report(False, "sampler_probs", f"q={q}: got {np.round(got, 4)}, expected {np.round(want, 4)}{hint}")
    return _report(True, "sampler_probs", "instance (q=1), square-root (q=1/2) and class-balanced (q=0) all match")


def check_shot_groups(fn: Callable[[np.ndarray], dict]) -> bool:
    """Chapter 1: ``fn(counts)`` -> {"many": idx, "medium": idx, "few": idx} (>100, 20–100, <20)."""
    from .data import shot_groups

    for counts in (np.array([500, 150, 101, 100, 50, 20, 19, 5]), np.array([6000, 3000, 60, 20, 19])):
        want = shot_groups(counts)
        try:
            got = fn(counts)
            got = {k: sorted(int(i) for i in got[k]) for k in ("many", "medium", "few")}
        except Exception as e:
            return _report(False, "shot_groups", f"raised {type(e).__name__}: {e}")
        for k in want:
            if got[k] != want[k].tolist():
                return _report(False, "shot_groups", f"counts {counts.tolist()}: {k} = {got[k]}, expected "
                               f"{want[k].tolist()} — check the boundaries: many > 100, medium 20–100, few < 20")  # fmt: skip
    return _report(True, "shot_groups", "boundaries 100 and 20 handled as in the OLTR convention")


# -- chapter 2 ----------------------------------------------------------------------------
def check_gcl_loss(fn: Callable[..., torch.Tensor]) -> bool:
    """Chapter 2: ``fn(cos, y, a, delta, s, eps, m)`` = the GCL cosine-form loss with given noise.

    cos: B×C cosines, y: labels, a: C cloud sizes, delta: B×C noise (already drawn), s scale,
    eps amplitude, m margin. Reference: CE(s·(cos − eps·|delta|·a − m·onehot(y)), y).
    """
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    b, c = 6, 4
    cos = torch.rand(b, c, generator=g) * 2 - 1
    y = torch.tensor([0, 1, 2, 3, 3, 0])
    a = torch.tensor([0.0, 0.3, 0.7, 1.0])
    delta = (torch.randn(b, c, generator=g) / 3).clamp(-1, 1)
    for s, eps, m in ((30.0, 0.5, 0.0), (20.0, 0.5, 0.1), (30.0, 0.0, 0.0)):
        want = F.cross_entropy(s * (cos - eps * delta.abs() * a - m * F.one_hot(y, c)), y)
        try:
            got = fn(cos.clone(), y.clone(), a.clone(), delta.clone(), s, eps, m)
        except Exception as e:
            return _report(False, "gcl_loss", f"raised {type(e).__name__}: {e}")
        if not _close(got, want, atol=1e-4):
            hint = " — did you use |δ| (the absolute value)?" if eps else " — with ε = 0 this is CE on s·cos θ"
            return _report(False, "gcl_loss", f"s={s}, ε={eps}, m={m}: got {float(got):.5f}, expected {float(want):.5f}{hint}")
    return _report(True, "gcl_loss", "cosine form matches for stage-1, stage-2 and noise-free settings")


# -- chapter 3 ----------------------------------------------------------------------------
def check_fusion(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Chapter 3: ``fn(f_tail, f_donor, channels)`` copies the donor's ``channels`` into the tail maps."""
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(3, 8, 4, 4, generator=g), torch.randn(3, 8, 4, 4, generator=g)
    ch = torch.tensor([1, 5])
    want = f1.clone()
    want[:, ch] = f2[:, ch]
    try:
        got = fn(f1.clone(), f2.clone(), ch.clone())
    except Exception as e:
        return _report(False, "fusion", f"raised {type(e).__name__}: {e}")
    if not _close(got, want):
        if _close(got, f2):
            return _report(False, "fusion", "returned the donor maps — only the chosen channels are copied")
        return _report(False, "fusion", "the fused maps differ: channels outside the set must stay the tail image's")
    return _report(True, "fusion", "chosen channels come from the donor, all others are untouched")


# -- chapters 4–5 -------------------------------------------------------------------------
def check_kd_loss(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """Chapter 4: ``fn(student_logits, teacher_logits, T)`` = T² · KL(p_t^T ‖ p_s^T), batch mean."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g) * 3
    for t in (1.0, 4.0):
        want = F.kl_div(F.log_softmax(zs / t, 1), F.softmax(zt / t, 1), reduction="batchmean") * t * t
        try:
            got = fn(zs.clone(), zt.clone(), t)
        except Exception as e:
            return _report(False, "kd_loss", f"raised {type(e).__name__}: {e}")
        if not _close(got, want, atol=1e-4):
            hint = ""
            if _close(got, want / (t * t), atol=1e-4):
                hint = " — multiply by T² so gradients keep their size as T changes"
            return _report(False, "kd_loss", f"T={t}: got {float(got):.5f}, expected {float(want):.5f}{hint}")
    return _report(True, "kd_loss", "matches T²·KL at T = 1 and T = 4")


def check_label_revision(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> bool:
    """Chapter 5: ``fn(p_teacher, y, eta)`` = β·p_t + (1 − β)·onehot(y), β = η / (p_max − p_y + 1)."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    p = F.softmax(torch.randn(8, 5, generator=g) * 3, 1)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    eta = 0.8
    beta = eta / (p.max(1).values - p.gather(1, y[:, None]).squeeze(1) + 1)
    want = beta[:, None] * p + (1 - beta[:, None]) * F.one_hot(y, 5)
    try:
        got = fn(p.clone(), y.clone(), eta)
    except Exception as e:
        return _report(False, "label_revision", f"raised {type(e).__name__}: {e}")
    if not _close(got, want):
        got = torch.as_tensor(got)
        if got.shape == want.shape and not bool((got.argmax(1) == y).all()):
            return _report(False, "label_revision", "some revised labels' argmax is not the true class")
        return _report(False, "label_revision", "values differ — β is per sample: η / (p_max − p_y + 1)")
    return _report(True, "label_revision", "rows sum to 1 and every argmax is the true class")
