"""End to end through the example's code path: YAML config + flags, train, evaluate before/after, save, resume."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPModel

from pmg_aft import TRAINERS, FAREConfig, PMGAFTTrainer, TeCoAConfig
from pmg_aft.cli import main as cli
from pmg_aft.finetune import main, parse_args
from pmg_aft.tiny import tiny_clip, tiny_tokenizer

from .utils import CONFIG, fails, kill_after

FAST = ["--num_train_epochs", "1", "--max_steps", "3", "--eval_attack_steps", "2", "--disable_tqdm", "true"]


def test_yaml_config_with_flag_overrides(tmp_path):
    model_args, data_args, config = parse_args(["--config", CONFIG, "--train_eps", "2/255", "--output_dir", "x"])
    assert config.train_eps == pytest.approx(2 / 255)  # the flag wins
    assert config.eval_eps == pytest.approx(4 / 255)  # from the file
    assert model_args.model_name_or_path == "tiny" and data_args.eval_split == "test"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_epss: 1/255\n")
    with pytest.raises(SystemExit, match=r"unknown keys .* for method pmg_aft: \['train_epss'\]"):
        parse_args(["--config", str(bad)])


def test_method_picks_its_config_from_the_flag_or_the_file(tmp_path):
    script_args, _, config = parse_args(["--config", CONFIG, "--method", "tecoa", "--output_dir", "x"])
    assert script_args.method == "tecoa" and type(config) is TeCoAConfig
    assert config.train_eps == pytest.approx(4 / 255)  # the file's shared settings still apply
    assert config.logit_scale.value == 100.0  # TeCoA's own default where the file says nothing
    fare = tmp_path / "fare.yaml"
    fare.write_text("method: fare\ntrain_steps: 3\n")
    script_args, _, config = parse_args(["--config", str(fare), "--output_dir", "x"])
    assert type(config) is FAREConfig and config.train_steps == 3 and config.train_attack_momentum == 0.9
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("method: tecoa\nalpha: 256\n")
    with pytest.raises(SystemExit, match="alpha is a field of pmg_aft, tga_zsr"):
        parse_args(["--config", str(wrong)])
    with pytest.raises(SystemExit, match="unknown method 'trades'; choose one of pmg_aft, tecoa"):
        parse_args(["--method", "trades"])


def test_offline_demo_trains_evaluates_before_and_after_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = main(["--config", CONFIG, "--output_dir", str(out), *FAST])
    printed = capsys.readouterr().out
    assert "before" in printed and "after" in printed
    assert 0 <= metrics["eval_robust_accuracy"] <= 1 and metrics["eval_samples"] > 0
    assert metrics["train_loss"] > 0
    model = CLIPModel.from_pretrained(str(out))
    assert isinstance(model, CLIPModel)
    with open(out / "pmg_aft.json") as f:
        info = json.load(f)
    assert info["class_names"] == ["red", "green", "blue", "yellow", "purple", "orange"]
    assert info["method"]["name"] == "PMG-AFT"
    assert "PMG-AFT: zero-shot accuracy under PGD-2 (L-inf, eps 4/255" in printed
    report = (out / "eval" / "report.md").read_text()  # the final evaluation, with its settings
    assert "pgd-2-rs-last@4/255" in report and (out / "eval" / "accuracy.png").exists()


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    common = [
        "--config",
        CONFIG,
        "--output_dir",
        str(out),
        "--do_eval",
        "false",
        "--eval_on_start",
        "false",
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--disable_tqdm",
        "true",
    ]
    cli(["train", *common, "--max_steps", "4", "--output_dir", str(tmp_path / "whole")])
    cli(["train", *common, "--max_steps", "4", "--save_total_limit", "5"])  # keeps checkpoint-2 (the config: 1)
    kill_after(out, 2)  # killed during step 3: checkpoint-2 is the last complete one
    assert (out / "checkpoint-2" / "model.safetensors").exists() and not (out / "model.safetensors").exists()
    main([*common, "--max_steps", "4"])  # the same command: resumes from checkpoint-2
    with open(out / "checkpoint-4" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 4
    resumed, whole = (load_file(str(folder / "model.safetensors")) for folder in (out, tmp_path / "whole"))
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)  # the uninterrupted run's weights, to the bit
    fails([*common, "--max_steps", "6"], r"checkpoint-4 was made by another run \(max_steps: 4 -> 6\)")


def test_paper_config_gives_the_papers_optimiser_and_schedule(tmp_path):
    paper = os.path.join(os.path.dirname(CONFIG), "pmg_aft_vitb32_tinyimagenet.yaml")
    # fp16 needs a GPU and periodic eval an eval set; everything else is the file's.
    _, data_args, config = parse_args(
        [
            "--config",
            paper,
            "--fp16",
            "false",
            "--use_cpu",
            "true",
            "--eval_strategy",
            "no",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert data_args.dataset_name == "zh-plus/tiny-imagenet" and data_args.eval_split == "valid"
    assert type(config) is TRAINERS["pmg_aft"].config_class
    assert (config.alpha, config.beta, config.train_steps) == (256, 256, 2)
    assert config.train_eps == pytest.approx(1 / 255) and config.logit_scale.value == 1.0
    assert config.per_device_train_batch_size == 256 and config.num_train_epochs == 10
    trainer = PMGAFTTrainer(tiny_clip(), config, processing_class=tiny_tokenizer(), class_names=["a", "b"])
    trainer.create_optimizer_and_scheduler(num_training_steps=3910)
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["weight_decay"] == 0.0
    rates = []
    for _ in range(3910):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # PMG-AFT's cosine_lr (utils.py:40-41): the first update already uses lr * 1/1000, HF's warm-up would give 0.
    assert rates[0] == pytest.approx(5e-8) and rates[499] == pytest.approx(2.5e-5)
    assert rates[999] == rates[1000] == pytest.approx(5e-5)
    assert rates[-1] < 1e-9 and max(rates) == pytest.approx(5e-5)


RECIPES = [(recipe, method) for method, trainer in TRAINERS.items() for recipe in trainer.method_info.recipes]


def test_every_example_config_is_the_demo_or_a_registered_methods_recipe():
    shipped = sorted(name[:-5] for name in os.listdir(os.path.dirname(CONFIG)) if name.endswith(".yaml"))
    claimed = [recipe for recipe, _ in RECIPES]
    assert len(claimed) == len(set(claimed)), "a recipe is claimed by two methods"
    assert sorted([*claimed, "tiny_offline"]) == shipped


@pytest.mark.parametrize("name,method", [*RECIPES, ("tiny_offline", "pmg_aft")])
def test_every_example_config_parses_into_its_methods_config(name, method, tmp_path):
    path = os.path.join(os.path.dirname(CONFIG), f"{name}.yaml")
    script_args, _, config = parse_args(["--config", path, "--fp16", "false", "--use_cpu", "true", "--eval_strategy",
                                         "no", "--output_dir", str(tmp_path)])  # fmt: skip
    assert script_args.method == method and type(config) is TRAINERS[method].config_class


def test_the_robustvlm_recipes_are_its_training_commands(tmp_path):
    """RobustVLM's README commands (7de10ee): 10-step PGD at eps/255 with step 1/255, AdamW 1e-5, wd 1e-4 on every
    visual parameter, 1400 warm-up steps, 20,000 steps at batch 128, Resize(224) + CenterCrop(224) bicubic, CLIP's
    normalisation, ImageNet streamed; the 336 px variant differs only in its model."""
    recipes = {}
    for name in ("fare_vitl14_imagenet_eps2", "fare_vitl14_imagenet_eps4", "tecoa_vitl14_imagenet_eps2",
                 "tecoa_vitl14_imagenet_eps4", "fare_vitl14_336_imagenet_eps2"):  # fmt: skip
        path = os.path.join(os.path.dirname(CONFIG), f"{name}.yaml")
        script, data, config = parse_args(["--config", path, "--use_cpu", "true", "--output_dir", str(tmp_path)])
        recipes[name] = (script, data, config)
        eps = int(name.split("eps")[1])
        assert config.train_eps == pytest.approx(eps / 255) and config.train_step_size == pytest.approx(1 / 255)
        assert config.train_steps == 10 and config.optim == "adamw_torch" and config.learning_rate == 1e-5
        assert config.weight_decay == 1e-4 and config.weight_decay_all_parameters and config.warmup_steps == 1400
        assert config.max_steps == 20000 and config.per_device_train_batch_size == 128
        assert config.crop_pct == 1.0 and config.interpolation == "bicubic"
        assert config.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
        assert data.train_benchmark == "imagenet" and data.streaming
    assert recipes["fare_vitl14_336_imagenet_eps2"][0].model_name_or_path == "openai/clip-vit-large-patch14-336"
    assert recipes["fare_vitl14_imagenet_eps2"][0].model_name_or_path == "openai/clip-vit-large-patch14"


def test_the_tiny_default_is_pre_trained_once_per_process(monkeypatch):
    from pmg_aft import tiny

    calls = []
    original = tiny.pretrain_tiny_clip
    monkeypatch.setattr(tiny, "pretrain_tiny_clip", lambda *a, **k: calls.append(1) or original(*a, **k))
    first, second = tiny.pretrained_tiny_clip(seed=11, steps=2), tiny.pretrained_tiny_clip(seed=11, steps=2)
    assert len(calls) == 1 and first is not second  # one pre-training, a fresh copy each
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        first.visual_projection.weight.add_(1.0)
    assert not torch.equal(first.visual_projection.weight, tiny.pretrained_tiny_clip(11, 2).visual_projection.weight)
