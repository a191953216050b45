"""Throughput of PMG-AFT training through the Trainer's own loop, its data path, and how a step splits into passes.

Prints, all measured in this run:
  data path   images/s per core of the trainer's train DataLoader (num_workers=0) on Tiny-ImageNet-like 64 px JPEGs,
              for the host path (decode, resize, crop, to float on the host) and the decode-once path
              (`preprocess_on_device`: uint8 slices; its on-device resize is counted in the step), and the one-time
              decode's images/s
  loop        images/s of `Trainer.train()` itself (data, step, optimiser, scheduler, logging), per-step times taken
              by a callback after the warm-up (and compilation) steps
  step/parts  the step (`training_step` + optimiser + scheduler, as the loop calls them) and its passes, timed
              alternately in rounds on one batch: on-device preprocessing, attack (`train_steps` forward+backward to
              the pixels), target forward+backward on [x'; x], frozen forward on x', optimiser step. A step / sum of
              parts near 1.0 means the step costs no more than its passes.
  peak memory CUDA allocated, or the process's peak RSS on a CPU
  text dummy  the one-token text forward that `CLIPModel.forward` needs under DDP (one process forwards the vision
              tower alone)

The optimiser is the recipe's momentum SGD, fp16 runs with the Trainer's GradScaler, weights are random (the
architecture alone sets the cost). On a CPU, fix the thread count (--threads) and compare within one run.

    python benchmarks/train_step.py --model tiny --batch_size 64 --threads 1
    python benchmarks/train_step.py --model vit-b-32 --batch_size 256 --dtype fp16 --preprocess_on_device --compile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from transformers import CLIPModel, TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_config, clock, device_name, peak_memory, synchronize, tiny_imagenet_like  # noqa: E402

from pmg_aft import PMGAFTConfig, PMGAFTTrainer  # noqa: E402
from pmg_aft.data import DecodedImages  # noqa: E402
from pmg_aft.tiny import tiny_tokenizer  # noqa: E402


class StepTimes(TrainerCallback):
    """Wall time of each optimiser step of the Trainer's loop, the device included."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self.began = device, [], None

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.times.append(time.perf_counter() - self.began)


def loader_rate(trainer: PMGAFTTrainer, batches: int) -> float:
    """Images/s of iterating the trainer's train DataLoader in this process (the host cost of the data path)."""
    loader = trainer.get_train_dataloader()
    count, start = 0, time.perf_counter()
    for index, batch in enumerate(loader):
        count += len(batch["pixel_values"])
        if index + 1 == batches:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, vit-b-32, vit-b-16 or vit-l-14")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="timed steps of the loop (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (compilation, allocator)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the step and its parts")
    parser.add_argument("--train_steps", type=int, default=2, help="PGD steps of the training attack")
    parser.add_argument("--classes", type=int, default=200, help="classes of the zero-shot head (Tiny-ImageNet)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--preprocess_on_device", action="store_true", help="the decode-once data path")
    parser.add_argument("--compile", action="store_true", help="torch_compile (target, attack and frozen model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU); default: torch's")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    model = CLIPModel(build_config(args.model))
    rows = max(args.batch_size * (args.steps + args.warmup), 1024)  # >= 1024 for a steady data-path rate
    data = tiny_imagenet_like(rows, args.classes)

    def make_trainer(device_path: bool) -> PMGAFTTrainer:
        config = PMGAFTConfig(
            output_dir=tempfile.mkdtemp(), use_cpu=device.type == "cpu", bf16=args.dtype == "bf16",
            fp16=args.dtype == "fp16", train_steps=args.train_steps, per_device_train_batch_size=args.batch_size,
            max_steps=args.steps + args.warmup, warmup_steps=0, logging_steps=10**6, save_strategy="no",
            report_to="none", disable_tqdm=True, preprocess_on_device=device_path, torch_compile=args.compile,
            dataloader_num_workers=0,
        )  # fmt: skip
        return PMGAFTTrainer(model, config, train_dataset=data, processing_class=tiny_tokenizer())

    began = time.perf_counter()
    trainer = make_trainer(args.preprocess_on_device)
    setup = time.perf_counter() - began
    print(f"model {args.model}, batch {args.batch_size}, {args.dtype}, {args.train_steps}-step PGD, {args.classes} "
          f"classes, compile {args.compile}, preprocess_on_device {args.preprocess_on_device}, on "
          f"{device_name(device)}")  # fmt: skip

    # The data path, both ways on the same rows, alternately, in this process.
    other = make_trainer(not args.preprocess_on_device)  # the trainer above is the run's own path
    host, decoded = (other, trainer) if args.preprocess_on_device else (trainer, other)
    paths = {"host (decode, resize, crop, float)": host, "decode-once (uint8 slices)": decoded}
    decode_rate = len(data) / clock(lambda: DecodedImages(data, name="benchmark"), torch.device("cpu"))
    rates = {name: [] for name in paths}
    for _ in range(3):
        for name, path in paths.items():
            rates[name].append(loader_rate(path, max(4, 1024 // args.batch_size)))
    threads = torch.get_num_threads()
    print(f"data path, images/s of the train DataLoader in one process ({threads} torch thread(s)):")
    for name, values in rates.items():
        print(f"  {name:36s} {statistics.median(values):12,.0f}")
    print(f"  one-time decode of every image       {decode_rate:12,.0f}   (the decode-once path's setup)")
    del paths, host, decoded, other

    # The Trainer's own loop.
    timer = StepTimes(device)
    trainer.add_callback(timer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    times = timer.times[args.warmup :]
    step = statistics.median(times)
    print(f"Trainer loop   {step * 1e3:9.1f} ms/step  {args.batch_size / step:10.1f} images/s  (median of "
          f"{len(times)} steps after {args.warmup} warm-up; trainer setup {setup:.1f} s)")  # fmt: skip
    print(f"peak memory    {peak_memory(device)}")

    # The step and its parts, alternately, on one prepared batch.
    raw = next(iter(trainer.get_train_dataloader()))
    inputs = {k: v.to(device) for k, v in raw.items()}
    model_wrapped, optimizer, scheduler = trainer.model_wrapped, trainer.optimizer, trainer.lr_scheduler
    pixels = trainer.prepare_pixels(inputs["pixel_values"])
    x, y = pixels, inputs["labels"]
    target, frozen = trainer.classifier(), trainer.classifier(reference=True)
    autocast = trainer.accelerator.autocast
    with autocast():
        adv = trainer.attack(target, x, y)

    def full_step():
        trainer.training_step(model_wrapped, dict(inputs))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def preprocess():
        trainer.prepare_pixels(inputs["pixel_values"])

    def attack():
        with autocast():
            trainer.attack(target, x, y)

    def target_pass():
        with autocast():
            logits = target.logits_from_embeddings(
                trainer.image_embeddings(model_wrapped, target.preprocess(torch.cat([adv, x])))
            )
        trainer.accelerator.backward(logits.float().logsumexp(-1).mean())
        optimizer.zero_grad(set_to_none=True)

    def frozen_pass():
        with autocast(), torch.no_grad():
            frozen(adv)

    def optimiser_step():
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    parts = {"preprocess": preprocess, "attack": attack, "target": target_pass, "frozen": frozen_pass,
             "optimiser": optimiser_step}  # fmt: skip
    measured = {name: [] for name in ["step", *parts]}
    full_step()
    for fn in parts.values():
        fn()
    for _ in range(args.rounds):
        measured["step"].append(clock(full_step, device))
        for name, fn in parts.items():
            measured[name].append(clock(fn, device))
    median = {name: statistics.median(values) for name, values in measured.items()}
    total = sum(v for k, v in median.items() if k != "step")
    print(f"step           {median['step'] * 1e3:9.1f} ms       {args.batch_size / median['step']:10.1f} images/s "
          f"(median of {args.rounds} rounds, alternating with its parts)")  # fmt: skip
    for name in parts:
        print(f"  {name:12s} {median[name] * 1e3:9.1f} ms   ({median[name] / total:6.1%} of the parts)")
    print(f"step / sum of parts  {median['step'] / total:.3f}")

    # What one process no longer runs: the one-token text forward a DDP-wrapped model still needs.
    clip = trainer.accelerator.unwrap_model(trainer.model)
    dummy = torch.zeros((1, 1), dtype=torch.long, device=device)
    with autocast(), torch.no_grad():
        text = statistics.median(clock(lambda: clip.text_model(input_ids=dummy), device) for _ in range(5))
    print(
        f"text forward of the DDP path's one-token dummy  {text * 1e3:.1f} ms ({text / median['step']:.2%} of the "
        "step; one process skips it)"
    )


if __name__ == "__main__":
    main()
