"""Evaluate the tiny model on a generated set and write the report; run directly or under torchrun."""

import os
import sys

import torch

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, clip_processor
from pmg_aft.evaluation import EvalLoader, evaluate_robustness, get_protocol
from pmg_aft.tiny import colour_patches, tiny_clip, tiny_tokenizer


def main(out: str) -> None:
    model = tiny_clip(seed=0)
    processor = clip_processor(tiny_tokenizer(), model, IMAGENET_MEAN, IMAGENET_STD)
    data = {"patches": colour_patches(num_per_class=2, seed=1).select(range(11))}  # 11: shards need padding
    # The pmg_aft protocol's random starts: drawn per sample, so 1 and 2 processes agree exactly.
    protocol = get_protocol("pmg_aft").override(attacks=("pgd", "cw"), eps=(2 / 255,), steps=3, mixed_precision="no")
    evaluate_robustness(model, processor, protocol, datasets=data, loader=EvalLoader(batch_size=4), output_dir=out,
                        model_id="tiny")  # fmt: skip
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    main(sys.argv[1])
