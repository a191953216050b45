"""The baselines in the same trainer: TeCoA, FARE and clean fine-tuning beside PMG-AFT."""

import copy

import pytest
import torch
from datasets import Dataset

from pmg_aft import ImageEncoder, PMGAFTConfig, PMGAFTTrainer, ZeroShotClassifier, fare_loss, pgd
from pmg_aft.losses import squared_distance

from .test_trainer import snapshot


def test_fare_loss_by_hand():
    adv = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    ref = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert squared_distance(adv, ref).tolist() == [5.0, 5.0]
    assert fare_loss(adv, ref).item() == pytest.approx((5.0 + 5.0) / 2)


@pytest.mark.parametrize("method", ["pmg_aft", "tecoa", "fare", "clean"])
def test_a_step_of_each_method_trains_the_vision_tower_only(method, model, tokenizer, train_set, make_config):
    trainer = PMGAFTTrainer(model, make_config(method=method), train_dataset=train_set, processing_class=tokenizer)
    before = snapshot(model)
    trainer.train()
    after = snapshot(trainer.model)
    vision = [n for n in before if n.startswith(("vision_model.", "visual_projection."))]
    moved = [n for n in vision if not torch.equal(before[n], after[n])]
    assert len(moved) >= len(vision) - 2  # key biases have a zero gradient (softmax shift invariance)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in vision)
    assert (trainer.ref_model is not None) == (method in ("pmg_aft", "fare"))


def test_fare_uses_no_labels_and_no_text(model, tokenizer, train_set, make_config, monkeypatch):
    images_only = Dataset.from_dict({"image": train_set["image"][:8]})  # no label column at all
    config = make_config(method="fare", train_eps="4/255", train_step_size="1/255", train_steps=3)
    trainer = PMGAFTTrainer(model, config, train_dataset=images_only, processing_class=tokenizer)
    assert trainer.class_names is None
    monkeypatch.setattr("pmg_aft.trainer.build_class_embeddings", lambda *a, **k: pytest.fail("text was used"))
    batch = trainer.data_collator([images_only[i] for i in range(8)])
    assert "labels" not in batch
    torch.manual_seed(7)
    loss = trainer.compute_loss(trainer.model, batch)
    # By hand, from the same random start: the attack maximises the distance to the frozen clean embedding.
    target, ref = ImageEncoder(copy.deepcopy(model)), ImageEncoder(trainer.ref_model)
    x = batch["pixel_values"]
    with torch.no_grad():
        anchor = ref.encode_images(x, normalize=False)
    torch.manual_seed(7)
    adv = pgd(target, x, anchor, 4 / 255, 1 / 255, 3, random_start=True, loss=squared_distance)
    with torch.no_grad():
        expected = fare_loss(target.encode_images(adv, normalize=False), anchor)
        no_attack = fare_loss(target.encode_images(x, normalize=False), anchor)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert expected > no_attack  # the attack raised the distance (0 at the start: target == reference)
    trainer.train()
    assert "fare_distance" in trainer.state.log_history[0]


def test_clean_fine_tuning_runs_no_attack(model, tokenizer, train_set, batch, make_config, monkeypatch):
    trainer = PMGAFTTrainer(model, make_config(method="clean"), train_dataset=train_set, processing_class=tokenizer)
    monkeypatch.setattr("pmg_aft.trainer.pgd", lambda *a, **k: pytest.fail("clean fine-tuning attacked"))
    loss = trainer.compute_loss(trainer.model, batch)
    head = ZeroShotClassifier(model, tokenizer, train_set.features["label"].names)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(head(batch["pixel_values"]), batch["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_method_presets(tmp_path):
    config = PMGAFTConfig(output_dir=str(tmp_path), method="tecoa")
    assert (config.alpha, config.beta) == (0.0, 0.0)
    with pytest.raises(ValueError, match="method"):
        PMGAFTConfig(output_dir=str(tmp_path), method="trades")
    with pytest.raises(ValueError, match="random start"):  # its objective has a zero gradient at the image
        PMGAFTConfig(output_dir=str(tmp_path), method="fare", attack_random_start=False)
