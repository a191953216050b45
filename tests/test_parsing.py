"""Parsing as TRL's TrlParser does it: HfArgumentParser, a config file as defaults, values typed once in
`__post_init__` (pixel fractions only for pixel fields), and the typed values of pmg_aft.pixels."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from dataclasses import dataclass, field

import pytest

from pmg_aft import AttackGrid, PMGAFTConfig
from pmg_aft.finetune import parse_args
from pmg_aft.parsing import ArgumentParser, UnknownFlagsError, check_fields, optional_fields
from pmg_aft.pixels import LogitScale, Names, PixelValue, PixelValues, StepCounts


@dataclass
class Options:
    rate: float = field(default=0.1, metadata={"help": "A learning rate: a number, not a pixel quantity."})
    budget: PixelValue = field(default=PixelValue(1 / 255), metadata={"help": "A budget in pixel units."})
    steps: int = field(default=2, metadata={"help": "Steps."})
    report_dir: str | None = field(default=None, metadata={"help": "A folder."})

    def __post_init__(self) -> None:
        check_fields(self)


def test_a_config_file_is_the_defaults_and_flags_override_it():
    parser = ArgumentParser((Options,))
    (options,) = parser.parse(["--steps", "5"], {"rate": "1e-5", "budget": "2/255", "steps": 3}, source="c.yaml")
    assert (options.rate, options.steps) == (1e-5, 5) and options.budget == pytest.approx(2 / 255)
    assert type(options.budget) is PixelValue and type(options.steps) is int
    (plain,) = ArgumentParser((Options,)).parse([])
    assert (plain.rate, plain.steps, plain.report_dir) == (0.1, 2, None)  # the fields' own defaults


def test_pixel_fractions_only_for_pixel_fields(tmp_path):
    # Was: every number of a config file went through the pixel parser, so `learning_rate: 1/255` was accepted.
    with pytest.raises(ValueError, match=r"^c.yaml: rate must be a number, got '1/255'\.$"):
        ArgumentParser((Options,)).parse([], {"rate": "1/255"}, source="c.yaml")
    with pytest.raises(ValueError, match=r"^rate must be a number, got '1/255'\.$"):  # a flag's value alike
        ArgumentParser((Options,)).parse(["--rate", "1/255"])
    (tmp_path / "c.yaml").write_text("learning_rate: 1/255\n")
    with pytest.raises(SystemExit, match=r"c.yaml: learning_rate='1/255': learning_rate must be a finite number > 0"):
        parse_args(["--output_dir", "x", "--config", str(tmp_path / "c.yaml")])
    with pytest.raises(ValueError, match="alpha='1/255': alpha must be a finite number >= 0"):
        PMGAFTConfig(output_dir="x", alpha="1/255")  # from Python: the same check
    config = PMGAFTConfig(output_dir="x", train_eps="1/255", train_steps="3", learning_rate="1e-5")
    assert config.train_eps == pytest.approx(1 / 255) and config.train_steps == 3 and config.learning_rate == 1e-5


def test_no_abbreviated_flags_and_negative_fractions_are_values():
    with pytest.raises(UnknownFlagsError, match=r"unknown flags: \['report'\]"):
        ArgumentParser((Options,)).parse(["--report", "x"])  # argparse would have read --report_dir
    (options,) = ArgumentParser((Options,)).parse(["--budget", "-1/255", "--rate", "-1e-5"])
    assert options.budget == pytest.approx(-1 / 255) and options.rate == -1e-5  # values, for the checks to judge


def test_logit_scale_is_typed_once():
    scale = LogitScale("100")
    assert scale == "100" and scale.value == 100.0 and LogitScale(1).value == 1.0
    assert LogitScale("Model").value is None and LogitScale("model") == "model"
    for kept in (pickle.loads(pickle.dumps(scale)), copy.deepcopy(scale)):
        assert kept.value == 100.0 and type(kept) is LogitScale
    with pytest.raises(ValueError, match="neither a number"):
        LogitScale("big")
    with pytest.raises(ValueError, match="must be positive"):
        LogitScale(0)
    config = PMGAFTConfig(output_dir="x", logit_scale="model")
    assert config.logit_scale.value is None and json.loads(config.to_json_string())["logit_scale"] == "model"
    assert PMGAFTConfig(output_dir="x").logit_scale.value == 1.0  # PMG-AFT's s = 1


def test_lists_parse_from_text_or_sequences():
    assert PixelValues("1/255, 4/255") == pytest.approx((1 / 255, 4 / 255)) == PixelValues([1 / 255, 4 / 255])
    assert StepCounts("10,100") == (10, 100) == StepCounts([10, 100.0]) and StepCounts(5) == (5,)
    assert Names("pgd,cw") == ("pgd", "cw") == Names(["pgd", "cw"])
    with pytest.raises(ValueError, match=r"steps=\[2.5\]: give whole numbers >= 1"):
        StepCounts([2.5])


def test_override_flags_are_generated_from_the_record():
    specs = optional_fields(AttackGrid)
    assert [name for name, _, _ in specs] == [f.name for f in dataclasses.fields(AttackGrid)]
    for name, _, spec in specs:
        assert spec.default is None and spec.metadata["help"] == AttackGrid.__dataclass_fields__[name].metadata["help"]
    kinds = {name: kind for name, kind, _ in specs}
    assert kinds["eps"] == str | None and kinds["random_start"] == bool | None  # the record parses the text, once


def test_values_are_kept_as_written_where_they_are_already_right(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path), logit_scale="100.0")
    saved = json.loads(config.to_json_string())
    assert saved["warmup_steps"] == 1000 and type(saved["warmup_steps"]) is int  # not 1000.0 in the files
    assert saved["logit_scale"] == "100.0" and config.logit_scale.value == 100.0
    assert PMGAFTConfig(output_dir=str(tmp_path), seed="4294967295").seed == 4294967295  # exactly, as written
    with pytest.raises(
        ValueError, match=r"^seed=123456789012345678901: seed must be a whole number in \[0, 4294967295\]"
    ):
        PMGAFTConfig(output_dir=str(tmp_path), seed="123456789012345678901")  # numpy's seeding would crash later


def test_null_and_missing_values_are_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("logit_scale: null\n")
    with pytest.raises(SystemExit, match=r"^pmg-aft: .*c.yaml: logit_scale needs a value, got null"):
        parse_args(["--output_dir", "x", "--config", str(tmp_path / "c.yaml")])
    with pytest.raises(SystemExit, match=r"^pmg-aft: --config needs a YAML or JSON file\.$"):
        parse_args(["--output_dir", "x", "--config"])
    # Each field against its declared domain first, then what only fields together say (an L-inf budget above 1).
    with pytest.raises(ValueError, match=r"^alpha=-1: alpha must be a finite number >= 0\.$"):
        PMGAFTConfig(output_dir=str(tmp_path), alpha=-1, train_eps=2)
    with pytest.raises(ValueError, match=r"^train_eps=2 is larger than 1"):
        PMGAFTConfig(output_dir=str(tmp_path), train_eps=2)
