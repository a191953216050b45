"""The attacks an evaluation can run, one [`AttackSpec`] each in [`ATTACKS`]: the registry behind `--attacks`, the
keys and descriptions of results, the docs' attack table and the engine's runner. Nothing else branches on an
attack's name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attacks import pgd
from .autoattack import autoattack


@dataclass(frozen=True)
class AttackSpec:
    """One attack.

    Args:
        name (`str`): the name in `--attacks` and in result keys (`pgd`).
        title (`str`): the display name (`PGD`).
        description (`str`): one sentence for `--help` and the docs.
        run (`Callable`): `run(classifier, images, labels, setting, *, seed, start, numerics, gradient_stats)` ->
            `(adversarial images, survived, attacks that ran or None)`; the engine calls it under the precision
            [`AttackSpec.precision`] gives.
        loss (`str`, *optional*): the loss of the PGD loop (`"ce"`, `"cw"`); `None` for an attack that brings its own
            steps, step sizes, restarts and success rule (settings then carry no steps and a `variant`).
        float32 (`bool`): with the `exact` numerics the attack runs, and its images are judged, in float32.
    """

    name: str
    title: str
    description: str
    run: Callable
    loss: str | None = None
    float32: bool = False

    @property
    def iterative(self) -> bool:
        """Whether settings of this attack have steps and a step size (the PGD loop)."""
        return self.loss is not None

    def precision(self, precision: str, numerics: str) -> str:
        """The precision the attack runs and is judged in."""
        return "no" if self.float32 and numerics == "exact" else precision


ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add an attack to [`ATTACKS`]; `--attacks`, result keys, cards and the docs take it from there.

    Raises:
        `TypeError`: for a name another attack already has.
    """
    if ATTACKS.get(spec.name, spec) is not spec:
        raise TypeError(f"The attack {spec.name!r} is already registered; pick another name.")
    ATTACKS[spec.name] = spec
    return spec


def _pgd_loop(classifier, images: torch.Tensor, labels: torch.Tensor, setting, *, seed: int = 0, start=None,
              numerics: str = "exact", gradient_stats: dict | None = None):  # fmt: skip
    official = numerics == "official"  # the official codes' batch-mean loss and unscaled fp16 backward
    adversarial, survived = pgd(classifier, images, labels, **setting.pgd_kwargs(), return_survivors=True, start=start,
                                reduction="mean" if official else "sum", loss_scaling=not official,
                                gradient_stats=gradient_stats)  # fmt: skip
    return adversarial, survived, None


def _autoattack(classifier, images: torch.Tensor, labels: torch.Tensor, setting, *, seed: int = 0, start=None,
                numerics: str = "exact", gradient_stats: dict | None = None):  # fmt: skip
    adversarial, used = autoattack(classifier, images, labels, setting.eps, classifier.num_classes, setting.norm, seed,
                                   setting.variant)  # fmt: skip
    return adversarial, torch.ones_like(labels, dtype=torch.bool), used  # its output is already the worst case


for _spec in (
    AttackSpec("pgd", "PGD", "Projected gradient descent on the cross-entropy loss.", _pgd_loop, loss="ce"),
    AttackSpec("cw", "CW", "The same PGD loop on the Carlini-Wagner margin loss.", _pgd_loop, loss="cw"),
    AttackSpec(
        "autoattack",
        "AutoAttack",
        "AutoAttack (APGD-CE, APGD-T, FAB-T, Square, or a protocol's subset): its own steps, restarts and success "
        "rule; float32 under the exact numerics, as pyautoattack does not scale its gradients.",
        _autoattack,
        float32=True,
    ),
):
    register_attack(_spec)
