"""experiments/h2t_table.py's settings: every H2T run is paired with a ρ = 0 control that differs from it by
the fusion only (chapter 3's ablation reads the differences as the fusion's effect)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import h2t_table as HT  # noqa: E402

# H2T setting -> its control, as chapter 3's section 7 pairs them
SAME_STAGE = {
    "h2t": "h2t/rho0",
    "mix/h2t": "mix/crt",
    "bn/h2t": "bn/crt",
    "mix+bn/h2t": "mix+bn/crt",
    "donor-cb/h2t": "h2t/rho0",
    "published/h2t": "published/crt",
    "rho0.1": "h2t/rho0",
    "rho0.5": "h2t/rho0",
}
OTHER_STAGE = {"h2t-fresh": "crt", "gcl-h2t": "gcl/nomix"}  # control: the method's own stage 2


def test_every_setting_is_in_a_part_and_every_pair_runs():
    parts = {s for names in HT.PARTS.values() for s in names}
    assert parts == set(HT.SETTINGS)
    for trt, ctrl in {**SAME_STAGE, **OTHER_STAGE}.items():
        assert trt in parts and ctrl in parts


def test_h2t_and_its_control_differ_by_the_fusion_only():
    for trt, ctrl in SAME_STAGE.items():
        k1, st1, opt1, over1, _ = HT.SETTINGS[trt]
        k0, st0, opt0, over0, _ = HT.SETTINGS[ctrl]
        assert (k1, st1, over1) == (k0, st0, over0), trt
        assert opt0["fusion_ratio"] == 0.0 and opt1["fusion_ratio"] > 0.0, trt
        rest1 = {k: v for k, v in opt1.items() if k not in ("fusion_ratio", "h2t_donor")}
        rest0 = {k: v for k, v in opt0.items() if k not in ("fusion_ratio", "h2t_donor")}
        assert rest1 == rest0, trt
    for trt, ctrl in OTHER_STAGE.items():
        (k1, _, opt1, over1, _), (k0, _, _, over0, _) = HT.SETTINGS[trt], HT.SETTINGS[ctrl]
        assert (k1, over1) == (k0, over0) and opt1["fusion_ratio"] == 0.25, trt


def test_the_kept_head_settings_fine_tune_the_stage1_classifier():
    assert HT.SETTINGS["h2t"][1].head is None  # None: the stage-1 classifier is kept
    assert HT.SETTINGS["h2t-fresh"][1].head == "linear"
    assert HT.SETTINGS["bn/h2t"][1].bn == "train" and HT.SETTINGS["h2t"][1].bn == "frozen"
