"""Helpers shared by the test modules (no tests here): parameter snapshots, Hub-schema fixtures, subprocesses."""

from __future__ import annotations

import copy
import math
import os
import re
import socket
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from torch import nn
from transformers import CLIPConfig, CLIPModel

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, TRAINERS, ZeroShotClassifier
from pmg_aft.data import get_benchmark

METHODS = list(TRAINERS)  # every registered method, as registered when the tests are collected
CONFIG = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "tiny_offline.yaml")  # the demo's


def kill_after(out, step: int) -> None:
    """Leave the training folder `out` as a run killed after it saved checkpoint-`step`: the later checkpoints and
    the finished model's files are removed."""
    import shutil

    for path in list(out.iterdir()):
        number = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if number and int(number.group(1)) > step or path.name == "eval":
            shutil.rmtree(path)
        elif path.is_file() and not path.name.startswith("."):
            path.unlink()


def fails(argv: list[str], match: str) -> None:
    """`pmg-aft train argv` stops with one line (a SystemExit message, no traceback) matching `match`."""
    from pmg_aft.finetune import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    message = str(stop.value)
    assert message.startswith("pmg-aft: ") and "\n" not in message.strip() and "Traceback" not in message
    assert re.search(match, message), message


VISION = ("vision_model.", "visual_projection.")

# ---- models and parameters ---------------------------------------------------------------------------------------


def pmg_aft_head(model, tokenizer=None, class_names=None, **kwargs) -> ZeroShotClassifier:
    """A zero-shot head with PMG-AFT's normalisation and logit scale (ImageNet mean/std, s = 1): the head of
    `PMGAFTConfig`'s defaults and of the tiny model's pre-training."""
    return ZeroShotClassifier(model, tokenizer, class_names, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
                              logit_scale=1.0, **kwargs)  # fmt: skip


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def perturbed(model: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """A copy of `model` whose vision tower differs (a reference model unlike the target)."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.vision_model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return other


# An OpenAI-layout CLIP small enough for conversion tests (tests/test_convert.py, tests/interop).
# VOCAB: the tiny tokenizer's size, so a converted model takes its processor.
WIDTH, LAYERS, HEADS, PATCH, IMAGE, EMBED, VOCAB, CONTEXT, TEXT_WIDTH = 32, 2, 4, 8, 32, 24, 514, 12, 16


def tiny_base() -> CLIPModel:
    config = CLIPConfig(
        vision_config={"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS,
                       "num_attention_heads": HEADS, "patch_size": PATCH, "image_size": IMAGE},
        text_config={"hidden_size": TEXT_WIDTH, "intermediate_size": 4 * TEXT_WIDTH, "num_hidden_layers": LAYERS,
                     "num_attention_heads": HEADS, "vocab_size": VOCAB, "max_position_embeddings": CONTEXT,
                     "eos_token_id": VOCAB - 1, "bos_token_id": 0, "pad_token_id": 0},
        projection_dim=EMBED,
    )  # fmt: skip
    torch.manual_seed(1)
    return CLIPModel(config).eval()


def tokens():
    t = torch.randint(1, VOCAB - 1, (3, CONTEXT), generator=torch.Generator().manual_seed(2))
    t[:, -1] = VOCAB - 1
    t[1, 5] = VOCAB - 1  # a shorter sequence: its end token comes first
    return t


# OpenAI's CLIP re-implemented from its description, so conversion checks do not lean on the converter's mapping.


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


# ---- Hub-schema benchmark fixtures -------------------------------------------------------------------------------

# Caltech-256's Hub copy (ilee0022/Caltech-256) names its classes in a `text` column beside 1-based integer labels;
# the exact spellings are not published, so these follow the original folder names without their `NNN.` prefix.
CALTECH256 = ["ak47", "american-flag", "backpack", "clutter"]


def png(mode: str = "RGB", size: int = 12) -> Image.Image:
    array = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def hub_label_names(name: str) -> list[str] | None:
    """The `ClassLabel` names of the Hub dataset, in its label order, as its card lists them (`None`: no ClassLabel).

    Sources (the registry's evidence): CIFAR-100's card (with `cra` for crab and underscores), Food-101's and Pets'
    underscored names, Caltech101's 101 lowercase folder names (flwrlabs/caltech101, no background class),
    Tiny-ImageNet's WordNet ids; the others carry the registry's names. ImageNet's Hub names ("tench, Tinca tinca")
    are matched by position only, so any 1000 names serve.
    """
    bench = get_benchmark(name)
    if name in ("pcam", "caltech256"):
        return None
    if name == "cifar100":
        return bench.aliases
    if name in ("food101", "pets"):
        return [n.lower().replace(" ", "_") for n in bench.class_names]
    if name == "caltech101":
        return sorted(f.lower() for f in bench.aliases if f != "BACKGROUND_Google")
    if name == "tiny-imagenet":
        return sorted(bench.aliases)
    if name == "imagenet":
        return [f"{n}, class {i}" for i, n in enumerate(bench.class_names)]
    return bench.class_names


def hub_fixture(name: str, rows: int = 3) -> Dataset:
    """`rows` rows (the first, second and last class) of a benchmark in its Hub dataset's own schema: its columns,
    extra columns and label encoding."""
    bench = get_benchmark(name)
    names = hub_label_names(name)
    columns, features = {}, {}
    if name == "pcam":
        labels, feature = [False, True, True][:rows], Value("bool")
    elif name == "caltech256":
        labels, feature = [1, 2, 257][:rows], Value("int64")
        columns["text"], features["text"] = [CALTECH256[0], CALTECH256[1], CALTECH256[-1]][:rows], Value("string")
    else:
        labels, feature = [0, 1, len(names) - 1][:rows], ClassLabel(names=names)
    columns[bench.image_column], features[bench.image_column] = [png() for _ in labels], ImageFeature()
    columns[bench.label_column], features[bench.label_column] = labels, feature
    if name == "cifar100":  # the Hub set has both label columns
        columns["coarse_label"], features["coarse_label"] = [0] * len(labels), Value("int64")
    if name == "pets":
        columns["image_id"], features["image_id"] = [f"img_{i}" for i in labels], Value("string")
        columns["label_cat_dog"], features["label_cat_dog"] = [0] * len(labels), ClassLabel(names=["cat", "dog"])
    if name == "fgvc-aircraft":
        columns["manufacturer"], features["manufacturer"] = ["Boeing"] * len(labels), Value("string")
    return Dataset.from_dict(columns, features=Features(features))


def hub_fixture_truth(name: str) -> list[str]:
    """The registry class names of `hub_fixture(name)`'s rows, written out from the sources, not from the loader."""
    bench = get_benchmark(name)
    if name == "pcam":
        return ["lymph node", "lymph node containing metastatic tumor tissue"] + [
            "lymph node containing metastatic tumor tissue"
        ]
    if name == "caltech256":
        return ["ak47", "american flag", "clutter"]
    if name == "caltech101":
        return ["accordion", "airplane", "yin and yang symbol"]
    if name == "tiny-imagenet":  # the Hub numbers the sorted WordNet ids
        by_wnid = dict(zip(bench.aliases, bench.class_names))
        wnids = sorted(bench.aliases)
        return [by_wnid[wnids[0]], by_wnid[wnids[1]], by_wnid[wnids[-1]]]
    return [bench.class_names[0], bench.class_names[1], bench.class_names[-1]]


def fake_hub_cache(root, repo_id: str, files: dict, sha: str = "a" * 40) -> str:
    """A Hugging Face hub cache (`HF_HUB_CACHE`) holding one dataset repository at one commit, as a download leaves
    it: `refs/main` and a snapshot with `files` (`{path: text or datasets.Dataset}`, datasets written as parquet)."""
    repo = os.path.join(str(root), "datasets--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", sha)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(sha)
    for path, content in files.items():
        target = os.path.join(snapshot, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, str):
            with open(target, "w") as f:
                f.write(content)
        else:
            content.to_parquet(target)
    return snapshot


def card_with_configs(config: str, splits: dict[str, str]) -> str:
    """A dataset card whose YAML lists one config's data files per split (the Hub's parquet layout)."""
    rows = "".join(f"  - split: {split}\n    path: {path}\n" for split, path in splits.items())
    return f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{rows}---\n"


# ---- subprocesses ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str], cwd) -> subprocess.CompletedProcess:
    """Run a command with one thread per process; fail the test with its stderr tail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


# ---- the Hub, faked (no network in tests) ------------------------------------------------------------------


class FakeApi:
    uploaded: list[str] = []
    fail = False

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.repo = repo_id

    def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
        if FakeApi.fail:  # some HTTP errors echo the request's headers
            raise ConnectionError(f"401 Unauthorized (Authorization: Bearer {os.environ['HF_TOKEN']})")
        FakeApi.uploaded = sorted(os.listdir(folder_path))
        FakeApi.message = commit_message
        FakeApi.card = os.path.join(os.path.dirname(folder_path), "uploaded-README.md")
        with open(os.path.join(folder_path, "README.md")) as src, open(FakeApi.card, "w") as dst:
            dst.write(src.read())
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()
