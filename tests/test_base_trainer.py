"""What every method's trainer guarantees, through the shared base: run for every registered method."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, TrainerCallback

from pmg_aft import TRAINERS, EvalSet, PMGAFTConfig, PMGAFTTrainer, RobustCLIPTrainer, TeCoATrainer
from pmg_aft.data import ImageClassificationCollator
from pmg_aft.tiny import tiny_clip

from .utils import METHODS, VISION, perturbed, pmg_aft_head, snapshot


@pytest.mark.parametrize("method", METHODS)
def test_a_step_trains_every_vision_parameter_and_nothing_else(method, model, make_trainer):
    trainer = make_trainer(method, model)
    assert (trainer.ref_model is not None) == trainer.args.uses_reference  # as the method's config declares
    before = snapshot(model)
    ref_before = snapshot(trainer.ref_model) if trainer.ref_model is not None else {}
    trainer.train()
    after = snapshot(trainer.model)
    vision = [n for n in before if n.startswith(VISION)]
    frozen = [n for n in before if n not in vision]
    assert vision and "logit_scale" in frozen and any(n.startswith("text_model.") for n in frozen)
    # A key bias adds q.b to every logit of a softmax row, which the softmax ignores: its gradient is exactly 0
    # (float noise aside), so it is the one vision parameter that need not move.
    unchanged = [n for n in vision if torch.equal(before[n], after[n]) and not n.endswith("k_proj.bias")]
    assert not unchanged, f"vision parameters did not change: {unchanged}"
    assert all(torch.equal(before[n], after[n]) for n in frozen), "a text parameter or logit_scale changed"
    if trainer.ref_model is not None:
        assert trainer.ref_model is not trainer.model
        assert all(torch.equal(ref_before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert not any("ref_model" in n for n in trainer.model.state_dict())
    assert trainer.state.log_history[0]["loss"] > 0


def _update(method, model, make_trainer, **overrides):
    start = snapshot(model)
    ref = perturbed(model) if method == "fare" else None  # FARE's loss is 0 while the model equals its copy
    trainer = make_trainer(method, model, ref_model=ref, **overrides)
    trainer.train()
    return {n: trainer.model.get_parameter(n).detach() - start[n] for n in start}


@pytest.mark.parametrize("method", METHODS)
def test_gradient_accumulation_gives_the_large_batch_update(method, model, make_trainer, train_set):
    data = train_set.select(range(8))
    common = dict(attack_random_start=False, learning_rate=1.0, max_grad_norm=0.0, train_dataset=data)
    if method == "clean":  # the batch_clip loss's negatives are the batch's rows: only the per-sample loss accumulates
        common["loss"] = "zero_shot_ce"
    big = _update(method, copy.deepcopy(model), make_trainer, per_device_train_batch_size=8, **common)
    accumulated = _update(method, copy.deepcopy(model), make_trainer, per_device_train_batch_size=4,
                          gradient_accumulation_steps=2, **common)  # fmt: skip
    norm = sum(d.norm() ** 2 for d in big.values()) ** 0.5
    assert norm > 0
    for name in big:  # float32 sums in another order: agree to 1e-5 of the update's own size
        assert torch.allclose(big[name], accumulated[name], atol=1e-5 * norm, rtol=1e-4), name


@pytest.mark.slow
def test_saved_checkpoints_reload_without_this_package(model, make_trainer, tmp_path):
    """Every method saves a plain CLIPModel + CLIPProcessor (safetensors, no pickle) that gives the same logits."""
    names = ["red", "green", "blue"]
    images = (torch.rand(4, 32, 32, 3) * 255).to(torch.uint8)
    save_file({"images": images}, str(tmp_path / "images.safetensors"))
    folders = {}
    for method in METHODS:
        trainer = make_trainer(method, copy.deepcopy(model))
        trainer.train()
        folders[method] = str(tmp_path / method)
        trainer.save_model(folders[method])
        files = sorted(os.listdir(folders[method]))
        assert "model.safetensors" in files and "config.json" in files
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], files
        inputs = trainer.processing_class(text=names, images=[im.numpy() for im in images], return_tensors="pt",
                                          padding=True)  # fmt: skip
        with torch.no_grad():
            expected = trainer.model.eval()(**inputs).logits_per_image
        save_file({"logits": expected.contiguous()}, str(tmp_path / f"{method}-expected.safetensors"))
    script = f"""
import sys, json, torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, CLIPProcessor
assert "pmg_aft" not in sys.modules
images = [im.numpy() for im in load_file({str(tmp_path / "images.safetensors")!r})["images"]]
means = {{}}
for method, folder in {folders!r}.items():
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    inputs = processor(text={names!r}, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    save_file({{"logits": logits.contiguous()}}, {str(tmp_path)!r} + f"/{{method}}-loaded.safetensors")
    means[method] = list(processor.image_processor.image_mean)
print(json.dumps(means))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    means = json.loads(result.stdout.strip().splitlines()[-1])
    for method in METHODS:
        loaded = load_file(str(tmp_path / f"{method}-loaded.safetensors"))["logits"]
        expected = load_file(str(tmp_path / f"{method}-expected.safetensors"))["logits"]
        assert torch.allclose(loaded, expected, atol=1e-5), method
        # Each saved processor normalises as its method trained: ImageNet's for PMG-AFT, CLIP's for the others.
        assert means[method] == pytest.approx(TRAINERS[method].config_class(output_dir="x").image_mean), method


class StopAt(TrainerCallback):
    """Stops training after step `step` (a kill once a checkpoint is written); records the first step it sees."""

    def __init__(self, step: int | None = None) -> None:
        self.step, self.first = step, None

    def on_step_begin(self, args, state, control, **kwargs):
        self.first = state.global_step if self.first is None else self.first

    def on_step_end(self, args, state, control, **kwargs):
        if self.step is not None and state.global_step >= self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("method", METHODS)
def test_an_interrupted_run_resumes_from_its_checkpoint(method, model, make_trainer, tmp_path):
    common = dict(save_strategy="steps", save_steps=2, max_steps=4, learning_rate=1e-3)
    whole = make_trainer(method, copy.deepcopy(model), output_dir=str(tmp_path / "whole"), **common)
    whole.train()
    interrupted = make_trainer(method, copy.deepcopy(model), output_dir=str(tmp_path / method), **common)
    interrupted.add_callback(StopAt(2))
    interrupted.train()
    checkpoint = tmp_path / method / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "trainer_state.json").exists()
    assert interrupted.state.global_step == 2
    trainer = make_trainer(method, copy.deepcopy(model), output_dir=str(tmp_path / method), **common)
    steps = StopAt()
    trainer.add_callback(steps)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 4 and steps.first == 2  # steps 3 and 4 ran, from checkpoint-2
    one, two = snapshot(whole.model), snapshot(trainer.model)
    assert all(torch.equal(one[n], two[n]) for n in one)  # the run it continues, to the bit
    assert any(not torch.equal(one[n], p) for n, p in model.named_parameters())


def test_evaluate_reports_clean_and_robust_accuracy_per_dataset(model, tokenizer, test_set, make_trainer):
    trainer = make_trainer("pmg_aft", model, eval_dataset={"patches": test_set, "small": test_set.select(range(10))},
                           eval_eps="4/255", eval_step_size="1/255", eval_attack_steps=5)  # fmt: skip
    trainer.model.train()
    metrics = trainer.evaluate()
    assert trainer.model.training  # the mode is restored
    # Clean accuracy by hand, with the same head.
    target = pmg_aft_head(model, tokenizer, test_set.features["label"].names)
    full = ImageClassificationCollator(image_size=32, native_resolution=True)([r for r in test_set])
    with torch.no_grad():
        by_hand = (target(full["pixel_values"]).argmax(-1) == full["labels"]).float().mean().item()
    assert metrics["eval_patches_clean_accuracy"] == pytest.approx(by_hand)
    assert metrics["eval_patches_samples"] == len(test_set) and metrics["eval_small_samples"] == 10
    assert metrics["eval_patches_robust_accuracy"] < metrics["eval_patches_clean_accuracy"]
    mean = (metrics["eval_patches_robust_accuracy"] + metrics["eval_small_robust_accuracy"]) / 2
    assert metrics["eval_robust_accuracy"] == pytest.approx(mean)  # so metric_for_best_model works with a dict
    assert all(p.grad is None for p in trainer.model.parameters())
    # The same numbers, kept as a Report that names its attack and protocol.
    report = trainer.report
    assert report.results["patches"].clean_accuracy == metrics["eval_patches_clean_accuracy"]
    assert report.attack_keys == ["pgd-5-rs-last@4/255"] and report.protocol == "trainer" and report.logit_scale == 1.0
    assert report.results["patches"].protocol == "custom" and report.warnings == []
    assert report.results["patches"].gradient_health["zero_gradient"] == 0.0


def test_evaluate_counts_every_sample_of_each_given_dataset(model, make_trainer, test_set):
    trainer = make_trainer("tecoa", model, dataloader_drop_last=True, per_device_eval_batch_size=4,
                           eval_attack_steps=1)  # fmt: skip
    metrics = trainer.evaluate({"a": test_set.select(range(10)), "b": test_set.select(range(5))})
    assert metrics["eval_a_samples"] == 10 and metrics["eval_b_samples"] == 5
    assert trainer.evaluate(test_set.select(range(7)))["eval_samples"] == 7
    with pytest.raises(KeyError, match="Pass datasets, not names"):
        trainer.evaluate("cifar10")
    with pytest.raises(TypeError, match="not names: .*benchmark_eval_set"):
        trainer.evaluate(["cifar10"])


def test_evaluate_is_reproducible_and_leaves_the_training_random_state_alone(model, make_trainer, test_set):
    trainer = make_trainer("pmg_aft", model, eval_eps="4/255", eval_attack_steps=2)  # random starts
    assert trainer.eval_attack_grid.random_start
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = trainer.evaluate(test_set)
    assert torch.equal(torch.random.get_rng_state(), state)  # training continues as if nothing had run
    torch.manual_seed(999)
    second = trainer.evaluate(test_set)
    assert first["eval_robust_accuracy"] == second["eval_robust_accuracy"]


def test_an_eval_set_brings_its_own_prompts_and_resolution(model, tokenizer, test_set, make_trainer, monkeypatch):
    names = [f"{n} square" for n in test_set.features["label"].names]
    eval_set = EvalSet("squares", test_set, names, ["a picture of a {}"], native_resolution=False, crop_pct=1.0)
    trainer = make_trainer("pmg_aft", model, eval_dataset={"squares": eval_set}, native_resolution=True)
    seen = []
    original = ImageClassificationCollator.__call__
    monkeypatch.setattr(ImageClassificationCollator, "__call__",
                        lambda self, rows: seen.append(self.native_resolution) or original(self, rows))  # fmt: skip
    metrics = trainer.evaluate()
    assert seen and not any(seen)  # the eval set's resolution, not the trainer's native_resolution=True
    head = pmg_aft_head(model, tokenizer, names, templates=["a picture of a {}"])
    rows = ImageClassificationCollator(image_size=32, crop_pct=1.0)([r for r in test_set])
    with torch.no_grad():
        by_hand = (head(rows["pixel_values"]).argmax(-1) == rows["labels"]).float().mean().item()
    assert metrics["eval_squares_clean_accuracy"] == pytest.approx(by_hand)
    assert trainer.report.results["squares"].templates == ["a picture of a {}"]


def test_evaluation_runs_in_float32_under_a_bf16_training_config(model, make_trainer, test_set):
    data = test_set.select(range(16))
    results = []
    for bf16 in (False, True):
        trainer = make_trainer("pmg_aft", copy.deepcopy(model), bf16=bf16, attack_random_start=False,
                               eval_attack_steps=2, eval_eps="2/255")  # fmt: skip
        with trainer.accelerator.autocast():  # the bf16 config is real: training steps run in bf16
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == (torch.bfloat16 if bf16 else torch.float32)
        metrics = trainer.evaluate(data)
        results.append((metrics["eval_clean_accuracy"], metrics["eval_robust_accuracy"]))
    assert results[0] == results[1]


def test_bad_input_is_a_clear_error(model, tokenizer, train_set, make_config):
    config = make_config()
    with pytest.raises(ValueError, match=r"no column\(s\) \['image'\].*columns are \['img', 'label'\]"):
        PMGAFTTrainer(model, config, train_dataset=train_set.rename_column("image", "img"), processing_class=tokenizer)
    with pytest.raises(ValueError, match="empty"):
        PMGAFTTrainer(model, config, train_dataset=train_set.select([]), processing_class=tokenizer)
    plain = Dataset.from_dict({"image": train_set["image"][:4], "label": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="class_names"):
        PMGAFTTrainer(model, config, train_dataset=plain, processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\] but 2 class names"):
        PMGAFTTrainer(model, config, train_dataset=plain, processing_class=tokenizer, class_names=["a", "b"])
    with pytest.raises(ValueError, match="processing_class"):
        PMGAFTTrainer(model, config, train_dataset=train_set)
    with pytest.raises(TypeError, match="CLIPModel"):
        PMGAFTTrainer(torch.nn.Linear(2, 2), config, train_dataset=train_set, processing_class=tokenizer)
    with pytest.raises(TypeError, match="TeCoATrainer takes a TeCoAConfig .* got PMGAFTConfig"):
        TeCoATrainer(model, config, train_dataset=train_set, processing_class=tokenizer)
    with pytest.raises(TypeError, match="shared base; use a method's trainer"):
        RobustCLIPTrainer(model, config, train_dataset=train_set, processing_class=tokenizer)
    with pytest.warns(UserWarning, match="TeCoA uses no reference model"):
        TeCoATrainer(model, make_config("tecoa"), train_dataset=train_set, processing_class=tokenizer,
                     ref_model=copy.deepcopy(model))  # fmt: skip


def test_wnid_labels_become_imagenet_names_in_the_prompts(tokenizer, make_config):
    from datasets import ClassLabel, Features
    from datasets import Image as ImageFeature
    from PIL import Image

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["n02119789", "n02100735"])})
    data = Dataset.from_dict({"image": [Image.new("RGB", (32, 32))] * 2, "label": [0, 1]}, features=features)
    trainer = PMGAFTTrainer(tiny_clip(), make_config(), train_dataset=data, processing_class=tokenizer)
    assert trainer.class_names == ["kit fox", "english setter"]


def test_filtered_datasets_pass_the_label_check(model, tokenizer, make_config):
    data = Dataset.from_dict({"image": [None] * 4, "label": [0, -1, 1, 0]}).filter(lambda r: r["label"] >= 0)
    trainer = PMGAFTTrainer(model, make_config(), train_dataset=data, processing_class=tokenizer,
                            class_names=["a", "b"])  # fmt: skip
    assert trainer.class_names == ["a", "b"]


def test_the_default_config_is_the_methods_own(model, tokenizer, train_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for method, trainer_class in TRAINERS.items():
        trainer = trainer_class(copy.deepcopy(model), train_dataset=train_set, processing_class=tokenizer)
        assert type(trainer.args) is trainer_class.config_class
        assert trainer.args.output_dir.endswith(f"{method.replace('_', '-')}-output")


def test_a_checkpoint_records_its_method_for_the_card(model, make_trainer, tmp_path):
    trainer = make_trainer("tga_zsr", model)
    trainer.save_model(str(tmp_path / "ckpt"))
    with open(tmp_path / "ckpt" / "pmg_aft.json") as f:
        info = json.load(f)
    assert info["method"]["key"] == "tga_zsr" and info["method"]["paper"]["arxiv_id"] == "2410.21802"
    assert info["recipe"]["alpha"] == 0.08 and info["recipe"]["learning_rate"] == trainer.args.learning_rate
    assert "image_column" not in info["recipe"] and info["class_names"][0] == "red"
    assert isinstance(CLIPModel.from_pretrained(str(tmp_path / "ckpt")), CLIPModel)
    assert not isinstance(trainer.args, PMGAFTConfig)


@pytest.mark.slow
def test_torch_compile_covers_the_attack_and_the_frozen_model_and_trains_as_eager(model, make_trainer):
    # The "eager" backend traces and runs the graphs dynamo captures without generating code: the same numbers.
    eager = make_trainer("pmg_aft", copy.deepcopy(model), attack_random_start=False, max_steps=2)
    compiled = make_trainer("pmg_aft", copy.deepcopy(model), attack_random_start=False, max_steps=2,
                            torch_compile=True, torch_compile_backend="eager")  # fmt: skip
    assert compiled.args.dataloader_drop_last  # static shapes: no recompile for a last partial batch
    for reference in (False, True):
        tower = compiled.classifier(reference=reference).vision_model
        assert type(tower).__name__ == "OptimizedModule" and tower is not compiled.ref_model.vision_model
        assert compiled.classifier(reference=reference) is compiled.classifier(reference=reference)  # built once
    assert not hasattr(compiled.ref_model, "text_model") or not list(compiled.ref_model.text_model.parameters())
    eager.train()
    compiled.train()
    for (name, a), b in zip(eager.model.named_parameters(), compiled.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not torch.equal(eager.model.visual_projection.weight, model.visual_projection.weight)


def test_one_process_forwards_the_vision_tower_alone_with_the_full_forwards_numbers(model, make_trainer):
    trainer = make_trainer("pmg_aft", model, max_steps=1)
    pixels = torch.rand(4, 3, 32, 32)
    ours = trainer.forward_images(model, pixels)
    full = model(input_ids=torch.zeros((1, 1), dtype=torch.long), pixel_values=pixels)  # what DDP's path calls
    assert torch.allclose(ours.image_embeds, full.image_embeds, atol=1e-6)
    assert torch.allclose(ours.vision_model_output.pooler_output, full.vision_model_output.pooler_output, atol=1e-6)
    assert torch.equal(ours.vision_model_output.last_hidden_state, full.vision_model_output.last_hidden_state)
    (grad_ours,) = torch.autograd.grad(ours.image_embeds.square().sum(), model.visual_projection.weight)
    (grad_full,) = torch.autograd.grad(full.image_embeds.square().sum(), model.visual_projection.weight)
    assert torch.allclose(grad_ours, grad_full, atol=1e-6)
    # A training step runs no text forward once the class embeddings are cached.
    trainer.classifier()
    calls = []
    model.text_model.register_forward_hook(lambda *args: calls.append(1))
    trainer.train()
    assert trainer.state.global_step == 1 and not calls


@pytest.mark.parametrize("method", METHODS)
def test_the_default_precision_is_the_official_codes_where_cuda_is_present(method, tmp_path):
    """Each method's declared official precision (fp16 autocast with a GradScaler, or float32) is its default where
    CUDA is present; each method's own tests say which it declares."""
    config = TRAINERS[method].config_class(output_dir=str(tmp_path), use_cpu=True)
    assert config.fp16 is False and config.bf16 is False  # no CUDA here: float32
    official = config.official_precision == "fp16"
    for fp16, bf16, expected in ((None, None, official), (False, None, False), (None, True, False)):
        config.fp16, config.bf16 = fp16, bf16
        config.resolve_precision(cuda=True)
        assert config.fp16 is expected, (method, fp16, bf16)
        assert config.bf16 is bool(bf16)
    config.fp16 = None
    config.resolve_precision(cuda=False)
    assert config.fp16 is False


def test_evaluate_counts_the_final_iterate_at_the_protocols_steps(tmp_path):
    config = TRAINERS["pmg_aft"].config_class(output_dir=str(tmp_path), use_cpu=True)
    grid = config.eval_attack_grid()
    assert grid.steps == (10,) and not grid.first_success  # the official validate(): PGD-10, final iterate
    assert TRAINERS["pmg_aft"].config_class(output_dir=str(tmp_path), eval_attack_steps=3).eval_attack_steps == 3


def test_predict_and_prediction_step_agree_with_evaluate(model, make_trainer, test_set):
    data = test_set.select(range(24))
    trainer = make_trainer("tecoa", model, eval_attack_steps=1)
    output = trainer.predict(data)
    metrics = trainer.evaluate(data, metric_key_prefix="test")
    assert output.predictions.shape == (24, len(trainer.class_names)) and list(output.label_ids) == data["label"]
    accuracy = float((output.predictions.argmax(-1) == output.label_ids).mean())
    assert (
        accuracy
        == pytest.approx(output.metrics["test_clean_accuracy"])
        == pytest.approx(metrics["test_clean_accuracy"])
    )
    batch = trainer.data_collator([data[i] for i in range(4)])
    _, logits, labels = trainer.prediction_step(trainer.model, batch, prediction_loss_only=False)
    assert torch.allclose(logits.float().cpu(), torch.tensor(output.predictions[:4]), atol=1e-4)
    assert labels.tolist() == data["label"][:4]
