"""What keeps a training run honest: a checkpoint is resumed only by the run that made it, and a run whose loss or
weights became non-finite, or that changed no trained weight, stops with a line saying so instead of being saved
as a fine-tune."""

from __future__ import annotations

import json
import math
import os

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


def check_same_run(folder: str, current: dict, what: str = "checkpoint", partial: bool = False) -> None:
    """Raise [`OtherRunError`] unless the run record `folder`'s `pmg_aft.json` holds is `current` (what may differ
    between the two, such as logging and saving cadence, is not in a run record); with `partial`, only the entries
    `current` has are compared (the method and config, before the model and data are loaded)."""
    record = Provenance.load(folder)
    if record is None or not record.run:
        raise OtherRunError(
            f"{folder} records no run (no pmg_aft.json with a run record: another tool, or an earlier pmg_aft), so "
            f"resuming it could mix two runs: pass a new --output_dir, or {OVERWRITE} to start this run over."
        )
    saved = {k: v for k, v in record.run.items() if k in current} if partial else record.run
    different = run_differences(saved, current)
    if different:
        shown = "; ".join(different[:6]) + (f"; and {len(different) - 6} more" if len(different) > 6 else "")
        raise OtherRunError(
            f"the {what} {folder} was made by another run ({shown}); continuing or replacing it would mix the two "
            f"runs or lose that one's result: pass a new --output_dir, or {OVERWRITE} to start this run over."
        )


def check_finite_state(state: dict, step: int) -> None:
    """Raise [`TrainingDivergedError`] if a floating-point tensor of `state` (what is about to be saved) is not
    finite: non-finite weights are never saved as a model."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise TrainingDivergedError(
                f"training diverged: by step {step} the weights hold non-finite values ({name}), so they were not "
                "saved. Lower the learning rate (or the loss weights), and check the data for broken images."
            )


def check_finite_loss(logs: dict, step: int) -> None:
    """Raise [`TrainingDivergedError`] for a non-finite training loss in a log entry (read when it is logged)."""
    loss = logs.get("loss")
    if isinstance(loss, (int, float)) and not math.isfinite(loss):
        raise TrainingDivergedError(
            f"training diverged: the loss is {loss} at step {step}; the weights it leads to are not saved. Lower the "
            "learning rate (or the loss weights), and check the data for broken images."
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
    return (
        f"{steps} training step(s) ran but no trained weight changed (learning rate {args.learning_rate:g}, "
        f"warm-up {args.warmup_steps:g} steps{', LoRA alpha ' + str(args.lora_alpha) if args.use_peft else ''}): "
        "the result would be the base model under a fine-tune's name, so it is not saved. Train longer than the "
        "warm-up, or check the learning rate."
    )


def resumable(folder: str) -> bool:
    """Whether `folder` looks like a checkpoint of this toolkit (it has `pmg_aft.json`)."""
    return os.path.isfile(os.path.join(folder, "pmg_aft.json"))
