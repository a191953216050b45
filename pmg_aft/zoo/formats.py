"""One reader per published checkpoint layout, each reading with `weights_only=True` (or safetensors) and each strict
about its own layout, so that a file of another layout is refused with what was found in it.

Every reader returns a [`Source`]: the weights in the OpenAI / open_clip layout (`visual.*` for the image tower,
plus the text tower's keys when the file holds the whole CLIP), and the open_clip config when the release has one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass

import torch

from ..errors import InputError, MissingInputError

# Keys under which training scripts save an OpenAI-layout state dict (`pmg-aft convert` unwraps them).
WRAPPERS = ("vision_encoder_state_dict", "state_dict", "model", "model_state_dict")
# Files of an open_clip Hub folder (open_clip's HF_CONFIG_NAME, HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME).
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class Source:
    """What a checkpoint file holds, in the OpenAI layout.

    Args:
        state (`dict`): `visual.*` tensors, and the text tower's when `full`.
        full (`bool`): the file holds the whole CLIP (then no base model is needed).
        model_cfg (`dict`, *optional*): open_clip's `model_cfg`, for a release that ships one.
        preprocess_cfg (`dict`, *optional*): open_clip's `preprocess_cfg` (`mean`, `std`, ...).
    """

    state: dict[str, torch.Tensor]
    full: bool = False
    model_cfg: dict | None = None
    preprocess_cfg: dict | None = None


def read_torch_file(path: str):
    """A `torch.save` file read with `weights_only=True`; `argparse.Namespace` (training arguments saved beside the
    weights) is allowed, as it holds plain values. Anything else that needs code to unpickle is refused."""
    if not os.path.isfile(path):
        raise MissingInputError(
            f"{path}: no such checkpoint file; download it first (pmg-aft zoo list says from where)."
        )
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors have many types; each is a file we will not execute or cannot read
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise InputError(
            f"{path}: cannot be read safely as a weights file ({first}). Files are read with weights_only=True, never "
            "by running their code: re-save the state dict alone (torch.save(model.state_dict(), ...)) or as "
            "safetensors."
        ) from error


def _found(obj) -> str:
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))[:8]}{' ...' if len(obj) > 8 else ''}"
    return f"a {type(obj).__name__}"


def _tensors(obj, path: str, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: expected a state dict of tensors at {where}; found {_found(obj)}.")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}


def _visual(state: dict[str, torch.Tensor], path: str, layout: str) -> Source:
    """An image-tower state dict (keys `conv1.weight`, ... or `visual.conv1.weight`, ...) as a vision-only Source."""
    if "conv1.weight" in state:
        state = {f"visual.{k}": v for k, v in state.items()}
    if "visual.conv1.weight" not in state:
        raise InputError(
            f"{path}: not an OpenAI-layout ViT image tower ({layout}): no conv1.weight among {sorted(state)[:6]}."
        )
    others = sorted(k for k in state if not k.startswith("visual."))
    if others:  # a text tower would be dropped for the base's: refused, not substituted
        raise InputError(
            f"{path}: besides the image tower it holds {len(others)} other tensor(s) ({others[:4]}), which the "
            f"{layout} format does not read; a whole CLIP is the open_clip format."
        )
    return Source(state)


def read_openai_visual(path: str) -> Source:
    """A bare `model.visual.state_dict()` (FARE / TeCoA training output of RobustVLM, Sim-CLIP)."""
    return _visual(_tensors(read_torch_file(path), path, "the top level"), path, "openai_visual")


def read_vision_encoder_state_dict(path: str) -> Source:
    """`{"vision_encoder_state_dict": ..., "epoch", "optimizer", ...}` (TGA-ZSR, Comp-TGA, SAFT, the test-time
    counterattacks release of TeCoA / FARE / PMG-AFT)."""
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or "vision_encoder_state_dict" not in obj:
        raise InputError(f"{path}: expected a dict with 'vision_encoder_state_dict'; found {_found(obj)}.")
    state = _tensors(obj["vision_encoder_state_dict"], path, "'vision_encoder_state_dict'")
    return _visual(state, path, "vision_encoder_state_dict")


def read_partial_state_dict(path: str) -> Source:
    """`{"partial_state_dict": {visual.*: ...}}` (AdvFLYP), or its older `vision_encoder_state_dict` files."""
    obj = read_torch_file(path)
    if isinstance(obj, dict) and "partial_state_dict" not in obj and "vision_encoder_state_dict" in obj:
        return read_vision_encoder_state_dict(path)
    if not isinstance(obj, dict) or "partial_state_dict" not in obj:
        raise InputError(f"{path}: expected a dict with 'partial_state_dict'; found {_found(obj)}.")
    return _visual(_tensors(obj["partial_state_dict"], path, "'partial_state_dict'"), path, "partial_state_dict")


def read_agft_modules(path: str) -> Source:
    """`{"modules": {"clip.visual": ...}, "params": {...}}` (AGFT)."""
    obj = read_torch_file(path)
    modules = obj.get("modules") if isinstance(obj, dict) else None
    if not isinstance(modules, dict) or "clip.visual" not in modules:
        found = _found(modules) if isinstance(obj, dict) and "modules" in obj else _found(obj)
        raise InputError(f"{path}: expected {{'modules': {{'clip.visual': ...}}}}; found {found}.")
    return _visual(_tensors(modules["clip.visual"], path, "modules['clip.visual']"), path, "agft_modules")


def read_open_clip(path: str) -> Source:
    """An open_clip Hub folder (`open_clip_config.json` + `open_clip_model.safetensors` or
    `open_clip_pytorch_model.bin`), or its weights file with the config beside it: the whole CLIP."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(folder, OPEN_CLIP_CONFIG)
    if not os.path.isfile(config_path):
        raise MissingInputError(
            f"{path}: an open_clip release needs {OPEN_CLIP_CONFIG} beside its weights; none in {folder}."
        )
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if "model_cfg" not in config:
        raise InputError(f"{config_path}: no 'model_cfg' (keys: {sorted(config)}); not an open_clip Hub config.")
    weights = path
    if os.path.isdir(path):
        weights = next((os.path.join(path, n) for n in OPEN_CLIP_WEIGHTS if os.path.isfile(os.path.join(path, n))), "")
        if not weights:
            raise MissingInputError(f"{path}: none of {list(OPEN_CLIP_WEIGHTS)} in the folder.")
    obj = read_torch_file(weights)
    obj = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    state = _tensors(obj, weights, "the top level")
    if "visual.conv1.weight" not in state or "token_embedding.weight" not in state:
        raise InputError(
            f"{weights}: not a whole open_clip ViT CLIP (needs visual.conv1.weight and token_embedding.weight; found "
            f"{sorted(state)[:6]}). A timm or custom-text open_clip model does not convert to a CLIPModel."
        )
    return Source(state, full=True, model_cfg=config["model_cfg"], preprocess_cfg=config.get("preprocess_cfg"))


def read_openai_state_dict(path: str) -> Source:
    """An OpenAI-layout state dict of a ViT CLIP or of its image tower, bare or under `state_dict`, `model`,
    `model_state_dict` or `vision_encoder_state_dict`: merged onto a base CLIP of the same
    architecture, its text tower too where the file holds one."""
    obj = read_torch_file(path)
    while isinstance(obj, dict) and obj and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WRAPPERS if k in obj), None)
        if key is None:
            raise InputError(f"{path}: no tensors found; top-level keys are {sorted(map(str, obj))[:10]}.")
        obj = obj[key]
    state = _tensors(obj, path, "the top level")
    if "conv1.weight" in state:
        state = {f"visual.{k}": v for k, v in state.items()}
    if "visual.conv1.weight" not in state:
        raise InputError(f"{path}: not an OpenAI-layout ViT CLIP: no visual.conv1.weight among {sorted(state)[:6]}.")
    return Source(state)


READERS = {
    "open_clip": read_open_clip,
    "openai_visual": read_openai_visual,
    "vision_encoder_state_dict": read_vision_encoder_state_dict,
    "partial_state_dict": read_partial_state_dict,
    "agft_modules": read_agft_modules,
    "openai_state_dict": read_openai_state_dict,
}
# `hf_clip` releases (LEAF) are CLIPModel folders already: they load with `load_clip`, not through a reader.
FORMATS = (*READERS, "hf_clip")


def read_checkpoint(path: str, layout: str) -> Source:
    """Read `path` with the reader of `layout` (one of `READERS`)."""
    if layout not in READERS:
        raise InputError(f"Unknown checkpoint format {layout!r}; the formats are {list(READERS)} (and hf_clip).")
    return READERS[layout](path)
