"""`AttackSetting`, one attack's settings and the one key format of results, and `AttackGrid`, the attack options
that protocols, the evaluation suite, the `pmg-aft` commands and the trainers' evaluation all hold."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace

from .attack_specs import ATTACKS, AttackSpec
from .constants import AUTOATTACK_VARIANTS, NORMS
from .domains import PIXEL, STEPS, UNIT_OPEN_RIGHT, field
from .errors import InputError
from .parsing import check_fields
from .pixels import Names, PixelValue, PixelValues, StepCounts, check_budget

# How descriptions name the PGD loop's losses.
LOSS_NAMES = {"ce": "cross-entropy", "cw": "CW margin loss"}


@dataclass(frozen=True, kw_only=True)
class AttackSetting:
    r"""One attack's settings: the record that training, the evaluation engine, reports and cards share.

    Args:
        attack (`str`): a registered attack ([`ATTACKS`]): `"pgd"` (cross-entropy), `"cw"` (CW margin loss, the same
            PGD loop) or `"autoattack"`.
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

    attack: str = field(default="pgd", metadata={"choices": ATTACKS.keys()})
    eps: float = field(default=1 / 255, domain=PIXEL)
    steps: int | None = field(default=10, domain=STEPS)
    step_size: float | None = field(default=1 / 255, domain=PIXEL)
    norm: str = field(default="linf", metadata={"choices": list(NORMS)})
    random_start: bool = False
    first_success: bool = True
    momentum: float = field(default=0.0, domain=UNIT_OPEN_RIGHT)
    variant: str = field(default="standard", metadata={"choices": list(AUTOATTACK_VARIANTS)})

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "eps", check_budget("eps", self.eps, self.norm, stacklevel=4))
        if not self.spec.iterative:
            # The attack brings its own steps, step sizes, restarts and success rule.
            for name, value in (("steps", None), ("step_size", None), ("random_start", False),
                                ("first_success", True), ("momentum", 0.0)):  # fmt: skip
                object.__setattr__(self, name, value)
            return
        object.__setattr__(self, "variant", "standard")
        if self.steps is None:
            raise InputError(f"{self.attack} needs steps (a whole number >= 1).")
        step = 1 / 255 if self.step_size is None else self.step_size
        object.__setattr__(self, "step_size", check_budget("step_size", step, self.norm, stacklevel=4))
        if self.step_size == 0:
            raise InputError(
                f"{self.attack}: step_size is 0 with {self.steps} steps, so the attack would never move and its "
                "accuracy would be clean accuracy under an attack's name; give a step size (e.g. 1/255)."
            )
        if self.eps == 0:
            warnings.warn(
                f"{self.attack}: eps is 0 with {self.steps} steps, so the adversarial images are the clean ones (the "
                "column says @0/255); give a budget (e.g. 1/255) for a robust accuracy.",
                stacklevel=4,
            )

    @property
    def spec(self) -> AttackSpec:
        """The attack's registry entry."""
        return ATTACKS[self.attack]

    @property
    def label(self) -> str:
        """Everything of the key but the budget: the attack's name in an accuracy-versus-eps curve."""
        name = self.attack + ("-l2" if self.norm == "l2" else "")
        if not self.spec.iterative:
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
        if not self.spec.iterative:
            return f"{self.spec.title} {self.variant} ({norm}, eps {self.format_pixels(self.eps)})"
        start = "uniform random start" if self.random_start else "start at the image"
        rule = "first success kept" if self.first_success else "final iterate"
        extra = f", momentum {self.momentum:g}" if self.momentum else ""
        loss = LOSS_NAMES.get(self.spec.loss, self.spec.loss)
        return (
            f"{self.spec.title}-{self.steps} ({norm}, eps {self.format_pixels(self.eps)}, step "
            f"{self.format_pixels(self.step_size)}, {loss}, {start}, {rule}{extra})"
        )

    def pgd_kwargs(self) -> dict:
        """The keyword arguments of [`pgd`] for this setting (attacks of the PGD loop only)."""
        if not self.spec.iterative:
            raise InputError(f"{self.spec.title} is not a PGD setting; run it through pmg_aft.evaluation.")
        return dict(eps=self.eps, step_size=self.step_size, steps=self.steps, norm=self.norm,
                    random_start=self.random_start, loss=self.spec.loss,
                    first_success=self.first_success, momentum=self.momentum)  # fmt: skip

    def to_dict(self) -> dict:
        """JSON form, with the key (ignored by [`from_dict`])."""
        return asdict(self) | {"key": self.key}

    @classmethod
    def from_dict(cls, values: dict) -> AttackSetting:
        return cls(**{k: v for k, v in values.items() if k != "key"})


@dataclass(frozen=True, kw_only=True)
class AttackGrid:
    r"""The attacks an evaluation runs: every attack at every budget and step count, with one step size, threat
    model, start and success rule; AutoAttack (of `autoattack`'s variant) once per budget.

    A [`Protocol`] holds one, `pmg-aft eval` and `compare` take each field as a flag that overrides the protocol's,
    and a trainer's `evaluate()` runs the one its `eval_*` arguments make. The defaults are the `pmg_aft` protocol's.
    Lists accept comma-separated strings (`"1/255,4/255"`, `"10,100"`, `"pgd,cw"`), as on the command line.
    """

    attacks: Names = field(
        default=Names(("pgd",)), metadata={"help": "Comma-separated attack names.", "choices": ATTACKS.keys()}
    )
    eps: PixelValues = field(
        default=PixelValues((1 / 255,)),
        domain=PIXEL,
        metadata={"help": "Comma-separated budgets in [0, 1] pixel units, e.g. 1/255,4/255."},
    )
    steps: StepCounts = field(
        default=StepCounts((10,)), domain=STEPS, metadata={"help": "PGD/CW steps, comma-separated, e.g. 10,100."}
    )
    step_size: PixelValue = field(
        default=PixelValue(1 / 255), domain=PIXEL, metadata={"help": "PGD/CW step size, e.g. 1/255."}
    )
    norm: str = field(default="linf", metadata={"help": "Threat model.", "choices": list(NORMS)})
    random_start: bool = field(default=True, metadata={"help": "PGD/CW start at a random point of the ball."})
    first_success: bool = field(
        default=False,
        metadata={"help": "Keep each sample's first success (true) or count the final iterate (false)."},
    )
    autoattack: str = field(
        default="standard", metadata={"help": "AutoAttack variant.", "choices": list(AUTOATTACK_VARIANTS)}
    )

    def __post_init__(self) -> None:
        check_fields(self)  # types the lists from text (`1/255,4/255`), checks each value's domain and choice
        self.settings()  # validates the norm, the AutoAttack variant, budgets (and 0-255 units), steps, step size

    def settings(self) -> list[AttackSetting]:
        """Every (attack, eps, steps) combination as an [`AttackSetting`]; AutoAttack once per eps."""
        return [
            AttackSetting(attack=attack, eps=eps, steps=steps, step_size=self.step_size, norm=self.norm,
                          random_start=self.random_start, first_success=self.first_success, variant=self.autoattack)
            for attack in self.attacks
            for eps in self.eps
            for steps in (self.steps if ATTACKS[attack].iterative else [None])
        ]  # fmt: skip

    def override(self, **changes) -> AttackGrid:
        """This grid with the given fields changed (`None` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """Plain values (tuples of str, float and int), as reports record them."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(attacks=tuple(self.attacks), eps=tuple(self.eps), steps=tuple(self.steps))
        return values | {"step_size": float(self.step_size)}
