"""Every numeric field of every registered record (each method's config, the job's, each command's) declares its
domain, and nan, inf, -inf and out-of-domain values are refused before any compute, from Python, from flags and from
a config file. The records come from the registries (`TRAINERS`, `pmg_aft.cli.COMMANDS`), so a new method or
command is covered without editing this file."""

from __future__ import annotations

import functools
import math
from dataclasses import MISSING, fields

import pytest

from pmg_aft import TRAINERS
from pmg_aft.cli import COMMANDS
from pmg_aft.cli import main as cli
from pmg_aft.domains import COUNT, Domain, field_domain
from pmg_aft.errors import InputError
from pmg_aft.finetune import parse_args
from pmg_aft.parsing import ArgumentParser, field_kind
from pmg_aft.pixels import LogitScale, PixelValue, PixelValues, StepCounts

NUMERIC = (int, float, PixelValue, PixelValues, StepCounts, LogitScale)
SHARED = {f.name for f in fields(TRAINERS["pmg_aft"].config_class.__mro__[1])}  # RobustCLIPConfig's


@functools.cache
def records() -> dict[type, str]:
    """Every registered record, with the command that parses it."""
    found: dict[type, str] = {}
    for command in COMMANDS.values():
        for record in command.argument_records():
            found.setdefault(record, command.name)
    return found


def numeric(record: type, name: str) -> bool:
    kind = field_kind(record, name)
    return kind in NUMERIC or kind == list[float] or field_domain(record, name) is not None


@functools.cache
def cases() -> list[tuple[type, str]]:
    """(record, field) for every numeric field; a method config's inherited shared fields once, through pmg_aft."""
    out = []
    for record in records():
        method_config = record in {t.config_class for t in TRAINERS.values()}
        for f in fields(record):
            if not f.init or not numeric(record, f.name):
                continue
            if method_config and f.name in SHARED and record is not TRAINERS["pmg_aft"].config_class:
                continue
            out.append((record, f.name))
    return out


def hostile(record: type, name: str) -> list:
    """nan, inf, -inf and values just outside the declared domain (as a string where the flag is text)."""
    domain = field_domain(record, name) or Domain()
    values = [math.nan, math.inf, -math.inf, *domain.outside()]
    if field_kind(record, name) is str:
        return [str(v) for v in values]
    if domain.length:
        return [[v] * domain.length for v in values]
    return values


def required(record: type) -> dict:
    """Placeholder values for a record's required fields (the field under test fails first)."""
    return {f.name: "x" for f in fields(record) if f.default is MISSING and f.default_factory is MISSING and f.init}


def test_the_registries_hold_every_method_and_command_record():
    found = records()
    assert {t.config_class for t in TRAINERS.values()} <= set(found)
    assert {"eval", "push", "zoo", "export", "leaderboard"} <= set(found.values())
    assert len(cases()) > 60


@pytest.mark.parametrize("record", list(records()), ids=lambda r: r.__name__)
def test_every_numeric_field_declares_its_domain(record):
    undeclared = [
        f.name
        for f in fields(record)
        if f.init and numeric(record, f.name) and field_domain(record, f.name) is None
        and field_kind(record, f.name) is not str
    ]  # fmt: skip
    assert not undeclared, f"{record.__name__}: no domain declared for {undeclared}"


@pytest.mark.parametrize("record, name", cases(), ids=lambda x: getattr(x, "__name__", x))
def test_python_construction_refuses_non_finite_and_out_of_domain_values(record, name):
    for value in hostile(record, name):
        with pytest.raises(InputError) as refused:
            record(**(required(record) | {name: value}))
        assert name in str(refused.value), (value, str(refused.value))


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a command gets past its parsing (a model load or a trainer build is compute)."""

    def started(*args, **kwargs):
        raise AssertionError("compute started with a value that should have been refused")

    monkeypatch.setattr("pmg_aft.cli.load_clip", started)
    monkeypatch.setattr("pmg_aft.finetune.build_trainer", started)
    monkeypatch.setattr("pmg_aft.cli.import_checkpoint", started)


def flag_cases() -> list[tuple[str, type, str]]:
    return [(records()[record], record, name) for record, name in cases()]


@pytest.mark.parametrize("command, record, name", flag_cases(), ids=lambda x: getattr(x, "__name__", x))
def test_flags_refuse_them_before_any_compute(command, record, name, no_compute, tmp_path, capsys):
    domain = field_domain(record, name) or Domain()
    for value in ("nan", "inf", *(repr(v) for v in domain.outside()[:1])):
        values = [value] * (domain.length or 1)
        if command == "train":
            method = next((k for k, t in TRAINERS.items() if t.config_class is record), "pmg_aft")
            argv = ["--method", method, "--output_dir", str(tmp_path / "out"), f"--{name}", *values]
            with pytest.raises(SystemExit) as stop:
                parse_args(argv)
            # Our one line, or argparse's usage and "invalid int value" for a type it cannot parse.
            said = str(stop.value.code) if stop.value.code != 2 else capsys.readouterr().err
        else:
            words = COMMANDS[command].record_words
            needed = {k for r in COMMANDS[command].argument_records() for k in required(r)}  # every record's
            flags = [a for k in sorted(needed) if k != name for a in (f"--{k}", str(tmp_path / k))]
            try:
                code = cli([command, *words, *flags, f"--{name}", *values])
            except SystemExit as stop:  # argparse's own refusal of a value its type cannot parse
                code = stop.code
            said = capsys.readouterr().err
            assert code == 2, (value, said)
        assert name in said, (value, said)


@pytest.mark.parametrize("name", sorted({n for r, n in cases() if r in {t.config_class for t in TRAINERS.values()}}))
def test_config_files_refuse_them_too(name, tmp_path, no_compute):
    record = next(r for r, n in cases() if n == name and r in {t.config_class for t in TRAINERS.values()})
    method = next(k for k, t in TRAINERS.items() if t.config_class is record)
    domain = field_domain(record, name) or Domain()
    for text in (".nan", ".inf", "-.inf"):
        value = f"[{', '.join([text] * domain.length)}]" if domain.length else text
        (tmp_path / "c.yaml").write_text(f"method: {method}\n{name}: {value}\n")
        with pytest.raises(SystemExit) as stop:
            parse_args(["--config", str(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "out")])
        assert f"c.yaml: {name}" in str(stop.value.code), str(stop.value.code)


def test_domains_are_said_in_the_help_and_described_in_words():
    text = " ".join(ArgumentParser((TRAINERS["pmg_aft"].config_class,)).format_help().split())
    assert "(the code's default is 5). Domain: a whole number in [1, 100000]." in text
    assert "Domain: -1 (num_train_epochs decides) or a whole number in [1, 1000000000]." in text
    assert "Domain: a finite number > 0." in text
    assert COUNT.contains(3) and not COUNT.contains(2.5) and not COUNT.contains(True)


def test_text_and_lists_are_refused_empty_where_the_default_is_not(tmp_path):
    config = TRAINERS["pmg_aft"].config_class
    with pytest.raises(InputError, match="^output_dir is empty"):
        config(output_dir=" ")
    with pytest.raises(InputError, match="^lora_target_modules is an empty list"):
        config(output_dir=str(tmp_path), lora_target_modules=[])
    with pytest.raises(InputError, match="^hub_token: the Hub token is read from the environment only"):
        config(output_dir=str(tmp_path), hub_token="hf_abc")
