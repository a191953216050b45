"""OpenAI-style checkpoints convert to CLIPModel and give the same embeddings as the source architecture.

The source architecture is re-implemented here from its description (OpenAI CLIP's ViT and text transformer), so the
check does not lean on the converter's own mapping.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from pmg_aft.convert import convert_openai_checkpoint, load_state_dict

from .utils import CONTEXT, EMBED, HEADS, IMAGE, LAYERS, PATCH, TEXT_WIDTH, VOCAB, WIDTH, tiny_base, tokens


def random_openai_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    state = {
        "visual.conv1.weight": r(WIDTH, 3, PATCH, PATCH),
        "visual.class_embedding": r(WIDTH),
        "visual.positional_embedding": r((IMAGE // PATCH) ** 2 + 1, WIDTH),
        "visual.ln_pre.weight": 1 + r(WIDTH), "visual.ln_pre.bias": r(WIDTH),
        "visual.ln_post.weight": 1 + r(WIDTH), "visual.ln_post.bias": r(WIDTH),
        "visual.proj": r(WIDTH, EMBED),
        "token_embedding.weight": r(VOCAB, TEXT_WIDTH),
        "positional_embedding": r(CONTEXT, TEXT_WIDTH),
        "ln_final.weight": 1 + r(TEXT_WIDTH), "ln_final.bias": r(TEXT_WIDTH),
        "text_projection": r(TEXT_WIDTH, EMBED),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }  # fmt: skip
    for prefix, width in (("visual.transformer", WIDTH), ("transformer", TEXT_WIDTH)):
        for i in range(LAYERS):
            p = f"{prefix}.resblocks.{i}."
            state.update({
                p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width),
                p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
                p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
                p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
                p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width),
            })  # fmt: skip
    return state


def blocks(state, prefix, width, x, mask=None):
    """OpenAI's residual attention blocks: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with QuickGELU."""
    for i in range(LAYERS):
        p = f"{prefix}.resblocks.{i}."
        attn = nn.MultiheadAttention(width, HEADS, batch_first=True)
        attn.in_proj_weight.data, attn.in_proj_bias.data = (
            state[p + "attn.in_proj_weight"],
            state[p + "attn.in_proj_bias"],
        )
        attn.out_proj.weight.data, attn.out_proj.bias.data = (
            state[p + "attn.out_proj.weight"],
            state[p + "attn.out_proj.bias"],
        )
        h = F.layer_norm(x, (width,), state[p + "ln_1.weight"], state[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = F.layer_norm(x, (width,), state[p + "ln_2.weight"], state[p + "ln_2.bias"])
        h = F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return x


def openai_image_features(state, pixels):
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + state["visual.positional_embedding"]
    x = F.layer_norm(x, (WIDTH,), state["visual.ln_pre.weight"], state["visual.ln_pre.bias"])
    x = blocks(state, "visual.transformer", WIDTH, x)
    x = F.layer_norm(x[:, 0], (WIDTH,), state["visual.ln_post.weight"], state["visual.ln_post.bias"])
    return x @ state["visual.proj"]


def openai_text_features(state, tokens):
    x = state["token_embedding.weight"][tokens] + state["positional_embedding"]
    causal = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
    x = blocks(state, "transformer", TEXT_WIDTH, x, causal)
    x = F.layer_norm(x, (TEXT_WIDTH,), state["ln_final.weight"], state["ln_final.bias"])
    return x[torch.arange(len(tokens)), tokens.argmax(-1)] @ state["text_projection"]  # the end token has the top id


def test_full_openai_state_dict_gives_the_same_embeddings():
    state = random_openai_state()
    model = convert_openai_checkpoint(dict(state), tiny_base())
    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours_image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        ours_text = model.text_projection(model.text_model(input_ids=tokens()).pooler_output)
        ref_image, ref_text = openai_image_features(state, pixels), openai_text_features(state, tokens())
    assert torch.allclose(ours_image, ref_image, atol=1e-5)  # float32 summation order: 1e-5 absolute
    assert torch.allclose(ours_text, ref_text, atol=1e-5)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_released_vision_encoder_checkpoints_replace_only_the_image_tower(tmp_path):
    state = random_openai_state(3)
    vision = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}  # model.visual.state_dict()
    path = tmp_path / "tecoa.pth.tar"
    torch.save({"epoch": 10, "vision_encoder_state_dict": {f"module.{k}": v for k, v in vision.items()}}, path)
    base = tiny_base()
    text_before = {k: v.clone() for k, v in base.state_dict().items() if k.startswith("text_")}
    model = convert_openai_checkpoint(str(path), base)
    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(ours, openai_image_features(state, pixels), atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in text_before.items())
    assert set(load_state_dict(str(path))) == set(vision)


def test_conversion_errors_name_the_problem(tmp_path):
    state = random_openai_state()
    state["visual.proj"] = torch.zeros(WIDTH, EMBED + 1)
    with pytest.raises(ValueError, match=r"visual_projection.weight: checkpoint \(25, 32\) vs model \(24, 32\)"):
        convert_openai_checkpoint(state, tiny_base())
    partial = {k: v for k, v in random_openai_state().items() if "resblocks.1" not in k}
    with pytest.raises(ValueError, match="lacks image-tower tensors"):
        convert_openai_checkpoint(partial, tiny_base())
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="no tensors found"):
        load_state_dict(str(tmp_path / "empty.pt"))


def test_convert_command_writes_a_loadable_clip_model(tmp_path, capsys):
    from transformers import CLIPProcessor

    from pmg_aft import cli
    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    base = tiny_base()
    base.save_pretrained(str(tmp_path / "base"))
    clip_processor(tiny_tokenizer(), base, [0.5] * 3, [0.5] * 3).save_pretrained(str(tmp_path / "base"))
    state = random_openai_state(5)
    torch.save({"vision_encoder_state_dict": {k[7:]: v for k, v in state.items() if k.startswith("visual.")}},
               tmp_path / "pmg_aft.pth.tar")  # fmt: skip
    command = ["convert", "--checkpoint", str(tmp_path / "pmg_aft.pth.tar"), "--base_model", str(tmp_path / "base"),
               "--output_dir", str(tmp_path / "out"), "--normalization", "imagenet"]  # fmt: skip
    assert cli.main(command) == 0
    model = CLIPModel.from_pretrained(str(tmp_path / "out"))
    pixels = torch.rand(1, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(ours, openai_image_features(state, pixels), atol=1e-5)
    processor = CLIPProcessor.from_pretrained(str(tmp_path / "out"))
    assert processor.image_processor.image_mean == pytest.approx([0.485, 0.456, 0.406])
