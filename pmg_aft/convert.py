"""Convert OpenAI-CLIP-style state dicts (as TeCoA, PMG-AFT and FARE release their ViT checkpoints) to `CLIPModel`.

The OpenAI layout (`visual.conv1.weight`, `visual.transformer.resblocks.N.attn.in_proj_weight`, ...) is also the one
of open_clip's non-timm ViT models, so their state dicts convert the same way.
"""

from __future__ import annotations

import re

import torch
from transformers import CLIPModel

from .errors import InputError
from .zeroshot import check_clip_model

# Tensors with a one-to-one counterpart outside the layers.
SIMPLE = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenAI keeps the projections as (in, out) matrices, transformers as Linear weights (out, in).
PROJECTIONS = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
# Entries of OpenAI / open_clip state dicts that hold no weights (OpenAI's files carry the first three as numbers;
# open_clip keeps the text attention mask as a buffer).
NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "visual.attn_mask")
# Parts of architectures a CLIPModel does not have: their weights would be dropped, so they are refused.
NOT_MODELLED = {
    r"\.ls_[12]\.gamma$": "LayerScale (ls_1 / ls_2 gammas)",
    r"^logit_bias$": "a logit bias (SigLIP-style)",
    r"(^|\.)attn_pool\.": "attentional pooling",
}
# Per-layer parts with a one-to-one counterpart (the fused attention input projection is split separately).
LAYER_PARTS = [
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("attn.out_proj.", "self_attn.out_proj."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
]


def openai_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split, transpose) an OpenAI-style CLIP state dict into `CLIPModel` names.

    A state dict of the image encoder alone (keys without `visual.`, as `model.visual.state_dict()` saves it)
    is recognised by its `conv1.weight`. Strict: a tensor this mapping does not know is refused with its name,
    and so are parts of other architectures (LayerScale, ...), rather than dropped.

    Raises:
        [`InputError`]: naming the tensors that have no place in a `CLIPModel`.
    """
    if "conv1.weight" in state:
        state = {f"visual.{k}": v for k, v in state.items()}
    modelled = [(k, what) for k in state for pattern, what in NOT_MODELLED.items() if re.search(pattern, k)]
    if modelled:
        kinds = sorted({what for _, what in modelled})
        raise InputError(
            f"The checkpoint has {', '.join(kinds)}, which a CLIPModel does not model ({len(modelled)} tensors, e.g. "
            f"{modelled[0][0]}): converting would drop them and change the model. It cannot be converted."
        )
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        for side, hf in (("visual.", "vision_model."), ("", "text_model.")):
            match = re.fullmatch(rf"{re.escape(side)}transformer\.resblocks\.(\d+)\.(.+)", key)
            if match:
                layer, rest = match.groups()
                base = f"{hf}encoder.layers.{layer}."
                if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                    kind = "weight" if rest.endswith("weight") else "bias"
                    for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                        out[f"{base}self_attn.{name}.{kind}"] = part.clone()
                else:
                    part = next(((old, new) for old, new in LAYER_PARTS if rest.startswith(old)), None)
                    if part is None:
                        unknown.append(key)
                    else:
                        out[base + part[1] + rest[len(part[0]) :]] = value
                break
        else:
            if key in SIMPLE:
                out[SIMPLE[key]] = value
            elif key in PROJECTIONS:
                out[PROJECTIONS[key]] = value.t().contiguous()
            elif key not in NOT_WEIGHTS:
                unknown.append(key)
    if unknown:
        raise InputError(
            f"The checkpoint has {len(unknown)} tensor(s) an OpenAI-layout CLIP does not have ({sorted(unknown)[:5]}"
            "): converting would drop them. Check the file is a plain ViT CLIP (or its image tower)."
        )
    return out


def hf_to_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of [`openai_to_hf`]: `CLIPModel` names to the OpenAI / open_clip layout (q, k and v fused into
    `attn.in_proj_*`, the projections transposed back). `position_ids` buffers are dropped."""
    simple = {hf: openai for openai, hf in SIMPLE.items()}
    projections = {hf: openai for openai, hf in PROJECTIONS.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)", key)
        if match:
            tower, layer, rest = match.groups()
            base = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{layer}."
            fused = re.fullmatch(r"self_attn\.(q|k|v)_proj\.(weight|bias)", rest)
            if fused:
                if fused.group(1) == "q":  # fuse once, from the three parts
                    parts = [state[key.replace(".q_proj.", f".{p}_proj.")] for p in "qkv"]
                    out[f"{base}attn.in_proj_{fused.group(2)}"] = torch.cat(parts, dim=0)
                continue
            for old, new in LAYER_PARTS:
                if rest.startswith(new):
                    out[base + old + rest[len(new) :]] = value
        elif key in simple:
            out[simple[key]] = value
        elif key in projections:
            out[projections[key]] = value.t().contiguous()
    return out


def convert_openai_checkpoint(source: dict[str, torch.Tensor], base: CLIPModel) -> CLIPModel:
    """Merge an OpenAI-style (or open_clip ViT) state dict into `base`, a `CLIPModel` of the same architecture.

    A vision-only checkpoint (TeCoA, PMG-AFT, FARE releases) replaces the image tower and projection and keeps the
    base's text tower; a full one replaces everything. Shapes must match exactly; every tensor of the image side
    must be present.

    Args:
        source (`dict`): an OpenAI-layout state dict (a file is read by `pmg_aft.zoo.read_checkpoint`, safely).
        base (`CLIPModel`): e.g. `CLIPModel.from_pretrained("openai/clip-vit-base-patch32")`.

    Returns:
        `CLIPModel`: `base`, updated in place.
    """
    check_clip_model(base)
    state = openai_to_hf(source)
    if not state:
        raise InputError("No OpenAI-style CLIP weights found (expected keys such as visual.conv1.weight).")
    target = base.state_dict()
    unknown = sorted(k for k in state if k not in target)
    mismatched = sorted(k for k in state if k in target and target[k].shape != state[k].shape)
    if unknown or mismatched:
        details = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}" for k in mismatched]
        raise InputError(
            "The checkpoint does not fit the base model's architecture. "
            + (f"Unknown tensors: {unknown[:5]}. " if unknown else "")
            + (f"Shape mismatches: {details[:5]}. " if details else "")
            + "Pass the base CLIPModel the checkpoint was fine-tuned from (e.g. openai/clip-vit-base-patch32)."
        )
    vision = [k for k in target if k.startswith(("vision_model.", "visual_projection.")) and "position_ids" not in k]
    missing = sorted(k for k in vision if k not in state)
    if missing:
        raise InputError(f"The checkpoint lacks image-tower tensors: {missing[:5]} ({len(missing)} in all).")
    base.load_state_dict(state, strict=False)
    return base
