"""Baselines: plain cross-entropy and classifier re-training (cRT).

* **CE** — instance sampling, cross-entropy; the model every long-tail paper starts from.
* **cRT** (Kang et al., ICLR 2020, "Decoupling representation and classifier"): stage 1 is
  CE; stage 2 freezes the backbone, puts in a fresh classifier and trains it alone with
  class-balanced sampling (draw a class uniformly, then one of its images).

Chapter 1 (``notebooks/01_long_tailed_data.ipynb``) builds both.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..train import LossObjective
from . import Context, Recipe, Stage, register


def ce_objective(ctx: Context) -> LossObjective:
    """Cross-entropy on the model's logits (with mixup when the profile's config asks for it)."""
    return LossObjective(F.cross_entropy, name="ce")


CE_STAGE = Stage(objective=ce_objective, sampler="instance", name="stage1")
CRT_STAGE = Stage(
    objective=ce_objective, sampler="class-balanced", head="linear", trainable="head", bn="frozen",
    config="stage2", name="crt",
)  # fmt: skip

register(Recipe("ce", "cross-entropy with instance sampling", [CE_STAGE], chapter="01"))
register(Recipe("crt", "CE, then classifier re-training with class-balanced sampling (Kang et al. 2020)",
                [CE_STAGE, CRT_STAGE], chapter="01"))  # fmt: skip
