"""TeCoATrainer: cross-entropy on adversarial images by hand, no reference model, the official defaults."""

import copy

import pytest
import torch

from pmg_aft import CLIP_MEAN, CLIP_STD, TeCoAConfig, ZeroShotClassifier, pgd, pmg_aft_loss


def test_loss_is_the_cross_entropy_on_the_attacked_batch(model, tokenizer, train_set, batch, make_trainer):
    trainer = make_trainer("tecoa", model, attack_random_start=False, train_eps="2/255", train_steps=3)
    assert trainer.ref_model is None
    loss = trainer.compute_loss(trainer.model, batch)
    # By hand, with TeCoA's head: CLIP's normalisation and logit scale 100.
    head = ZeroShotClassifier(copy.deepcopy(model), tokenizer, train_set.features["label"].names,
                              image_mean=CLIP_MEAN, image_std=CLIP_STD, logit_scale=100.0)  # fmt: skip
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(head, x, y, eps=2 / 255, step_size=1 / 255, steps=3, random_start=False)
    with torch.no_grad():
        adv_logits = head(adv)
        expected = torch.nn.functional.cross_entropy(adv_logits, y)
    assert expected > torch.nn.functional.cross_entropy(head(x).detach(), y)  # the attack raised the loss
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    # It is PMG-AFT's loss with alpha = beta = 0.
    assert pmg_aft_loss(adv_logits, y, alpha=0, beta=0).loss.item() == pytest.approx(expected.item(), rel=1e-6)
    trainer.train()
    assert {"ce", "train_robust_accuracy"} <= set(trainer.state.log_history[0])


def test_defaults_are_the_official_recipe(tmp_path):
    config = TeCoAConfig(output_dir=str(tmp_path))
    assert config.train_eps == pytest.approx(1 / 255) and config.train_steps == 2 and config.attack_random_start
    assert config.logit_scale.value == 100.0
    assert config.image_mean == list(CLIP_MEAN) and config.image_std == list(CLIP_STD)
    assert config.optim == "sgd" and config.optim_args == "momentum=0.9" and config.learning_rate == 1e-5
    assert config.per_device_train_batch_size == 256 and config.warmup_steps == 1000 and config.max_grad_norm == 0
    assert not hasattr(config, "alpha") and not hasattr(config, "method")


def test_the_official_precision_is_the_official_codes():
    # TeCoA's code trains under CUDA fp16 autocast with a GradScaler.
    assert TeCoAConfig.official_precision == "fp16"
