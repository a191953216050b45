"""Hostile input and faults (issue 10): no silent wrong result, no lost result, no stuck run, one clear line each.

Each test reproduces a case that once went wrong (the comment says how) and asserts the behaviour now.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from pmg_aft import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AttackSetting,
    EvalLoader,
    EvalSet,
    clip_processor,
    evaluate_robustness,
    get_protocol,
)
from pmg_aft.checkpoints import CheckpointError, last_complete_checkpoint, load_clip
from pmg_aft.cli import main as cli
from pmg_aft.data import ImageClassificationCollator
from pmg_aft.evaluation import Report
from pmg_aft.finetune import main, parse_args
from pmg_aft.tiny import colour_patches

from .utils import CONFIG, fails, hub_fixture, kill_after

QUICK = dict(
    protocol=get_protocol("pmg_aft").override(random_start=False, first_success=True, mixed_precision="no",
                                              eps=(2 / 255,), steps=1),
    loader=EvalLoader(batch_size=16),
)  # fmt: skip


def train_args(out, checkpoint, *extra: str) -> list[str]:
    """The demo config on a saved checkpoint (no pre-training in the test), a few steps, a cheap eval attack."""
    return ["--config", CONFIG, "--output_dir", str(out), "--model_name_or_path", checkpoint, "--max_steps", "2",
            "--eval_attack_steps", "1", "--disable_tqdm", "true", "--save_strategy", "no", *extra]  # fmt: skip


# ---- silent wrong results ------------------------------------------------------------------------------------------


def test_eval_resume_recomputes_when_the_data_changed(model, tokenizer, test_set, tmp_path):
    # Was: the same output folder with other data under the same name reported the old sample count.
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    out = str(tmp_path / "eval")
    first = evaluate_robustness(model, processor, datasets={"mine": test_set}, output_dir=out, **QUICK)
    assert first.results["mine"].samples == len(test_set)
    other = test_set.select(range(10))
    report = evaluate_robustness(model, processor, datasets={"mine": other}, output_dir=out, **QUICK)
    assert report.results["mine"].samples == 10
    relabelled = test_set.map(lambda row: {"label": (row["label"] + 1) % 6})  # same rows and images, other labels
    report = evaluate_robustness(model, processor, datasets={"mine": relabelled}, output_dir=out, **QUICK)
    assert report.results["mine"].data_digest == EvalSet.from_dataset("mine", relabelled).digest()
    assert report.results["mine"].data_digest != first.results["mine"].data_digest
    # The same data again: reused, not recomputed (its timing is the saved one).
    again = evaluate_robustness(model, processor, datasets={"mine": relabelled}, output_dir=out, **QUICK)
    assert again.results["mine"].seconds == report.results["mine"].seconds


def test_eval_with_another_data_dir_evaluates_that_folder(checkpoint, tmp_path, capsys):
    # Was: a second --benchmark_data_dir reused the first folder's results, even for a dataset it does not have.
    one, two = tmp_path / "one", tmp_path / "two"
    DatasetDict({"test": hub_fixture("dtd", rows=3)}).save_to_disk(str(one / "dtd"))
    DatasetDict({"test": hub_fixture("dtd", rows=2)}).save_to_disk(str(two / "dtd"))
    out = str(tmp_path / "eval")
    common = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "dtd", "--output_dir", out, "--steps", "1"]
    assert cli([*common, "--benchmark_data_dir", str(one)]) == 0
    assert cli([*common, "--benchmark_data_dir", str(two)]) == 0
    assert Report.load(out).results["dtd"].samples == 2
    (tmp_path / "three").mkdir()
    assert cli([*common, "--benchmark_data_dir", str(tmp_path / "three")]) == 2
    err = capsys.readouterr().err
    assert "dtd" in err and "Traceback" not in err


def test_a_checkpoint_that_is_not_clip_is_refused(tmp_path, checkpoint, capsys):
    # Was: a BERT config beside CLIP processor files trained a randomly initialised full-size CLIP, rc 0.
    bert = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=64)).save_pretrained(str(bert))  # fmt: skip
    for name in os.listdir(checkpoint):
        if not name.startswith(("config", "model")):
            (bert / name).write_bytes((tmp_path / "clip" / name).read_bytes())
    fails(train_args(tmp_path / "out", str(bert)), r"is a 'bert' checkpoint, not a CLIP model")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert cli(["eval", "--model_name_or_path", str(bert), "--output_dir", str(tmp_path / "e")]) == 2
    assert "not a CLIP model" in capsys.readouterr().err
    # Weights that do not cover the CLIP parameters (a vision tower only) would be filled in at random.
    weights = load_file(os.path.join(checkpoint, "model.safetensors"))
    save_file({k: v for k, v in weights.items() if k.startswith("vision_model")},
              os.path.join(checkpoint, "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(CheckpointError, match=r"do not cover the CLIP model: \d+ parameter\(s\) missing"):
        load_clip(checkpoint)


def test_truncated_weights_and_missing_paths_name_the_checkpoint(checkpoint, tmp_path):
    fails(train_args(tmp_path / "out", "./no/such/folder"), r"\./no/such/folder: no such checkpoint folder")
    path = os.path.join(checkpoint, "model.safetensors")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # a download or a save cut short
    fails(train_args(tmp_path / "out", checkpoint), rf"{checkpoint}: its weights cannot be read .*truncated")


def test_fewer_than_two_classes_is_an_error_and_one_label_a_warning(model, make_trainer, train_set):
    # Was: a one-class training set trained to loss 0.0, saved, and evaluated at 100% / 100%.
    red = train_set.filter(lambda row: row["label"] == 0).cast_column("label", ClassLabel(names=["red"]))
    with pytest.raises(ValueError, match=r"1 class name\(s\) \(\['red'\]\); zero-shot classification needs at least"):
        make_trainer("pmg_aft", model, train_dataset=red)
    with pytest.raises(ValueError, match="needs at least 2"):
        EvalSet.from_dataset("red", red)
    only_red = train_set.filter(lambda row: row["label"] == 0)  # six class names, one of them used
    with pytest.warns(UserWarning, match=r"every one of its 16 rows has label 0"):
        make_trainer("pmg_aft", model, train_dataset=only_red)


def test_an_attack_that_cannot_move_is_an_error_and_a_zero_budget_a_warning():
    # Was: --train_step_size 0 with train_steps > 0 trained without any attack, silently.
    fails(["--config", CONFIG, "--train_step_size", "0", "--output_dir", "x"], r"train_step_size=0 with train_steps=5")
    with pytest.raises(ValueError, match="never move"):
        AttackSetting(attack="pgd", eps=1 / 255, steps=10, step_size=0)
    with pytest.warns(UserWarning, match="eps is 0 with 10 steps"):
        AttackSetting(attack="pgd", eps=0, steps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AttackSetting(attack="autoattack", eps=1 / 255)  # AutoAttack brings its own steps: nothing to say
    with pytest.raises(ValueError, match=r"^steps=0: steps must be a whole number in \[1, 100000\]\.$"):
        AttackSetting(attack="pgd", eps=1 / 255, steps=0)  # a robust-accuracy column needs an attack that runs


def test_labels_must_be_integer_class_indices(model, make_trainer, train_set):
    # Was: the collator truncated 1.7 to class 1 with int(); text labels crashed at the first step.
    floats = train_set.cast_column("label", Value("float32"))
    names = ["red", "green", "blue", "yellow", "purple", "orange"]
    make_trainer(
        "pmg_aft", model, train_dataset=floats, class_names=names
    ).train()  # 1.0, 2.0, ...: whole numbers are fine
    fractional = floats.map(lambda row, i: {"label": 1.7 if i == 3 else row["label"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"fractional labels \(1.7.* at index 3\)"):
        make_trainer("pmg_aft", model, train_dataset=fractional, class_names=names)
    text = Dataset.from_dict({"image": [train_set[0]["image"]] * 2, "label": ["red", "green"]},
                             features=Features({"image": ImageFeature(), "label": Value("string")}))  # fmt: skip
    with pytest.raises(ValueError, match=r"holds text \('red', \.\.\.\), not class indices.*class_encode_column"):
        make_trainer("pmg_aft", model, train_dataset=text, class_names=["red", "green"])
    collator = ImageClassificationCollator(image_size=32, native_resolution=True)
    with pytest.raises(ValueError, match="label 1.7 in column 'label' is fractional"):
        collator([{"image": train_set[0]["image"], "label": 1.7}])
    for whole in (np.float32(2.0), np.int64(2), torch.tensor(2.0), 2.0):
        assert collator([{"image": train_set[0]["image"], "label": whole}])["labels"].tolist() == [2]


def test_string_labels_with_a_class_names_file_stop_before_training(tmp_path, checkpoint, train_set):
    data = train_set.cast_column("label", Value("string"))  # "0", "1", ...: a CSV export
    data.save_to_disk(str(tmp_path / "data"))
    names = tmp_path / "names.txt"
    names.write_text("red\ngreen\nblue\nyellow\npurple\norange\n")
    fails(train_args(tmp_path / "out", checkpoint, "--dataset_name", str(tmp_path / "data"), "--class_names_file",
                     str(names), "--eval_split", "train"), r"'label' column holds text")  # fmt: skip


def test_eval_split_of_an_unsplit_folder_is_not_called_an_eval_split(tmp_path, checkpoint, capsys):
    # Was: --eval_split test on a folder without splits evaluated the training images as "eval split", silently.
    folder = tmp_path / "images"
    for i, row in enumerate(colour_patches(num_per_class=2, seed=0)):
        name = ["red", "green", "blue", "yellow", "purple", "orange"][row["label"]]
        (folder / name).mkdir(parents=True, exist_ok=True)
        row["image"].save(folder / name / f"{i}.png")
    with pytest.warns(
        UserWarning, match=r"names no splits, so eval_split 'test' is all of its 12 images, the training"
    ):
        main(train_args(tmp_path / "out", checkpoint, "--dataset_name", str(folder), "--eval_split", "test",
                        "--eval_on_start", "false"))  # fmt: skip
    printed = capsys.readouterr().out
    assert "training images (12)" in printed and "eval split" not in printed


# ---- lost results and stuck runs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_eval_into_a_busy_output_folder_stops_at_once(checkpoint, tmp_path, capsys):
    # Was: two evaluations into one folder both printed "report written"; one run's results were lost.
    out = tmp_path / "eval"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from accelerate import PartialState
        from pmg_aft.evaluation.suite import output_lock
        with output_lock({str(out)!r}, PartialState()):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        command = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--output_dir",
                   str(out), "--steps", "1"]  # fmt: skip
        assert cli(command) == 2
        assert "another pmg-aft run is writing into" in capsys.readouterr().err
        assert not (out / "report.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert cli(command) == 0  # the lock dies with its process: no stale lock blocks the rerun
    assert Report.load(str(out)).results["colour-patches"].samples > 0


def test_truncated_result_files_are_recomputed_or_named(
    model, tokenizer, test_set, checkpoint, tmp_path, caplog, capsys
):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    out = tmp_path / "eval"
    evaluate_robustness(model, processor, datasets={"mine": test_set}, output_dir=str(out), **QUICK)
    result = out / "results" / "mine.json"
    result.write_text(result.read_text()[:40])  # a full disk mid-write
    report = evaluate_robustness(model, processor, datasets={"mine": test_set}, output_dir=str(out), **QUICK)
    assert f"{result} cannot be read" in caplog.text and report.results["mine"].samples == len(test_set)
    (out / "report.json").write_text('{"model": "x", "results": {')
    with pytest.raises(ValueError, match=r"report.json is not a readable report .*truncated"):
        Report.load(str(out))
    assert cli(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x", "--report_dir", str(out)]) == 2
    assert "report.json is not a readable report" in capsys.readouterr().err  # before anything is uploaded


@pytest.mark.slow
def test_a_half_written_checkpoint_is_skipped_on_resume(tmp_path, checkpoint, caplog, capsys):
    # Was: a checkpoint folder cut short by a kill made every rerun fail with "Can't find a valid checkpoint".
    out = tmp_path / "run"
    common = train_args(out, checkpoint, "--save_strategy", "steps", "--save_steps", "2", "--eval_on_start", "false",
                        "--do_eval", "false")  # fmt: skip
    main([*common, "--max_steps", "4", "--save_total_limit", "5"])  # keeps checkpoint-2 (the config: 1)
    kill_after(out, 2)
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "config.json").write_text("{}")  # killed right after the first file
    (out / "checkpoint-9").mkdir()
    for name in os.listdir(out / "checkpoint-2"):
        (out / "checkpoint-9" / name).write_bytes((out / "checkpoint-2" / name).read_bytes())
    weights = (out / "checkpoint-9" / "model.safetensors").read_bytes()
    (out / "checkpoint-9" / "model.safetensors").write_bytes(weights[:1000])  # a full disk
    last, broken = last_complete_checkpoint(str(out))
    assert last.endswith("checkpoint-2")
    assert "its model.safetensors cannot be read" in broken[str(out / "checkpoint-9")]
    assert broken[str(out / "checkpoint-3")] == "it has no trainer_state.json (it was not finished)"
    # The demo config's save_total_limit 1 would otherwise rotate the new checkpoint away in favour of checkpoint-9.
    main([*common, "--max_steps", "4", "--do_eval", "true", "--eval_on_start", "true", "--save_total_limit", "1"])
    assert "checkpoint-9: its model.safetensors cannot be read" in caplog.text
    with open(out / "checkpoint-4" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 4
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == [
        "checkpoint-4",
        "incomplete-checkpoint-3",
        "incomplete-checkpoint-9",
    ]  # kept, under names nothing resumes
    assert "at resume (step 2)" in capsys.readouterr().out  # not "before": the first evaluation was of step 2
    fails(
        [*common, "--resume_from_checkpoint", str(out / "incomplete-checkpoint-3")],
        r"cannot resume from .*: it has no",
    )


def test_the_demo_config_leaves_a_checkpoint_to_resume_from():
    # Was: save_strategy "no", so Ctrl-C left nothing, although the README says an interrupted run resumes.
    _, _, config = parse_args(["--config", CONFIG])
    assert config.save_strategy == "epoch" and config.save_total_limit == 1


# ---- one clear line, no traceback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--max_train_samples", "0"], r"max_train_samples=0: max_train_samples must be a whole number >= 1"),
        (["--max_eval_samples", "-3"], r"max_eval_samples=-3: max_eval_samples must be a whole number >= 1"),
        (["--train_eps", "-1/255"], r"train_eps=-0.0039\d*: train_eps must be a finite number >= 0"),
        (["--class_names_file", "missing.txt"], r"--class_names_file missing.txt: no such file"),
    ],
)
def test_bad_flags_are_one_line(extra, match):
    fails(["--config", CONFIG, "--output_dir", "x", *extra], match)


def test_unparsable_flags_are_one_line_naming_the_flag_and_the_value():
    # A flag's value is parsed by the record's validator, as a config file's is: one line, not argparse's usage.
    fails(
        ["--config", CONFIG, "--output_dir", "x", "--train_eps", "abc"], r"^pmg-aft: train_eps='abc' is not a number"
    )
    fails(["--config", CONFIG, "--output_dir", "x", "--train_steps", "2.5"], r"train_steps='2.5': train_steps must be")


@pytest.mark.parametrize(
    "text, match",
    [
        ("alpha: [256]\n", r"alpha must be a number, got \[256\] \(list\)"),
        ("image_mean: 0.5\n", r"image_mean must be a list of numbers, e\.g\. \[0\.485"),
        ("train_steps: two\n", r"train_steps='two': train_steps must be a whole number in \[1, 100000\]"),
        ("do_train: maybe\n", r"do_train must be true or false, got 'maybe'"),
        ("train_eps: [1, 2]\n", r"train_eps must be a number"),
        ("- a list\n", r"must hold a mapping of argument names to values"),
        ("alpha: [\n", r"is not valid YAML/JSON"),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    fails(["--config", str(path), "--output_dir", "x"], match)


def test_config_numbers_written_as_text_are_read_as_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5\nalpha: '128'\ntrain_eps: 2/255\n")  # YAML reads 1e-5 as a string
    _, _, config = parse_args(["--config", str(path), "--output_dir", "x"])
    assert config.learning_rate == 1e-5 and config.alpha == 128.0 and config.train_eps == pytest.approx(2 / 255)
    path.write_text("max_steps: 2.7\n")  # not truncated to 2
    fails(["--config", str(path), "--output_dir", "x"], r"max_steps=2.7: max_steps must be -1 \(num_train_epochs")
    # TrainingArguments fields typed `str` that also take lists, and negative numbers in lists and flags.
    path.write_text("fsdp: [full_shard, auto_wrap]\nreport_to: [tensorboard]\nseed: -1\n")
    _, _, config = parse_args(["--config", str(path), "--output_dir", "x", "--image_mean", "-0.5", "0.4", "0.4",
                               "--max_steps", "-1", "--seed", "1"])  # fmt: skip
    assert config.image_mean == [-0.5, 0.4, 0.4] and config.max_steps == -1 and config.fsdp and config.seed == 1
    fails(["--config", str(path), "--output_dir", "x"], r"c.yaml: seed=-1: seed must be a whole number in \[0, ")
    fails(["--config", CONFIG, "--output_dir", "x", "--learning_rate", "-1e-5"], r"learning_rate=-1e-05: .* > 0")


def test_the_clean_baseline_does_not_check_the_attack_it_never_runs():
    _, _, config = parse_args(["--method", "clean", "--train_step_size", "0", "--train_eps", "0", "--output_dir", "x"])
    assert config.train_step_size == 0


def test_missing_config_and_empty_dataset_are_one_line(tmp_path, checkpoint):
    fails(["--config", str(tmp_path / "nope.yaml")], r"--config .*nope.yaml: no such file")
    empty = Dataset.from_dict(
        {"image": [], "label": []}, features=Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b"])})
    )
    empty.save_to_disk(str(tmp_path / "empty"))
    fails(train_args(tmp_path / "out", checkpoint, "--dataset_name", str(tmp_path / "empty")),
          r"empty.* holds an empty dataset \(0 rows\)")  # fmt: skip


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--steps", "abc"], r"--steps abc: give whole numbers >= 1"),
        (["--steps", "-1"], r"--steps -1: give whole numbers >= 1"),
        (["--steps", "0"], r"steps=0: steps must be a whole number in \[1, 100000\]"),
        (["--per_device_eval_batch_size", "0"], r"per_device_eval_batch_size=0: .* whole number in \[1, 65536\]"),
        (["--max_eval_samples", "0"], r"max_eval_samples=0: max_eval_samples must be a whole number >= 1"),
        (["--eps", "-1/255"], r"eps=-0.0039\d*: eps must be a finite number >= 0"),
        (["--eps", "nan"], r"eps=nan: eps must be a finite number >= 0"),
        (["--benchmarks", ","], r"benchmarks"),
        (["--benchmark_data_dir", "/no/such/dir"], r"--benchmark_data_dir /no/such/dir: no such folder"),
        (["--benchmarks", "cifar11"], r"Unknown benchmark 'cifar11'.*cifar10"),
    ],
)
def test_bad_eval_flags_are_one_line(checkpoint, tmp_path, capsys, flags, match):
    assert cli(["eval", "--model_name_or_path", checkpoint, "--output_dir", str(tmp_path / "e"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmg-aft: ") and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_tracebacks_are_there_when_asked_for(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("PMG_AFT_TRACEBACK", "1")
    with pytest.raises(ValueError, match="--steps abc"):
        cli(["eval", "--model_name_or_path", checkpoint, "--output_dir", str(tmp_path), "--steps", "abc"])
    with pytest.raises(ValueError, match="max_train_samples=0"):
        main(["--config", CONFIG, "--output_dir", "x", "--max_train_samples", "0"])


def test_a_bug_keeps_its_traceback(checkpoint, tmp_path, monkeypatch):
    # Only errors raised on purpose (a check's `raise` with its message) or about a file become one line.
    def broken(*args, **kwargs):
        return {}["clean_accuracy"]  # a failing lookup: a bug, not bad input

    monkeypatch.setattr("pmg_aft.evaluation.suite.evaluate_dataset", broken)
    with pytest.raises(KeyError, match="clean_accuracy"):
        cli(["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--output_dir",
             str(tmp_path), "--steps", "1"])  # fmt: skip
    monkeypatch.setattr("pmg_aft.finetune.load_model", lambda *args: len(None))
    with pytest.raises(TypeError, match="NoneType"):
        main(train_args(tmp_path / "out", checkpoint))


@pytest.mark.slow
def test_resume_true_and_sharded_checkpoints(tmp_path, checkpoint):
    out = tmp_path / "run"
    common = train_args(out, checkpoint, "--save_strategy", "steps", "--save_steps", "2", "--do_eval", "false",
                        "--eval_on_start", "false")  # fmt: skip
    main([*common, "--max_steps", "4", "--save_total_limit", "5"])
    kill_after(out, 2)
    main([*common, "--max_steps", "4", "--resume_from_checkpoint", "true"])  # YAML's `true` too: the last one
    with open(out / "checkpoint-4" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 4
    # FSDP's sharded checkpoints keep their weights in a folder: complete, not set aside.
    fsdp = out / "checkpoint-6"
    (fsdp / "pytorch_model_fsdp_0").mkdir(parents=True)
    (fsdp / "trainer_state.json").write_text((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert last_complete_checkpoint(str(out)) == (str(fsdp), {})


@pytest.mark.slow
def test_the_fault_sweep_runs_its_cases_and_finds_no_failure(tmp_path):
    """The sweep is the same code CI runs here (a slice: the class-names files, about a minute), so the script the
    docs quote cannot rot: every case runs and ends a clear error or a checked result."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "sweep.json"
    done = subprocess.run([sys.executable, os.path.join(root, "scripts", "fault_sweep.py"), "--only", "scenarios",
                           "--match", "class-names file", "--json", str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert len(results) == 3 and {r["outcome"] for r in results} == {"clear error"}
    assert all("pmg-aft" in r["said"] for r in results)
