"""Projected gradient descent attacks (L-inf and L2; cross-entropy or CW margin loss) on images in [0, 1]."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

NORMS = ("linf", "l2")
LOSSES = ("ce", "cw")


def check_budget(name: str, value: float, norm: str = "linf") -> float:
    """Validate an attack budget or step size given in [0, 1] pixel units.

    Raises for negative values and, under L-inf, for values above 1 (which cannot be pixel units); warns for
    L-inf budgets above 32/255, which almost always mean the value was given in 0-255 units.
    """
    value = float(value)
    if value < 0:
        raise ValueError(f"{name}={value} is negative; budgets and step sizes are >= 0.")
    if norm == "linf" and value > 1:
        raise ValueError(
            f"{name}={value:g} is larger than 1, but pixel quantities are in [0, 1] units. "
            f"Did you mean {value:g}/255 (= {value / 255:.6f})?"
        )
    if norm == "linf" and value > 32 / 255:
        warnings.warn(
            f"{name}={value:g} is above 32/255 under L-inf: eps is in [0, 1] pixel units "
            f"(did you mean {value:g}/255 = {value / 255:.6f}?).",
            stacklevel=3,
        )
    return value


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CW margin per sample: `max_{j != y} z_j - z_y` (positive once the sample is misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return others.max(dim=1).values - true


def _attack_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "ce":
        return lambda logits, labels: F.cross_entropy(logits, labels, reduction="none")
    return margin_loss


FP16_ATTACK_SCALE = 2.0**12


def _gradient(classifier, objective, x, delta, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed attack loss with respect to `delta`, and the logits at `x + delta`.

    Under fp16 autocast the backward pass runs in fp16, where input gradients (often ~1e-5 and smaller for robust
    models) underflow to 0 and `sign(0)` stalls the attack. As with loss scaling, the objective is multiplied by a
    constant first (sign and L2-normalised steps do not depend on it); on overflow the scale is lowered.
    """
    device_type = x.device.type
    fp16 = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16
    scale = FP16_ATTACK_SCALE if fp16 else 1.0
    while True:
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = classifier(x + delta)
            value = objective(logits, labels).float().sum()
            (grad,) = torch.autograd.grad(value * scale, delta)
        if scale == 1.0 or torch.isfinite(grad).all():
            return grad, logits.detach()
        scale = max(scale / 64, 1.0)


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def pgd(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
    early_stop: bool = False,
) -> torch.Tensor:
    r"""Untargeted PGD that maximises `loss` of `classifier` around `images`.

    Random start (uniform in the L-inf ball, or uniform radius in a random direction for L2), then `steps` times a
    signed (L-inf) or normalised (L2) gradient step, projection onto the eps-ball and onto [0, 1]. The final iterate
    is returned. Gradients are taken with `torch.autograd.grad` with respect to the perturbation only, so no
    parameter gradient is accumulated and no DDP hook fires. The per-sample losses are summed, not averaged, so every
    sample's gradient is independent of the batch size; under fp16 autocast the sum is also scaled so that input
    gradients do not underflow (see `_gradient`).

    Args:
        classifier (`Callable`): maps images in [0, 1] to logits, e.g. a [`ZeroShotClassifier`].
        images (`torch.Tensor`): `(batch, channels, height, width)` in [0, 1].
        labels (`torch.LongTensor`): `(batch,)` true classes.
        eps (`float`): budget in [0, 1] pixel units (1/255 is one grey level); L2 norm of the whole image for `l2`.
        step_size (`float`): step in the same units.
        steps (`int`): number of gradient steps; 0 returns the (random) starting point.
        norm (`str`, defaults to `"linf"`): `"linf"` or `"l2"`.
        random_start (`bool`, defaults to `True`): start from a random point of the ball rather than the image.
        loss (`str` or `Callable`, defaults to `"ce"`): `"ce"` (cross-entropy), `"cw"` (margin loss), or a function
            `(outputs, labels) -> per-sample loss` to maximise, where `labels` may be any targets (FARE passes the
            reference embeddings and `classifier` returns embeddings).
        early_stop (`bool`, defaults to `False`): freeze each sample's perturbation once it is misclassified (for
            evaluation: the attack then keeps the first success, so more steps never raise robust accuracy).
            Training uses the final iterate, as the paper does.

    Returns:
        `torch.Tensor`: adversarial images, detached, in [0, 1] and within `eps` of `images`.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}.")
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {LOSSES} or a callable.")
    if callable(loss) and early_stop:
        raise ValueError("early_stop needs a classifier's logits; it cannot be used with a custom loss.")
    eps = check_budget("eps", eps, norm)
    step_size = check_budget("step_size", step_size, norm)
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels (targets).")
    x = images.detach()
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"Images must be in [0, 1] before normalisation, got values in [{x.min():.3f}, {x.max():.3f}]. "
            "Pass raw pixels / 255; the classifier normalises inside."
        )
    labels = labels.detach()
    objective = loss if callable(loss) else _attack_loss(loss)

    if random_start and eps > 0:
        if norm == "linf":
            delta = torch.empty_like(x).uniform_(-eps, eps)
        else:
            direction = torch.randn_like(x)
            radius = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
            delta = direction / _flat_norm(direction) * radius * eps
        delta = (x + delta).clamp(0, 1) - x
    else:
        delta = torch.zeros_like(x)

    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(int(steps)):
        grad, logits = _gradient(classifier, objective, x, delta, labels)
        with torch.no_grad():
            if early_stop:
                active &= logits.argmax(-1) == labels
                if not active.any():
                    break
            if norm == "linf":
                step = (delta + step_size * grad.sign()).clamp(-eps, eps)
            else:
                step = delta + step_size * grad / _flat_norm(grad)
                step = step * (eps / _flat_norm(step)).clamp(max=1.0)
            step = (x + step).clamp(0, 1) - x
            delta = torch.where(active.view(-1, *([1] * (x.dim() - 1))), step, delta)
    return (x + delta).detach()
