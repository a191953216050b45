"""CleanFinetuneTrainer: TGA-ZSR's FT-Clean loss and the zero-shot cross-entropy by hand; no attack, no reference."""

import pytest
import torch
import torch.nn.functional as F

from pmg_aft import CLIP_MEAN, CleanFinetuneConfig, ZeroShotClassifier, batch_clip_loss


def by_hand_batch_clip(logits, labels):
    """FT.py:321-327 written out: image i against the label text of sample j, both directions, duplicates negative."""
    b = len(labels)
    matrix = [[logits[i, labels[j]] for j in range(b)] for i in range(b)]
    rows = sum(-torch.log_softmax(torch.stack(matrix[i]), 0)[i] for i in range(b)) / b
    columns = sum(-torch.log_softmax(torch.stack([matrix[i][j] for i in range(b)]), 0)[j] for j in range(b)) / b
    return (rows + columns) / 2


def test_batch_clip_loss_is_tga_zsrs_ft_clean_loss_by_hand():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([2, 0, 2, 3, 1])  # a repeated class: its other sample is a negative
    assert batch_clip_loss(logits, labels).item() == pytest.approx(by_hand_batch_clip(logits, labels).item(), rel=1e-6)
    assert batch_clip_loss(logits, labels).item() != pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-3)


@pytest.mark.parametrize("loss", ["batch_clip", "zero_shot_ce"])
def test_clean_fine_tuning_is_its_loss_by_hand_and_runs_no_attack(loss, model, tokenizer, train_set, batch,
                                                                  make_trainer, monkeypatch):  # fmt: skip
    trainer = make_trainer("clean", model, loss=loss)
    assert trainer.ref_model is None
    monkeypatch.setattr("pmg_aft.trainers.base_trainer.pgd", lambda *a, **k: pytest.fail("clean fine-tuning attacked"))
    value = trainer.compute_loss(trainer.model, batch)
    head = ZeroShotClassifier(model, tokenizer, train_set.features["label"].names, image_mean=CLIP_MEAN,
                              image_std=trainer.args.image_std, logit_scale=100.0)  # fmt: skip
    with torch.no_grad():
        logits = head(batch["pixel_values"])
    expected = by_hand_batch_clip(logits, batch["labels"]) if loss == "batch_clip" else F.cross_entropy(
        logits, batch["labels"]
    )  # fmt: skip
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    before = model.vision_model.post_layernorm.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.model.vision_model.post_layernorm.weight)
    assert "train_clean_accuracy" in trainer.state.log_history[0]


def test_defaults(tmp_path):
    config = CleanFinetuneConfig(output_dir=str(tmp_path))
    assert config.image_mean == list(CLIP_MEAN) and config.logit_scale.value == 100.0
    # TGA-ZSR's FT-Clean (FT.py at 5f2b31c): lr 1e-4 (:39), batch 128 (:34), the symmetric batch loss (:321-327)
    assert config.learning_rate == 1e-4 and config.per_device_train_batch_size == 128 and config.max_grad_norm == 0
    assert config.loss == "batch_clip" and config.optim == "sgd" and config.weight_decay == 0
    assert config.prompt_template == "This is a photo of a {}"
    with pytest.raises(ValueError, match="loss='infonce': loss must be one of batch_clip, zero_shot_ce"):
        CleanFinetuneConfig(output_dir=str(tmp_path), loss="infonce")


def test_accumulating_the_batch_loss_warns_that_it_changes_the_negatives(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="pmg_aft"):
        CleanFinetuneConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2, per_device_train_batch_size=4)
    assert "not the loss of one batch of 8" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="pmg_aft"):
        CleanFinetuneConfig(output_dir=str(tmp_path), gradient_accumulation_steps=2, loss="zero_shot_ce")
    assert "batch_clip" not in caplog.text


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


def test_the_official_precision_is_the_official_codes():
    # FT-Clean, as run by the PMG-AFT and TGA-ZSR codes, trains under CUDA fp16 autocast.
    assert CleanFinetuneConfig.official_precision == "fp16"
