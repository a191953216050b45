"""The baselines in the same trainer: TeCoA, FARE and clean fine-tuning beside PMG-AFT."""

import copy

import pytest
import torch
from datasets import Dataset

from pmg_aft import ImageEncoder, PMGAFTConfig, PMGAFTTrainer, ZeroShotClassifier, fare_loss, pgd
from pmg_aft.losses import squared_distance, text_guided_attention, tga_zsr_loss

from .test_trainer import snapshot


def test_fare_loss_by_hand():
    adv = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    ref = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert squared_distance(adv, ref).tolist() == [5.0, 5.0]
    assert fare_loss(adv, ref).item() == pytest.approx((5.0 + 5.0) / 2)


@pytest.mark.parametrize("method", ["pmg_aft", "tecoa", "fare", "clean", "tga_zsr"])
def test_a_step_of_each_method_trains_the_vision_tower_only(method, model, tokenizer, train_set, make_config):
    trainer = PMGAFTTrainer(model, make_config(method=method), train_dataset=train_set, processing_class=tokenizer)
    before = snapshot(model)
    trainer.train()
    after = snapshot(trainer.model)
    vision = [n for n in before if n.startswith(("vision_model.", "visual_projection."))]
    moved = [n for n in vision if not torch.equal(before[n], after[n])]
    assert len(moved) >= len(vision) - 2  # key biases have a zero gradient (softmax shift invariance)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in vision)
    assert (trainer.ref_model is not None) == (method in ("pmg_aft", "fare", "tga_zsr"))


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


def test_tga_zsr_step_is_the_formula(model, tokenizer, train_set, batch, make_config):
    config = make_config(method="tga_zsr", attack_random_start=False, train_eps="2/255", train_step_size="1/255")
    ref = copy.deepcopy(model)
    with torch.no_grad():  # a reference that differs, so both attention terms are non-zero
        for p in ref.vision_model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    trainer = PMGAFTTrainer(model, config, train_dataset=train_set, processing_class=tokenizer, ref_model=ref)
    loss = trainer.compute_loss(trainer.model, batch)
    head = ZeroShotClassifier(copy.deepcopy(model), tokenizer, train_set.features["label"].names)
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(head, x, y, 2 / 255, 1 / 255, 2, random_start=False)

    def attention(clip, images):
        hidden = clip.vision_model(pixel_values=head.preprocess(images)).last_hidden_state
        tokens = clip.visual_projection(clip.vision_model.post_layernorm(hidden))
        return text_guided_attention(tokens, head.class_embeddings[y], 32)

    with torch.no_grad():
        expected = tga_zsr_loss(head(adv), y, attention(head.model, adv), attention(head.model, x), attention(ref, x))
    assert expected.refinement > 0 and expected.constraint > 0
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)
