"""The shared config fields (RobustCLIPConfig), through every method's config."""

import dataclasses

import pytest
from transformers import HfArgumentParser, TrainingArguments

from pmg_aft import TRAINERS, PMGAFTConfig, RobustCLIPConfig
from pmg_aft.pixels import parse_pixel_value

from .utils import METHODS


@pytest.mark.parametrize("method", METHODS)
def test_every_config_shares_the_base_and_has_no_method_switch(method, tmp_path):
    config_class = TRAINERS[method].config_class
    assert issubclass(config_class, RobustCLIPConfig) and issubclass(config_class, TrainingArguments)
    names = {f.name for f in dataclasses.fields(config_class)}
    assert "method" not in names
    own = names - {f.name for f in dataclasses.fields(RobustCLIPConfig)}
    # The only method-specific fields: the methods' own weights, scales, prompts and variants.
    assert own <= {"alpha", "beta", "kl_direction", "loss", "train_logit_scale", "scale_ratio", "negation_template"}
    config = config_class(output_dir=str(tmp_path))
    assert config.remove_unused_columns is False and config.max_grad_norm == 0.0  # no official code clips
    ours = {f.name for f in dataclasses.fields(RobustCLIPConfig)} - {
        f.name for f in dataclasses.fields(TrainingArguments)
    }
    for field in dataclasses.fields(config_class):  # every field of ours says what it is and where it comes from
        if field.name in ours | own:
            assert field.metadata.get("help"), field.name


def test_pixel_values_parse_fractions_on_the_command_line(tmp_path):
    parser = HfArgumentParser(PMGAFTConfig)
    (config,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--train_eps",
            "4/255",
            "--eval_step_size",
            "0.5/255",
            "--logit_scale",
            "model",
        ]
    )
    assert config.train_eps == pytest.approx(4 / 255)
    assert config.eval_step_size == pytest.approx(0.5 / 255)
    assert config.logit_scale.value is None
    # Strings in Python (as from YAML) work too, and the JSON dump holds plain floats.
    config = PMGAFTConfig(output_dir=str(tmp_path), train_eps="2/255", logit_scale=100)
    assert config.train_eps == pytest.approx(2 / 255) and config.logit_scale.value == 100.0
    assert '"train_eps": 0.00784313' in config.to_json_string()


def test_parse_pixel_value_errors():
    assert parse_pixel_value(" 8 / 255 ") == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="fraction"):
        parse_pixel_value("one/255", "train_eps")


def test_eps_in_255_units_is_caught(tmp_path):
    with pytest.raises(ValueError, match=r"Did you mean 4/255"):
        PMGAFTConfig(output_dir=str(tmp_path), train_eps=4)
    with pytest.warns(UserWarning, match=r"did you mean 1/255"):
        PMGAFTConfig(output_dir=str(tmp_path), eval_eps=1)
    with pytest.raises(ValueError, match=r"train_step_size=-0.0039\d*: train_step_size must be a finite number >= 0"):
        PMGAFTConfig(output_dir=str(tmp_path), train_step_size=-1 / 255)
    with pytest.raises(ValueError, match=r"^train_step_size=inf: train_step_size must be a finite number >= 0\.$"):
        PMGAFTConfig(output_dir=str(tmp_path), train_step_size="inf")  # no "did you mean inf/255"
    with pytest.raises(
        ValueError, match=r"^train_eps=300 is larger than 1, but pixel quantities are in \[0, 1\] units\.$"
    ):
        PMGAFTConfig(output_dir=str(tmp_path), train_eps=300)  # 300/255 is no pixel quantity either: no hint


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"attack_norm": "l1"}, "attack_norm"),
        ({"prompt_template": "a photo"}, "exactly one"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"interpolation": "nearest"}, "interpolation"),
        ({"train_attack_momentum": 1.0}, "momentum"),
        ({"image_mean": [0.5, 0.5]}, "image_mean needs 3 values"),
        ({"logit_scale": "big"}, "neither a number"),
        ({"remove_unused_columns": True}, "image column"),
        ({"train_steps": -1}, "train_steps=-1: train_steps must be a whole number in \\[1, 100000\\]"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        PMGAFTConfig(output_dir=str(tmp_path), **overrides)


def test_eval_attack_steps_leaves_the_trainers_eval_interval_alone(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=50, eval_attack_steps=100)
    assert config.eval_steps == 50 and config.eval_attack_steps == 100
    assert PMGAFTConfig(output_dir=str(tmp_path)).eval_steps is None  # Trainer's default: follow logging_steps


@pytest.mark.parametrize("method", METHODS)
def test_every_recipe_default_cites_its_source(method):
    from pmg_aft.trainers.base_config import RECIPE_FIELDS

    trainer = TRAINERS[method]
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(trainer.config_class)}
    uncited = [
        name
        for name in RECIPE_FIELDS
        if name not in trainer.config_class.unused_fields() and "Source: " not in helps[name]
    ]
    assert not uncited, uncited
    # Citing a subclass's field leaves the shared base's help as it was.
    base = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(RobustCLIPConfig)}
    assert all("Source: " not in text for text in base.values())


def test_a_cards_recipe_is_the_fields_declared_as_recipe(tmp_path):
    import json

    from pmg_aft import PMGAFTConfig
    from pmg_aft.domains import field_concern
    from pmg_aft.trainers.saving import recipe_of

    plain = recipe_of(PMGAFTConfig, json.loads(PMGAFTConfig(output_dir=str(tmp_path)).to_json_string()))
    lora = recipe_of(PMGAFTConfig, json.loads(PMGAFTConfig(output_dir=str(tmp_path), use_peft=True).to_json_string()))
    data = [f for f in ("image_column", "preprocess_on_device", "decode_on_device", "shuffle_buffer_size")]
    assert all(field_concern(PMGAFTConfig, f) == "data" for f in data)
    assert not set(data) & set(plain) and not set(data) & set(lora)  # how data is read is not the recipe
    assert not [k for k in plain if k.startswith("lora_")] and "lora_r" in lora and lora["use_peft"] is True
    assert {"alpha", "beta", "train_eps", "learning_rate"} <= set(plain) and plain["train_eps"] == "1/255"
