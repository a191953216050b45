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


def random_open_clip() -> CLIP:
    """A tiny open_clip ViT CLIP (QuickGELU, as OpenAI's weights), away from the init's zeros and ones."""
    torch.manual_seed(0)
    source = CLIP(
        embed_dim=EMBED,
        vision_cfg=CLIPVisionCfg(layers=2, width=WIDTH, patch_size=PATCH, image_size=IMAGE, head_width=WIDTH // 4),
        text_cfg=CLIPTextCfg(context_length=CONTEXT, vocab_size=VOCAB, width=TEXT_WIDTH, heads=4, layers=2),
        quick_gelu=True,
    ).eval()
    with torch.no_grad():  # so every tensor matters
        for param in source.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return source


def test_open_clip_vit_converts_with_the_same_embeddings():
    source = random_open_clip()
    model = convert_openai_checkpoint(source.state_dict(), tiny_base())
    pixels = torch.randn(2, 3, IMAGE, IMAGE)  # both take normalised pixels
    with torch.no_grad():
        ours_image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        ours_text = model.text_projection(model.text_model(input_ids=tokens()).pooler_output)
        theirs_image, theirs_text = source.encode_image(pixels), source.encode_text(tokens())
    assert torch.allclose(ours_image, theirs_image, atol=1e-5)  # float32, other summation order
    assert torch.allclose(ours_text, theirs_text, atol=1e-5)
    assert torch.allclose(model.logit_scale, source.logit_scale)


def test_export_loads_in_open_clip_and_an_open_clip_folder_imports_back(tmp_path):
    import json

    from transformers import CLIPModel

    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor
    from pmg_aft.zoo import export_open_clip, import_checkpoint

    model = tiny_base()
    processor = clip_processor(tiny_tokenizer(), model, [0.5] * 3, [0.5] * 3)
    processor.save_pretrained(str(tmp_path / "tok"))
    checks = export_open_clip(model, processor, str(tmp_path / "oc"))
    assert checks["open_clip"] < 1e-5 and checks["reread"] < 1e-5  # open_clip itself built and compared
    loaded = open_clip.create_model(f"local-dir:{tmp_path / 'oc'}").eval()  # what a LLaVA user runs
    pixels = torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        theirs = loaded.encode_image(pixels)
        ours = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(ours, theirs, atol=1e-5)
    # An open_clip model saved as its Hub folders are (config + pickled state dict) imports with equal embeddings.
    source = random_open_clip()
    folder = tmp_path / "hub"
    folder.mkdir()
    vision = {"layers": 2, "width": WIDTH, "patch_size": PATCH, "image_size": IMAGE, "head_width": WIDTH // 4}
    text = {"context_length": CONTEXT, "vocab_size": VOCAB, "width": TEXT_WIDTH, "heads": 4, "layers": 2}
    cfg = {"embed_dim": EMBED, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.save(source.state_dict(), folder / "open_clip_pytorch_model.bin")
    imported, _, _ = import_checkpoint(str(tmp_path / "in"), file=str(folder), layout="open_clip",
                                       tokenizer_from=str(tmp_path / "tok"))  # fmt: skip
    again = CLIPModel.from_pretrained(str(tmp_path / "in")).eval()
    with torch.no_grad():
        image = again.visual_projection(again.vision_model(pixel_values=pixels).pooler_output)
        text = again.text_projection(again.text_model(input_ids=tokens()).pooler_output)
    assert torch.allclose(image, source.encode_image(pixels), atol=1e-5)
    assert torch.allclose(text, source.encode_text(tokens()), atol=1e-5)
