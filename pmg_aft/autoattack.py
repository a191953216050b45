"""AutoAttack through the optional `pyautoattack` package (`pip install pmg_aft[autoattack]`), in the variants the
protocols use."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .constants import AUTOATTACK_VARIANTS
from .errors import InputError

STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]


class AutoAttackPlan(NamedTuple):
    """What one AutoAttack run does: its version, attacks, target classes (targeted attacks) and APGD-CE restarts."""

    version: str
    attacks: list[str]
    targets: int
    restarts: int


def autoattack_plan(num_classes: int, variant: str = "standard") -> AutoAttackPlan:
    """AutoAttack's plan for a `num_classes`-way task.

    - `standard` as published: APGD-CE, APGD-T, FAB-T and Square, 9 target classes (`num_classes - 1` with 4 to 9
      classes). Below 4 classes the targeted DLR loss of APGD-T is undefined, so the rest of standard runs:
      APGD-CE, FAB-T and Square, with standard's restarts.
    - `apgd-ce+apgd-dlr`: TGA-ZSR's evaluation (standard's settings, `attacks_to_run = ['apgd-ce', 'apgd-dlr']`;
      APGD-CE alone below 3 classes, where the DLR loss is undefined, as its code does for PCAM).
    - `apgd-ce+apgd-t`: FARE's / RobustBench-style CLIP evaluation (version 'custom': APGD-CE with AutoAttack's
      default 5 restarts, APGD-T with 1 restart and 9 target classes; APGD-CE alone for 2 classes, as its code).

    The plan that ran is recorded in the report.
    """
    if variant not in AUTOATTACK_VARIANTS:
        raise InputError(f"Unknown AutoAttack variant {variant!r}; choose from {AUTOATTACK_VARIANTS}.")
    targets = min(9, num_classes - 1)
    if variant == "apgd-ce+apgd-dlr":
        return AutoAttackPlan("custom", ["apgd-ce", "apgd-dlr"] if num_classes >= 3 else ["apgd-ce"], targets, 1)
    if variant == "apgd-ce+apgd-t":
        return AutoAttackPlan("custom", ["apgd-ce", "apgd-t"] if num_classes >= 4 else ["apgd-ce"], targets, 5)
    if num_classes >= 4:
        return AutoAttackPlan("standard", list(STANDARD), targets, 1)
    return AutoAttackPlan("custom", ["apgd-ce", "fab-t", "square"], targets, 1)


def autoattack(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    num_classes: int,
    norm: str = "linf",
    seed: int = 0,
    variant: str = "standard",
) -> tuple[torch.Tensor, list[str]]:
    """Run AutoAttack on one batch; return the adversarial images and the attacks that ran (with target counts and
    restarts). The caller's random state is left as it was (pyautoattack reseeds the global generators)."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError(
            "The autoattack attack needs the pyautoattack package: pip install 'pmg_aft[autoattack]'."
        ) from error
    plan = autoattack_plan(num_classes, variant)
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        adversary = AutoAttack(
            classifier,
            attacks=plan.attacks if plan.version == "custom" else None,
            device=images.device,
            eps=eps,
            norm={"linf": "Linf", "l2": "L2"}[norm],
            seed=seed,
            version=plan.version,
        )
        adversary.verbose = False
        adversary.apgd.n_restarts = plan.restarts
        adversary.fab.n_restarts = 1  # standard's settings, also for the custom subsets
        adversary.apgd_targeted.n_target_classes = plan.targets
        adversary.fab.n_target_classes = plan.targets
        adversarial, _ = adversary.run_standard_evaluation(images, labels, batch_size=len(images))
    plural = "s" if plan.targets != 1 else ""
    described = []
    for attack in plan.attacks:
        extra = f" ({plan.targets} target{plural})" if attack.endswith("-t") else ""
        extra += f" ({plan.restarts} restarts)" if attack == "apgd-ce" and plan.restarts > 1 else ""
        described.append(attack + extra)
    return adversarial.detach(), described
