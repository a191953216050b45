"""The zoo: each release layout, saved exactly as its authors' code saves it (random tiny weights), imports to a
CLIPModel whose embeddings equal the source architecture's; foreign, truncated and unsafe files are refused; the
open_clip export reads back; the records are complete and `pmg-aft zoo` lists and imports them."""

import argparse
import hashlib
import json
import os

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from pmg_aft import cli
from pmg_aft.errors import InputError
from pmg_aft.tiny import tiny_tokenizer
from pmg_aft.zeroshot import clip_processor
from pmg_aft.zoo import FORMATS, export_open_clip, import_checkpoint, read_provenance, zoo_entries
from pmg_aft.zoo.formats import OPEN_CLIP_CONFIG

from .utils import (
    CONTEXT,
    EMBED,
    HEADS,
    IMAGE,
    LAYERS,
    PATCH,
    TEXT_WIDTH,
    VOCAB,
    WIDTH,
    FakeApi,
    openai_image_features,
    openai_text_features,
    random_openai_state,
    tiny_base,
    tokens,
)  # fmt: skip


@pytest.fixture
def base_dir(tmp_path):
    """The base CLIP an image tower is merged into, saved with a processor (tokenizer + image processor)."""
    path = tmp_path / "base"
    base = tiny_base()
    base.save_pretrained(str(path))
    clip_processor(tiny_tokenizer(), base, [0.5] * 3, [0.5] * 3).save_pretrained(str(path))
    return str(path)


def visual(state):
    return {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}


def optimizer_state():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = torch.ones(2)
    optimizer.step()
    return optimizer.state_dict()


# Each release's file, as its code writes it (DESIGN.md section 8).
RELEASES = {
    # RobustVLM (FARE / TeCoA training output) and Sim-CLIP: torch.save(model.visual.state_dict())
    "openai_visual": lambda s: visual(s),
    # TGA-ZSR / Comp-TGA: the checkpoint dict of their train loop, with an empty NullPrompter state_dict
    "vision_encoder_state_dict": lambda s: {
        "epoch": 10,
        "state_dict": {},
        "add_prompter": None,
        "best_acc1": 31.5,
        "optimizer": optimizer_state(),
        "vision_encoder_state_dict": {f"module.{k}": v for k, v in visual(s).items()},
        "args": argparse.Namespace(lr=5e-5, batch_size=256),
    },  # fmt: skip
    # AdvFLYP: the visual.* part of the whole CLIP's state dict
    "partial_state_dict": lambda s: {
        "epoch": 1,
        "partial_state_dict": {k: v for k, v in s.items() if k.startswith("visual.")},
    },
    # AGFT: {"modules": {"clip.visual": ...}, "params": {}}
    "agft_modules": lambda s: {"modules": {"clip.visual": visual(s)}, "params": {}},
}


@pytest.mark.parametrize("layout", list(RELEASES))
def test_each_release_layout_imports_with_the_source_embeddings(layout, base_dir, tmp_path):
    state = random_openai_state(seed=len(layout))
    path = str(tmp_path / "release.pth.tar")
    torch.save(RELEASES[layout](state), path)
    model, processor, provenance = import_checkpoint(str(tmp_path / "out"), file=path, layout=layout,
                                                     base_model=base_dir, normalization="imagenet")  # fmt: skip
    saved = CLIPModel.from_pretrained(str(tmp_path / "out")).eval()
    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = saved.visual_projection(saved.vision_model(pixel_values=pixels).pooler_output)
    assert torch.allclose(ours, openai_image_features(state, pixels), atol=1e-5)
    base = CLIPModel.from_pretrained(base_dir)
    assert all(torch.equal(v, saved.state_dict()[k]) for k, v in base.state_dict().items() if k.startswith("text_"))
    assert provenance.source_sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert provenance.image_embedding_check["max_relative_difference"] < 1e-5
    assert read_provenance(str(tmp_path / "out")).source_format == layout
    assert os.path.exists(tmp_path / "out" / "model.safetensors")
    reloaded = CLIPProcessor.from_pretrained(str(tmp_path / "out"))
    assert reloaded.image_processor.image_mean == pytest.approx([0.485, 0.456, 0.406])
    assert reloaded.image_processor.crop_size == {"height": IMAGE, "width": IMAGE}


def open_clip_folder(path, state, quick_gelu=True, weights="open_clip_pytorch_model.bin"):
    """An open_clip Hub folder (what push_to_hf_hub writes): the config and the whole CLIP's state dict."""
    os.makedirs(path, exist_ok=True)
    model_cfg = {"embed_dim": EMBED, "quick_gelu": quick_gelu,
                 "vision_cfg": {"image_size": IMAGE, "layers": LAYERS, "width": WIDTH, "patch_size": PATCH,
                                "head_width": WIDTH // HEADS},
                 "text_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB, "width": TEXT_WIDTH, "heads": HEADS,
                              "layers": LAYERS}}  # fmt: skip
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    with open(os.path.join(path, OPEN_CLIP_CONFIG), "w") as f:
        json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, f)
    torch.save({**state, "attn_mask": torch.zeros(CONTEXT, CONTEXT)}, os.path.join(path, weights))
    return str(path)


def test_an_open_clip_hub_folder_imports_whole_without_a_base_model(base_dir, tmp_path):
    state = random_openai_state(seed=7)
    folder = open_clip_folder(tmp_path / "tecoa4-clip", state)
    model, processor, provenance = import_checkpoint(str(tmp_path / "out"), file=folder, layout="open_clip",
                                                     tokenizer_from=base_dir)  # fmt: skip
    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        text = model.text_projection(model.text_model(input_ids=tokens()).pooler_output)
    assert torch.allclose(image, openai_image_features(state, pixels), atol=1e-5)
    assert torch.allclose(text, openai_text_features(state, tokens()), atol=1e-5)
    assert model.config.vision_config.hidden_act == "quick_gelu"
    assert provenance.base_model is None and provenance.normalization == "the release's preprocess_cfg"
    assert processor.image_processor.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])


def test_a_wrong_activation_is_caught_by_the_embedding_check(base_dir, tmp_path):
    # The image tower of a QuickGELU model read as a GELU one: every tensor fits, only the forward tells.
    folder = open_clip_folder(tmp_path / "gelu", random_openai_state(seed=8), quick_gelu=False)
    from pmg_aft.zoo import formats, importing

    source = formats.read_open_clip(folder)
    model, _ = importing.build_model(source, None, None, "gelu")
    assert model.config.vision_config.hidden_act == "gelu"
    from pmg_aft.zoo.architecture import check_image_tower, reference_image_features

    pixels = torch.rand(2, 3, IMAGE, IMAGE)
    quick = reference_image_features(source.state, pixels, HEADS, "quick_gelu")
    assert torch.allclose(quick, openai_image_features(source.state, pixels), atol=1e-5)  # the reference itself
    model.config.vision_config.hidden_act = "quick_gelu"  # the check reads the config: now it disagrees
    with pytest.raises(InputError, match="image embeddings differ from the source architecture's"):
        check_image_tower(model, source.state, "gelu")
    assert not os.path.exists(tmp_path / "out")


def test_foreign_truncated_unsafe_and_incomplete_files_are_refused(base_dir, tmp_path):
    state = random_openai_state(seed=9)
    foreign = str(tmp_path / "foreign.pt")
    torch.save({"epoch": 3, "model": visual(state)}, foreign)
    with pytest.raises(
        InputError,
        match=r"expected a dict with 'vision_encoder_state_dict'; found a dict with keys \['epoch', 'model'\]",
    ):
        import_checkpoint(str(tmp_path / "a"), file=foreign, layout="vision_encoder_state_dict", base_model=base_dir)
    good = str(tmp_path / "good.pt")
    torch.save(visual(state), good)
    truncated = str(tmp_path / "truncated.pt")
    with open(good, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:2000])
    with pytest.raises(InputError, match="cannot be read safely as a weights file"):
        import_checkpoint(str(tmp_path / "b"), file=truncated, layout="openai_visual", base_model=base_dir)
    unsafe = str(tmp_path / "unsafe.pt")
    torch.save({"vision_encoder_state_dict": visual(state), "hook": torch.nn.ReLU()}, unsafe)  # needs code to unpickle
    with pytest.raises(InputError, match="weights_only=True, never by running their code"):
        import_checkpoint(str(tmp_path / "c"), file=unsafe, layout="vision_encoder_state_dict", base_model=base_dir)
    partial = str(tmp_path / "partial.pt")
    torch.save({k: v for k, v in visual(state).items() if "resblocks.1." not in k}, partial)
    with pytest.raises(InputError, match="lacks image-tower tensors"):
        import_checkpoint(str(tmp_path / "d"), file=partial, layout="openai_visual", base_model=base_dir)
    text_only = str(tmp_path / "text.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("visual.")}, text_only)
    with pytest.raises(InputError, match="not an OpenAI-layout ViT image tower"):
        import_checkpoint(str(tmp_path / "e"), file=text_only, layout="openai_visual", base_model=base_dir)
    assert not any(os.path.exists(tmp_path / n) for n in "abcde")  # nothing written for a refused file


def test_export_to_open_clip_reads_back_to_the_same_model(base_dir, tmp_path):
    model = CLIPModel.from_pretrained(base_dir).eval()
    processor = CLIPProcessor.from_pretrained(base_dir)
    checks = export_open_clip(model, processor, str(tmp_path / "oc"))
    assert checks["reread"] < 1e-5
    config = json.load(open(tmp_path / "oc" / OPEN_CLIP_CONFIG))
    assert config["model_cfg"]["vision_cfg"]["layers"] == LAYERS and config["preprocess_cfg"]["mean"] == [0.5] * 3
    back, _, _ = import_checkpoint(str(tmp_path / "back"), file=str(tmp_path / "oc"), layout="open_clip",
                                   tokenizer_from=base_dir)  # fmt: skip
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())


def test_every_zoo_record_is_complete_and_names_a_reader():
    entries = zoo_entries()
    assert {"tecoa4-vitl14", "fare2-vitl14"} <= set(entries)
    for entry in entries.values():
        assert entry.format in FORMATS and entry.licence and entry.paper.get("title"), entry.name
        assert entry.source.get("kind") in ("hub", "url", "unreleased"), entry.name
        assert entry.base_model or entry.format in ("open_clip", "hf_clip"), entry.name
        assert "unverified" in entry.verified, entry.name
        for figure in entry.reported:
            assert figure.protocol in ("pmg_aft", "tga_zsr", "clip_benchmark") and figure.evidence, entry.name


def test_zoo_commands_list_and_import(base_dir, tmp_path, capsys):
    assert cli.main(["zoo", "list"]) == 0
    listed = capsys.readouterr().out
    assert "tecoa4-vitl14" in listed and "import downloads it" in listed and "hf://chs20/tecoa4-clip" in listed
    folder = open_clip_folder(tmp_path / "tecoa4-clip", random_openai_state(seed=11))
    command = ["zoo", "import", "tecoa4-vitl14", "--file", folder, "--tokenizer_from", base_dir,
               "--output_dir", str(tmp_path / "tecoa4")]  # fmt: skip
    assert cli.main(command) == 0
    assert "image embeddings checked" in capsys.readouterr().out
    card = open(tmp_path / "tecoa4" / "README.md").read()
    entry = zoo_entries()["tecoa4-vitl14"]
    assert entry.paper["title"] in card and f"Licence as stated by the authors: **{entry.licence}**" in card
    assert read_provenance(str(tmp_path / "tecoa4")).source_sha256 in card
    assert read_provenance(str(tmp_path / "tecoa4")).zoo_entry["name"] == "tecoa4-vitl14"
    assert cli.main(["zoo", "import", "tecoa9-vitl14", "--output_dir", str(tmp_path / "x")]) == 2
    assert "is not in the zoo; the checkpoints are: tecoa2-vitl14" in capsys.readouterr().err


def test_imported_weights_keep_their_authors_licence_and_credits_in_cards_and_push(base_dir, tmp_path, monkeypatch,
                                                                                  capsys):  # fmt: skip
    # Was: eval and push of an imported CC-BY-4.0 (or unlicensed) model wrote `license: mit` and dropped the credits.
    from huggingface_hub import ModelCard

    from pmg_aft.cards import checkpoint_card

    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    folder = open_clip_folder(tmp_path / "delta", random_openai_state(seed=12))
    out = str(tmp_path / "delta-clip")
    assert cli.main(["zoo", "import", "delta-clip-l14-224", "--file", folder, "--tokenizer_from", base_dir,
                     "--output_dir", out]) == 0  # fmt: skip
    record = read_provenance(out)
    assert record.kind == "imported" and record.licence.id == "cc-by-4.0" and "Delta-CLIP" in record.credits[0]
    assert ModelCard.load(os.path.join(out, "README.md")).data.license == "cc-by-4.0"
    card, _ = checkpoint_card(out, "delta-clip")  # the card `pmg-aft eval` writes beside its report
    assert card.data.license == "cc-by-4.0" and "Credit: Delta-CLIP" in card.text
    assert cli.main(["push", "--model_dir", out, "--hub_model_id", "me/delta", "--license", "mit"]) == 2
    assert "does not relicense someone else's weights as 'mit'" in capsys.readouterr().err
    assert cli.main(["push", "--model_dir", out, "--hub_model_id", "me/delta"]) == 0
    assert ModelCard.load(FakeApi.card).data.license == "cc-by-4.0"
    tga = str(tmp_path / "tga.pth.tar")
    torch.save(RELEASES["vision_encoder_state_dict"](random_openai_state(seed=13)), tga)
    unlicensed = str(tmp_path / "tga-zsr")
    assert cli.main(["zoo", "import", "tga-zsr-vitb32", "--file", tga, "--base_model", base_dir,
                     "--output_dir", unlicensed]) == 0  # fmt: skip
    assert cli.main(["push", "--model_dir", unlicensed, "--hub_model_id", "me/tga"]) == 2
    assert "the licence of these weights is not known (the zoo record of tga-zsr-vitb32 states no licence)" in (
        capsys.readouterr().err
    )
