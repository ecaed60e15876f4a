"""experiments/evidence.py: the convergence criterion, the paired intervals and verdicts, the plan's order, the
loader's refusal of mixed code versions — and the committed evidence files themselves (one code version per
table, every model converged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import evidence as ev  # noqa: E402

from ltkd.errors import LtkdError  # noqa: E402


def _hist(losses, stage="stage1"):
    return [{"stage": stage, "epoch": i + 1, "loss": x} for i, x in enumerate(losses)]


def test_convergence_levelled_and_still_falling():
    flat = [1.0, 0.5, 0.3, 0.25, 0.22, 0.21, 0.205, 0.203, 0.202, 0.201, 0.2, 0.2]
    falling = [1.0 - 0.08 * i for i in range(12)]
    assert ev.convergence(_hist(flat))["stage1"]["converged"]
    c = ev.convergence(_hist(falling))["stage1"]
    assert not c["converged"] and c["window"] == 2 and c["fraction"] == pytest.approx(0.16 / 0.88, abs=1e-4)


def test_convergence_per_stage_and_from_the_peak():
    # a loss that first rises (DKD's warm-up) is measured from its highest value
    h = _hist([0.5, 0.9, 0.6, 0.4, 0.3, 0.29]) + _hist([0.5, 0.2, 0.19], stage="crt")
    c = ev.convergence(h)
    assert c["stage1"]["fraction"] == pytest.approx(0.01 / 0.61, abs=1e-4) and c["stage1"]["converged"]
    assert c["crt"]["window"] == 1 and c["crt"]["converged"]


def test_convergence_per_phase_where_the_objective_changes():
    # LDAM-DRW's loss jumps when the class-balanced weights start (epoch 25 of 30): read as one curve the jump's
    # recovery looks like a loss still falling; each phase is its own curve
    before = [3.3, 2.2, 1.8, 1.6, 1.5, 1.4, 1.35, 1.3, 1.28, 1.26, 1.24, 1.22, 1.21, 1.2, 1.19, 1.18, 1.17, 1.165,
              1.16, 1.155, 1.159, 1.139, 1.122, 1.151]  # fmt: skip
    after = [2.541, 2.184, 2.006, 2.04, 2.022, 1.976]
    h = _hist(before + after)
    assert not ev.convergence(h)["stage1"]["converged"]
    spec = {"method": "ldam-drw", "epochs": 30}
    assert ev.phases_for(spec) == {"stage1": [24]} and ev.phases_for({"method": "ce", "epochs": 30}) == {}
    c = ev.convergence(h, ev.phases_for(spec))
    assert c["stage1"]["epochs"] == 24 and c["stage1"]["converged"]
    assert c["stage1/phase2"]["epochs"] == 6 and c["stage1/phase2"]["fraction"] == pytest.approx(
        0.046 / 0.565, abs=1e-3
    )
    assert c["stage1/phase2"]["converged"]
    assert not ev.convergence(_hist(before + [2.5, 2.3, 2.1, 1.9, 1.7, 1.5]), ev.phases_for(spec))["stage1/phase2"][
        "converged"
    ]


def test_interval_and_verdict():
    mean, lo, hi = ev.interval([2.0, 3.0, 4.0])  # sd 1: half-width t(0.975, 2) / sqrt(3)
    assert mean == 3.0 and lo == pytest.approx(3 - 4.302653 / 3**0.5, abs=1e-5) and hi > 5
    assert ev.verdict(lo, hi, 3) == "helps"
    assert ev.verdict(-hi, -lo, 3) == "hurts"
    assert ev.verdict(-1, 1, 5) == "no measurable difference at 5 seeds"


def _fake(store: Path, job: str, seed: int, overall: float, version: str = "v1", converged: bool = True):
    p = store / job / f"s{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    rec = {
        "job": job,
        "seed": seed,
        "metrics": {"overall": overall},
        "code_version": version,
        "convergence": {"stage1": {"converged": converged}},
    }
    p.write_text(json.dumps(rec))


def test_load_table_pairs_and_refuses_mixed_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "STORE", tmp_path)
    for s, (ce, crt) in enumerate([(0.80, 0.85), (0.81, 0.87), (0.79, 0.86)]):
        _fake(tmp_path, "lt100/ce", s, ce)
        _fake(tmp_path, "lt100/crt", s, crt)
    v = ev.load_table("ch2_methods")
    p = v.pair("CE + cRT", "CE")
    assert p["seeds"] == [0, 1, 2] and p["diffs"] == [5.0, 6.0, 7.0] and p["verdict"] == "helps"
    assert any("GCL stage 1: 0 of 3 seeds" in w for w in v.warnings)
    _fake(tmp_path, "lt100/crt", 2, 0.86, version="v2", converged=False)
    with pytest.raises(LtkdError, match="2 code versions"):
        ev.load_table("ch2_methods")
    v = ev.load_table("ch2_methods", allow_mixed=True)
    assert any(w.startswith("MIXED CODE VERSIONS") for w in v.warnings)
    assert any("CE + cRT: not converged in seeds [2]" in w for w in v.warnings)


def test_plan_puts_parents_and_teachers_first_and_adds_seeds_where_three_leave_doubt(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "STORE", tmp_path)
    todo = ev.plan(["ch8_pipeline"])
    assert todo.index(("lt100/gcl-stage1", 0)) < todo.index(("lt100/gcl", 0)) < todo.index(("lt100/tn-m4-kd", 0))
    assert todo.index(("lt100/tn-m4-ce", 1)) < todo.index(("lt100/tn-m4-crt", 1))
    assert len(todo) == len(set(todo))
    # CE + cRT − CE crossing zero at three seeds: both rows get seeds 3 and 4
    for s, (ce, crt) in enumerate([(0.80, 0.81), (0.81, 0.80), (0.79, 0.80)]):
        _fake(tmp_path, "lt100/ce", s, ce)
        _fake(tmp_path, "lt100/crt", s, crt)
    need = ev.table_seeds("ch2_methods")
    assert need["CE + cRT"] == need["CE"] == (0, 1, 2, 3, 4) and need["LDAM-DRW"] == (0, 1, 2)


def test_cost_counts_every_run_a_table_needs_parents_included(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "STORE", tmp_path)
    for job, sec, cpu, load in (("lt100/gcl-stage1", 3600, 7200, 1.9), ("lt100/gcl", 1800, 1800, 3.5)):
        _fake(tmp_path, job, 0, 0.8)
        rec = json.loads((tmp_path / job / "s0.json").read_text())
        rec |= {"seconds": sec, "cpu_seconds": cpu, "load_average": [load, 2.0],
                "machine": {"cpu": "X", "threads": 2}}  # fmt: skip
        (tmp_path / job / "s0.json").write_text(json.dumps(rec))
    c = ev.cost(["ch8_pipeline"])
    # the GCL teacher's stage 1 is no row of the table but its parent: counted
    assert c["runs_done"] == 2 and c["runs_missing"] == len(ev.plan(["ch8_pipeline"]))
    assert c["measured_wall_hours"] == 1.5 and c["measured_cpu_per_thread_hours"] == 1.25
    assert c["runs_with_load_above_threads"] == 1
    prior = ev.prior_estimate("lt100/gcl-stage1") + ev.prior_estimate("lt100/gcl")
    assert c["plan_estimate_of_done_hours"] == round(prior / 3600, 2)


def test_every_job_and_table_is_well_formed():
    ev._register_models()
    from ltkd.methods import get_method
    from ltkd.models import MODELS

    for name, j in ev.JOBS.items():
        assert j.data in ev.DATA, name
        assert j.model in MODELS, name
        get_method(j.method)
        for dep in (j.parent, j.teacher):
            assert dep is None or dep in ev.JOBS, name
    for name, t in ev.TABLES.items():
        labels = [label for label, _ in t.rows]
        assert len(labels) == len(set(labels)), name
        assert all(job in ev.JOBS for _, job in t.rows), name
        assert all(a in labels and b in labels for a, b in t.pairs), name


def test_the_committed_evidence_is_one_code_version_per_table_and_converged():
    """What is in experiments/results/evidence/ now: every table loads without mixing code versions, and every
    recorded model met the convergence criterion or is listed in ev.UNCONVERGED with its reason (and only then).
    (Tables still being filled are checked on the rows they have.)"""
    for name in ev.TABLES:
        v = ev.load_table(name)  # raises on mixed code versions
        for label, records in v.records.items():
            for r in records:
                assert r["code_version"] != "dirty", (name, label, r["seed"])
                converged = all(c["converged"] for c in r["convergence"].values())
                assert converged != ((r["job"], r["seed"]) in ev.UNCONVERGED), (
                    name,
                    label,
                    r["seed"],
                    r["convergence"],
                )


def test_code_version_ignores_plots_and_the_command_line_but_not_the_engine(monkeypatch):
    def fake_git(listing: str, status: str = ""):
        return lambda *args: listing if args[0] == "ls-tree" else status

    base = "100644 blob aaa\tltkd/train.py\n100644 blob bbb\tltkd/viz.py\n100644 blob ccc\tltkd/cli.py"
    monkeypatch.setattr(ev, "_git", fake_git(base))
    v = ev.code_version()
    monkeypatch.setattr(ev, "_git", fake_git(base.replace("bbb", "BBB").replace("ccc", "CCC"), " M ltkd/viz.py"))
    assert ev.code_version() == v
    monkeypatch.setattr(ev, "_git", fake_git(base.replace("aaa", "AAA")))
    assert ev.code_version() != v
    monkeypatch.setattr(ev, "_git", fake_git(base, " M ltkd/train.py"))
    assert ev.code_version() == "dirty"


def test_what_a_chapter_prints_comes_from_the_files():
    v = ev.load_table("ch2_methods", allow_mixed=True)
    f = v.frame()
    assert list(f.index) == [label for label, _ in ev.TABLES["ch2_methods"].rows]
    ce = v.summary()[0]
    if ce["n"] > 1:  # the committed CE rows
        assert f.loc["CE", "overall"] == f"{ce['mean']:.2f} ± {ce['std']:.2f}"
        p = v.pair("CE + cRT", "CE")
        assert v.sentence("CE + cRT", "CE").endswith(f"over {len(p['seeds'])} seeds: {p['verdict']}")
        assert f"[{p['lo']:+.2f}, {p['hi']:+.2f}]" in v.verdicts().loc["CE + cRT − CE", "95 % interval"]
        assert ev.record("lt100/ce", 0)["code_version"][:10] in v.provenance()
