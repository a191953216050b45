"""Argument parsing the way TRL's `TrlParser` does it: `HfArgumentParser` over dataclasses, a `--config` YAML/JSON
file as defaults that flags override, and values typed and checked once, in the dataclasses' `__post_init__`
([`check_fields`]): the one place that validates a field's value, against the domain declared beside it."""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import re
import types
import typing
from dataclasses import MISSING, Field, fields
from types import MappingProxyType

import yaml
from transformers import HfArgumentParser

from .domains import DomainError, field, field_domain
from .errors import InputError, MissingInputError, as_input_error
from .pixels import LogitScale, Names, PixelValue, PixelValues, StepCounts, parse_pixel_value

# Types that parse their own values (fractions, comma-separated lists, `model`): built from the value as it is.
PARSED_TYPES = (PixelValue, PixelValues, StepCounts, Names, LogitScale)
# transformers' text fields that also take a list in a config file.
TAKES_A_LIST = frozenset({"fsdp"})
# YAML reads `1e-6` (no dot) as a string: inside a mapping (`lr_scheduler_kwargs`) it is turned into the number.
SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_numbers(name: str, values):
    """`values` (a mapping or list of a config file) with numbers YAML read as text made numbers, every number
    checked finite."""
    if isinstance(values, dict):
        return {k: _yaml_numbers(name, v) for k, v in values.items()}
    if isinstance(values, list):
        return [_yaml_numbers(name, v) for v in values]
    if isinstance(values, str) and SCIENTIFIC.match(values.strip()):
        values = float(values)
    if isinstance(values, float) and not math.isfinite(values):
        raise DomainError(name, f"{name} holds {values!r}: every number in it must be finite.")
    return values


class FieldTypeError(InputError):
    """A value of the wrong type for a field (`field` names it)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class UnknownFlagsError(InputError):
    """Flags (or config-file keys) that no argument group has."""


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def field_kind(cls: type, name: str):
    """The one type `cls`'s field `name` holds besides `None`, or `None` when it may hold several."""
    return _kind(_hints(cls).get(name))


def _kind(hint):
    """The one type a hint allows besides `None`, or `None` when it allows several (then the value is left alone)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(hint) if k is not type(None)]
        return kinds[0] if len(kinds) == 1 else None
    return hint


def _number(name: str, value, cast: type):
    """`value` as an int or float: numbers, and numbers written as text (`1e-5`, which YAML reads as a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldTypeError(name, f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    if type(value) is cast or (cast is float and type(value) is int):  # 1000 stays 1000 where a float may be
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value) if cast is int else float(value)  # whole numbers exactly, however large (a seed)
    try:
        number = float(value)
    except ValueError:
        raise FieldTypeError(name, f"{name} must be a number, got {value!r}.") from None
    if cast is int and not number.is_integer():
        raise FieldTypeError(name, f"{name} must be a whole number, got {value!r}.")
    return cast(number)


def _takes_mapping(hint) -> bool:
    """Whether a field of type `hint` may hold a mapping (`dict`, or a union with one, or no type at all)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(o is None or o is typing.Any or o is dict or typing.get_origin(o) is dict for o in options)


def typed_value(cls: type, name: str, value):
    """`value` checked and converted to the type of `cls`'s field `name`: a number where a number is expected (pixel
    fractions such as `1/255` only for pixel fields), true/false for flags, a list of numbers for lists, ... Values
    of fields that take several types are returned as they are, and so is `None` where the field allows it."""
    hint = _hints(cls).get(name)
    kind = _kind(hint)
    if isinstance(value, dict):  # a mapping of a config file (`lr_scheduler_kwargs`): its numbers checked
        if not _takes_mapping(hint):
            raise FieldTypeError(name, f"{name} must be a single value, got a mapping {value!r}.")
        return _yaml_numbers(name, value)
    if kind is None:
        return value
    if value is None:
        spec = cls.__dataclass_fields__[name]
        if kind is hint and spec.default is not None and kind in (*PARSED_TYPES, int, float, bool):
            raise FieldTypeError(name, f"{name} needs a value, got null (None).")
        return value
    if kind in PARSED_TYPES:
        if type(value) is kind:
            return value
        if isinstance(value, (list, tuple, dict, bool)) and kind in (PixelValue, LogitScale):
            raise FieldTypeError(name, f"{name} must be a number, got {value!r} ({type(value).__name__}).")
        try:
            return kind(parse_pixel_value(value, name)) if kind is PixelValue else kind(value)
        except InputError as error:
            said = str(error)
            raise FieldTypeError(name, said if said.startswith(name) else f"{name}: {said}") from error
    if kind in (int, float):
        try:
            return _number(name, value, kind)
        except FieldTypeError:
            domain = field_domain(cls, name)
            if domain is None or not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise
            raise FieldTypeError(name, f"{name}={value!r}: {name} must be {domain.describe()}.") from None
    if kind is bool and not isinstance(value, bool):
        raise FieldTypeError(name, f"{name} must be true or false, got {value!r}.")
    if kind is str and isinstance(value, list) and name not in TAKES_A_LIST:
        raise FieldTypeError(name, f"{name} must be a single value, got {value!r}.")
    if typing.get_origin(kind) is list and typing.get_args(kind)[:1] == (float,):
        if not isinstance(value, (list, tuple)):
            raise FieldTypeError(name, f"{name} must be a list of numbers, e.g. [0.485, 0.456, 0.406]; got {value!r}.")
        return [_number(name, v, float) for v in value]
    return value


def check_fields(obj) -> None:
    """Type every field of the dataclass `obj` ([`typed_value`]) and check it, in place: the one validator of every
    record's input, called first in its `__post_init__`, so values from a config file, from Python and from flags are
    checked the same way, once, before anything runs.

    A number must lie in the domain declared beside its field (`metadata={"domain": ...}`, [`field_domain`]; any
    number must be finite); a choice must be one of the field's `choices`; text and lists may be empty only where
    the field's default is.

    Raises:
        [`FieldTypeError`] or [`DomainError`]: naming the field, the value and what it must be.
    """
    cls = type(obj)
    for f in fields(obj):
        value = getattr(obj, f.name)
        typed = typed_value(cls, f.name, value)
        if typed is not value:
            object.__setattr__(obj, f.name, typed)  # frozen records too
        check_value(cls, f, typed)


def _default(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def check_value(cls: type, f: Field, value) -> None:
    """Check one typed value of `cls`'s field `f` (see [`check_fields`])."""
    if value is None or isinstance(value, bool):
        return
    name, domain = f.name, field_domain(cls, f.name)
    number = value.value if isinstance(value, LogitScale) else value
    items = list(number) if isinstance(number, (list, tuple)) else [number]
    if domain is not None and number is not None and all(isinstance(v, (int, float)) for v in items):
        domain.check(name, number)
    for item in items:  # a number no domain speaks for is still finite
        if isinstance(item, float) and not math.isfinite(item):
            raise DomainError(name, f"{name}={item!r} is not a finite number.")
    # `internal_choices`: values only the library sets (a fine-tuning run's own protocol), never offered as a flag.
    choices = [*f.metadata.get("choices", ()), *f.metadata.get("internal_choices", ())]
    if choices and isinstance(value, (str, list, tuple)):
        wrong = [v for v in ([value] if isinstance(value, str) else value) if v not in choices]
        if wrong:
            shown = repr(wrong[0]) if isinstance(value, str) else repr(list(value))
            raise DomainError(name, f"{name}={shown}: {name} must be one of {', '.join(map(str, choices))}.")
    default = _default(f)
    if isinstance(value, str) and not value.strip() and not (isinstance(default, str) and not default.strip()):
        optional = " (or leave it out for the default)" if default is not MISSING else ""
        raise DomainError(name, f"{name} is empty; give it a value{optional}.")
    if isinstance(value, (list, tuple)) and not value and not (isinstance(default, (list, tuple)) and not default):
        raise DomainError(name, f"{name} is an empty list; give at least one value (or leave it out).")
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) and not v.strip() for v in value):
        raise DomainError(name, f"{name}={list(value)!r} holds an empty item; give each one a value.")


def optional_fields(cls: type, names: typing.Iterable[str] | None = None) -> list[tuple[str, object, Field]]:
    """`make_dataclass` field specs for `cls`'s fields `names` (default: all), each optional with default `None` and
    the field's help: the flags that override a record's fields, declared once, on the record. Values of the types
    that parse themselves (`1/255,4/255`, `10,100`) stay text here: the record parses them, once, and names the
    flag in its message."""
    hints, wanted = _hints(cls), set(names) if names is not None else None
    specs = []
    for f in fields(cls):
        if wanted is None or f.name in wanted:
            kind = _kind(hints[f.name])
            if kind is None:  # a field of several types has no single flag type
                continue
            metadata = dict(f.metadata)
            if kind in PARSED_TYPES:  # the flag is text (`pgd,cw`): the record checks each item's choice
                kind = str
                metadata.pop("choices", None)
            declared = field(default=None, domain=field_domain(cls, f.name), metadata=metadata)
            specs.append((f.name, kind | None, declared))
    return specs


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (else the last one would win without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (line {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str) -> dict:
    """The argument values of a YAML or JSON file (a mapping of argument names to values)."""
    if not os.path.isfile(path):
        raise MissingInputError(f"--config {path}: no such file.")
    try:
        with open(path, encoding="utf-8-sig") as f:
            values = yaml.load(f, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path} is not valid YAML/JSON: {str(error).splitlines()[0]}") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not a text file (YAML or JSON): byte {error.start} is not UTF-8.") from error
    if not isinstance(values, dict):
        raise InputError(f"{path} must hold a mapping of argument names to values.")
    return values


def close_matches(names: list[str], known) -> str:
    """` (did you mean ...)` for each unknown name with a close spelling among `known`, else `""`."""
    import difflib

    hints = [f"--{m[0]} for --{n}" for n in names if (m := difflib.get_close_matches(n, list(known), n=1))]
    return f" (did you mean {'; '.join(hints)}?)" if hints else ""


class ArgumentParser(HfArgumentParser):
    """`HfArgumentParser` that reads `-1/255` and `-1e-5` as values, takes no abbreviated flags (`--repo` is not
    `--report_dir`), says each field's domain in its help, and parses with a config file's values as defaults
    ([`parse`]).

    It uses private parts of argparse and HfArgumentParser where they have no public form (tested with Python
    3.11's argparse and transformers 5.25): argparse's `_negative_number_matcher` (the one switch for what counts as
    a negative number) and `_actions` (the list of a parser's flags, which `add_argument` returns one by one), and
    HfArgumentParser's `_add_dataclass_arguments` / `_parse_dataclass_field` (the one place a field becomes a flag).
    """

    def __init__(self, dataclass_types, **kwargs) -> None:
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)
        # argparse takes only -1 and -0.5 for negative numbers, so `--train_eps -1/255` would read the value as an
        # unknown option; this is the pattern argparse itself uses from Python 3.13 on, plus fractions.
        self._negative_number_matcher = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)

    def error(self, message: str):
        """A usage error in one line (argparse prints the whole usage first); `--help` shows the flags."""
        self.exit(2, f"{self.prog}: error: {message.rstrip('.')} ({self.prog} --help: its flags).\n")

    def _add_dataclass_arguments(self, dtype) -> None:
        self._adding = dtype  # whose fields the next `_parse_dataclass_field` calls add
        super()._add_dataclass_arguments(dtype)

    def _parse_dataclass_field(self, parser, spec: Field) -> None:
        """HfArgumentParser's, with the field's domain said in its help, and numbers read as text: the record's
        validator ([`check_fields`]) parses them, so a bad value gets the same line (the field, the value, its
        domain) from a flag as from a config file or Python."""
        domain = field_domain(self._adding, spec.name)
        kind = _kind(spec.type)
        if domain is not None or kind in (*PARSED_TYPES, int, float) or kind == list[float]:
            spec = copy.copy(spec)
            if domain is not None:
                help_text = f"{spec.metadata.get('help', '')} Domain: {domain.describe()}.".strip()
                spec.metadata = MappingProxyType({**spec.metadata, "help": help_text})
            if kind in (*PARSED_TYPES, int, float):
                spec.type = str if kind is spec.type else str | None
            elif kind == list[float]:
                spec.type = list[str]
        if "internal_choices" in spec.metadata:  # the library's own values: not a flag's choice (nor argparse's key)
            spec = copy.copy(spec)
            spec.metadata = MappingProxyType({k: v for k, v in spec.metadata.items() if k != "internal_choices"})
        HfArgumentParser._parse_dataclass_field(parser, spec)

    def set_choices(self, dest: str, choices: list) -> None:
        """Restrict the flag of field `dest` to `choices` (known only when parsing, as the registered methods)."""
        for action in self._actions:
            if action.dest == dest:
                action.choices = choices
                action.help = f"{action.help} One of: {', '.join(map(str, choices))}."

    def parse(
        self, argv: list[str], defaults: dict | None = None, source: str | None = None, hint=None, context: str = ""
    ) -> tuple:
        """The argument dataclasses from `argv`, with `defaults` (a config file's values, from `source`) under the
        flags. Each dataclass is built once, from the values given, so its `__post_init__` types them all.

        Raises:
            [`UnknownFlagsError`]: for flags or keys no group has (`hint(names)` adds what they may mean, `context`
                says whose they are not, e.g. `" for method tecoa"`).
            [`InputError`]: for values the dataclasses reject (a `ValueError` of their checks).
        """
        defaults = dict(defaults or {})
        known = {f.name for group in self.dataclass_types for f in fields(group)}
        hint = hint or (lambda names: close_matches(names, known))
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise UnknownFlagsError(f"unknown keys in {source}{context}: {unknown}{hint(unknown)}.")
        if any(arg in ("-h", "--help") for arg in argv):
            self.set_defaults(**defaults)
            self.parse_args(argv)  # prints the help, with the file's values as defaults, and exits
        # Only the flags given land in the namespace, so the file's values are not overwritten by field defaults.
        required = {}
        for action in self._actions:
            if action.dest in known:
                action.default = argparse.SUPPRESS
                required[action] = action.required and action.dest not in defaults
                action.required = False  # an unknown flag is said before a missing one (it may be its misspelling)
        namespace, rest = self.parse_known_args(argv)
        flags = sorted({arg.split("=", 1)[0][2:].replace("-", "_") for arg in rest if arg.startswith("--")})
        if rest:
            raise UnknownFlagsError(f"unknown flags{context}: {flags or rest}{hint(flags)}.")
        for action, needed in required.items():
            action.required = needed
        missing = [action for action, needed in required.items() if needed and action.dest not in vars(namespace)]
        if missing:  # argparse's own message for a required flag
            flags = ", ".join("/".join(action.option_strings) for action in missing)
            self.error(f"the following arguments are required: {flags}")
        given = {k: v for k, v in vars(namespace).items() if k in known}  # not the job's own --config
        try:
            with as_input_error():
                return self.parse_dict({**defaults, **given})
        except (FieldTypeError, DomainError) as error:
            from_file = source and error.field in defaults and error.field not in given
            raise InputError(f"{source}: {error}" if from_file else str(error)) from error
