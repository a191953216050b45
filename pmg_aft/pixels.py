"""Typed values of the attack options, parsed once: pixel quantities written as fractions (`1/255`), lists of them
(`1/255,4/255`), step counts, and the logit scale. Each type is also the command-line type of its option."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from .errors import InputError


def parse_pixel_value(value: float | int | str, name: str = "value") -> float:
    """Parse a pixel-unit quantity such as `1/255`, `"4/255"`, `"0.0039"` or `0.0039` into a float.

    Args:
        value (`float`, `int` or `str`): the value, possibly a fraction written as a string.
        name (`str`): the option's name, used in error messages.

    Returns:
        `float`: the value in [0, 1] pixel units.
    """
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number such as 1/255, got a boolean.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        numerator, _, denominator = value.replace(" ", "").partition("/")
        try:
            return float(numerator) / float(denominator) if denominator else float(numerator)
        except ZeroDivisionError:
            raise InputError(f"{name}={value!r} divides by zero; write a fraction such as 1/255.") from None
        except ValueError:
            pass
    raise InputError(f"{name}={value!r} is not a number; write it as a float (0.0039) or a fraction (1/255).")


class PixelValue(float):
    """A float that also parses fractions such as `1/255`; the type of every eps and step size."""

    def __new__(cls, value: float | int | str = 0.0) -> PixelValue:
        return super().__new__(cls, parse_pixel_value(value))


def _items(value: str | float | Iterable) -> list:
    """The items of a comma-separated string, a single value or a sequence (read once: it may be a generator)."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        if any(items) and not all(items):  # `1/255,,2/255`: a value left out, never skipped without a word
            raise InputError(f"{value!r} has an empty item between its commas; give every value, e.g. 1/255,4/255.")
        return [v for v in items if v]
    if isinstance(value, dict):
        raise InputError(f"expected a value or a list of values, got a mapping {value!r}.")
    return list(value) if isinstance(value, Iterable) else [value]


class PixelValues(tuple):
    """A tuple of [`PixelValue`]s, from a sequence or a comma-separated string (`1/255,4/255`): attack budgets.
    `name` is the option's, for messages."""

    def __new__(cls, values: str | float | Iterable = (), name: str = "eps") -> PixelValues:
        return super().__new__(cls, (float(v) if isinstance(v, PixelValue) else parse_pixel_value(v, name)
                                     for v in _items(values)))  # fmt: skip


class StepCounts(tuple):
    """A tuple of whole step counts, from a sequence or a comma-separated string (`10,100`)."""

    def __new__(cls, values: str | int | Iterable = ()) -> StepCounts:
        items = _items(values)
        counts, shown = [], f"--steps {values}" if isinstance(values, str) else f"steps={items}"
        for value in items:
            text = str(value).strip()
            if isinstance(value, bool) or not (text.isdigit() or (isinstance(value, float) and value.is_integer())):
                raise InputError(f"{shown}: give whole numbers >= 1, comma-separated (e.g. 10,100).")
            counts.append(int(float(text)))
        return super().__new__(cls, counts)


class Names(tuple):
    """A tuple of names, from a sequence or a comma-separated string (`pgd,cw`)."""

    def __new__(cls, values: str | Iterable[str] = ()) -> Names:
        return super().__new__(cls, (str(v) for v in _items(values)))


class LogitScale(str):
    """The scale s of the cosine logits: a positive number (`1`, `100`), or `model` for the checkpoint's own
    `exp(logit_scale)`. Parsed once: `value` is the float, or `None` for `model`; the text is what is saved."""

    value: float | None

    def __new__(cls, value: str | float | int = "100") -> LogitScale:
        if isinstance(value, bool):
            raise InputError(f"logit_scale={value!r} is neither a number (1 for PMG-AFT, 100 for TeCoA) nor 'model'.")
        text = str(value).strip()  # saved as given (`100`, `100.0`, `model`)
        if text.lower() == "model":
            scale = None
        else:
            try:
                scale = float(text)
            except ValueError:
                raise InputError(
                    f"logit_scale={value!r} is neither a number (1 for PMG-AFT, 100 for TeCoA) nor 'model'."
                ) from None
            if not scale > 0:
                raise InputError(f"logit_scale must be positive, got {scale:g}.")
        self = super().__new__(cls, text)
        self.value = scale
        return self

    def __reduce__(self):  # pickled and deep-copied by its text, which parses back to the same value
        return type(self), (str(self),)


def check_budget(name: str, value: float, norm: str = "linf", stacklevel: int = 3) -> float:
    """Check an attack budget or step size in [0, 1] pixel units against the threat model (its field's domain has
    already refused negative and non-finite values): under L-inf a value above 1 cannot be in pixel units; one above
    32/255 almost always means 0-255 units, which is said in a warning.
    """
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{name}={value!r}: budgets and step sizes are finite numbers >= 0.")
    if norm == "linf" and value > 1:
        whole = value.is_integer() and value <= 255  # 4 may mean 4/255; 300 or 1.18 are no grey levels
        hint = f" Did you mean {value:g}/255 (= {value / 255:.6f})?" if whole else ""
        raise InputError(f"{name}={value:g} is larger than 1, but pixel quantities are in [0, 1] units.{hint}")
    if norm == "linf" and value > 32 / 255:
        warnings.warn(
            f"{name}={value:g} is above 32/255 under L-inf: eps is in [0, 1] pixel units "
            f"(did you mean {value:g}/255 = {value / 255:.6f}?).",
            stacklevel=stacklevel,
        )
    return value
