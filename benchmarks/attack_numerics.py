"""Robust accuracy and blind attack steps under the exact and the official attack numerics, per test batch size.

The official PMG-AFT and TGA-ZSR evaluations attack under fp16 autocast with a batch-mean cross-entropy and an
unscaled backward. With cosine logits (s = 1) the per-pixel input gradient is small and shrinks with the batch size,
so it may underflow in fp16 and freeze pixels (sign(0) = 0): robust accuracy would then rise with the batch. This
script runs the real suite (`evaluate_robustness`, the `pmg_aft` protocol: PGD-10 at 1/255, random start, final
iterate, logit scale 1) on the pre-trained tiny model and colour patches, for `attack_numerics` exact and official
and each test batch size, and prints robust accuracy and the share of exactly-zero input-gradient entries at the
first step. The official numerics keep fp16 autocast on a CPU; the exact ones use the protocol's precision where
CUDA is present, float32 otherwise.

    OMP_NUM_THREADS=1 python benchmarks/attack_numerics.py --batch_sizes 64,256,512
    python benchmarks/attack_numerics.py --device cuda --batch_sizes 64,256,512
"""

from __future__ import annotations

import argparse
import logging

import torch

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, EvalLoader, EvalSet, clip_processor, evaluate_robustness, get_protocol
from pmg_aft.tiny import colour_patches, pretrained_tiny_clip, tiny_tokenizer


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", default="64,256,512", help="test batch sizes, comma-separated")
    parser.add_argument("--per_class", type=int, default=86, help="images per colour (6 colours): 516 by default")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (the pmg_aft protocol's 10)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # the sanity warnings are printed as figures below

    tokenizer = tiny_tokenizer()
    model = pretrained_tiny_clip().to(args.device).eval()
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    data = EvalSet.from_dataset("patches", colour_patches(num_per_class=args.per_class, seed=1),
                                native_resolution=True)  # fmt: skip
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print(f"tiny pre-trained CLIP on {args.device}, {len(data)} colour patches, pmg_aft protocol (PGD-{args.steps} "
          "at 1/255, random start, final iterate, logit scale 1)")  # fmt: skip
    print(f"{'numerics':<9} {'batch':>5} {'precision':>9} {'clean':>7} {'robust':>7} {'zero grad @ step 1':>19}")
    rows = []
    for size in sizes:
        for numerics in ("exact", "official"):  # alternated within one run
            protocol = get_protocol("pmg_aft").override(steps=args.steps, attack_numerics=numerics,
                                                        official_batch_size=size)  # fmt: skip
            report = evaluate_robustness(model, processor, protocol, datasets={"patches": data},
                                         loader=EvalLoader(batch_size=size))  # fmt: skip
            result, key = report.results["patches"], report.settings[0].key
            row = {"numerics": numerics, "batch": size, "precision": report.mixed_precision,
                   "clean": result.clean_accuracy, "robust": result.robust_accuracy[key],
                   "zero_gradient": result.first_step_zero_gradient.get(key, float("nan"))}  # fmt: skip
            rows.append(row)
            print(f"{numerics:<9} {size:>5} {row['precision']:>9} {100 * row['clean']:>6.2f}% "
                  f"{100 * row['robust']:>6.2f}% {100 * row['zero_gradient']:>18.2f}%")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
