"""FARETrainer: unsupervised (no labels, no text), its momentum attack and loss by hand, the official defaults."""

import copy

import pytest
import torch
from datasets import Dataset

from pmg_aft import CLIP_MEAN, CLIP_STD, FAREConfig, FARETrainer, ImageEncoder, fare_loss, pgd
from pmg_aft.losses import squared_distance


def test_fare_loss_by_hand():
    adv = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    ref = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert squared_distance(adv, ref).tolist() == [5.0, 5.0]
    assert fare_loss(adv, ref).item() == pytest.approx((5.0 + 5.0) / 2)


def test_fare_uses_no_labels_and_no_text_and_is_its_formula(model, tokenizer, train_set, make_config, monkeypatch):
    images_only = Dataset.from_dict({"image": train_set["image"][:8]})  # no label column at all
    config = make_config("fare", train_eps="4/255", train_step_size="1/255", train_steps=3)
    trainer = FARETrainer(model, config, train_dataset=images_only, processing_class=tokenizer)
    assert trainer.class_names is None and trainer.ref_model is not None
    monkeypatch.setattr("pmg_aft.trainers.base_trainer.build_class_embeddings",
                        lambda *a, **k: pytest.fail("text was used"))  # fmt: skip
    batch = trainer.data_collator([images_only[i] for i in range(8)])
    assert "labels" not in batch
    torch.manual_seed(7)
    loss = trainer.compute_loss(trainer.model, batch)
    # By hand, from the same random start: momentum sign-PGD maximises the distance to the frozen clean embedding,
    # with CLIP's normalisation.
    target, ref = ImageEncoder(copy.deepcopy(model), CLIP_MEAN, CLIP_STD), ImageEncoder(trainer.ref_model, CLIP_MEAN,
                                                                                         CLIP_STD)  # fmt: skip
    x = batch["pixel_values"]
    with torch.no_grad():
        anchor = ref.encode_images(x, normalize=False)
    torch.manual_seed(7)
    adv = pgd(target, x, anchor, 4 / 255, 1 / 255, 3, random_start=True, loss=squared_distance, momentum=0.9)
    with torch.no_grad():
        expected = fare_loss(target.encode_images(adv, normalize=False), anchor)
        no_attack = fare_loss(target.encode_images(x, normalize=False), anchor)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert expected > no_attack  # the attack raised the distance (0 at the start: target == reference)
    trainer.train()
    assert "fare_distance" in trainer.state.log_history[0]


def test_the_momentum_step_by_hand():
    """FARE's step: v = 0.9 v + sign(g), step along sign(v). Under L-inf it differs from sign-PGD only where a
    gradient entry is 0; there the pixel keeps moving in its previous direction."""
    gradients = [torch.tensor([1.0, -1.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, -1.0, 1.0])]
    calls = []

    def objective(outputs, targets):  # linear in the pixels: the gradient at call k is gradients[k]
        weights = gradients[len(calls)]
        calls.append(1)
        return (outputs * weights).sum(1)

    def identity(x):
        return x.flatten(1)

    x, targets, s = torch.full((1, 1, 2, 2), 0.5), torch.zeros(1), 1 / 255
    plain = pgd(identity, x, targets, 4 / 255, s, 2, random_start=False, loss=objective)
    calls.clear()
    momentum = pgd(identity, x, targets, 4 / 255, s, 2, random_start=False, loss=objective, momentum=0.9)
    # Plain: s [1, -1, 1, 1] + s [0, 0, -1, 1].
    # Momentum: v2 = 0.9 [1, -1, 1, 1] + [0, 0, -1, 1], whose sign is [1, -1, -1, 1].
    assert torch.allclose(plain.flatten() - 0.5, torch.tensor([1.0, -1.0, 0.0, 2.0]) * s, atol=1e-7)
    assert torch.allclose(momentum.flatten() - 0.5, torch.tensor([2.0, -2.0, 0.0, 2.0]) * s, atol=1e-7)


def test_without_a_random_start_fare_needs_a_reference_that_differs(model, tokenizer, train_set, make_config):
    with pytest.raises(ValueError, match="random start"):
        FARETrainer(model, make_config("fare", attack_random_start=False), train_dataset=train_set,
                    processing_class=tokenizer)  # fmt: skip
    trainer = FARETrainer(model, make_config("fare", attack_random_start=False), train_dataset=train_set,
                          processing_class=tokenizer, ref_model=copy.deepcopy(model))  # fmt: skip
    assert trainer.ref_model is not None


def test_defaults_are_the_official_recipe(tmp_path):
    config = FAREConfig(output_dir=str(tmp_path))
    setting = config.train_attack_setting()
    assert (setting.eps, setting.step_size, setting.steps) == pytest.approx((4 / 255, 1 / 255, 10))
    assert setting.momentum == 0.9 and setting.random_start and not setting.first_success
    assert config.image_mean == list(CLIP_MEAN) and config.image_std == list(CLIP_STD)
    assert config.crop_pct == 1.0 and config.interpolation == "bicubic"
    assert config.optim == "adamw_torch" and config.learning_rate == 1e-5 and config.weight_decay == 1e-4
    assert config.warmup_steps == 1400 and config.max_steps == 20000 and config.per_device_train_batch_size == 128
    assert config.lr_scheduler_type == "cosine" and config.max_grad_norm == 0
