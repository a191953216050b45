"""Helpers shared by the test modules (no tests here): parameter snapshots, Hub-schema fixtures, subprocesses."""

from __future__ import annotations

import copy
import os
import socket
import subprocess

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from pmg_aft.data import get_benchmark

METHODS = ["pmg_aft", "tecoa", "fare", "tga_zsr", "clean"]
VISION = ("vision_model.", "visual_projection.")

# ---- models and parameters ---------------------------------------------------------------------------------------


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
WIDTH, LAYERS, HEADS, PATCH, IMAGE, EMBED, VOCAB, CONTEXT, TEXT_WIDTH = 32, 2, 4, 8, 32, 24, 64, 12, 16


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


# ---- Hub-schema benchmark fixtures -------------------------------------------------------------------------------

CALTECH256 = ["001.ak47", "002.american-flag", "003.backpack", "257.clutter"]


def png(mode: str = "RGB", size: int = 12) -> Image.Image:
    array = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def source_label_feature(name: str):
    """The label feature as the Hub dataset stores it."""
    bench = get_benchmark(name)
    if name == "pcam":
        return Value("bool")
    if name == "fgvc-aircraft":
        return Value("string")
    if name == "caltech256":
        return ClassLabel(names=CALTECH256)
    if bench.aliases:  # Tiny-ImageNet / ImageNet: WordNet ids; Caltech101: folder names
        return ClassLabel(names=bench.aliases)
    return ClassLabel(names=bench.class_names)


def hub_fixture(name: str, rows: int = 3) -> Dataset:
    """`rows` rows of a benchmark in its Hub dataset's own schema (columns, label encoding)."""
    bench = get_benchmark(name)
    feature = source_label_feature(name)
    if isinstance(feature, ClassLabel):
        labels = [0, 1, feature.num_classes - 1][:rows]
    elif feature.dtype == "bool":
        labels = [False, True, True][:rows]
    else:
        labels = [bench.class_names[0], bench.class_names[1], bench.class_names[-1]][:rows]
    columns = {bench.image_column: [png() for _ in labels], bench.label_column: labels}
    features = {bench.image_column: ImageFeature(), bench.label_column: feature}
    if name == "cifar100":  # the Hub set has both label columns
        columns["coarse_label"] = [0] * len(labels)
        features["coarse_label"] = Value("int64")
    return Dataset.from_dict(columns, features=Features(features))


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
