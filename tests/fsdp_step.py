"""Training steps of the tiny model under accelerate's FSDP2 (or one plain process); rank 0 writes the results.

python tests/fsdp_step.py update OUT_DIR PER_DEVICE_BATCH        # one step of each method: {method}.safetensors
python tests/fsdp_step.py run OUT_DIR PER_DEVICE_BATCH STEPS [RESUME]  # TeCoA, a checkpoint every step

Under `accelerate launch --config_file examples/accelerate/fsdp.yaml --cpu --num_processes 2`. accelerate offers FSDP
on accelerators only; on this CPU-only test machine the process state is declared a GPU one before the trainer reads
it, and gloo carries FSDP2's collectives, so the real accelerate + FSDP2 path runs: sharding, gathers,
reduce-scatters, checkpoint saving and loading.
"""

import copy
import os
import sys
import tempfile

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType
from safetensors.torch import save_file

from pmg_aft import TRAINERS
from pmg_aft.tiny import colour_patches, tiny_clip, tiny_tokenizer

CLASSES = ("red", "green", "blue", "yellow")
FSDP = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def config(method: str, output_dir: str, per_device_batch: int, **kwargs):
    return TRAINERS[method].config_class(
        output_dir=output_dir, use_cpu=True, report_to="none", disable_tqdm=True,
        per_device_train_batch_size=per_device_batch, optim="sgd", optim_args="momentum=0.9", warmup_steps=0,
        learning_rate=0.5, attack_random_start=False, native_resolution=True, seed=0,
        # The process state configured above (FSDP on gloo) is the one the trainer uses.
        accelerator_config={"use_configured_state": FSDP}, **kwargs,
    )  # fmt: skip


def trainer_for(method: str, args, model, data):
    ref = None
    if args.uses_reference:  # a reference unlike the target, so FARE's and TGA-ZSR's terms are not 0
        ref = copy.deepcopy(model)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in ref.vision_model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return TRAINERS[method](model, args, train_dataset=data, processing_class=tiny_tokenizer(), ref_model=ref,
                            class_names=CLASSES)  # fmt: skip


def full_state(trainer) -> dict[str, torch.Tensor]:
    """The whole model's weights, gathered from the shards under FSDP."""
    state = trainer.accelerator.get_state_dict(trainer.model)
    return {name: value.detach().clone().contiguous() for name, value in (state or {}).items()}


def main(mode: str, out: str, per_device_batch: int, *rest: str) -> None:
    state = PartialState(cpu=True)
    if FSDP:
        state.distributed_type = DistributedType.MULTI_GPU  # see the module docstring
    data = colour_patches(num_per_class=2, class_names=CLASSES, seed=0)  # 8 images
    if mode == "update":
        for method in TRAINERS:
            model = tiny_clip(seed=0)
            start = {n: p.detach().clone() for n, p in model.named_parameters()}
            # Under FSDP the vision layers are also checkpointed: the attack's input gradients and the update go
            # through sharded, recomputed layers and must still equal the plain single-process step.
            args = config(method, tempfile.mkdtemp(), per_device_batch, save_strategy="no", max_steps=1,
                          activation_checkpointing=FSDP)  # fmt: skip
            trainer = trainer_for(method, args, model, data)
            trainer.train()
            weights = full_state(trainer)
            if trainer.is_world_process_zero():
                update = {n: weights[n] - start[n] for n in start}
                update["world_size"] = torch.tensor(trainer.args.world_size)
                update["sharded_reference"] = torch.tensor(int("sharded" in (trainer.reference_placement or "")))
                save_file(update, os.path.join(out, f"{method}.safetensors"))
        return
    steps, resume = int(rest[0]), (rest[1] if len(rest) > 1 else None)
    args = config("tecoa", out, per_device_batch, save_strategy="steps", save_steps=1, max_steps=steps)
    trainer = trainer_for("tecoa", args, tiny_clip(seed=0), data)
    trainer.train(resume_from_checkpoint=resume)
    weights = full_state(trainer)
    if trainer.is_world_process_zero():
        save_file(weights, os.path.join(out, "final.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
