"""The TeCoA-family learning-rate schedule: linear warm-up counted from the first step, then cosine to 0."""

from __future__ import annotations

import math
from functools import partial

import torch


def first_step_cosine(step: int, *, warmup: int, total: int) -> float:
    """The learning-rate factor at `step`: `(step + 1) / warmup` during the warm-up (the TeCoA, PMG-AFT and TGA-ZSR
    `cosine_lr`: the first update already uses lr / warmup), then `0.5 * (1 + cos(pi * e / es))` with
    `e = step - warmup`, `es = total - warmup`, as `transformers`' cosine schedule after its warm-up."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def first_step_cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int):
    """A `LambdaLR` over [`first_step_cosine`] (a `partial`, so its state saves and resumes as transformers' own)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(first_step_cosine, warmup=warmup, total=total))
