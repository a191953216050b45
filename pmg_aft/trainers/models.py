"""The models of a run: the target with only its image tower trainable, and the frozen reference."""

from __future__ import annotations

import copy
import warnings

from torch import nn
from transformers import CLIPModel

from ..constants import TRAINABLE_PREFIXES
from ..zeroshot import check_clip_model
from .base_config import RobustCLIPConfig


def copy_without_text_tower(model: CLIPModel) -> CLIPModel:
    """A frozen copy of `model` for the reference, without its text tower: the copy's class embeddings are the
    target's (the text tower is frozen), so a second text tower would only hold memory (ViT-B/32: 63M parameters)."""
    text_model = model.text_model
    model.text_model = nn.Identity()
    try:
        return copy.deepcopy(model)
    finally:
        model.text_model = text_model


def freeze_all_but_vision(model: nn.Module) -> list[str]:
    """Make only `vision_model` and `visual_projection` trainable; return the names of the trainable parameters."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(TRAINABLE_PREFIXES))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def reference_model(model: CLIPModel, args: RobustCLIPConfig, ref_model: CLIPModel | None, method: str):
    """The frozen reference, if the method uses one with these arguments: `ref_model`, else a copy of `model` taken
    now (which shares the target's class embeddings); and whether it is that copy."""
    if not args.uses_reference:
        if ref_model is not None:
            warnings.warn(f"{method} uses no reference model: ref_model is ignored.", stacklevel=3)
        return None, False
    if ref_model is None:
        return copy_without_text_tower(model).requires_grad_(False).eval(), True
    check_clip_model(ref_model)
    return ref_model.requires_grad_(False).eval(), False
