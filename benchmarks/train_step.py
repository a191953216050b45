"""Throughput and memory of one PMG-AFT training step, and how it splits into its passes.

Prints images/s of the full step (the trainer's `training_step` + optimiser step), peak memory, and the ratio of the
step's time to the summed time of its parts, each timed alone in the same run on the same batch:
  attack    the PGD attack: `train_steps` forward + backward passes to the perturbation
  target    forward + backward of the trained model on [x'; x] (the loss terms' graph)
  frozen    forward of the frozen pre-trained model on x' (no grad)
  optimiser the optimiser step
A ratio near 1.0 means the step costs no more than its passes. Weights are random (the architecture alone sets cost).

    python benchmarks/train_step.py --model tiny --batch_size 64
    python benchmarks/train_step.py --model vit-b-32 --batch_size 256 --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import torch
from transformers import CLIPConfig, CLIPModel

from pmg_aft import PMGAFTConfig, PMGAFTTrainer, pgd
from pmg_aft.tiny import tiny_clip_config, tiny_tokenizer

ARCHITECTURES = {
    # vision (hidden, layers, heads, patch, image), text (hidden, layers, heads), projection
    "vit-b-32": ((768, 12, 12, 32, 224), (512, 12, 8), 512),
    "vit-b-16": ((768, 12, 12, 16, 224), (512, 12, 8), 512),
    "vit-l-14": ((1024, 24, 16, 14, 224), (768, 12, 12), 768),
}


def build_config(name: str) -> CLIPConfig:
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


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, vit-b-32, vit-b-16 or vit-l-14")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train_steps", type=int, default=2, help="PGD steps of the training attack")
    parser.add_argument("--classes", type=int, default=200, help="classes of the zero-shot head (Tiny-ImageNet: 200)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = CLIPModel(build_config(args.model))
    size = model.config.vision_config.image_size
    config = PMGAFTConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=device.type == "cpu",
        bf16=args.dtype == "bf16",
        fp16=args.dtype == "fp16",
        train_steps=args.train_steps,
        report_to="none",
        disable_tqdm=True,
    )
    names = [f"class {i}" for i in range(args.classes)]
    trainer = PMGAFTTrainer(model, config, processing_class=tiny_tokenizer(), class_names=names)
    model = trainer.model
    optimizer = trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); the step is called directly here
    batch = {
        "pixel_values": torch.rand(args.batch_size, 3, size, size, device=device),
        "labels": torch.randint(0, args.classes, (args.batch_size,), device=device),
    }
    x, y = batch["pixel_values"], batch["labels"]
    target = trainer.classifier()
    frozen = trainer.classifier(reference=True)
    autocast = trainer.accelerator.autocast

    def full_step():
        trainer.training_step(model, batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def attack():
        with autocast():
            pgd(target, x, y, config.train_eps, config.train_step_size, config.train_steps)

    adv = pgd(target, x, y, config.train_eps, config.train_step_size, config.train_steps)

    def target_pass():
        with autocast():
            logits = target(torch.cat([adv, x]))
        logits.sum().backward()
        model.zero_grad(set_to_none=True)

    def frozen_pass():
        with autocast(), torch.no_grad():
            frozen(adv)

    def optimiser_step():
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = timed(full_step, device, args.repeats)
    peak = (
        f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA allocated)"
        if device.type == "cuda"
        else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"
    )
    parts = {
        "attack": timed(attack, device, args.repeats),
        "target": timed(target_pass, device, args.repeats),
        "frozen": timed(frozen_pass, device, args.repeats),
        "optimiser": timed(optimiser_step, device, args.repeats),
    }
    total = sum(parts.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"model {args.model}, batch {args.batch_size}, {args.dtype}, {args.train_steps}-step PGD, "
        f"{args.classes} classes, on {name}"
    )
    print(f"full step      {step * 1e3:9.1f} ms   {args.batch_size / step:9.1f} images/s")
    for key, value in parts.items():
        print(f"  {key:12s} {value * 1e3:9.1f} ms   ({value / total:5.1%} of the parts)")
    print(f"step / sum of parts  {step / total:.3f}")
    print(f"peak memory    {peak}")


if __name__ == "__main__":
    main()
