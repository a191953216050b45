"""Class texts: duplicate, blank and colliding-after-cleaning names are an error naming the pair, from a class-names
file, from a training set's ClassLabel and from an eval set's, before anything is trained or evaluated."""

from __future__ import annotations

import pytest
from datasets import ClassLabel

from pmg_aft import EvalSet
from pmg_aft.data import prompt_class_names
from pmg_aft.errors import InputError
from pmg_aft.finetune import main, read_class_names

from .utils import CONFIG, fails


@pytest.mark.parametrize(
    "names, match",
    [
        (["red", "green", "red"], r"classes 0 \('red'\) and 2 \('red'\) are the same prompt text"),
        (["Red", "green", "red"], r"classes 0 \('Red'\) and 2 \('red'\) are the same prompt text after cleaning"),
        (["a_b", "c", "a b"], r"classes 0 \('a_b'\) and 2 \('a b'\)"),
        (["a-b", "c", "A/B"], r"classes 0 \('a-b'\) and 2 \('A/B'\)"),
        (["red", "  ", "blue"], r"class 1 has a blank name"),
        (["red", "__", "blue"], r"class 1 has a blank name \('__'\)"),
    ],
)  # fmt: skip
def test_names_the_head_cannot_tell_apart_are_refused(names, match):
    with pytest.raises(InputError, match=match):
        prompt_class_names(names, "somewhere")
    assert prompt_class_names(["Red", "green_apple", "Blue"], "x") == ["red", "green apple", "blue"]
    assert prompt_class_names(["n01443537", "n01629819"], "x") == ["goldfish", "european fire salamander"]


def test_a_class_names_file_keeps_its_label_order_and_is_checked(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("red\n\ngreen\n")  # was: the blank line was dropped and every later label shifted by one
    with pytest.raises(InputError, match=r"class 1 has a blank name"):
        read_class_names(str(path))
    path.write_text("red\ngreen\nblue\n\n")  # trailing blank lines end the file, they are no classes
    assert read_class_names(str(path)) == ["red", "green", "blue"]
    (tmp_path / "names.json").write_text('["red", "Red"]')
    with pytest.raises(InputError, match=r"classes 0 \('red'\) and 1 \('Red'\)"):
        read_class_names(str(tmp_path / "names.json"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00red")
    with pytest.raises(InputError, match="cannot be read as text"):
        read_class_names(str(tmp_path / "bin.txt"))


def test_the_job_refuses_them_from_a_file_before_training(tmp_path):
    (tmp_path / "names.txt").write_text("red\ngreen\nblue\nyellow\npurple\nRED\n")
    fails(["--config", CONFIG, "--output_dir", str(tmp_path / "out"), "--class_names_file",
           str(tmp_path / "names.txt")], r"classes 0 \('red'\) and 5 \('RED'\)")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_training_or_eval_classlabel_with_colliding_names_is_refused(model, make_trainer, train_set, test_set):
    names = ["red", "green", "blue", "yellow", "purple", "Green"]
    relabelled = train_set.cast_column("label", ClassLabel(names=names))
    with pytest.raises(InputError, match=r"The training class names: classes 1 \('green'\) and 5 \('Green'\)"):
        make_trainer("pmg_aft", model, train_dataset=relabelled)
    with pytest.raises(InputError, match=r"Eval set 'mine': classes 1 \('green'\) and 5 \('Green'\)"):
        EvalSet.from_dataset("mine", test_set.cast_column("label", ClassLabel(names=names)))


def test_the_demo_still_runs_with_a_names_file(tmp_path, checkpoint):
    (tmp_path / "names.txt").write_text("red\ngreen\nblue\nyellow\npurple\norange\n")
    main(["--config", CONFIG, "--output_dir", str(tmp_path / "out"), "--model_name_or_path", checkpoint,
          "--class_names_file", str(tmp_path / "names.txt"), "--max_steps", "1", "--do_eval", "false",
          "--eval_on_start", "false", "--save_strategy", "no"])  # fmt: skip
    assert (tmp_path / "out" / "model.safetensors").is_file()
