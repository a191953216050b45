"""The domain of every numeric field, declared once on the field (`field(default=..., domain=COUNT, metadata=...)`)
and checked by one validator ([`pmg_aft.parsing.check_fields`]) before any compute, for flags, config files and
Python alike.

The domain is an attribute of the field rather than a `metadata` key: `HfArgumentParser` hands every metadata key to
argparse as a keyword, so a `domain` key would break the stock parser (and TRL's) on these dataclasses.
A leaf module: it imports nothing from `pmg_aft` but the errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import InputError


class DomainError(InputError):
    """A value outside its field's declared domain (`field` names the field)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Domain:
    r"""The values a numeric field may take: always finite; within `[low, high]` (each end open or closed, or
    absent); a whole number where `whole`; or one of the special values `also` (e.g. -1 for "not set").

    Args:
        low, high (`float`, *optional*): the bounds.
        low_open, high_open (`bool`): whether the bound itself is excluded.
        whole (`bool`): whole numbers only.
        also (`tuple`): special values allowed outside the range, each explained by `meaning`.
        meaning (`str`): what the special values mean, for messages and `--help`.
        length (`int`, *optional*): for a list field, how many items it must have.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    also: tuple = ()
    meaning: str = ""
    length: int | None = None

    def contains(self, value: float) -> bool:
        """Whether `value` (a number) lies in the domain."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value) or (self.whole and not float(value).is_integer()):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    @staticmethod
    def _number(value: float) -> str:
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"

    def describe(self) -> str:
        """The domain in words: `a whole number >= 1`, `a finite number in [0, 1)`, `-1 (...) or ...`."""
        kind = "a whole number" if self.whole else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{self._number(self.low)}, {self._number(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self._number(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self._number(self.high)}"
        else:
            text = kind
        if self.also:
            text = f"{' or '.join(self._number(v) for v in self.also)} ({self.meaning}) or {text}"
        return f"{self.length} values, each {text}" if self.length else text

    def outside(self) -> list[float]:
        """Values just outside the domain (besides the non-finite ones, always outside): what a test of the
        domain tries."""
        values = []
        if self.low is not None:
            values.append(self.low if self.low_open else self.low - (1 if self.whole else 0.5))
        if self.high is not None:
            values.append(self.high if self.high_open else self.high + (1 if self.whole else 0.5))
        if self.whole:
            values.append((self.low if self.low is not None else 0) + 1.5)
        return [v for v in values if v not in self.also]

    def check(self, name: str, value) -> None:
        """Raise [`DomainError`] naming `name`, `value` and the domain unless `value` (a number, or a list of
        numbers for a list field) lies in it."""
        if isinstance(value, (list, tuple)) and not isinstance(value, str):
            if self.length is not None and len(value) != self.length:
                raise DomainError(name, f"{name} needs {self.length} values, got {len(value)}: {list(value)}.")
            for item in value:
                self.check(name, item)
            return
        if not self.contains(value):
            raise DomainError(name, f"{name}={value!r}: {name} must be {self.describe()}.")


FINITE = Domain()
POSITIVE = Domain(low=0, low_open=True)
NON_NEGATIVE = Domain(low=0)
COUNT = Domain(low=1, whole=True)  # a whole number >= 1
WHOLE = Domain(low=0, whole=True)  # a whole number >= 0
UNIT = Domain(low=0, high=1)  # a probability or a share
UNIT_OPEN_RIGHT = Domain(low=0, high=1, high_open=True)  # momentum, betas, label smoothing
UNIT_OPEN_LEFT = Domain(low=0, high=1, low_open=True)  # crop_pct
# A budget or step in pixel units: L-inf ones are at most 1, which the attack settings check with the threat model
# (an L2 budget is the norm of the whole image).
PIXEL = Domain(low=0)
SEED = Domain(low=0, high=2**32 - 1, whole=True)  # numpy's seeds; torch's and random's accept these too
STEPS = Domain(low=1, high=100_000, whole=True)  # attack steps: a robust-accuracy column needs at least one
# Upper bounds no run means, that would hang the machine or crash it instead of running: a billion optimiser steps, a
# million epochs, a batch of more than 65,536 images per process.
TRAINING_STEPS = Domain(low=1, high=10**9, whole=True)
EPOCHS = Domain(low=0, low_open=True, high=10**6)
BATCH = Domain(low=1, high=65_536, whole=True)
ACCUMULATION = Domain(low=1, high=10**6, whole=True)
WORKERS = Domain(low=0, high=256, whole=True)  # data-loader worker processes
LOGIT_SCALE = Domain(low=0, low_open=True, high=1000)  # CLIP clamps its own learned scale at 100
RGB = Domain(length=3)  # a per-channel mean
RGB_POSITIVE = Domain(low=0, low_open=True, length=3)  # a per-channel std
NOT_SET = -1


def unset_or(domain: Domain, meaning: str) -> Domain:
    """`domain`, or -1 meaning `meaning` (transformers' convention for "not set", e.g. `max_steps`)."""
    return Domain(domain.low, domain.high, domain.low_open, domain.high_open, domain.whole, (NOT_SET,), meaning)


class DomainField(dataclasses.Field):
    """A dataclass field that carries its [`Domain`] (`.domain`) and its concern (`.concern`: `None` for the
    recipe, `"data"` for how data is read, `"peft"` for LoRA); otherwise `dataclasses.Field`."""

    __slots__ = ("domain", "concern")


def _with_domain(spec: dataclasses.Field, domain: Domain | None, concern: str | None = None) -> DomainField:
    declared = DomainField.__new__(DomainField)
    for slot in dataclasses.Field.__slots__:
        setattr(declared, slot, getattr(spec, slot))
    declared.domain = domain
    declared.concern = concern if concern is not None else getattr(spec, "concern", None)
    return declared


def field(*, domain: Domain | None = None, concern: str | None = None, **kwargs):
    """`dataclasses.field(**kwargs)` that also declares the field's domain and, for what is not the method's recipe,
    its concern (`"data"`: how the data is read, `"peft"`: LoRA), which model cards leave out of the recipe."""
    return _with_domain(dataclasses.field(**kwargs), domain, concern)


def field_concern(cls: type, name: str) -> str | None:
    """The concern declared on `cls`'s field `name` (or the nearest parent's): `None` for the recipe."""
    for owner in cls.__mro__:
        spec = getattr(owner, "__dataclass_fields__", {}).get(name)
        if getattr(spec, "concern", None) is not None:
            return spec.concern
    return None


def with_domains(domains: Mapping[str, Domain]) -> Callable[[type], type]:
    """Class decorator for a dataclass: declare the domains of inherited fields (transformers' `TrainingArguments`)
    on this class's copies of them, without touching the parent's fields."""

    def decorate(cls: type) -> type:
        for name, domain in domains.items():
            cls.__dataclass_fields__[name] = _with_domain(cls.__dataclass_fields__[name], domain)
        return cls

    return decorate


def field_domain(cls: type, name: str) -> Domain | None:
    """The domain of `cls`'s field `name`: its own declaration, else the nearest parent's (a method config that
    redeclares a field with its own default keeps the domain declared for it)."""
    for owner in cls.__mro__:
        domain = getattr(getattr(owner, "__dataclass_fields__", {}).get(name), "domain", None)
        if domain is not None:
            return domain
    return None
