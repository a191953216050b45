"""AutoAttack through the optional `pyautoattack` package (`pip install pmg_aft[autoattack]`)."""

from __future__ import annotations

import torch

STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]


def autoattack_plan(num_classes: int) -> tuple[str, list[str], int]:
    """AutoAttack's version, attacks and number of target classes for a `num_classes`-way task.

    `standard` as published uses 9 target classes; with 4 to 9 classes it runs with `num_classes - 1` targets.
    Below 4 classes the targeted DLR loss of `apgd-t` is undefined, so the rest of standard runs: `apgd-ce`,
    `fab-t` (with `num_classes - 1` targets) and `square`, with standard's restarts. The plan is recorded in the
    report.
    """
    targets = min(9, num_classes - 1)
    if num_classes >= 4:
        return "standard", list(STANDARD), targets
    return "custom", ["apgd-ce", "fab-t", "square"], targets


def autoattack(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    num_classes: int,
    norm: str = "linf",
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """Run AutoAttack on one batch; return the adversarial images and the attacks that ran (with target counts).

    The caller's random state is left as it was (pyautoattack reseeds the global generators).
    """
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError(
            "The autoattack attack needs the pyautoattack package: pip install 'pmg_aft[autoattack]'."
        ) from error
    version, attacks, targets = autoattack_plan(num_classes)
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        adversary = AutoAttack(
            classifier,
            attacks=attacks if version == "custom" else None,
            device=images.device,
            eps=eps,
            norm={"linf": "Linf", "l2": "L2"}[norm],
            seed=seed,
            version=version,
        )
        adversary.verbose = False
        adversary.apgd.n_restarts = 1  # standard's settings, also for the custom subset
        adversary.fab.n_restarts = 1
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        adversarial, _ = adversary.run_standard_evaluation(images, labels, batch_size=len(images))
    plural = "s" if targets != 1 else ""
    return adversarial.detach(), [f"{a} ({targets} target{plural})" if a.endswith("-t") else a for a in attacks]
