"""`pmg-aft export --format open_clip`: any `CLIPModel` checkpoint as an open_clip Hub folder, for the LLaVA /
OpenFlamingo code that loads robust encoders through open_clip (`hf-hub:org/name` or a local folder)."""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPModel, CLIPProcessor

from ..convert import hf_to_openai
from ..errors import InputError
from ..outputs import staged_folder, write_json
from ..provenance import Provenance, base_provenance, claim_model_dir, weights_digest
from .architecture import open_clip_config_from_model
from .formats import OPEN_CLIP_CONFIG, read_open_clip
from .importing import build_model

OPEN_CLIP_SAFE_WEIGHTS = "open_clip_model.safetensors"


def export_open_clip(model: CLIPModel, processor: CLIPProcessor, output_dir: str, source: str | None = None,
                     overwrite: bool = False) -> dict:  # fmt: skip
    """Write `open_clip_config.json` (`model_cfg`, `preprocess_cfg` with the processor's mean/std),
    `open_clip_model.safetensors` (the OpenAI-layout state dict), the processor and the weights' provenance (their
    licence and credits carried over from `source`, the folder or Hub id they were loaded from), after reading the
    folder back and checking it; nothing is written if a check fails.

    `output_dir` must be empty or hold an export of the same weights (else refused unless `overwrite`).

    Returns:
        `dict`: the checks that ran, each the largest relative difference of embeddings (`reread`: our reader of
        the folder; `open_clip`: open_clip's own model, where open_clip is installed).
    """
    text = model.config.text_config
    if text.eos_token_id != text.vocab_size - 1:  # open_clip pools the text at the largest token id
        raise InputError(
            f"this model's text tower ends prompts with token {text.eos_token_id}, but open_clip's CLIP pools the "
            f"text at the largest token id ({text.vocab_size - 1}): it has no open_clip form (CLIP checkpoints such "
            "as openai/clip-vit-base-patch32 have one)."
        )
    digest = weights_digest(model)
    claim_model_dir(output_dir, lambda record: record.kind == "exported" and record.weights_digest == digest,
                    overwrite, "an export of these weights")  # fmt: skip
    config = {
        "model_cfg": open_clip_config_from_model(model),
        "preprocess_cfg": {
            "mean": list(processor.image_processor.image_mean),
            "std": list(processor.image_processor.image_std),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }
    state = {k: v.detach().cpu().contiguous() for k, v in hf_to_openai(model.state_dict()).items()}
    licence, credits = base_provenance(source or "")
    record = Provenance(kind="exported", weights_digest=digest, licence=licence, credits=credits, base_model=source,
                        source_format="open_clip")  # fmt: skip
    with staged_folder(output_dir) as staging:
        save_file(state, os.path.join(staging, OPEN_CLIP_SAFE_WEIGHTS))
        write_json(os.path.join(staging, OPEN_CLIP_CONFIG), config, indent=2)
        processor.save_pretrained(staging)  # open_clip folders carry no tokenizer: with it the folder re-imports alone
        checks = {"reread": _difference(model, build_model(read_open_clip(staging), None, None, output_dir)[0])}
        try:
            import open_clip  # noqa: F401  (the interop extra)
        except ImportError:
            pass
        else:
            checks["open_clip"] = check_with_open_clip(model, staging)
        record.save(staging)
    return checks


def _features(model, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        if isinstance(model, CLIPModel):
            image = model.get_image_features(pixel_values=pixels)
            text = model.get_text_features(input_ids=tokens)
            return getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)
        return model.encode_image(pixels), model.encode_text(tokens)


def _inputs(model: CLIPModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch: two images, and two texts whose last token has the largest id (open_clip pools at the argmax,
    transformers at the end-of-text token)."""
    size, text = model.config.vision_config.image_size, model.config.text_config
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, size, size, generator=generator)
    # open_clip's text tower takes exactly its context length
    tokens = torch.randint(1, text.vocab_size - 1, (2, text.max_position_embeddings), generator=generator)
    tokens[:, -1] = text.vocab_size - 1
    return pixels, tokens


def _difference(model: CLIPModel, other) -> float:
    """Largest relative difference of image and text embeddings between two models on the same fixed batch."""
    model.eval()
    other.eval()
    pixels, tokens = _inputs(model)
    worst = 0.0
    for ours, theirs in zip(_features(model, pixels, tokens), _features(other, pixels, tokens)):
        worst = max(worst, ((ours - theirs).abs().max() / ours.abs().max().clamp_min(1e-12)).item())
    if not worst <= 1e-4:
        raise InputError(f"The exported open_clip model differs from the CLIPModel by {worst:.2e} (relative).")
    return worst


def check_with_open_clip(model: CLIPModel, folder: str) -> float:
    """Build open_clip's own `CLIP` from the folder's config and weights and compare embeddings with `model`."""
    import open_clip
    from safetensors.torch import load_file

    with open(os.path.join(folder, OPEN_CLIP_CONFIG), encoding="utf-8") as f:
        model_cfg = json.load(f)["model_cfg"]
    theirs = open_clip.model.CLIP(**model_cfg)
    missing, unexpected = theirs.load_state_dict(load_file(os.path.join(folder, OPEN_CLIP_SAFE_WEIGHTS)), strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise InputError(
            f"open_clip does not take the exported weights: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    return _difference(model, theirs)
