"""TGAZSRTrainer: text-guided attention and the TGA-ZSR loss by hand, the official defaults."""

import copy

import pytest
import torch

from pmg_aft import CLIP_MEAN, CLIP_STD, TGAZSRConfig, ZeroShotClassifier, pgd
from pmg_aft.losses import text_guided_attention, tga_zsr_loss

from .utils import perturbed


def test_text_guided_attention_by_hand():
    tokens = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])  # cls + 4 patches
    text = torch.tensor([[1.0, 0.0]])
    # Normalised over the token axis (as the official code): the first feature column has norm sqrt(87).
    first = [1 / 87**0.5, 0.0, 1 / 87**0.5, 2 / 87**0.5]
    low, high = min(first), max(first)
    expected = torch.tensor([(v - low) / (high - low) for v in first])
    assert torch.allclose(text_guided_attention(tokens, text, size=2), expected[None], atol=1e-6)
    assert text_guided_attention(tokens, text, size=8).shape == (1, 64)


def test_tga_zsr_loss_by_hand():
    logits, labels = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    adv, clean, ref = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    out = tga_zsr_loss(logits, labels, adv, clean, ref, alpha=0.08, beta=0.05)
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert out.refinement.item() == pytest.approx(1.0) and out.constraint.item() == pytest.approx(1.0)
    assert out.loss.item() == pytest.approx(ce + 0.08 * 1.0 + 0.05 * 1.0)


def test_a_step_is_the_formula(model, tokenizer, train_set, batch, make_trainer):
    ref = perturbed(model, scale=0.02)  # a reference that differs, so both attention terms are non-zero
    trainer = make_trainer("tga_zsr", model, ref_model=ref, attack_random_start=False, train_eps="2/255")
    loss = trainer.compute_loss(trainer.model, batch)
    head = ZeroShotClassifier(copy.deepcopy(model), tokenizer, train_set.features["label"].names, image_mean=CLIP_MEAN,
                              image_std=CLIP_STD, logit_scale=100.0)  # fmt: skip
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(head, x, y, eps=2 / 255, step_size=1 / 255, steps=2, random_start=False)

    def attention(clip, images):
        hidden = clip.vision_model(pixel_values=head.preprocess(images)).last_hidden_state
        tokens = clip.visual_projection(clip.vision_model.post_layernorm(hidden))
        return text_guided_attention(tokens, head.class_embeddings[y], 32)

    with torch.no_grad():
        expected = tga_zsr_loss(head(adv), y, attention(head.model, adv), attention(head.model, x), attention(ref, x))
    assert expected.refinement > 0 and expected.constraint > 0
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)
    trainer.train()
    assert {"attention_refinement", "attention_constraint", "ce"} <= set(trainer.state.log_history[0])


def test_defaults_are_the_official_recipe(tmp_path):
    config = TGAZSRConfig(output_dir=str(tmp_path))
    assert (config.alpha, config.beta) == (0.08, 0.05)
    assert config.train_eps == pytest.approx(1 / 255) and config.train_steps == 2
    assert config.image_mean == list(CLIP_MEAN) and config.logit_scale.value == 100.0
    assert config.learning_rate == 1e-4 and config.per_device_train_batch_size == 128
    assert config.optim == "sgd" and config.warmup_steps == 1000 and config.max_grad_norm == 0
    # evaluate(): its validate()'s PGD-100, final iterate (not the pmg_aft protocol's 10 steps)
    grid = config.eval_attack_grid()
    assert grid.steps == (100,) and not grid.first_success and grid.random_start
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        TGAZSRConfig(output_dir=str(tmp_path), beta=-0.1)


def test_the_official_precision_is_the_official_codes():
    # TGA-ZSR's code trains under CUDA fp16 autocast with a GradScaler.
    assert TGAZSRConfig.official_precision == "fp16"
