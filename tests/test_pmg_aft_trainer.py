"""PMGAFTTrainer: the attack and the PMG-AFT loss by hand, the reference model, gradients through both branches."""

import copy

import pytest
import torch

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, PMGAFTConfig, pgd, pmg_aft_loss

from .utils import perturbed, pmg_aft_head


def hand_head(model, tokenizer, train_set):
    return pmg_aft_head(copy.deepcopy(model), tokenizer, train_set.features["label"].names)


def test_compute_loss_is_the_pmg_aft_formula_on_the_attacked_batch(model, tokenizer, train_set, batch, make_trainer):
    trainer = make_trainer("pmg_aft", model, attack_random_start=False, train_eps="2/255", train_step_size="1/255",
                           train_steps=2)  # fmt: skip
    loss = trainer.compute_loss(trainer.model, batch)
    # By hand: the attack, the three logits, the formula (the paper's head: s = 1, ImageNet mean/std).
    target = hand_head(model, tokenizer, train_set)
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(target, x, y, eps=2 / 255, step_size=1 / 255, steps=2, random_start=False)
    with torch.no_grad():
        expected = pmg_aft_loss(target(adv), y, target(x), target(adv), alpha=256, beta=256)  # ref == target at start
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)
    assert loss.requires_grad
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("loss", "ce", "guidance_kl", "clean_kl", "train_robust_accuracy", "train_clean_accuracy"):
        assert key in logged


def test_guidance_term_uses_the_reference_model_on_adversarial_images(model, tokenizer, train_set, batch,
                                                                      make_trainer):  # fmt: skip
    ref = perturbed(model)  # a reference that differs from the target, so the guidance KL is not 0
    trainer = make_trainer("pmg_aft", model, ref_model=ref, attack_random_start=False, kl_direction="early",
                           alpha=3.0, beta=5.0)  # fmt: skip
    loss = trainer.compute_loss(trainer.model, batch)
    target = hand_head(model, tokenizer, train_set)
    guide = pmg_aft_head(ref, tokenizer, train_set.features["label"].names)
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(target, x, y, eps=1 / 255, step_size=1 / 255, steps=2, random_start=False)
    with torch.no_grad():
        expected = pmg_aft_loss(target(adv), y, target(x), guide(adv), 3.0, 5.0, kl_direction="early")
    assert expected.guidance_kl > 1e-4
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)


def parameter_gradients(model):
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])


def test_the_clean_branch_carries_gradient_inside_the_trainer(model, tokenizer, train_set, batch, make_trainer):
    """beta * KL(p_t(x) || p_t(x')) must back-propagate through z_t(x) too: detaching it changes the update."""
    trainer = make_trainer("pmg_aft", model, attack_random_start=False, alpha=0.0, beta=50.0)
    trainer.compute_loss(trainer.model, batch).backward()
    ours = parameter_gradients(trainer.model)

    x, y = batch["pixel_values"], batch["labels"]

    def hand(detach_clean: bool) -> torch.Tensor:
        head = hand_head(model, tokenizer, train_set)
        head.model.zero_grad(set_to_none=True)  # the copy carries the trainer's gradients
        for name, p in head.model.named_parameters():
            p.requires_grad_(name.startswith(("vision_model.", "visual_projection.")))
        adv = pgd(head, x, y, eps=1 / 255, step_size=1 / 255, steps=2, random_start=False)
        clean = head(x)
        pmg_aft_loss(
            head(adv), y, clean.detach() if detach_clean else clean, None, alpha=0.0, beta=50.0
        ).loss.backward()
        return parameter_gradients(head.model)

    full, cut = hand(detach_clean=False), hand(detach_clean=True)
    assert (full - cut).norm() > 0.05 * full.norm()  # the clean branch's share of the gradient is not negligible
    assert torch.allclose(ours, full, atol=1e-5 * full.norm(), rtol=1e-3)


def test_tecoa_weights_skip_the_frozen_model(model, tokenizer, train_set, batch, make_trainer):
    trainer = make_trainer("pmg_aft", model, alpha=0, beta=0, attack_random_start=False)
    assert trainer.ref_model is None
    target = hand_head(model, tokenizer, train_set)
    adv = pgd(
        target, batch["pixel_values"], batch["labels"], eps=1 / 255, step_size=1 / 255, steps=2, random_start=False
    )
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(target(adv), batch["labels"])
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(ce.item(), rel=1e-4)
    with pytest.raises(ValueError, match="no reference model"):
        trainer.classifier(reference=True)


def test_bf16_autocast_keeps_logits_and_class_embeddings_in_float32(model, tokenizer, batch, make_trainer):
    trainer = make_trainer("pmg_aft", model)
    names = trainer.class_names
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head = trainer.classifier()
        logits = head(batch["pixel_values"])
        low_precision = pmg_aft_head(model, tokenizer, names)
    assert logits.dtype == torch.float32
    reference = pmg_aft_head(model, tokenizer, names)
    assert torch.equal(low_precision.class_embeddings, reference.class_embeddings)
    shared = trainer.classifier(reference=True).class_embeddings  # the default copy shares the cache
    assert shared.data_ptr() == head.class_embeddings.data_ptr()
    with torch.no_grad():
        assert torch.allclose(logits, reference(batch["pixel_values"]), atol=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(trainer.compute_loss(trainer.model, batch))


def test_defaults_are_the_official_recipe(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path))
    assert (config.alpha, config.beta, config.kl_direction) == (256, 256, "official")
    assert config.train_eps == pytest.approx(1 / 255) and config.train_step_size == pytest.approx(1 / 255)
    assert config.train_steps == 2 and config.attack_random_start and config.train_attack_momentum == 0
    assert config.logit_scale.value == 1.0
    assert config.image_mean == list(IMAGENET_MEAN) and config.image_std == list(IMAGENET_STD)
    assert config.prompt_template == "This is a photo of a {}" and config.crop_pct == pytest.approx(224 / 256)
    assert config.interpolation == "bilinear"
    assert config.optim == "sgd" and config.optim_args == "momentum=0.9" and config.learning_rate == 5e-5
    assert config.weight_decay == 0 and config.warmup_steps == 1000 and config.lr_scheduler_type == "cosine"
    assert config.per_device_train_batch_size == 256 and config.num_train_epochs == 10
    assert config.max_grad_norm == 0.0
    with pytest.raises(ValueError, match="kl_direction"):
        PMGAFTConfig(output_dir=str(tmp_path), kl_direction="reverse")
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        PMGAFTConfig(output_dir=str(tmp_path), alpha=-1)


def test_the_official_precision_is_the_official_codes():
    # the official PMG-AFT code trains under torch.cuda.amp autocast with a GradScaler.
    assert PMGAFTConfig.official_precision == "fp16"
