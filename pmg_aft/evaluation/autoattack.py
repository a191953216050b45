"""AutoAttack through the optional `pyautoattack` package (`pip install pmg_aft[autoattack]`)."""

from __future__ import annotations

import torch

STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]


def autoattack_plan(num_classes: int) -> tuple[str, list[str]]:
    """AutoAttack's version and attacks for `num_classes`.

    `standard` needs 10 or more classes as published (9 target classes); with 4 to 9 classes it runs with
    `num_classes - 1` targets; below 4 classes the targeted DLR loss is undefined, so the defined subset
    `apgd-ce`, `fab` (untargeted) and `square` runs instead. The returned list is recorded in the report.
    """
    if num_classes >= 4:
        return "standard", list(STANDARD)
    return "custom", ["apgd-ce", "fab", "square"]


def autoattack(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    num_classes: int,
    norm: str = "linf",
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """Run AutoAttack on one batch; return the adversarial images and the attacks that ran."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError(
            "The autoattack attack needs the pyautoattack package: pip install 'pmg_aft[autoattack]'."
        ) from error
    version, attacks = autoattack_plan(num_classes)
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
    targets = min(9, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = targets
    adversarial, _ = adversary.run_standard_evaluation(images, labels, batch_size=len(images))
    return adversarial.detach(), attacks
