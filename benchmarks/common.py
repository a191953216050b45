"""What the benchmarks share: model architectures with random weights, Tiny-ImageNet-like data, timing, memory."""

from __future__ import annotations

import io
import resource
import time

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image
from transformers import CLIPConfig

from pmg_aft.tiny import tiny_clip_config, tiny_tokenizer

ARCHITECTURES = {
    # vision (hidden, layers, heads, patch, image), text (hidden, layers, heads), projection
    "vit-b-32": ((768, 12, 12, 32, 224), (512, 12, 8), 512),
    "vit-b-16": ((768, 12, 12, 16, 224), (512, 12, 8), 512),
    "vit-l-14": ((1024, 24, 16, 14, 224), (768, 12, 12), 768),
}


def build_config(name: str) -> CLIPConfig:
    """A CLIP config by name: `tiny` (the embedded demo model) or an OpenAI ViT's shape (random weights have the same
    cost as trained ones)."""
    if name == "tiny":
        return tiny_clip_config()
    if name not in ARCHITECTURES:
        raise SystemExit(f"unknown --model {name!r}; choose from tiny, {', '.join(ARCHITECTURES)}")
    (vh, vl, va, patch, image), (th, tl, ta), proj = ARCHITECTURES[name]
    vocab = len(tiny_tokenizer())
    return CLIPConfig(
        vision_config={"hidden_size": vh, "intermediate_size": 4 * vh, "num_hidden_layers": vl,
                       "num_attention_heads": va, "patch_size": patch, "image_size": image},
        text_config={"hidden_size": th, "intermediate_size": 4 * th, "num_hidden_layers": tl,
                     "num_attention_heads": ta, "vocab_size": vocab, "max_position_embeddings": 77,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        projection_dim=proj,
    )  # fmt: skip


def tiny_imagenet_like(rows: int, classes: int = 200, size: int = 64, seed: int = 0) -> Dataset:
    """`rows` JPEG images of `size` px (quality 90, smooth content like photos) with a 200-class `ClassLabel`: the
    schema and decode cost of zh-plus/tiny-imagenet."""
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(rows):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
        cells.append({"bytes": buffer.getvalue(), "path": None})
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[f"class {i}" for i in range(classes)])})
    return Dataset.from_dict({"image": cells, "label": rng.integers(0, classes, rows).tolist()}, features=features)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn, device: torch.device) -> float:
    """Seconds of one `fn()` call, the device included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} thread(s)"
