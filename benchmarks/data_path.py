"""Host cost of the streaming training data, images/s per core, through the trainer's own loader.

Two paths over the same ImageNet-like JPEGs (~110 KB, ~400x350, as ILSVRC's training images) in parquet shards:
- `host`: the collator decodes each JPEG with PIL, resizes and crops it to 224 and converts it to float32;
- `bytes` (`decode_on_device`): the collator only reads each image's bytes; decoding, resizing and cropping happen
  on the accelerator (nvJPEG through torchvision.io.decode_jpeg), which this script does not time.
With `--decode_here` (needs torchvision) the bytes path's decode also runs here on the CPU, its fallback.

    OMP_NUM_THREADS=1 python benchmarks/data_path.py --images 512 --rounds 3

Rounds alternate the paths, so both see the same machine load; the loader runs in the main process (0 workers), so
the figure is per core: multiply by dataloader_num_workers for a loader's capacity.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

from pmg_aft import TRAINERS
from pmg_aft.data import load_streaming_split
from pmg_aft.tiny import tiny_clip, tiny_tokenizer


def imagenet_like(count: int, seed: int = 0) -> list[bytes]:
    """JPEGs of ILSVRC's typical size and weight (~110 KB, ~400x350 px): smooth fields with photo-like grain."""
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(count):
        height, width = int(rng.integers(330, 380)), int(rng.integers(380, 430))
        coarse = Image.fromarray((rng.random((height // 12 + 2, width // 12 + 2, 3)) * 255).astype(np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
        pixels = np.clip(smooth + rng.normal(0, 18, smooth.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
        blobs.append(buffer.getvalue())
    return blobs


def write_shards(blobs: list[bytes], folder: str, shards: int = 4) -> None:
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[f"class {i}" for i in range(1000)])})
    labels = [i % 1000 for i in range(len(blobs))]
    cells = [{"bytes": blob, "path": None} for blob in blobs]
    data = Dataset.from_dict({"image": cells, "label": labels}, features=features)
    for index in range(shards):
        data.shard(shards, index).to_parquet(os.path.join(folder, f"train-{index:05d}-of-{shards:05d}.parquet"))


def loader(folder: str, decode_on_device: bool, batch: int):
    """The training loader of a FARE-recipe trainer (Resize(224) + CenterCrop(224), bicubic) over the shards."""
    trainer_class = TRAINERS["fare"]
    args = trainer_class.config_class(
        output_dir=tempfile.mkdtemp(), use_cpu=True, report_to="none", disable_tqdm=True, max_steps=10**6,
        per_device_train_batch_size=batch, decode_on_device=decode_on_device, shuffle_buffer_size=64,
        interpolation="bicubic",
    )  # fmt: skip
    model = tiny_clip(seed=0)
    model.config.vision_config.image_size = 224  # the host path crops to the model's size: ImageNet's 224
    trainer = trainer_class(model, args, train_dataset=load_streaming_split(folder, "train"),
                            processing_class=tiny_tokenizer())  # fmt: skip
    return trainer, trainer.get_train_dataloader()


def time_path(folder: str, path: str, images: int, batch: int, decode_here: bool) -> float:
    trainer, data = loader(folder, path == "bytes", batch)
    batches = iter(data)
    next(batches)  # warm-up: opening the shards
    began, seen = time.perf_counter(), 0
    while seen < images:
        item = next(batches)
        if path == "bytes" and decode_here:
            from pmg_aft.data.streaming import decode_on_device

            decode_on_device(item["encoded_images"], torch.device("cpu"), 224, 224, "bicubic")
        seen += batch
    return seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images timed per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--decode_here", action="store_true", help="also time torchvision's CPU decode (fallback)")
    args = parser.parse_args()
    blobs = imagenet_like(args.images + 2 * args.batch)
    sizes = [len(b) / 1024 for b in blobs]
    paths = ["host", "bytes"] + (["bytes+cpu decode"] if args.decode_here else [])
    rates: dict[str, list[float]] = {p: [] for p in paths}
    with tempfile.TemporaryDirectory() as folder:
        write_shards(blobs, folder)
        for _ in range(args.rounds):
            for path in paths:
                kind = "bytes" if path.startswith("bytes") else "host"
                rates[path].append(time_path(folder, kind, args.images, args.batch, path != kind))
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{len(blobs)} JPEGs, mean {statistics.mean(sizes):.0f} KB (min {min(sizes):.0f}, max {max(sizes):.0f}), "
          f"~400x350 px; batch {args.batch}, 0 loader workers, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={threads}; {args.rounds} alternating rounds")  # fmt: skip
    print("| path | images/s per core (median) | rounds |")
    print("|---|---:|---|")
    for path, values in rates.items():
        print(f"| {path} | {statistics.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} |")
    host = statistics.median(rates["host"])
    print(f"bytes / host: {statistics.median(rates['bytes']) / host:.1f}x (same run)")


if __name__ == "__main__":
    main()
