"""The target and the frozen reference under accelerate's engines: DDP, FSDP2 and DeepSpeed ZeRO.

Our methods call the vision tower, its projection and the text tower directly (the attack and the zero-shot heads
never run `CLIPModel.forward`), so under FSDP2 each of them is its own sharding unit: every vision encoder layer (the
wrap unit), the rest of the vision tower, and the projection. The text tower is frozen and used only for the class
embeddings: it stays whole on every rank and is never sharded. accelerate's own FSDP2 wrapping assumes a language
model (it looks for input embeddings, which `CLIPModel` does not have), so the trainer shards the model itself and
accelerate takes it as already prepared.
"""

from __future__ import annotations

import copy
import logging

from accelerate.utils import DistributedType
from torch import nn

from ..errors import InputError

logger = logging.getLogger(__name__)

VISION_PREFIXES = ("vision_model.", "visual_projection.")


def shard_clip(model: nn.Module, reshard_after_forward: bool = True, mp_policy=None, mesh=None) -> nn.Module:
    """Apply FSDP2's `fully_shard` to a `CLIPModel` in place: each vision encoder layer, then the vision tower (its
    embeddings and layer norms, kept gathered after the forward: TGA-ZSR projects the tokens through its final layer
    norm after the tower has run), then `visual_projection`, then the model itself with every other parameter (the
    frozen text tower, `logit_scale`) ignored, so those stay whole on each rank.

    Args:
        model (`CLIPModel`): the model (the target, or the reference copy without a text tower).
        reshard_after_forward (`bool`): free each layer's gathered weights after its forward (ZeRO-3-like), else keep
            them until the backward (ZeRO-2-like).
        mp_policy (`MixedPrecisionPolicy`, *optional*): FSDP2's mixed precision; default float32 throughout.
        mesh (`DeviceMesh`, *optional*): the data-parallel mesh; default every process.
    """
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if isinstance(model, FSDPModule):
        return model
    kwargs = {"mp_policy": mp_policy or MixedPrecisionPolicy(), "mesh": mesh}
    vision = model.vision_model
    for layer in vision.encoder.layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(vision, reshard_after_forward=False, **kwargs)
    fully_shard(model.visual_projection, reshard_after_forward=reshard_after_forward, **kwargs)
    ignored = {p for name, p in model.named_parameters() if not name.startswith(VISION_PREFIXES)}
    fully_shard(model, ignored_params=ignored, **kwargs)
    return model


def fsdp_kwargs(accelerator) -> dict:
    """`shard_clip` keyword arguments from accelerate's FSDP plugin (its resharding and mixed precision)."""
    plugin = accelerator.state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise InputError(
            "FSDP version 1 is not supported: set `fsdp_version: 2` in the accelerate config "
            "(examples/accelerate/fsdp.yaml)."
        )
    reshard = plugin.reshard_after_forward
    return {"reshard_after_forward": reshard if isinstance(reshard, bool) else True,
            "mp_policy": plugin.mixed_precision_policy}  # fmt: skip


def deepspeed_stage(accelerator) -> int | None:
    """The ZeRO stage of accelerate's DeepSpeed plugin (`None` without DeepSpeed)."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def reference_deepspeed_config(config: dict, micro_batch: int, mixed_precision: str = "no") -> dict:
    """The DeepSpeed config of the frozen reference, from the training one: ZeRO-3 shards it as it shards the
    target (an inference engine: no optimizer, no scheduler, parameters gathered layer by layer); ZeRO-1 and 2 shard
    only optimizer state and gradients, which the reference has none of, so it gets stage 0 (a plain replica).

    Args:
        config (`dict`): the training DeepSpeed config (accelerate's `deepspeed_plugin.deepspeed_config`).
        micro_batch (`int`): the per-device batch (DeepSpeed checks its batch arithmetic even for inference).
        mixed_precision (`str`): accelerate's `no`, `fp16` or `bf16`: the reference's weights are held in that type.
    """
    ref = _without_auto(copy.deepcopy(config))  # "auto" is resolved for the trained engine only, at prepare time
    for key in ("optimizer", "scheduler", "gradient_clipping"):
        ref.pop(key, None)
    stage = int(ref.get("zero_optimization", {}).get("stage", 0))
    if stage == 3:
        zero = ref["zero_optimization"]
        for key in ("offload_optimizer", "stage3_gather_16bit_weights_on_model_save"):
            zero.pop(key, None)
    else:
        ref["zero_optimization"] = {"stage": 0}
    ref["train_micro_batch_size_per_gpu"] = micro_batch
    ref["gradient_accumulation_steps"] = 1
    for key in ("bf16", "fp16"):
        ref[key] = {"enabled": mixed_precision == key}
    return ref


def _without_auto(values):
    """A config without its "auto" entries (DeepSpeed's own defaults apply to them)."""
    if isinstance(values, dict):
        return {k: _without_auto(v) for k, v in values.items() if v != "auto"}
    return values


def place_reference(accelerator, ref_model: nn.Module, micro_batch: int) -> tuple[nn.Module, str]:
    """Put the frozen reference where the engine needs it, with no gradients and outside the trained model (so never
    saved); return it and how it is held.

    - FSDP2: sharded like the target ([`shard_clip`]), so no rank holds a full extra copy.
    - DeepSpeed ZeRO-3: its own inference engine at stage 3 ([`reference_deepspeed_config`]): sharded.
    - DeepSpeed ZeRO-1/2, DDP, one process: a replica on each device (`prepare_model(evaluation_mode=True)`:
      placed and cast, never wrapped in DDP).
    """
    placed, how = _place(accelerator, ref_model.requires_grad_(False).eval(), micro_batch)
    logger.info("The frozen reference model is %s.", how)
    return placed, how


def _place(accelerator, ref_model: nn.Module, micro_batch: int) -> tuple[nn.Module, str]:
    if accelerator.distributed_type == DistributedType.FSDP:
        ref_model.to(accelerator.device)
        return shard_clip(ref_model, **fsdp_kwargs(accelerator)), "sharded (FSDP2)"
    stage = deepspeed_stage(accelerator)
    if stage == 3:
        import deepspeed

        config = reference_deepspeed_config(accelerator.state.deepspeed_plugin.deepspeed_config, micro_batch,
                                            accelerator.mixed_precision)  # fmt: skip
        engine, *_ = deepspeed.initialize(model=ref_model, config=config)
        engine.eval()
        return engine.module, "sharded (DeepSpeed ZeRO-3)"
    placed = accelerator.prepare_model(ref_model, evaluation_mode=True)
    if stage is not None:
        placed.to(accelerator.device)  # DeepSpeed leaves placement to its engine; a replica is placed here
    return placed, "replicated"


def sharding_problem(accelerator, args) -> str | None:
    """Why these arguments cannot run under the current engine, or `None`."""
    if accelerator.distributed_type == DistributedType.FSDP and getattr(args, "use_peft", False):
        return (
            "use_peft under FSDP is not supported: the LoRA adapters hold ~1% of the weights and the frozen base "
            "needs no optimizer state, so train LoRA with DDP (examples/accelerate/multi_gpu.yaml) instead."
        )
    return None
