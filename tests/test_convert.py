"""OpenAI-style checkpoints convert to CLIPModel and give the same embeddings as the source architecture.

The source architecture is re-implemented here from its description (OpenAI CLIP's ViT and text transformer), so the
check does not lean on the converter's own mapping.
"""

import math
import os

import pytest
import torch
from transformers import CLIPModel

from pmg_aft.convert import convert_openai_checkpoint
from pmg_aft.zoo import read_checkpoint

from .utils import (
    EMBED,
    IMAGE,
    WIDTH,
    openai_image_features,
    openai_text_features,
    random_openai_state,
    tiny_base,
    tokens,
)


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
    model = convert_openai_checkpoint(read_checkpoint(str(path), "openai_state_dict").state, base)
    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(ours, openai_image_features(state, pixels), atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in text_before.items())
    assert set(read_checkpoint(str(path), "openai_state_dict").state) == {f"visual.{k}" for k in vision}


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
        read_checkpoint(str(tmp_path / "empty.pt"), "openai_state_dict")


def convert_inputs(tmp_path, std: float = 0.5) -> dict:
    """A tiny base CLIP folder (processor mean 0.5, std `std`) and a release file of its image tower, as TGA-ZSR
    ships them (`vision_encoder_state_dict`); the OpenAI-layout state it holds."""
    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    base = tiny_base()
    base.save_pretrained(str(tmp_path / "base"))
    clip_processor(tiny_tokenizer(), base, [0.5] * 3, [std] * 3).save_pretrained(str(tmp_path / "base"))
    state = random_openai_state(5)
    torch.save({"vision_encoder_state_dict": {k[7:]: v for k, v in state.items() if k.startswith("visual.")}},
               tmp_path / "pmg_aft.pth.tar")  # fmt: skip
    return state


def test_convert_command_writes_a_loadable_clip_model(tmp_path, capsys):
    from transformers import CLIPProcessor

    from pmg_aft import cli

    state = convert_inputs(tmp_path)
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


def test_convert_keeps_the_base_models_normalisation_by_default(tmp_path, capsys):
    # The former `convert` defaulted to the base's processor; its alias must too (zoo import alone would say CLIP's).
    from transformers import CLIPProcessor

    from pmg_aft import cli

    convert_inputs(tmp_path, std=0.25)
    common = ["convert", "--checkpoint", str(tmp_path / "pmg_aft.pth.tar"), "--base_model", str(tmp_path / "base")]
    assert cli.main([*common, "--output_dir", str(tmp_path / "a")]) == 0
    assert "convert is now `pmg-aft zoo import`" in capsys.readouterr().err
    assert CLIPProcessor.from_pretrained(str(tmp_path / "a")).image_processor.image_std == pytest.approx([0.25] * 3)
    assert cli.main([*common, "--output_dir", str(tmp_path / "b"), "--normalization", "base", "--normalization",
                     "imagenet"]) == 0  # fmt: skip
    assert CLIPProcessor.from_pretrained(str(tmp_path / "b")).image_processor.image_mean == pytest.approx(
        [0.485, 0.456, 0.406]
    )  # the last flag wins, as everywhere
    assert cli.main([*common, "--output_dir", str(tmp_path / "c"), "--format", "open_clip"]) == 2
    assert "convert reads the OpenAI layout only" in capsys.readouterr().err
    assert oct(os.stat(tmp_path / "a" / "pmg_aft.json").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
