"""What keeps a training run honest: a checkpoint is resumed only by the run that made it, and a run whose loss or
weights became non-finite, or that changed no trained weight, stops with a line saying so instead of being saved
as a fine-tune."""

from __future__ import annotations

import dataclasses
import json
import math

import torch

from ..errors import InputError
from ..outputs import OVERWRITE
from ..provenance import Provenance


class TrainingDivergedError(InputError):
    """The loss or the weights became non-finite: nothing more is saved."""

    exit_status = 1


class NothingLearnedError(InputError):
    """Training steps ran but no trained weight changed (a learning rate of 0 at every step, a zero LoRA scale)."""


class OtherRunError(InputError):
    """A checkpoint or a saved model in the output folder was made by another run (another recipe, method, data
    or base)."""


def run_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The entries of two run records that differ, as `name: saved -> current` (nested records flattened)."""
    out = []
    for key in sorted(set(saved) | set(current), key=lambda k: (k != "method", k)):  # the method first
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += run_differences(old, new, f"{prefix}{key}.")
        elif json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
            shown = [json.dumps(v, default=str) for v in (old, new)]
            shown = [v if len(v) <= 60 else v[:57] + "..." for v in shown]
            out.append(f"{prefix.removeprefix('config.')}{key}: {shown[0]} -> {shown[1]}")
    return out


def check_same_run(folder: str, current: dict, what: str = "checkpoint", partial: bool = False,
                   fix: str | None = None) -> None:  # fmt: skip
    """Raise [`OtherRunError`] unless the run record `folder`'s `pmg_aft.json` holds is `current` (what may differ
    between the two, such as logging and saving cadence, is not in a run record); with `partial`, only the entries
    `current` has are compared (the method and config, before the model and data are loaded). `fix` replaces the
    way out the message gives."""
    fix = fix or f"pass a new --output_dir, or {OVERWRITE} to start this run over"
    record = Provenance.load(folder)
    if record is None or not record.run:
        raise OtherRunError(
            f"{folder} records no run (no pmg_aft.json with a run record: another tool, or an earlier pmg_aft), so "
            f"resuming it could mix two runs: {fix}."
        )
    saved = {k: v for k, v in record.run.items() if k in current} if partial else record.run
    different = run_differences(saved, current)
    if different:
        shown = "; ".join(different[:6]) + (f"; and {len(different) - 6} more" if len(different) > 6 else "")
        raise OtherRunError(
            f"the {what} {folder} was made by another run ({shown}); continuing or replacing it would mix the two "
            f"runs or lose that one's result: {fix}."
        )


def recipe_scales(args) -> str:
    """The recipe's scales a diverged or motionless run is most likely due to: the optimiser's and the method's own
    weights, as `name=value` (what the user set is among them, by its name)."""
    from .base_config import RobustCLIPConfig

    names = ["learning_rate", "weight_decay", "warmup_steps", "max_grad_norm"]
    names += ["adam_epsilon"] if "adam" in str(args.optim).lower() else []
    shared = {f.name for f in dataclasses.fields(RobustCLIPConfig)}
    names += [f.name for f in dataclasses.fields(args) if f.name not in shared and f.type in ("float", float)]
    return ", ".join(f"{name}={getattr(args, name):g}" for name in names)


def check_finite_state(state: dict, step: int, args=None) -> None:
    """Raise [`TrainingDivergedError`] if a floating-point tensor of `state` (what is about to be saved) is not
    finite: non-finite weights are never saved as a model."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            scales = f" ({recipe_scales(args)})" if args is not None else ""
            raise TrainingDivergedError(
                f"training diverged: by step {step} the weights hold non-finite values ({name}), so they were not "
                f"saved. Lower the recipe's scales{scales}, and check the data for broken images."
            )


def check_finite_loss(logs: dict, step: int, args=None) -> None:
    """Raise [`TrainingDivergedError`] for a non-finite training loss in a log entry (read when it is logged)."""
    loss = logs.get("loss")
    if isinstance(loss, (int, float)) and not math.isfinite(loss):
        scales = f" ({recipe_scales(args)})" if args is not None else ""
        raise TrainingDivergedError(
            f"training diverged: the loss is {loss} at step {step}; the weights it leads to are not saved. Lower the "
            f"recipe's scales{scales}, and check the data for broken images."
        )


def check_batches(trainer) -> None:
    """Refuse, before any step, a training set that gives no batch (fewer rows than one batch with the last partial
    batch dropped): the run would save its base weights as a fine-tune."""
    data = trainer.train_dataset
    if data is None or not hasattr(data, "__len__"):
        return
    args = trainer.args
    batch = args.per_device_train_batch_size * args.world_size
    if len(data) == 0 or (args.dataloader_drop_last and len(data) < batch):
        raise NothingLearnedError(
            f"the training set gives no batch: {len(data)} rows, a batch of {batch} with the last partial batch "
            "dropped (dataloader_drop_last): use more rows (max_train_samples) or a smaller "
            "per_device_train_batch_size."
        )


def trainable_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Per trained parameter, the sum and the sum of squares of this process's part of it: equal before and after
    training exactly when nothing changed (to any precision a real update shows)."""
    values = []
    for param in model.parameters():
        if param.requires_grad:
            local = param.to_local() if hasattr(param, "to_local") else param  # an FSDP2 shard
            local = local.detach().double()
            values += [local.sum(), local.square().sum()]
    return torch.stack(values) if values else torch.zeros(0, dtype=torch.float64)


def nothing_learned_message(steps: int, args) -> str:
    lora = f", lora_alpha={args.lora_alpha}" if args.use_peft else ""
    return (
        f"{steps} training step(s) ran but no trained weight changed ({recipe_scales(args)}{lora}): the result would "
        "be the base model under a fine-tune's name, so it is not saved. Train longer than the warm-up, or check "
        "these scales."
    )
