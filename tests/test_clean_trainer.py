"""CleanFinetuneTrainer: cross-entropy on clean images by hand; no attack, no reference model."""

import pytest
import torch

from pmg_aft import CLIP_MEAN, CleanFinetuneConfig, ZeroShotClassifier


def test_clean_fine_tuning_is_the_clean_cross_entropy_and_runs_no_attack(model, tokenizer, train_set, batch,
                                                                          make_trainer, monkeypatch):  # fmt: skip
    trainer = make_trainer("clean", model)
    assert trainer.ref_model is None
    monkeypatch.setattr("pmg_aft.trainers.base_trainer.pgd", lambda *a, **k: pytest.fail("clean fine-tuning attacked"))
    loss = trainer.compute_loss(trainer.model, batch)
    head = ZeroShotClassifier(model, tokenizer, train_set.features["label"].names, image_mean=CLIP_MEAN,
                              image_std=trainer.args.image_std, logit_scale=100.0)  # fmt: skip
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(head(batch["pixel_values"]), batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    before = model.vision_model.post_layernorm.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.model.vision_model.post_layernorm.weight)
    assert "train_clean_accuracy" in trainer.state.log_history[0]


def test_defaults(tmp_path):
    config = CleanFinetuneConfig(output_dir=str(tmp_path))
    assert config.image_mean == list(CLIP_MEAN) and config.logit_scale.value == 100.0
    assert config.learning_rate == 5e-5 and config.per_device_train_batch_size == 256 and config.max_grad_norm == 0


def test_the_card_recipe_leaves_out_the_attack_it_never_ran(model, make_trainer):
    clean = make_trainer("clean", model).recipe()
    robust = make_trainer("pmg_aft", model).recipe()
    attack = ("train_eps", "train_step_size", "train_steps", "train_attack_momentum")
    assert all(name in robust for name in attack) and not any(name in clean for name in attack)
    assert "learning_rate" in clean and "eval_eps" in clean  # the rest of the recipe stays


def test_the_clean_baseline_builds_no_training_attack(model, tokenizer, train_set, tmp_path):
    # Was: CleanFinetuneTrainer(model, CleanFinetuneConfig(train_step_size=0, ...)) raised "pgd: step_size is 0 with 2
    # steps" for an attack the clean baseline never runs.
    from pmg_aft import CleanFinetuneTrainer

    config = CleanFinetuneConfig(output_dir=str(tmp_path), train_step_size=0, use_cpu=True, max_steps=1,
                                 per_device_train_batch_size=8, report_to="none", save_strategy="no")  # fmt: skip
    trainer = CleanFinetuneTrainer(model, config, train_dataset=train_set, processing_class=tokenizer)
    assert trainer.train_attack_setting is None and not config.uses_training_attack and not config.uses_reference
    with pytest.raises(RuntimeError, match="clean fine-tuning runs no training attack"):
        trainer.attack(trainer.classifier(), torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    trainer.train()
    assert trainer.state.global_step == 1
