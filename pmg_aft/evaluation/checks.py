"""Sanity checks in the AutoAttack spirit: evaluation mistakes that the numbers themselves reveal."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F


def gradient_health(classifier, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Share of samples whose input gradient of the cross-entropy is all zero or non-finite (gradient masking)."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(classifier(x).float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    flat = grad.flatten(1)
    return {
        "samples": int(flat.shape[0]),
        "zero_gradient": (flat == 0).all(dim=1).float().mean().item(),
        "non_finite_gradient": (~torch.isfinite(flat)).any(dim=1).float().mean().item(),
    }


ZERO_GRADIENT_WARNING = 0.01


def sanity_warnings(report) -> list[str]:
    """Warnings for results that point to a broken evaluation rather than a robust model.

    - robust accuracy above clean accuracy (an attack cannot help);
    - more steps of the same attack and budget giving higher robust accuracy (a weak or masked attack);
    - input gradients that are zero or non-finite for some samples (gradient masking or numerical trouble);
    - more than 1% of the first attack step's input-gradient entries exactly 0 (an underflowed, partly blind attack,
      as an unscaled fp16 backward of a batch-mean loss gives).
    """
    warnings = []
    for name, result in report.results.items():
        clean = result.clean_accuracy
        robust = result.robust_accuracy
        for key, value in robust.items():
            if value > clean + 1e-9:
                warnings.append(f"{name}: robust accuracy under {key} ({value:.2%}) is above clean ({clean:.2%}).")
        # The same attack with more steps, from the same start with the first success kept, can only lower
        # robust accuracy per sample; settings are grouped as objects, by every field but the step count.
        groups: dict = {}
        for setting in report.settings:
            if setting.steps is not None and setting.first_success and not setting.random_start:
                groups.setdefault(replace(setting, steps=1), []).append((setting.steps, robust[setting.key]))
        for group, runs in groups.items():
            runs.sort()
            for (few, low), (many, high) in zip(runs, runs[1:]):
                if high > low + 1e-9:
                    warnings.append(
                        f"{name}: {group.attack} at eps {group.format_pixels(group.eps)} gives higher robust accuracy "
                        f"with {many} steps ({high:.2%}) than with {few} ({low:.2%}); the attack may be weak or the "
                        "gradients masked."
                    )
        health = result.gradient_health or {}
        for kind in ("zero_gradient", "non_finite_gradient"):
            if health.get(kind, 0) > 0:
                warnings.append(
                    f"{name}: {health[kind]:.1%} of the checked samples have a {kind.replace('_', ' ')}; gradient "
                    "attacks cannot move them (masking or numerical trouble), so robust accuracy may be overstated."
                )
        for key, zeros in result.first_step_zero_gradient.items():
            if zeros > ZERO_GRADIENT_WARNING:
                warnings.append(
                    f"{name}: {zeros:.1%} of the input-gradient entries at the first step of {key} are exactly 0; "
                    "sign(0) does not move those pixels, so robust accuracy may be overstated (fp16 underflow? the "
                    "exact attack numerics scale the loss)."
                )
    return warnings
