"""One training step and an evaluation of every method on the tiny model; rank 0 writes the updates and metrics.

python tests/dist_step.py OUT_DIR PER_DEVICE_BATCH
python -m torch.distributed.run --nproc_per_node 2 tests/dist_step.py OUT_DIR PER_DEVICE_BATCH
"""

import copy
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file

from pmg_aft import TRAINERS
from pmg_aft.tiny import colour_patches, tiny_clip, tiny_tokenizer


def main(out: str, per_device_batch: int) -> None:
    base = tiny_clip(seed=0)
    # A reference unlike the target, so FARE's and TGA-ZSR's reference terms are not 0 without a random start.
    reference = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in reference.vision_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    data = colour_patches(num_per_class=2, class_names=("red", "green", "blue", "yellow"), seed=0)  # 8 images
    # 7 samples: not a multiple of the 2 processes x 4 per batch, so shards are padded and must be de-duplicated.
    eval_data = colour_patches(num_per_class=2, seed=1).select(range(7))
    for method, trainer_class in TRAINERS.items():
        model = copy.deepcopy(base)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        config = trainer_class.config_class(
            output_dir=tempfile.mkdtemp(),
            use_cpu=True,
            ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            per_device_train_batch_size=per_device_batch,
            max_steps=1,
            optim="sgd",
            optim_args=None,
            warmup_steps=0,
            learning_rate=1.0,
            attack_random_start=False,
            native_resolution=True,
            seed=0,
        )
        ref = copy.deepcopy(reference) if config.uses_reference else None
        trainer = trainer_class(model, config, train_dataset=data, processing_class=tiny_tokenizer(), ref_model=ref,
                                class_names=("red", "green", "blue", "yellow"))  # fmt: skip
        trainer.train()
        metrics = trainer.evaluate(eval_data)
        if trainer.is_world_process_zero():
            update = {n: (p.detach() - start[n]).contiguous() for n, p in trainer.model.named_parameters()}
            update["world_size"] = torch.tensor(trainer.args.world_size)
            for key in ("eval_clean_accuracy", "eval_robust_accuracy", "eval_samples"):
                update[key] = torch.tensor(float(metrics[key]))
            save_file(update, os.path.join(out, f"{method}.safetensors"))
    # Leave together and tear gloo down cleanly: a rank exiting with live gloo threads can abort at shutdown.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
