"""LoRA (`use_peft`): adapters on the vision tower only, the base as the reference, merged and adapter saves."""

import copy
import json
import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import CLIPModel

from pmg_aft.tiny import tiny_clip

from .utils import METHODS, snapshot

LORA = dict(use_peft=True, lora_r=4, lora_alpha=8, learning_rate=0.5)
TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@pytest.mark.parametrize("method", METHODS)
def test_lora_trains_only_the_adapters_and_the_reference_is_the_base(method, model, make_trainer):
    base = snapshot(model)
    trainer = make_trainer(method, model, max_steps=2, **LORA)
    assert trainer.ref_model is None  # no second copy of the weights
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and n.startswith("vision_model.encoder.layers.") for n in trainable)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = [n for n in trainable if not torch.equal(after[n], torch.zeros_like(after[n]))]
    assert any(".lora_B." in n for n in moved), "the adapters did not train"
    for name, value in base.items():  # every original weight is untouched, under its LoRA name or its own
        held = after.get(name, after.get(name.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias")))  # fmt: skip
        assert held is not None and torch.equal(held, value), name
    if trainer.args.uses_reference:
        pixels = torch.rand(3, 3, 32, 32)
        original = tiny_clip(seed=0)
        original.load_state_dict(base)
        reference = trainer.image_encoder(reference=True).encode_images(pixels)
        expected = trainer.heads.encoder(original).encode_images(pixels)
        assert torch.allclose(reference, expected, atol=1e-6)  # the base, with the adapters off
        trained = trainer.image_encoder().encode_images(pixels)
        assert not torch.allclose(trained, expected, atol=1e-4)  # and the target is not


def test_lora_saves_a_merged_clip_model_and_a_peft_adapter(model, make_trainer, tmp_path):
    base = snapshot(model)
    trainer = make_trainer("pmg_aft", model, max_steps=2, **LORA)
    trainer.train()
    out = str(tmp_path / "saved")
    trainer.save_model(out)
    merged = CLIPModel.from_pretrained(out)  # no peft involved: a plain checkpoint
    state = merged.state_dict()
    assert set(base) <= set(state) and not any("lora" in k or "base_layer" in k for k in state)
    changed = {n for n in base if not torch.equal(state[n], base[n])}
    assert changed and all(n.startswith("vision_model.encoder.layers.") and n.rsplit(".", 2)[-2] in TARGETS
                           and n.endswith(".weight") for n in changed)  # fmt: skip
    pixels = torch.rand(2, 3, 32, 32)
    trained = trainer.image_encoder().encode_images(pixels)
    assert torch.allclose(trainer.heads.encoder(merged).encode_images(pixels), trained, atol=1e-5)
    # The adapter alone, in PEFT's format: PeftModel loads it onto the base and gives the same embeddings.
    adapter = os.path.join(out, "adapter")
    config = json.load(open(os.path.join(adapter, "adapter_config.json")))
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["peft_type"] == "LORA"
    weights = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    assert weights and all(".lora_" in k for k in weights)
    original = tiny_clip(seed=0)
    original.load_state_dict(base)
    with_adapter = PeftModel.from_pretrained(original, adapter).base_model.model
    assert torch.allclose(trainer.heads.encoder(with_adapter).encode_images(pixels), trained, atol=1e-5)


def test_a_lora_run_resumes_from_its_adapter_to_the_same_weights(pretrained, make_trainer, tmp_path):
    whole = make_trainer("tecoa", copy.deepcopy(pretrained), max_steps=2, save_strategy="steps", save_steps=1,
                         output_dir=str(tmp_path / "whole"), **LORA)  # fmt: skip
    whole.train()
    resumed = make_trainer("tecoa", copy.deepcopy(pretrained), max_steps=2, output_dir=str(tmp_path / "resumed"),
                           **LORA)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-1"))
    one, two = dict(whole.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(one[n], two[n]) for n in one)
