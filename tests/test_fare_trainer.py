"""FARETrainer: unsupervised (no labels, no text), its momentum attack and loss by hand, the official defaults."""

import copy

import pytest
import torch
from datasets import Dataset

from pmg_aft import CLIP_MEAN, CLIP_STD, TRAINERS, FAREConfig, FARETrainer, ImageEncoder, fare_loss, pgd
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
    monkeypatch.setattr("pmg_aft.trainers.heads.build_class_embeddings",
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
    adv = pgd(
        target,
        x,
        anchor,
        eps=4 / 255,
        step_size=1 / 255,
        steps=3,
        random_start=True,
        loss=squared_distance,
        momentum=0.9,
    )
    with torch.no_grad():
        expected = fare_loss(target.encode_images(adv, normalize=False), anchor)
        no_attack = fare_loss(target.encode_images(x, normalize=False), anchor)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert expected > no_attack  # the attack raised the distance (0 at the start: target == reference)
    trainer.train()
    assert "fare_distance" in trainer.state.log_history[0]


def pgd_on_gradients(gradients, steps, momentum, norm="linf", eps=8 / 255):
    """PGD on a function whose input gradient at call k is `gradients[k]` (linear in the pixels)."""
    calls = []

    def objective(outputs, targets):
        weights = gradients[len(calls)]
        calls.append(1)
        return (outputs * weights).sum(1)

    x = torch.full((1, 1, 2, 2), 0.5)
    adv = pgd(lambda z: z.flatten(1), x, torch.zeros(1), eps=eps, step_size=1 / 255, steps=steps, norm=norm,
              random_start=False, loss=objective, momentum=momentum)  # fmt: skip
    return (adv - x).flatten() * 255


def test_the_momentum_step_is_fares_rule_by_hand():
    """FARE's pgd_train.py: v = sign(0.9 v + sign(g)), step along v. Under L-inf that is sign(g) wherever g != 0,
    even after a run of steps the other way, and the previous direction where g == 0."""
    up, down = torch.tensor([1.0, -1.0, 2.0, 0.5]), torch.tensor([-1.0, 1.0, -2.0, 0.0])
    # +, +, then a flip: momentum follows the flip at once (a raw velocity 0.9 * 1.9 - 1 > 0 would not).
    moves = pgd_on_gradients([up, up, down], steps=3, momentum=0.9)
    assert torch.allclose(moves, torch.tensor([1.0, -1.0, 1.0, 3.0]), atol=1e-5)
    plain = pgd_on_gradients([up, up, down], steps=3, momentum=0.0)
    assert torch.allclose(plain, torch.tensor([1.0, -1.0, 1.0, 2.0]), atol=1e-5)  # sign(0) = 0: the last pixel rests
    # Under L2 the velocity is unit-norm too: v2 = normalise(0.9 v1 + g2 / |g2|).
    g1, g2 = torch.tensor([3.0, 0.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0, 0.0])
    v1 = g1 / g1.norm()
    v2 = 0.9 * v1 + g2
    v2 = v2 / v2.norm()
    l2 = pgd_on_gradients([g1, g2], steps=2, momentum=0.9, norm="l2", eps=1.0)
    assert torch.allclose(l2, (v1 + v2) * 1, atol=1e-4)


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
    assert config.dataloader_drop_last and config.weight_decay_all_parameters  # train/adversarial_training_clip.py
    assert config.fp16 is False  # float32 even with CUDA: the official script has no autocast


def test_weight_decay_reaches_every_visual_parameter_and_the_last_batch_is_dropped(model, tokenizer, train_set,
                                                                                     make_config):  # fmt: skip
    """FARE's AdamW(params, weight_decay=1e-4): biases and LayerNorm weights decay too (transformers exempts them)."""
    data = train_set.select(range(10))
    decayed = {}
    for method in ("fare", "pmg_aft"):
        config = make_config(method, weight_decay=1e-4, optim="adamw_torch", optim_args=None,
                             per_device_train_batch_size=4)  # fmt: skip
        trainer = TRAINERS[method](copy.deepcopy(model), config, train_dataset=data, processing_class=tokenizer,
                                   )  # fmt: skip
        optimizer = trainer.create_optimizer()
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        decayed[method] = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        if method == "fare":
            assert decayed[method] == trained and any("layer_norm" in n or n.endswith(".bias") for n in trained)
            assert len(trainer.get_train_dataloader()) == 2  # 10 samples at 4: the partial batch of 2 dropped
        else:
            assert not any(n.endswith(".bias") for n in decayed[method]) and len(trainer.get_train_dataloader()) == 3
    assert decayed["pmg_aft"] < decayed["fare"]


def test_the_encoders_are_built_once_for_the_run(model, tokenizer, train_set, make_trainer, monkeypatch):
    # Was: two ImageEncoders (and new mean/std tensors on the device) per step, and never the compiled tower.
    from pmg_aft.trainers import heads

    built = []

    class Counting(ImageEncoder):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(heads, "ImageEncoder", Counting)
    trainer = make_trainer("fare", model, max_steps=3)
    trainer.train()
    assert len(built) == 2  # the target's and the reference's, for all three steps
    assert trainer.image_encoder() is trainer.image_encoder() and trainer.image_encoder(reference=True).model is (
        trainer.ref_model
    )


def test_the_official_precision_is_the_official_codes():
    # FARE's training script has no autocast: float32.
    assert FAREConfig.official_precision == "no"
