"""open_clip's model config <-> `CLIPConfig`, and an independent forward of the OpenAI-layout image tower.

open_clip describes a CLIP by `{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}` (the `model_cfg` of an
`open_clip_config.json`); the standard ViT CLIPs (OpenAI's, LAION's ViT-H/14) map one to one onto a `CLIPConfig`.
[`reference_image_features`] computes image embeddings straight from an OpenAI-layout state dict, written from the
architecture and not through `transformers`, so that each import can check the converted `CLIPModel` against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from ..errors import InputError

# open_clip's defaults for the fields a model config may leave out (CLIPVisionCfg / CLIPTextCfg).
VISION_DEFAULTS = {"head_width": 64, "mlp_ratio": 4.0, "image_size": 224}
TEXT_DEFAULTS = {"context_length": 77, "vocab_size": 49408, "heads": 8, "mlp_ratio": 4.0}
# Fields that change the architecture away from the plain ViT CLIP this converter maps.
UNSUPPORTED = (
    "timm_model_name",
    "hf_model_name",
    "ls_init_value",
    "attentional_pool",
    "no_ln_pre",
    "attn_pooler_heads",
)


def clip_config_from_open_clip(model_cfg: dict, hidden_act: str | None = None) -> CLIPConfig:
    """A `CLIPConfig` for an open_clip ViT CLIP `model_cfg`.

    Args:
        model_cfg (`dict`): `{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"?}`.
        hidden_act (`str`, *optional*): `"quick_gelu"` or `"gelu"`; default from `quick_gelu` (OpenAI's weights
            use QuickGELU, LAION's ViT-H/14 GELU).
    """
    vision = {**VISION_DEFAULTS, **model_cfg.get("vision_cfg", {})}
    text = {**TEXT_DEFAULTS, **model_cfg.get("text_cfg", {})}
    odd = [f"{side}.{k}" for side, cfg in (("vision_cfg", vision), ("text_cfg", text)) for k in UNSUPPORTED
           if cfg.get(k) not in (None, False)]  # fmt: skip
    if not isinstance(vision.get("layers"), int) or "patch_size" not in vision or odd:
        raise InputError(
            f"open_clip model config {model_cfg}: not a plain ViT CLIP (needs integer vision_cfg.layers and "
            f"patch_size{'; has ' + ', '.join(odd) if odd else ''}), which is what converts to a CLIPModel."
        )
    act = hidden_act or ("quick_gelu" if model_cfg.get("quick_gelu") else "gelu")
    return CLIPConfig(
        projection_dim=model_cfg["embed_dim"],
        vision_config=dict(
            hidden_size=vision["width"],
            num_hidden_layers=vision["layers"],
            num_attention_heads=vision["width"] // vision["head_width"],
            intermediate_size=int(vision["width"] * vision["mlp_ratio"]),
            patch_size=vision["patch_size"],
            image_size=vision["image_size"],
            hidden_act=act,
            layer_norm_eps=1e-5,
        ),
        text_config=dict(
            hidden_size=text["width"],
            num_hidden_layers=text["layers"],
            num_attention_heads=text["heads"],
            intermediate_size=int(text["width"] * text["mlp_ratio"]),
            max_position_embeddings=text["context_length"],
            vocab_size=text["vocab_size"],
            hidden_act=act,
            layer_norm_eps=1e-5,
            # open_clip pools the text at the largest token id, CLIP's end-of-text token (49407 of 49408)
            bos_token_id=text["vocab_size"] - 2,
            eos_token_id=text["vocab_size"] - 1,
        ),
    )


def open_clip_config_from_model(model: CLIPModel) -> dict:
    """The open_clip `model_cfg` of a `CLIPModel` (the inverse of [`clip_config_from_open_clip`])."""
    vision, text = model.config.vision_config, model.config.text_config
    acts = {vision.hidden_act, text.hidden_act}
    if not acts <= {"quick_gelu", "gelu"} or len(acts) > 1:
        raise InputError(f"Activations {sorted(acts)}: open_clip's CLIP has one, quick_gelu or gelu, for both towers.")
    return {
        "embed_dim": model.config.projection_dim,
        "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {
            "image_size": vision.image_size,
            "layers": vision.num_hidden_layers,
            "width": vision.hidden_size,
            "head_width": vision.hidden_size // vision.num_attention_heads,
            "mlp_ratio": vision.intermediate_size / vision.hidden_size,
            "patch_size": vision.patch_size,
        },
        "text_cfg": {
            "context_length": text.max_position_embeddings,
            "vocab_size": text.vocab_size,
            "width": text.hidden_size,
            "heads": text.num_attention_heads,
            "layers": text.num_hidden_layers,
            "mlp_ratio": text.intermediate_size / text.hidden_size,
        },
    }


def reference_image_features(
    state: dict[str, torch.Tensor], pixels: torch.Tensor, heads: int, act: str
) -> torch.Tensor:
    """Image embeddings (unnormalised) of the OpenAI ViT image tower in `state` (`visual.*` keys), on `pixels`
    (already normalised): patchify, class token, positions, ln_pre, pre-norm residual blocks, ln_post of the class
    token, projection."""
    v = {k[len("visual.") :]: t.float() for k, t in state.items() if k.startswith("visual.")}
    weight = v["conv1.weight"]
    x = F.conv2d(pixels, weight, stride=weight.shape[-1]).flatten(2).transpose(1, 2)
    cls = v["class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + v["positional_embedding"]
    width = x.shape[-1]

    def norm(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, (width,), v[f"{name}.weight"], v[f"{name}.bias"], eps=1e-5)

    x = norm(x, "ln_pre")
    layers = sorted({int(k.split(".")[2]) for k in v if k.startswith("transformer.resblocks.")})
    for i in layers:
        p = f"transformer.resblocks.{i}."
        h = norm(x, p + "ln_1")
        q, k, val = F.linear(h, v[p + "attn.in_proj_weight"], v[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
        split = [t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, val)]
        scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(width // heads)
        attended = (scores.softmax(dim=-1) @ split[2]).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attended, v[p + "attn.out_proj.weight"], v[p + "attn.out_proj.bias"])
        h = F.linear(norm(x, p + "ln_2"), v[p + "mlp.c_fc.weight"], v[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h) if act == "quick_gelu" else F.gelu(h)
        x = x + F.linear(h, v[p + "mlp.c_proj.weight"], v[p + "mlp.c_proj.bias"])
    return norm(x[:, 0], "ln_post") @ v["proj"]


def check_image_tower(model: CLIPModel, state: dict[str, torch.Tensor], what: str, atol: float = 1e-4) -> float:
    """Compare `model`'s image embeddings with [`reference_image_features`] of `state` on a fixed batch; return the
    largest difference relative to the embeddings' scale, or raise if it exceeds `atol`."""
    config = model.config.vision_config
    size = config.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ours = model.get_image_features(pixel_values=pixels.to(model.dtype))
        ours = getattr(ours, "pooler_output", ours).float()  # transformers 5 may return an output object
        reference = reference_image_features(state, pixels, config.num_attention_heads, config.hidden_act)
    model.train(was_training)
    error = ((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()
    if not error <= atol:
        raise InputError(
            f"{what}: the converted CLIPModel's image embeddings differ from the source architecture's by {error:.2e} "
            f"(relative; allowed {atol:g}): the checkpoint does not match this base model's architecture "
            f"({config.num_hidden_layers} layers, {config.hidden_act}); nothing was written."
        )
    return error
