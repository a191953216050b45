"""A tiny randomly initialised open_clip model converts to CLIPModel with the same image and text embeddings.

Needs the `interop` extra (open_clip_torch with torchvision, which pairs with torch 2.14.1); `.ci/run` runs this
group in its own virtual environment. Skipped where open_clip is not installed.
"""

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg  # noqa: E402

from pmg_aft.convert import convert_openai_checkpoint  # noqa: E402

from ..utils import CONTEXT, EMBED, IMAGE, PATCH, TEXT_WIDTH, VOCAB, WIDTH, tiny_base, tokens  # noqa: E402


def test_open_clip_vit_converts_with_the_same_embeddings():
    torch.manual_seed(0)
    source = CLIP(
        embed_dim=EMBED,
        vision_cfg=CLIPVisionCfg(layers=2, width=WIDTH, patch_size=PATCH, image_size=IMAGE, head_width=WIDTH // 4),
        text_cfg=CLIPTextCfg(context_length=CONTEXT, vocab_size=VOCAB, width=TEXT_WIDTH, heads=4, layers=2),
        quick_gelu=True,
    ).eval()
    with torch.no_grad():  # away from the init's zeros and ones, so every tensor matters
        for param in source.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model = convert_openai_checkpoint(source.state_dict(), tiny_base())
    pixels = torch.randn(2, 3, IMAGE, IMAGE)  # both take normalised pixels
    with torch.no_grad():
        ours_image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        ours_text = model.text_projection(model.text_model(input_ids=tokens()).pooler_output)
        theirs_image, theirs_text = source.encode_image(pixels), source.encode_text(tokens())
    assert torch.allclose(ours_image, theirs_image, atol=1e-5)  # float32, other summation order
    assert torch.allclose(ours_text, theirs_text, atol=1e-5)
    assert torch.allclose(model.logit_scale, source.logit_scale)
