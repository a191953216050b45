"""CompTGATrainer: the complementary attention map and the Comp-TGA loss by hand, the official defaults."""

import copy

import pytest
import torch

from pmg_aft import CLIP_MEAN, CLIP_STD, CompTGAConfig, ZeroShotClassifier, pgd
from pmg_aft.errors import InputError
from pmg_aft.losses import complementary_attention, text_guided_attention, tga_zsr_loss

from .utils import perturbed


def test_complementary_attention_by_hand():
    tokens = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])  # cls + 4 patches
    positive, negative = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    column = [v / 87**0.5 for v in (1.0, 0.0, 1.0, 2.0)]  # the token axis normalised: norms sqrt(87), sqrt(83)
    other = [v / 83**0.5 for v in (0.0, 1.0, 1.0, 0.0)]

    def scaled(values):
        low, high = min(values), max(values)
        return [(v - low) / (high - low) for v in values]

    expected = torch.tensor([p * (1 - n) for p, n in zip(scaled(column), scaled(other))])
    assert torch.allclose(complementary_attention(tokens, positive, negative, size=2), expected[None], atol=1e-6)
    assert torch.allclose(expected, torch.tensor([0.5, 0.0, 0.0, 1.0]))  # a patch the negation claims is dropped


def test_a_step_is_the_formula(model, tokenizer, train_set, batch, make_trainer):
    ref = perturbed(model, scale=0.02)  # a reference that differs, so both attention terms are non-zero
    trainer = make_trainer("comp_tga", model, ref_model=ref, attack_random_start=False, train_eps="2/255")
    loss = trainer.compute_loss(trainer.model, batch)
    names = train_set.features["label"].names
    kwargs = dict(image_mean=CLIP_MEAN, image_std=CLIP_STD, logit_scale=100.0)
    head = ZeroShotClassifier(copy.deepcopy(model), tokenizer, names, **kwargs)
    negation = ZeroShotClassifier(copy.deepcopy(model), tokenizer, names, templates=["This is not a photo of a {}"],
                                  **kwargs)  # fmt: skip
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(head, x, y, eps=2 / 255, step_size=1 / 255, steps=2, random_start=False)  # TGA-ZSR's attack: CE

    def attention(clip, images):
        hidden = clip.vision_model(pixel_values=head.preprocess(images)).last_hidden_state
        tokens = clip.visual_projection(clip.vision_model.post_layernorm(hidden))
        positive = text_guided_attention(tokens, head.class_embeddings[y], 32)
        return positive * (1 - text_guided_attention(tokens, negation.class_embeddings[y], 32))

    with torch.no_grad():
        expected = tga_zsr_loss(head(adv), y, attention(head.model, adv), attention(head.model, x), attention(ref, x),
                                alpha=0.10, beta=0.07)  # fmt: skip
    assert expected.refinement > 0 and expected.constraint > 0
    assert loss.item() == pytest.approx(expected.loss.item(), rel=1e-4)
    trainer.train()
    assert {"attention_refinement", "attention_constraint", "ce"} <= set(trainer.state.log_history[0])


def test_defaults_are_the_official_recipe(tmp_path):
    """Comp-TGA.py at 663fe57: --Alpha 0.10 and --Beta 0.07 (:102-103), the negated prompt (:235), --train_eps 1,
    --train_numsteps 2, --train_stepsize 1 (:52-54), lr 1e-4, no weight decay, 1000 warm-up steps (:46-48), batch
    128 (:39), PGD-100 validation (:56), the class prompt 'This is a photo of a {}' (:208)."""
    config = CompTGAConfig(output_dir=str(tmp_path))
    assert (config.alpha, config.beta) == (0.10, 0.07)
    assert config.negation_template == "This is not a photo of a {}"
    assert config.prompt_template == "This is a photo of a {}"
    assert config.train_eps == pytest.approx(1 / 255) and config.train_step_size == pytest.approx(1 / 255)
    assert config.train_steps == 2 and config.attack_random_start
    assert config.learning_rate == 1e-4 and config.weight_decay == 0 and config.warmup_steps == 1000
    assert config.per_device_train_batch_size == 128 and config.optim == "sgd" and config.optim_args == "momentum=0.9"
    assert config.image_mean == list(CLIP_MEAN) and config.logit_scale.value == 100.0
    assert config.eval_attack_grid().steps == (100,)
    with pytest.raises(InputError, match="negation_template"):
        CompTGAConfig(output_dir=str(tmp_path), negation_template="This is a photo of a {}")


def test_the_official_precision_is_the_official_codes():
    # Comp-TGA's code trains under CUDA fp16 autocast with a GradScaler, as TGA-ZSR's.
    assert CompTGAConfig.official_precision == "fp16"
