"""LoRA on the vision tower (`use_peft`), with the `peft` library: adapters injected into the `CLIPModel` itself, the
frozen reference being the same model with its adapters switched off, and checkpoints saved both as a plain merged
`CLIPModel` and as a PEFT adapter folder.

The adapters are injected with `peft.inject_adapter_in_model`, so the trained model stays a `CLIPModel` (every head,
attack and engine path is the full fine-tuning one) rather than a `PeftModel` wrapper.
"""

from __future__ import annotations

import copy
import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import InputError

ADAPTER_DIR = "adapter"  # the PEFT adapter, beside the merged model
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_NAME = "default"
PEFT_PREFIX = "base_model.model."  # how PeftModel names its weights, so PeftModel.from_pretrained reads ours


def _peft():
    try:
        import peft
    except ImportError as error:
        raise InputError(
            "use_peft needs the peft library: pip install 'pmg_aft[peft]' (or pip install peft)."
        ) from error
    return peft


def target_pattern(modules: list[str]) -> str:
    """The regular expression of the vision tower's encoder-layer modules named `modules` (`q_proj`, `fc1`, ...): the
    text tower, the embeddings and the projection get no adapter."""
    names = "|".join(sorted(set(modules)))
    return rf"vision_model\.encoder\.layers\.\d+\.(self_attn|mlp)\.({names})"


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, modules: list[str]):
    """Inject LoRA adapters into the vision tower's `modules` in place; only the adapters are trainable after it.

    Returns:
        the `peft.LoraConfig` used (saved with the adapter).
    """
    peft = _peft()
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_pattern(modules),
                             bias="none")  # fmt: skip
    try:
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except ValueError as error:  # no module matched
        raise InputError(f"lora_target_modules={modules}: {error}") from error
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    return config


def _tuner_layers(model: nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


class WithoutAdapters(nn.Module):
    """Runs `module` (a part of `model`) with every LoRA adapter of `model` switched off: the frozen base model, so
    the reference of a LoRA run needs no second copy of the weights."""

    def __init__(self, module: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._layers = [layer for _, layer in _tuner_layers(model)]  # a plain list: not submodules of this wrapper

    def forward(self, *args, **kwargs):
        for layer in self._layers:
            layer.enable_adapters(False)
        try:
            return self.module(*args, **kwargs)
        finally:
            for layer in self._layers:
                layer.enable_adapters(True)


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with its adapters folded into the weights and removed: a plain `CLIPModel`."""
    merged = copy.deepcopy(model)
    for name, layer in _tuner_layers(merged):
        layer.merge(safe_merge=True)
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, layer.get_base_layer())
    return merged


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights, named as `PeftModel.save_pretrained` names them."""
    tag = f".{ADAPTER_NAME}."
    return {f"{PEFT_PREFIX}{name.replace(tag, '.')}": p.detach().cpu().contiguous()
            for name, p in model.named_parameters() if ".lora_" in name}  # fmt: skip


def save_adapter(model: nn.Module, config, output_dir: str, base_model: str | None) -> str:
    """Write the adapter as a PEFT folder (`adapter_model.safetensors` + `adapter_config.json`) in
    `output_dir/adapter`, loadable with `PeftModel.from_pretrained(CLIPModel.from_pretrained(base), folder)`."""
    folder = os.path.join(output_dir, ADAPTER_DIR)
    os.makedirs(folder, exist_ok=True)
    save_file(adapter_state(model), os.path.join(folder, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    values = config.to_dict()
    values.update(base_model_name_or_path=base_model, task_type=None, peft_type="LORA")
    with open(os.path.join(folder, ADAPTER_CONFIG), "w", encoding="utf-8") as f:
        json.dump({k: sorted(v) if isinstance(v, set) else v for k, v in values.items()}, f, indent=1, default=str)
    return folder


def load_adapter_weights(model: nn.Module, checkpoint: str) -> None:
    """Load the adapter weights of a checkpoint (its `adapter/` folder) into `model`'s adapters, exactly."""
    path = os.path.join(checkpoint, ADAPTER_DIR, ADAPTER_WEIGHTS)
    if not os.path.isfile(path):
        raise InputError(f"{checkpoint} has no {ADAPTER_DIR}/{ADAPTER_WEIGHTS}: it was not saved by a use_peft run.")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in load_file(path).items():
            name = key.removeprefix(PEFT_PREFIX).replace(".lora_A.", f".lora_A.{ADAPTER_NAME}.")
            name = name.replace(".lora_B.", f".lora_B.{ADAPTER_NAME}.")
            if name not in params:
                raise InputError(f"{path}: {key} matches no adapter of this model (other lora settings?).")
            params[name].copy_(value)
