"""experiments/kd_table.py's method lists: every scheduled method is a recipe, and the rows of the former
all-sample label revision (``LEGACY``) are recorded only — no recipe carries their name, so the script can
never rerun them under a recipe that now means something else (chapter 5 reads both kinds of row)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import kd_table as KT  # noqa: E402

from ltkd.errors import LtkdError  # noqa: E402
from ltkd.methods import get_method  # noqa: E402

RESULTS = Path(KT.ROOT) / "results"


def test_scheduled_methods_are_recipes_and_legacy_names_are_not():
    for m in set(KT.METHODS) | set(KT.LT_METHODS):
        if m != "ce":
            assert get_method(m).name == m
    for m in KT.LEGACY:
        with pytest.raises(LtkdError):
            get_method(m)
        assert m not in KT.METHODS and m not in KT.LT_METHODS


@pytest.mark.parametrize("name", ["kd_quick.json", "kd_lt_quick.json"])
def test_results_keep_the_all_sample_rows_beside_the_new_ones(name):
    runs = json.loads((RESULTS / name).read_text())["runs"]
    methods = {r["method"] for r in runs}
    assert {"kd-lr-all", "kd-lr-all-ds", "kd-lr", "kd-lr-ds", "kd-mix"} <= methods
    assert methods <= set(KT.METHODS) | set(KT.LT_METHODS) | set(KT.LEGACY)
    keys = [(r["table"], r["teacher"], r["method"], r["seed"], r["fraction"]) for r in runs]
    assert len(keys) == len(set(keys))  # one row per run: nothing recorded twice under one name


def test_strong_tables_name_their_schedule_and_dkd_beta():
    assert [KT.epochs_of(t) for t in ("strong", "strong-e15", "strong-e30-beta1", "main", "lt")] == [6, 15, 30, 6, 6]
    assert KT.beta_of("strong-e30-beta1") == 1.0 and KT.beta_of("strong-e30") is None
