"""A training run stays one run: a checkpoint is resumed only by the run that made it (cadence may change, the maths
may not), any unreadable file of the last checkpoint sets it aside, and a run whose loss or weights become
non-finite, or that changes no weight, stops instead of saving a fine-tune."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from pmg_aft.checkpoints import checkpoint_problem, last_complete_checkpoint
from pmg_aft.finetune import main
from pmg_aft.trainers.guards import NothingLearnedError, OtherRunError, TrainingDivergedError

from .utils import CONFIG, fails, kill_after, snapshot


def run_args(out, checkpoint, *extra):
    return ["--config", CONFIG, "--output_dir", str(out), "--model_name_or_path", checkpoint, "--max_steps", "4",
            "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "5", "--do_eval", "false",
            "--eval_on_start", "false", "--disable_tqdm", "true", *extra]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, shown",
    [
        (["--learning_rate", "0.01"], "learning_rate: 0.001 -> 0.01"),
        (["--train_eps", "2/255"], "train_eps: 0.01568627450980392 -> 0.00784313725490196"),
        (["--method", "tecoa"], 'method: "pmg_aft" -> "tecoa"'),
        (["--max_steps", "6"], "max_steps: 4 -> 6"),  # the schedule of the steps already taken would change
        (["--max_train_samples", "64"], "data.max_train_samples: null -> 64"),
    ],
)
def test_resuming_with_another_recipe_is_refused_with_the_differences(change, shown, tmp_path, checkpoint):
    out = tmp_path / "run"
    main(run_args(out, checkpoint))
    kill_after(out, 2)
    kept = sorted(os.listdir(out / "checkpoint-2"))
    fails(run_args(out, checkpoint, *change), rf"checkpoint-2 was made by another run \({shown}")
    assert sorted(os.listdir(out / "checkpoint-2")) == kept and not (out / "checkpoint-4").exists()


def rng_state(path):
    from transformers.trainer_pt_utils import safe_globals  # what an RNG state holds (numpy's)

    with safe_globals():
        return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_what_does_not_change_the_maths_may_change_on_resume(tmp_path, checkpoint):
    out = tmp_path / "run"
    main(run_args(out, checkpoint))
    whole = rng_state(out / "checkpoint-4" / "rng_state.pth")
    kill_after(out, 2)
    main(run_args(out, checkpoint, "--logging_steps", "1", "--save_total_limit", "1", "--do_eval", "true",
                  "--eval_attack_steps", "2", "--disable_tqdm", "false"))  # fmt: skip
    assert json.load(open(out / "trainer_state.json"))["global_step"] == 4
    assert torch.equal(rng_state(out / "checkpoint-4" / "rng_state.pth")["cpu"], whole["cpu"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["optimizer.pt", "scheduler.pt", "rng_state.pth", "pmg_aft.json", "training_args.json"]
)
def test_any_unreadable_file_of_the_last_checkpoint_sets_it_aside(name, tmp_path, checkpoint, caplog):
    # Was: a truncated optimizer.pt, scheduler.pt or rng_state.pth made every rerun fail with a traceback.
    out = tmp_path / "run"
    main(run_args(out, checkpoint))
    kill_after(out, 4)  # killed while writing the model after checkpoint-4 ...
    data = (out / "checkpoint-4" / name).read_bytes()
    (out / "checkpoint-4" / name).write_bytes(data[: len(data) // 2])  # ... and checkpoint-4 was cut short
    assert f"its {name} cannot be read" in checkpoint_problem(str(out / "checkpoint-4")) or name == "pmg_aft.json"
    main(run_args(out, checkpoint))  # the same command: resumes from checkpoint-2
    assert "checkpoint-4: its" in caplog.text and (out / "incomplete-checkpoint-4").is_dir()
    assert json.load(open(out / "trainer_state.json"))["global_step"] == 4


def test_checkpoint_weights_that_are_not_the_recorded_ones_are_set_aside(tmp_path, checkpoint):
    out = tmp_path / "run"
    main(run_args(out, checkpoint))
    from safetensors.torch import load_file, save_file

    weights = load_file(str(out / "checkpoint-4" / "model.safetensors"))
    weights["vision_model.post_layernorm.weight"].fill_(2.0)  # edited after the run saved it
    save_file(weights, str(out / "checkpoint-4" / "model.safetensors"), metadata={"format": "pt"})
    assert "not the ones its pmg_aft.json records" in checkpoint_problem(str(out / "checkpoint-4"))
    assert last_complete_checkpoint(str(out))[0].endswith("checkpoint-2")


def test_a_diverged_run_stops_and_saves_nothing(tmp_path, checkpoint):
    # Was: --learning_rate 1e30 (or a NaN budget) trained to NaN weights, exited 0 and saved them as a PMG-AFT model.
    out = tmp_path / "run"
    fails(
        run_args(out, checkpoint, "--learning_rate", "1e30", "--logging_steps", "1"), r"training diverged: the loss is"
    )
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint-2").exists()


def test_non_finite_weights_are_never_saved(model, make_trainer, tmp_path):
    trainer = make_trainer("pmg_aft", model, logging_steps=100)
    with torch.no_grad():
        trainer.model.vision_model.post_layernorm.weight[0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"non-finite values \(vision_model.post_layernorm.weight\)"):
        trainer.save_model(str(tmp_path / "out"))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_run_that_changes_no_weight_is_refused(model, make_trainer):
    # A warm-up from 0 (transformers' step / warmup) with one step: the only update runs at learning rate 0.
    trainer = make_trainer("fare", copy.deepcopy(model), warmup_steps=10, warmup_from_first_step=False, max_steps=1)
    before = snapshot(trainer.model)
    with pytest.raises(NothingLearnedError, match=r"1 training step\(s\) ran but no trained weight changed"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in snapshot(trainer.model).items())
    make_trainer("fare", copy.deepcopy(model), warmup_steps=10, warmup_from_first_step=False, max_steps=2).train()


def test_python_users_get_the_same_resume_check(model, make_trainer, tmp_path):
    common = dict(output_dir=str(tmp_path / "run"), save_strategy="steps", save_steps=1)
    make_trainer("pmg_aft", copy.deepcopy(model), **common).train()
    other = make_trainer("pmg_aft", copy.deepcopy(model), learning_rate=5e-3, **common)
    with pytest.raises(OtherRunError, match=r"another run \(learning_rate: 0.01 -> 0.005\)"):
        other.train(resume_from_checkpoint=True)
