"""AGFTTrainer: the soft-label loss and its two scales by hand, the attack's objective, the official defaults."""

import copy

import pytest
import torch

from pmg_aft import CLIP_MEAN, CLIP_STD, AGFTConfig, ZeroShotClassifier, pgd
from pmg_aft.errors import InputError
from pmg_aft.losses import agft_loss, soft_cross_entropy

from .utils import perturbed


def test_soft_label_cross_entropy_by_hand():
    logits, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.5, 0.25, 0.25]])
    log_p = logits.log_softmax(-1)[0]
    expected = -(0.5 * log_p[0] + 0.25 * log_p[1] + 0.25 * log_p[2]).item()
    assert soft_cross_entropy(logits, teacher).item() == pytest.approx(expected)
    assert agft_loss(torch.cat([logits, logits]), torch.cat([teacher, teacher])).item() == pytest.approx(expected)
    # With one-hot targets it is the ordinary cross-entropy.
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(-log_p[0].item())


def agft_reference(model, ref, tokenizer, names, batch, student=180.0, ratio=0.4):
    """The AGFT loss of a batch computed from scratch: the teacher at s_t = ratio * s_s, the attack on the same
    soft-label CE at s_s, the student's loss at s_s."""
    kwargs = dict(image_mean=CLIP_MEAN, image_std=CLIP_STD, logit_scale=student)
    head = ZeroShotClassifier(copy.deepcopy(model), tokenizer, names, templates=["This is a photo of a {}."], **kwargs)
    teacher_head = ZeroShotClassifier(ref, tokenizer, names, templates=["This is a photo of a {}."],
                                      **(kwargs | {"logit_scale": ratio * student}))  # fmt: skip
    x = batch["pixel_values"]
    with torch.no_grad():
        teacher = teacher_head(x).softmax(-1)
    adv = pgd(head, x, teacher, eps=2 / 255, step_size=1 / 255, steps=2, random_start=False, loss=soft_cross_entropy)
    with torch.no_grad():
        return agft_loss(head(adv), teacher), adv, teacher


@pytest.mark.parametrize("student,ratio", [(180.0, 0.4), (100.0, 1.0)])  # the README recipe, the code's defaults
def test_a_step_is_the_formula_at_both_scales(student, ratio, model, tokenizer, train_set, batch, make_trainer):
    ref = perturbed(model, scale=0.02)  # a teacher unlike the student, so the loss is not at its minimum
    trainer = make_trainer("agft", model, ref_model=copy.deepcopy(ref), attack_random_start=False,
                           train_eps="2/255", train_logit_scale=student, scale_ratio=ratio)  # fmt: skip
    loss, outputs = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    expected, _, teacher = agft_reference(model, ref, tokenizer, train_set.features["label"].names, batch, student,
                                          ratio)  # fmt: skip
    assert torch.allclose(outputs["teacher"], teacher, atol=1e-6)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_the_attack_maximises_the_soft_label_loss(model, tokenizer, train_set, batch, make_trainer):
    ref = perturbed(model, scale=0.02)
    names = train_set.features["label"].names
    trainer = make_trainer("agft", model, ref_model=copy.deepcopy(ref), attack_random_start=False, train_eps="4/255",
                           train_steps=5)  # fmt: skip
    head = trainer.classifier()
    with torch.no_grad():
        clean = agft_loss(trainer.student_logits(head, head.encode_images(batch["pixel_values"])),
                          agft_reference(model, ref, tokenizer, names, batch)[2])  # fmt: skip
    loss = trainer.compute_loss(trainer.model, batch)
    assert loss.item() > clean.item()  # the adversarial images raise the very loss that is then minimised


def test_a_few_steps_train_only_the_vision_tower_and_leave_the_teacher(model, make_trainer):
    ref = perturbed(model, scale=0.02)
    trainer = make_trainer("agft", model, ref_model=ref, max_steps=3)
    before = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    text = model.text_model.embeddings.token_embedding.weight.detach().clone()
    trainer.train()
    assert all(torch.equal(before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert torch.equal(text, trainer.model.text_model.embeddings.token_embedding.weight)
    assert "soft_ce" in trainer.state.log_history[0]


def test_defaults_are_the_official_recipe(tmp_path):
    """YuboCui/AGFT at 0031a8f: the README command (README.md:39: logit_scale 180, scale_ratio 0.4, --lr=4e-4, 2
    processes), main.py:71-73 (PGD 1/255, step 1/255, 2 steps), :37 (batch 128 per process), :100 (PGD-20
    validation), :103 (10 epochs), :110-115 (SGD, momentum 0.9, no weight decay, 1000 warm-up steps), clip_dataset.py
    :337 (the prompt), utils.py:10-11 (Resize(224) + CenterCrop(224)), clip_model.py:19-21 (CLIP's normalisation)."""
    config = AGFTConfig(output_dir=str(tmp_path))
    assert config.train_logit_scale == 180.0 and config.scale_ratio == 0.4
    assert config.teacher_logit_scale == pytest.approx(72.0)
    assert config.logit_scale.value == 100.0  # evaluation at the model's own scale
    assert config.train_eps == pytest.approx(1 / 255) and config.train_step_size == pytest.approx(1 / 255)
    assert config.train_steps == 2 and config.attack_random_start
    assert config.learning_rate == 4e-4 and config.optim == "sgd" and config.optim_args == "momentum=0.9"
    assert config.weight_decay == 0 and config.warmup_steps == 1000 and not config.warmup_from_first_step
    assert config.per_device_train_batch_size == 128 and config.num_train_epochs == 10
    assert config.prompt_template == "This is a photo of a {}." and config.crop_pct == 1.0
    assert config.interpolation == "bilinear" and config.image_mean == list(CLIP_MEAN)
    assert config.eval_attack_grid().steps == (20,) and config.max_grad_norm == 0
    with pytest.raises(InputError, match="scale_ratio"):
        AGFTConfig(output_dir=str(tmp_path), scale_ratio=0)


def test_the_official_precision_is_the_official_codes():
    # AGFT trains with --enable_amp (CUDA fp16 autocast with a GradScaler).
    assert AGFTConfig.official_precision == "fp16"
