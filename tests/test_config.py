import pytest
from transformers import HfArgumentParser

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, PMGAFTConfig
from pmg_aft.config import parse_pixel_value


def test_defaults_reproduce_the_paper(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path))
    assert config.train_eps == pytest.approx(1 / 255) and config.train_step_size == pytest.approx(1 / 255)
    assert config.train_steps == 2 and config.attack_norm == "linf" and config.attack_random_start
    assert config.alpha == 256 and config.beta == 256 and config.kl_direction == "official"
    assert config.resolved_logit_scale() == 1.0
    assert config.image_mean == list(IMAGENET_MEAN) and config.image_std == list(IMAGENET_STD)
    assert config.prompt_template == "This is a photo of a {}"
    assert config.remove_unused_columns is False


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
    assert config.resolved_logit_scale() is None
    # Strings in Python (as from YAML) work too, and the JSON dump holds plain floats.
    config = PMGAFTConfig(output_dir=str(tmp_path), train_eps="2/255", logit_scale=100)
    assert config.train_eps == pytest.approx(2 / 255) and config.resolved_logit_scale() == 100.0
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
    with pytest.raises(ValueError, match="negative"):
        PMGAFTConfig(output_dir=str(tmp_path), train_step_size=-1 / 255)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"kl_direction": "reverse"}, "kl_direction"),
        ({"attack_norm": "l1"}, "attack_norm"),
        ({"alpha": -1}, "alpha and beta"),
        ({"prompt_template": "a photo"}, "exactly one"),
        ({"image_mean": [0.5, 0.5]}, "3 values"),
        ({"logit_scale": "big"}, "neither a number"),
        ({"remove_unused_columns": True}, "image column"),
        ({"train_steps": -1}, "train_steps"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        PMGAFTConfig(output_dir=str(tmp_path), **overrides)


def test_eval_attack_steps_leaves_the_trainers_eval_interval_alone(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=50, eval_attack_steps=100)
    assert config.eval_steps == 50 and config.eval_attack_steps == 100
    assert PMGAFTConfig(output_dir=str(tmp_path)).eval_steps is None  # Trainer's default: follow logging_steps
