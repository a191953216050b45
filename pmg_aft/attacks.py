"""Projected gradient descent attacks (L-inf and L2; cross-entropy, CW margin loss or any objective) on images in
[0, 1]. The settings record and its key format are in [`attack_settings`]; pixel units in [`pixels`]."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .constants import ATTACK_LOSSES, NORMS
from .errors import InputError
from .pixels import check_budget

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CW margin per sample: `max_{j != y} z_j - z_y` (positive once the sample is misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return others.max(dim=1).values - true


def _attack_loss(name: str) -> Objective:
    if name == "ce":
        return lambda logits, labels: F.cross_entropy(logits, labels, reduction="none")
    return margin_loss


FP16_ATTACK_SCALE = 2.0**12


REDUCTIONS = ("sum", "mean")


def loss_gradient(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    objective: Objective,
    x: torch.Tensor,
    delta: torch.Tensor,
    labels: torch.Tensor,
    reduction: str = "sum",
    loss_scaling: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the attack loss (summed, or the batch mean) with respect to `delta`, and the logits at
    `x + delta`.

    Under fp16 autocast the backward pass runs in fp16, where input gradients (often ~1e-5 and smaller for robust
    models) underflow to 0 and `sign(0)` stalls the attack. As with loss scaling, the objective is multiplied by a
    constant first (sign and L2-normalised steps do not depend on it); on overflow the scale is lowered. Without
    `loss_scaling` the backward is left unscaled, as the official evaluations run it.
    """
    device_type = x.device.type
    fp16 = torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16
    scale = FP16_ATTACK_SCALE if fp16 and loss_scaling else 1.0
    while True:
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = classifier(x + delta)
            losses = objective(logits, labels).float()
            value = losses.sum() if reduction == "sum" else losses.mean()
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
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    loss: str | Objective = "ce",
    first_success: bool = False,
    momentum: float = 0.0,
    start: torch.Tensor | None = None,
    return_survivors: bool = False,
    check_range: bool = True,
    reduction: str = "sum",
    loss_scaling: bool = True,
    gradient_stats: dict | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Untargeted PGD that maximises `loss` of `classifier` around `images`.

    Random start (uniform in the L-inf ball, or uniform radius in a random direction for L2), then `steps` times a
    signed (L-inf) or normalised (L2) gradient step, projection onto the eps-ball and onto [0, 1]. Gradients are taken
    with `torch.autograd.grad` with respect to the perturbation only (no parameter gradient, no DDP hook), of the
    per-sample losses' sum (each sample's gradient is independent of the batch), scaled under fp16 autocast so that
    input gradients do not underflow (`loss_gradient`).

    Args:
        classifier (`Callable`): maps images in [0, 1] to logits, e.g. a [`ZeroShotClassifier`].
        images (`torch.Tensor`): `(batch, channels, height, width)` in [0, 1].
        labels (`torch.LongTensor`): `(batch,)` true classes (or, with a custom `loss`, any targets).
        eps (`float`): budget in [0, 1] pixel units (1/255 is one grey level; L2: of the whole image).
        step_size (`float`): step in the same units.
        steps (`int`): number of gradient steps; 0 returns the (random) starting point.
        norm (`str`): `"linf"` or `"l2"`.
        random_start (`bool`): start from a random point of the ball rather than the image.
        loss (`str` or `Callable`): `"ce"` (cross-entropy), `"cw"` (margin loss), or a function `(outputs, targets) ->
            per-sample loss` to maximise (FARE passes the reference embeddings and an encoder as `classifier`).
        first_success (`bool`): keep each sample's first misclassified iterate (evaluation: more steps never raise
            robust accuracy), forwarding only the samples still classified correctly; otherwise the final iterate,
            as training attacks use.
        momentum (`float`): FARE's step direction, `v = normalise(momentum * v + normalise(grad))` (sign under
            L-inf, where it differs from plain PGD only at exactly-zero gradient entries); 0 is plain PGD.
        start (`torch.Tensor`, *optional*): the L-inf random start's noise, uniform in [-1, 1], shaped like `images`
            (scaled by `eps`), e.g. drawn per sample so results do not depend on the batching.
        return_survivors (`bool`): also return, per sample, whether every iterate the attack evaluated (the start and
            each step before the last) was still classified correctly: with the final iterate, the worst case.
        check_range (`bool`): raise unless `images` are in [0, 1] (a host sync; the trainers' batches are in range).
        reduction (`str`): `"sum"` of the per-sample losses (each sample's gradient is independent of the batch) or
            `"mean"`, the batch mean of the official evaluations (with `loss_scaling=False`, their numerics).
        loss_scaling (`bool`): scale the objective under fp16 autocast so that input gradients do not underflow.
        gradient_stats (`dict`, *optional*): if given, `entries` and `zero_entries` of the first step's input
            gradient are added to it (a blind, underflowed attack shows as zero entries).

    Returns:
        `torch.Tensor`: adversarial images, detached, in [0, 1] and within `eps` of `images` (and, with
        `return_survivors`, a boolean `(batch,)` tensor).
    """
    eps, step_size = _check_arguments(images, labels, eps, step_size, steps, norm, loss, first_success,
                                      return_survivors, momentum, check_range, start)  # fmt: skip
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction={reduction!r} is not one of {REDUCTIONS}.")
    x, labels = images.detach(), labels.detach()
    delta = _random_start(x, eps, norm, start) if random_start and eps > 0 else torch.zeros_like(x)
    objective = loss if callable(loss) else _attack_loss(loss)
    first = [gradient_stats is not None]  # the first step's gradient is counted, once

    def gradient(xs, ds, ys):
        grad, logits = loss_gradient(classifier, objective, xs, ds, ys, reduction, loss_scaling)
        if first[0]:
            first[0] = False
            gradient_stats["entries"] = gradient_stats.get("entries", 0) + grad.numel()
            gradient_stats["zero_entries"] = gradient_stats.get("zero_entries", 0) + int((grad == 0).sum())
        return grad, logits

    delta, survivors = _iterate(gradient, x, labels, delta, int(steps), eps, step_size, norm, momentum,
                                first_success, return_survivors)  # fmt: skip
    return ((x + delta).detach(), survivors) if return_survivors else (x + delta).detach()


def _iterate(gradient, x, labels, delta, steps, eps, step_size, norm, momentum, first_success,
             track) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """PGD's steps from `delta`, with `gradient(x, delta, labels) -> (grad, logits)`; the final perturbation, and per
    sample whether every iterate survived (`track`)."""
    survivors = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    velocity = torch.zeros_like(x) if momentum else None
    rows = torch.arange(x.shape[0], device=x.device)  # the samples still attacked (all, without first_success)

    def into(whole: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """`whole` with the attacked rows set to `part` (no copy while every sample is attacked)."""
        if len(part) == len(whole):
            return part
        whole[rows] = part
        return whole

    for _ in range(steps):
        xs, ds, ys = (x, delta, labels) if len(rows) == len(x) else (x[rows], delta[rows], labels[rows])
        grad, logits = gradient(xs, ds, ys)
        with torch.no_grad():
            correct = logits.argmax(-1) == ys if (track or first_success) else None
            if track:
                survivors[rows] &= correct
            move = _direction(grad, norm)
            if velocity is not None:  # FARE's rule: the velocity is kept normalised
                move = _direction(momentum * (velocity if ds is delta else velocity[rows]) + move, norm)
                velocity = into(velocity, move)
            step = _project(xs, ds + step_size * move, eps, norm)
            if first_success:  # a sample fooled at its current iterate keeps it and leaves the batch
                step = torch.where(correct.view(-1, *([1] * (x.dim() - 1))), step, ds)
            delta = into(delta, step)
            if first_success:
                rows = rows[correct]  # a host sync per step: the price of not forwarding fooled samples
                if len(rows) == 0:
                    break
    return delta, survivors


def _check_arguments(images, labels, eps, step_size, steps, norm, loss, first_success, return_survivors, momentum,
                     check_range, start) -> tuple[float, float]:  # fmt: skip
    """Raise for arguments pgd cannot run with; return the checked budget and step size."""
    if norm not in NORMS:
        raise InputError(f"norm={norm!r} is not one of {NORMS}.")
    if not callable(loss) and loss not in ATTACK_LOSSES:
        raise InputError(f"loss={loss!r} is not one of {ATTACK_LOSSES} or a callable.")
    if callable(loss) and (first_success or return_survivors):
        raise InputError("first_success and return_survivors need a classifier's logits, not a custom loss's outputs.")
    if int(steps) < 0:
        raise InputError(f"steps must be >= 0, got {steps}.")
    if not 0 <= momentum < 1:
        raise InputError(f"momentum must be in [0, 1), got {momentum}.")
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels (targets).")
    if start is not None and (norm != "linf" or start.shape != images.shape):
        raise InputError(f"start must be L-inf noise shaped like the images {tuple(images.shape)}.")
    if check_range and images.numel() and (images.min() < 0 or images.max() > 1):
        raise InputError(
            f"Images must be in [0, 1] before normalisation, got values in [{images.min():.3f}, {images.max():.3f}]. "
            "Pass raw pixels / 255; the classifier normalises inside."
        )
    return check_budget("eps", eps, norm, stacklevel=4), check_budget("step_size", step_size, norm, stacklevel=4)


def _random_start(x: torch.Tensor, eps: float, norm: str, start: torch.Tensor | None) -> torch.Tensor:
    """A uniform point of the L-inf ball (from `start`'s noise if given) or of the L2 ball, kept in [0, 1]."""
    if norm == "linf":
        delta = start.to(x.dtype) * eps if start is not None else torch.empty_like(x).uniform_(-eps, eps)
    else:
        direction = torch.randn_like(x)
        radius = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
        delta = direction / _flat_norm(direction) * radius * eps
    return (x + delta).clamp(0, 1) - x


def _direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    return gradient.sign() if norm == "linf" else gradient / _flat_norm(gradient)


def _project(x: torch.Tensor, delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """`delta` projected onto the eps-ball, then so that `x + delta` stays in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    return (x + delta).clamp(0, 1) - x
