import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from pmg_aft import PMGAFTTrainer, ZeroShotClassifier, pgd, pmg_aft_loss
from pmg_aft.tiny import tiny_clip


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_one_step_trains_every_vision_parameter_and_nothing_else(model, tokenizer, train_set, make_config):
    trainer = PMGAFTTrainer(model, make_config(), train_dataset=train_set, processing_class=tokenizer)
    before, ref_before = snapshot(model), snapshot(trainer.ref_model)
    trainer.train()
    after = snapshot(trainer.model)
    vision = [n for n in before if n.startswith(("vision_model.", "visual_projection."))]
    frozen = [n for n in before if n not in vision]
    assert vision and "logit_scale" in frozen and any(n.startswith("text_model.") for n in frozen)
    # A key bias adds q.b to every logit of a softmax row, which the softmax ignores: its gradient is exactly 0
    # (float noise aside), so it is the one vision parameter that need not move.
    unchanged = [n for n in vision if torch.equal(before[n], after[n]) and not n.endswith("k_proj.bias")]
    assert not unchanged, f"vision parameters did not change: {unchanged}"
    assert all(torch.equal(before[n], after[n]) for n in frozen), "a text parameter or logit_scale changed"
    assert all(torch.equal(ref_before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert trainer.ref_model is not trainer.model
    assert not any("ref_model" in n for n in trainer.model.state_dict())
    logged = trainer.state.log_history[0]
    for key in ("loss", "ce", "guidance_kl", "clean_kl", "train_robust_accuracy", "train_clean_accuracy"):
        assert key in logged


def test_compute_loss_is_the_pmg_aft_formula_on_the_attacked_batch(model, tokenizer, train_set, batch, make_config):
    config = make_config(attack_random_start=False, train_eps="2/255", train_step_size="1/255", train_steps=2)
    trainer = PMGAFTTrainer(model, config, train_dataset=train_set, processing_class=tokenizer)
    loss = trainer.compute_loss(trainer.model, batch)
    # By hand: the attack, the three logits, the formula.
    target = ZeroShotClassifier(copy.deepcopy(model), tokenizer, train_set.features["label"].names)
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(target, x, y, 2 / 255, 1 / 255, 2, random_start=False)
    with torch.no_grad():
        expected = pmg_aft_loss(target(adv), y, target(x), target(adv), alpha=256, beta=256)  # ref == target at start
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)
    assert loss.requires_grad


def test_tecoa_skips_the_frozen_model(model, tokenizer, train_set, batch, make_config):
    trainer = PMGAFTTrainer(
        model,
        make_config(alpha=0, beta=0, attack_random_start=False),
        train_dataset=train_set,
        processing_class=tokenizer,
    )
    assert trainer.ref_model is None
    target = ZeroShotClassifier(copy.deepcopy(model), tokenizer, train_set.features["label"].names)
    adv = pgd(target, batch["pixel_values"], batch["labels"], 1 / 255, 1 / 255, 2, random_start=False)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(target(adv), batch["labels"])
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(ce.item(), rel=1e-4)


def _update(model, config, dataset, tokenizer):
    start = snapshot(model)
    trainer = PMGAFTTrainer(model, config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    return {n: trainer.model.get_parameter(n).detach() - start[n] for n in start}


def test_gradient_accumulation_gives_the_large_batch_update(model, tokenizer, train_set, make_config):
    data = train_set.select(range(8))
    common = dict(attack_random_start=False, learning_rate=1.0, max_grad_norm=0.0)
    big = _update(copy.deepcopy(model), make_config(per_device_train_batch_size=8, **common), data, tokenizer)
    accumulated = _update(
        copy.deepcopy(model),
        make_config(per_device_train_batch_size=4, gradient_accumulation_steps=2, **common),
        data,
        tokenizer,
    )
    norm = sum(d.norm() ** 2 for d in big.values()) ** 0.5
    assert norm > 0
    for name in big:  # float32 sums in another order: agree to 1e-5 of the update's own size
        assert torch.allclose(big[name], accumulated[name], atol=1e-5 * norm, rtol=1e-4), name


def test_evaluate_reports_clean_and_robust_accuracy_per_dataset(model, tokenizer, train_set, test_set, make_config):
    config = make_config(eval_eps="4/255", eval_step_size="1/255", eval_attack_steps=5)
    trainer = PMGAFTTrainer(
        model,
        config,
        train_dataset=train_set,
        eval_dataset={"patches": test_set, "small": test_set.select(range(10))},
        processing_class=tokenizer,
    )
    trainer.model.train()
    metrics = trainer.evaluate()
    assert trainer.model.training  # the mode is restored
    # Clean accuracy by hand, with the same head.
    target = ZeroShotClassifier(model, tokenizer, test_set.features["label"].names)
    from pmg_aft.data import ImageClassificationCollator

    full = ImageClassificationCollator(image_size=32, native_resolution=True)([r for r in test_set])
    with torch.no_grad():
        by_hand = (target(full["pixel_values"]).argmax(-1) == full["labels"]).float().mean().item()
    assert metrics["eval_patches_clean_accuracy"] == pytest.approx(by_hand)
    assert metrics["eval_patches_samples"] == len(test_set) and metrics["eval_small_samples"] == 10
    assert metrics["eval_patches_robust_accuracy"] < metrics["eval_patches_clean_accuracy"]
    assert all(p.grad is None for p in trainer.model.parameters())


def test_saved_checkpoint_reloads_without_this_package(model, tokenizer, train_set, make_config, tmp_path):
    trainer = PMGAFTTrainer(model, make_config(), train_dataset=train_set, processing_class=tokenizer)
    trainer.train()
    out = tmp_path / "ckpt"
    trainer.save_model(str(out))
    files = sorted(os.listdir(out))
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], files
    names = ["red", "green", "blue"]
    images = (torch.rand(4, 32, 32, 3) * 255).to(torch.uint8)
    save_file({"images": images}, str(tmp_path / "images.safetensors"))
    script = f"""
import sys, json, torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, CLIPProcessor
assert "pmg_aft" not in sys.modules
model = CLIPModel.from_pretrained({str(out)!r}).eval()
processor = CLIPProcessor.from_pretrained({str(out)!r})
images = [im.numpy() for im in load_file({str(tmp_path / "images.safetensors")!r})["images"]]
inputs = processor(text={names!r}, images=images, return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**inputs).logits_per_image
save_file({{"logits": logits.contiguous()}}, {str(tmp_path / "logits.safetensors")!r})
print(json.dumps(list(processor.image_processor.image_mean)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx([0.485, 0.456, 0.406])
    # The same standard pipeline in this process, on the trained model.
    processor = trainer.processing_class
    inputs = processor(text=names, images=[im.numpy() for im in images], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).logits_per_image
    assert torch.allclose(load_file(str(tmp_path / "logits.safetensors"))["logits"], expected, atol=1e-5)


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


def test_wnid_labels_become_imagenet_names_in_the_prompts(tokenizer, make_config):
    from datasets import ClassLabel, Features
    from datasets import Image as ImageFeature
    from PIL import Image

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["n02119789", "n02100735"])})
    data = Dataset.from_dict({"image": [Image.new("RGB", (32, 32))] * 2, "label": [0, 1]}, features=features)
    trainer = PMGAFTTrainer(tiny_clip(), make_config(), train_dataset=data, processing_class=tokenizer)
    assert trainer.class_names == ["kit fox", "english setter"]


def test_guidance_term_uses_the_reference_model_on_adversarial_images(model, tokenizer, train_set, batch, make_config):
    ref = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs from the target, so the guidance KL is not 0
        for p in ref.vision_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = make_config(attack_random_start=False, kl_direction="early", alpha=3.0, beta=5.0)
    trainer = PMGAFTTrainer(model, config, train_dataset=train_set, processing_class=tokenizer, ref_model=ref)
    loss = trainer.compute_loss(trainer.model, batch)
    names = train_set.features["label"].names
    target = ZeroShotClassifier(copy.deepcopy(model), tokenizer, names)
    guide = ZeroShotClassifier(ref, tokenizer, names)
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(target, x, y, 1 / 255, 1 / 255, 2, random_start=False)
    with torch.no_grad():
        expected = pmg_aft_loss(target(adv), y, target(x), guide(adv), 3.0, 5.0, kl_direction="early")
    assert expected.guidance_kl > 1e-4
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)


def test_bf16_autocast_keeps_logits_and_class_embeddings_in_float32(model, tokenizer, train_set, batch, make_config):
    trainer = PMGAFTTrainer(model, make_config(), train_dataset=train_set, processing_class=tokenizer)
    names = trainer.class_names
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head = trainer.classifier(names)
        logits = head(batch["pixel_values"])
        low_precision = ZeroShotClassifier(model, tokenizer, names)
    assert logits.dtype == torch.float32
    reference = ZeroShotClassifier(model, tokenizer, names)
    assert torch.equal(low_precision.class_embeddings, reference.class_embeddings)
    shared = trainer.classifier(names, reference=True).class_embeddings  # the default copy shares the cache
    assert shared.data_ptr() == head.class_embeddings.data_ptr()
    with torch.no_grad():
        assert torch.allclose(logits, reference(batch["pixel_values"]), atol=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(trainer.compute_loss(trainer.model, batch))


def test_evaluate_counts_every_sample_of_each_given_dataset(model, tokenizer, train_set, test_set, make_config):
    config = make_config(dataloader_drop_last=True, per_device_eval_batch_size=4, eval_attack_steps=1)
    trainer = PMGAFTTrainer(model, config, train_dataset=train_set, processing_class=tokenizer)
    metrics = trainer.evaluate({"a": test_set.select(range(10)), "b": test_set.select(range(5))})
    assert metrics["eval_a_samples"] == 10 and metrics["eval_b_samples"] == 5
    assert trainer.evaluate(test_set.select(range(7)))["eval_samples"] == 7


def test_filtered_datasets_pass_the_label_check(model, tokenizer, make_config):
    data = Dataset.from_dict({"image": [None] * 4, "label": [0, -1, 1, 0]}).filter(lambda r: r["label"] >= 0)
    trainer = PMGAFTTrainer(
        model, make_config(), train_dataset=data, processing_class=tokenizer, class_names=["a", "b"]
    )
    assert trainer.class_names == ["a", "b"]


def test_evaluation_runs_in_float32_under_a_bf16_training_config(model, tokenizer, train_set, test_set, make_config):
    data = test_set.select(range(16))
    common = dict(attack_random_start=False, eval_attack_steps=2, eval_eps="2/255")
    results = []
    for bf16 in (False, True):
        config = make_config(bf16=bf16, **common)
        trainer = PMGAFTTrainer(copy.deepcopy(model), config, train_dataset=train_set, processing_class=tokenizer)
        with trainer.accelerator.autocast():  # the bf16 config is real: training steps run in bf16
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == (torch.bfloat16 if bf16 else torch.float32)
        metrics = trainer.evaluate(data)
        results.append((metrics["eval_clean_accuracy"], metrics["eval_robust_accuracy"]))
    assert results[0] == results[1]
