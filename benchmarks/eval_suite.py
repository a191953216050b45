"""Throughput of the evaluation engine under PGD-k: images/s per attack, forwards per image, peak memory.

Runs `evaluate_dataset` (the engine behind `pmg-aft eval` and `Trainer.evaluate`) on Tiny-ImageNet-like 64 px JPEGs
resized to the model's size, for each PGD step count, with first-success semantics (fooled samples leave the batch)
and with the final iterate (every sample forwarded at every step), alternately in one run. Weights are random, so
the labels are the model's own clean predictions: every sample starts correctly classified and has to be attacked,
as in a robust model's evaluation. "forwards/image" counts the images the vision tower saw per evaluated image.

    python benchmarks/eval_suite.py --model tiny --steps 10,100 --threads 1
    python benchmarks/eval_suite.py --model vit-b-32 --steps 10,100 --batch_size 256 --mixed_precision bf16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
from accelerate import Accelerator
from datasets import ClassLabel
from transformers import CLIPModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_config, clock, device_name, peak_memory, tiny_imagenet_like  # noqa: E402

from pmg_aft import AttackSetting, EvalLoader, EvalSet, ZeroShotClassifier  # noqa: E402
from pmg_aft.constants import MIXED_PRECISIONS  # noqa: E402
from pmg_aft.evaluation import evaluate_dataset  # noqa: E402
from pmg_aft.pixels import parse_pixel_value  # noqa: E402
from pmg_aft.tiny import tiny_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, vit-b-32, vit-b-16 or vit-l-14")
    parser.add_argument("--images", type=int, default=256, help="evaluated images per setting")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", default="10,100", help="PGD step counts, comma-separated")
    parser.add_argument("--eps", type=parse_pixel_value, default=1 / 255, help="e.g. 1/255")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the settings")
    parser.add_argument("--mixed_precision", default="no", choices=list(MIXED_PRECISIONS))
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=args.cpu)
    device = accelerator.device
    torch.manual_seed(0)
    model = CLIPModel(build_config(args.model)).to(device).eval().requires_grad_(False)
    names = [f"class {i}" for i in range(args.classes)]
    classifier = ZeroShotClassifier(model, tiny_tokenizer(), names, logit_scale=100.0)
    data = tiny_imagenet_like(args.images, args.classes)
    eval_set = EvalSet.from_dataset("bench", data)
    # Labels := the clean predictions, so that every sample is attacked (random weights are at chance otherwise).
    predictions = []
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, collate_fn=eval_set.collator(classifier.image_size)
    )
    with torch.no_grad():
        for batch in loader:
            predictions += classifier(batch["pixel_values"].to(device)).argmax(-1).tolist()
    data = data.remove_columns("label").add_column("label", predictions).cast_column("label", ClassLabel(names=names))
    eval_set = EvalSet.from_dataset("bench", data)

    seen = [0]
    model.vision_model.register_forward_hook(
        lambda module, inputs, output: seen.__setitem__(0, seen[0] + len(output[0]))
    )
    settings = {}
    for steps in (int(s) for s in args.steps.split(",")):
        for first in (True, False):
            label = f"PGD-{steps} {'first success' if first else 'final iterate'}"
            settings[label] = AttackSetting(attack="pgd", eps=args.eps, steps=steps, step_size=args.eps,
                                            random_start=True, first_success=first)  # fmt: skip
    times, forwards, robust = {k: [] for k in settings}, {}, {}
    loader = EvalLoader(batch_size=args.batch_size, num_workers=args.num_workers)
    for _ in range(args.rounds):
        for label, setting in settings.items():
            seen[0] = 0
            result = []

            def run(setting=setting, result=result):
                result.append(evaluate_dataset(classifier, eval_set, settings=[setting], accelerator=accelerator,
                                               loader=loader, precision=args.mixed_precision))  # fmt: skip

            times[label].append(clock(run, device))
            forwards[label] = seen[0] / args.images
            robust[label] = result[0].robust_accuracy[setting.key]
    print(f"model {args.model}, {args.images} images of 64 px JPEG at {classifier.image_size} px, batch "
          f"{args.batch_size}, eps "
          f"{args.eps * 255:g}/255, precision {args.mixed_precision}, {args.num_workers} loader workers, on "
          f"{device_name(device)}")  # fmt: skip
    for label in settings:
        seconds = statistics.median(times[label])
        print(f"  {label:28s} {args.images / seconds:9.1f} images/s  {forwards[label]:6.1f} forwards/image  "
              f"robust {robust[label]:6.2%}  ({seconds:.1f} s)")  # fmt: skip
    print(f"peak memory {peak_memory(device)}")


if __name__ == "__main__":
    main()
