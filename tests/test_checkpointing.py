"""Gradient (activation) checkpointing of the vision tower: the same losses and updates, the attack included."""

import copy

import pytest
import torch
from transformers.models.clip.modeling_clip import CLIPMLP

from .utils import snapshot


def _run(method, model, make_trainer, checkpointing: bool, monkeypatch=None, **overrides):
    """Train 2 steps; return the weights, the loss and how often the target's first vision MLP ran."""
    calls = []
    if monkeypatch is not None:  # module hooks do not fire in a recomputation: count the forward itself
        watched, forward = model.vision_model.encoder.layers[0].mlp, CLIPMLP.forward

        def counted(self, *args, **kwargs):
            calls.extend([1] if self is watched else [])
            return forward(self, *args, **kwargs)

        monkeypatch.setattr(CLIPMLP, "forward", counted)
    trainer = make_trainer(method, model, max_steps=2, learning_rate=0.5, activation_checkpointing=checkpointing,
                           **overrides)  # fmt: skip
    result = trainer.train()
    if monkeypatch is not None:
        monkeypatch.undo()
    return snapshot(trainer.model), result.training_loss, len(calls)


@pytest.mark.parametrize("method", ["pmg_aft", "tga_zsr", "fare"])
def test_checkpointing_gives_the_same_loss_and_update(method, pretrained, make_trainer, monkeypatch):
    plain, plain_loss, plain_calls = _run(method, copy.deepcopy(pretrained), make_trainer, False, monkeypatch)
    checked, checked_loss, checked_calls = _run(method, copy.deepcopy(pretrained), make_trainer, True, monkeypatch)
    assert checked_calls > plain_calls  # the layers really were recomputed in the backward
    assert checked_loss == pytest.approx(plain_loss, rel=1e-6)
    start = snapshot(pretrained)
    assert any(not torch.equal(plain[n], start[n]) for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], checked[name], atol=1e-6), name


def test_checkpointing_with_lora(pretrained, make_trainer):
    plain, plain_loss, _ = _run("pmg_aft", copy.deepcopy(pretrained), make_trainer, False, use_peft=True, lora_r=4)
    checked, checked_loss, calls = _run("pmg_aft", copy.deepcopy(pretrained), make_trainer, True, use_peft=True,
                                        lora_r=4)  # fmt: skip
    assert checked_loss == pytest.approx(plain_loss, rel=1e-6)
    assert all(torch.allclose(plain[n], checked[n], atol=1e-6) for n in plain)
