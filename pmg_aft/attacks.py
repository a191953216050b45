"""Projected gradient descent attacks (L-inf and L2; cross-entropy or CW margin loss) on images in [0, 1], and
`AttackSetting`, the one record (and key format) of an attack's settings used by training, evaluation and reports."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .constants import ATTACK_LOSSES, ATTACKS, AUTOATTACK_VARIANTS, NORMS


def parse_pixel_value(value: float | int | str, name: str = "value") -> float:
    """Parse a pixel-unit quantity such as `1/255`, `"4/255"`, `"0.0039"` or `0.0039` into a float.

    Args:
        value (`float`, `int` or `str`): the value, possibly a fraction written as a string.
        name (`str`): the option's name, used in error messages.

    Returns:
        `float`: the value in [0, 1] pixel units.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number such as 1/255, got a boolean.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        numerator, _, denominator = value.replace(" ", "").partition("/")
        try:
            return float(numerator) / float(denominator) if denominator else float(numerator)
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"{name}={value!r} is not a number; write it as a float (0.0039) or a fraction (1/255).")


class PixelValue(float):
    """A float that also parses fractions such as `1/255`; the command-line type of eps and step sizes."""

    def __new__(cls, value: float | int | str = 0.0) -> PixelValue:
        return super().__new__(cls, parse_pixel_value(value))


def check_budget(name: str, value: float, norm: str = "linf", stacklevel: int = 3) -> float:
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
            stacklevel=stacklevel,
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
    momentum: float = 0.0,
    return_survivors: bool = False,
    start: torch.Tensor | None = None,
    check_range: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
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
        momentum (`float`, defaults to 0): FARE's step direction: `v = normalise(momentum * v + normalise(grad))`
            (normalise = sign for L-inf), and the step follows `v`. Under L-inf this differs from plain sign-PGD only
            where a gradient entry is exactly 0 (the pixel keeps its previous direction). 0 is plain PGD.
        start (`torch.Tensor`, *optional*): the random start's noise, uniform in [-1, 1] and shaped like `images`
            (L-inf; scaled by `eps`), e.g. drawn per sample for results independent of the batching; default: drawn
            from the global random generator.
        return_survivors (`bool`, defaults to `False`): also return, per sample, whether every iterate the attack
            evaluated (the start and each step before the last) was still classified correctly; with the final
            iterate's prediction this gives the per-sample worst case over the whole run.
        check_range (`bool`, defaults to `True`): raise unless `images` are in [0, 1]; the check waits for the
            device, so callers whose images are in range by construction (the trainers) skip it.

    With `early_stop`, the samples already misclassified leave the batch: each step forwards only those still
    correctly classified (their results are the same; the cost of a step falls as the attack succeeds).

    Returns:
        `torch.Tensor`: adversarial images, detached, in [0, 1] and within `eps` of `images` (and, with
        `return_survivors`, a boolean `(batch,)` tensor).
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}.")
    if not callable(loss) and loss not in ATTACK_LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {ATTACK_LOSSES} or a callable.")
    if callable(loss) and (early_stop or return_survivors):
        raise ValueError("early_stop and return_survivors need a classifier's logits, not a custom loss's outputs.")
    eps = check_budget("eps", eps, norm)
    step_size = check_budget("step_size", step_size, norm)
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels (targets).")
    x = images.detach()
    if check_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"Images must be in [0, 1] before normalisation, got values in [{x.min():.3f}, {x.max():.3f}]. "
            "Pass raw pixels / 255; the classifier normalises inside."
        )
    labels = labels.detach()
    objective = loss if callable(loss) else _attack_loss(loss)

    if start is not None and (norm != "linf" or start.shape != x.shape):
        raise ValueError(f"start must be L-inf noise shaped like the images {tuple(x.shape)}.")
    if random_start and eps > 0:
        if norm == "linf":
            delta = start.to(x.dtype) * eps if start is not None else torch.empty_like(x).uniform_(-eps, eps)
        else:
            direction = torch.randn_like(x)
            radius = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)
            delta = direction / _flat_norm(direction) * radius * eps
        delta = (x + delta).clamp(0, 1) - x
    else:
        delta = torch.zeros_like(x)

    def direction(g: torch.Tensor) -> torch.Tensor:
        return g.sign() if norm == "linf" else g / _flat_norm(g)

    survivors = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    velocity = torch.zeros_like(x) if momentum else None
    rows = torch.arange(x.shape[0], device=x.device)  # the samples still attacked (all, without early_stop)

    def into(whole: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """`whole` with the attacked rows set to `part` (no copy while every sample is attacked)."""
        if len(part) == len(whole):
            return part
        whole[rows] = part
        return whole

    for _ in range(int(steps)):
        xs, ds, ys = (x, delta, labels) if len(rows) == len(x) else (x[rows], delta[rows], labels[rows])
        grad, logits = _gradient(classifier, objective, xs, ds, ys)
        with torch.no_grad():
            correct = logits.argmax(-1) == ys if (return_survivors or early_stop) else None
            if return_survivors:
                survivors[rows] &= correct
            move = direction(grad)
            if velocity is not None:  # FARE's rule: the velocity is kept normalised
                move = direction(momentum * (velocity if ds is delta else velocity[rows]) + move)
                velocity = into(velocity, move)
            if norm == "linf":
                step = (ds + step_size * move).clamp(-eps, eps)
            else:
                step = ds + step_size * move
                step = step * (eps / _flat_norm(step)).clamp(max=1.0)
            step = (xs + step).clamp(0, 1) - xs
            if early_stop:  # a sample fooled at its current iterate keeps it and leaves the batch
                step = torch.where(correct.view(-1, *([1] * (x.dim() - 1))), step, ds)
            delta = into(delta, step)
            if early_stop:
                rows = rows[correct]  # a host sync per step: the price of not forwarding fooled samples
                if len(rows) == 0:
                    break
    return ((x + delta).detach(), survivors) if return_survivors else (x + delta).detach()


@dataclass(frozen=True)
class AttackSetting:
    r"""One attack's settings: the record that training, the evaluation engine, reports and cards share.

    Args:
        attack (`str`): `"pgd"` (cross-entropy), `"cw"` (CW margin loss, the same PGD loop) or `"autoattack"`.
        eps (`float`): budget in [0, 1] pixel units (L2: of the whole image).
        steps (`int`, *optional*): PGD/CW steps; `None` for AutoAttack.
        step_size (`float`, *optional*): PGD/CW step in pixel units; `None` for AutoAttack.
        norm (`str`): `"linf"` or `"l2"`.
        random_start (`bool`): start from a uniform random point of the eps-ball instead of the image.
        first_success (`bool`): keep each sample's first successful perturbation (evaluation: more steps never
            raise robust accuracy); `False` returns the final iterate, as training attacks do.
        momentum (`float`): the step-direction momentum of FARE's attack (0 = plain PGD).
        variant (`str`): for AutoAttack, which attacks run: `"standard"`, `"apgd-ce+apgd-dlr"` (TGA-ZSR's) or
            `"apgd-ce+apgd-t"` (FARE's / RobustBench's); see `pmg_aft.evaluation.autoattack_plan`.

    `key` names the setting everywhere (metrics, reports, model cards): `pgd-10@1/255` for PGD-10 at eps 1/255 from
    the image, first success kept; flags follow the step count: `rs` random start, `last` final iterate, `m0.9`
    momentum, `step0.5/255` a step size other than 1/255; `-l2` after the attack name for the L2 threat model, whose
    budget is written as a plain number; `autoattack` is followed by its variant unless standard
    (`autoattack-apgd-ce+apgd-t@4/255`). Results are found by this key, never parsed back from it.
    """

    attack: str = "pgd"
    eps: float = 1 / 255
    steps: int | None = 10
    step_size: float | None = 1 / 255
    norm: str = "linf"
    random_start: bool = False
    first_success: bool = True
    momentum: float = 0.0
    variant: str = "standard"

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ValueError(f"Unknown attack {self.attack!r}; choose from {ATTACKS}.")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is not one of {NORMS}.")
        object.__setattr__(self, "eps", check_budget("eps", self.eps, self.norm, stacklevel=4))
        if self.attack == "autoattack":
            if self.variant not in AUTOATTACK_VARIANTS:
                raise ValueError(f"Unknown AutoAttack variant {self.variant!r}; choose from {AUTOATTACK_VARIANTS}.")
            # AutoAttack brings its own steps, step sizes, restarts and success rule.
            for name in ("steps", "step_size"):
                object.__setattr__(self, name, None)
            object.__setattr__(self, "random_start", False)
            object.__setattr__(self, "first_success", True)
            object.__setattr__(self, "momentum", 0.0)
            return
        object.__setattr__(self, "variant", "standard")
        if self.steps is None or int(self.steps) < 0:
            raise ValueError(f"{self.attack} needs steps >= 0, got {self.steps}.")
        object.__setattr__(self, "steps", int(self.steps))
        step = 1 / 255 if self.step_size is None else self.step_size
        object.__setattr__(self, "step_size", check_budget("step_size", step, self.norm, stacklevel=4))
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}.")
        if self.steps > 0 and self.step_size == 0:
            raise ValueError(
                f"{self.attack}: step_size is 0 with {self.steps} steps, so the attack would never move; give a step "
                "size (e.g. 1/255) or steps 0 for no attack."
            )
        if self.steps > 0 and self.eps == 0:
            warnings.warn(
                f"{self.attack}: eps is 0 with {self.steps} steps, so the adversarial images are the clean ones; "
                "give a budget (e.g. 1/255) or steps 0 for no attack.",
                stacklevel=4,
            )

    @property
    def label(self) -> str:
        """Everything of the key but the budget: the attack's name in an accuracy-versus-eps curve."""
        name = self.attack + ("-l2" if self.norm == "l2" else "")
        if self.attack == "autoattack":
            return name if self.variant == "standard" else f"{name}-{self.variant}"
        flags = [str(self.steps)]
        flags += ["rs"] if self.random_start else []
        flags += [] if self.first_success else ["last"]
        flags += [f"m{self.momentum:g}"] if self.momentum else []
        if self.norm == "l2" or abs(self.step_size - 1 / 255) > 1e-12:
            flags.append(f"step{self.format_pixels(self.step_size)}")
        return f"{name}-{'-'.join(flags)}"

    @property
    def key(self) -> str:
        return f"{self.label}@{self.format_pixels(self.eps)}"

    def format_pixels(self, value: float) -> str:
        """A pixel quantity as written in keys: `1/255` under L-inf, a plain number under L2."""
        return f"{value * 255:g}/255" if self.norm == "linf" else f"{value:g}"

    def describe(self) -> str:
        """A sentence for tables and cards, e.g. `PGD-10 (L-inf, eps 1/255, step 1/255, ...)`."""
        norm = "L-inf" if self.norm == "linf" else "L2"
        if self.attack == "autoattack":
            return f"AutoAttack {self.variant} ({norm}, eps {self.format_pixels(self.eps)})"
        start = "uniform random start" if self.random_start else "start at the image"
        rule = "first success kept" if self.first_success else "final iterate"
        extra = f", momentum {self.momentum:g}" if self.momentum else ""
        loss = "CW margin loss" if self.attack == "cw" else "cross-entropy"
        return (
            f"{self.attack.upper()}-{self.steps} ({norm}, eps {self.format_pixels(self.eps)}, step "
            f"{self.format_pixels(self.step_size)}, {loss}, {start}, {rule}{extra})"
        )

    def pgd_kwargs(self) -> dict:
        """The keyword arguments of [`pgd`] for this setting (PGD and CW only)."""
        if self.attack == "autoattack":
            raise ValueError("AutoAttack is not a PGD setting; run it through pmg_aft.evaluation.")
        return dict(eps=self.eps, step_size=self.step_size, steps=self.steps, norm=self.norm,
                    random_start=self.random_start, loss="cw" if self.attack == "cw" else "ce",
                    early_stop=self.first_success, momentum=self.momentum)  # fmt: skip

    def to_dict(self) -> dict:
        """JSON form, with the key (ignored by [`from_dict`])."""
        return asdict(self) | {"key": self.key}

    @classmethod
    def from_dict(cls, values: dict) -> AttackSetting:
        return cls(**{k: v for k, v in values.items() if k != "key"})


def attack_settings(
    attacks: Sequence[str],
    eps: Sequence[float],
    steps: int | Sequence[int] = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    first_success: bool = True,
    autoattack: str = "standard",
) -> list[AttackSetting]:
    """Every (attack, eps, steps) combination, validated; AutoAttack (of the given variant) once per eps."""
    steps = [int(steps)] if isinstance(steps, int) else [int(s) for s in steps]
    settings = []
    for attack in attacks:
        for budget in eps:
            for count in [None] if attack == "autoattack" else steps:
                settings.append(AttackSetting(attack, budget, count, step_size, norm, random_start, first_success,
                                              variant=autoattack))  # fmt: skip
    return settings
