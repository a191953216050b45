"""Loading a CLIP checkpoint for training or evaluation, refusing anything that is not one, with one clear line."""

from __future__ import annotations

import json
import logging
import os
import re

from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, CLIPModel, CLIPProcessor

from .errors import InputError

logger = logging.getLogger(__name__)


class CheckpointError(InputError):
    """A checkpoint that cannot serve: missing, not a CLIP model, or with unreadable or incomplete weights."""


def looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id (`org/name`)."""
    windows = os.sep != "/" and os.sep in name
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or windows


def load_clip(name_or_path: str, revision: str | None = None) -> tuple[CLIPModel, CLIPProcessor]:
    """A `CLIPModel` and its `CLIPProcessor` from a folder or the Hub, checked to be a whole CLIP checkpoint.

    transformers builds a randomly initialised CLIP from any config it can map and fills in what the weights lack;
    training or evaluating that would report numbers of a random model. This refuses it instead.

    Raises:
        [`CheckpointError`]: one line naming the checkpoint and what is wrong: no such folder, a config of another
            model type, weights that are truncated or do not cover the CLIP parameters.
    """
    where = os.path.expanduser(name_or_path)
    if looks_like_path(name_or_path) and not os.path.isdir(where):
        raise CheckpointError(
            f"{name_or_path}: no such checkpoint folder. Pass a folder written by save_pretrained (or save_model), "
            "or a Hub id such as openai/clip-vit-base-patch32."
        )
    try:
        config = AutoConfig.from_pretrained(where, revision=revision)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{name_or_path}: no model config can be read ({_first_line(error)}).") from error
    if config.model_type != "clip":
        raise CheckpointError(
            f"{name_or_path} is a {config.model_type} checkpoint ({type(config).__name__}), not a CLIP model: "
            "pmg_aft needs a CLIPModel with its image and text towers, e.g. openai/clip-vit-base-patch32."
        )
    try:
        model, info = CLIPModel.from_pretrained(where, revision=revision, output_loading_info=True)
    except (OSError, ValueError, SafetensorError) as error:
        raise CheckpointError(
            f"{name_or_path}: its weights cannot be read ({_first_line(error)}); the file may be truncated: save or "
            "download it again."
        ) from error
    missing = info.get("missing_keys") or []
    if missing:
        raise CheckpointError(
            f"{name_or_path}: its weights do not cover the CLIP model: {len(missing)} parameter(s) missing "
            f"({', '.join(sorted(missing)[:3])}...). transformers would initialise them at random."
        )
    try:
        processor = CLIPProcessor.from_pretrained(where, revision=revision)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{name_or_path}: no CLIP processor (tokenizer and image processor) can be read ({_first_line(error)})."
        ) from error
    return model, processor


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def last_complete_checkpoint(output_dir: str) -> tuple[str | None, dict[str, str]]:
    """The newest `checkpoint-N` folder of `output_dir` that a run can resume from (or `None`), and the newer ones
    that cannot, each with the reason.

    A kill or a full disk can leave the newest one half-written (only `config.json`, a truncated
    `model.safetensors`, no `trainer_state.json`); `Trainer` would then fail on every rerun.
    """
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    skipped = {}
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped[path] = problem
    return None, skipped


def set_aside(path: str, problem: str) -> str:
    """Rename an unusable checkpoint folder to `incomplete-checkpoint-N` (kept, never deleted), so that neither
    resuming nor `save_total_limit`'s rotation (which keeps the highest-numbered folders) takes it for a checkpoint."""
    target = os.path.join(os.path.dirname(path), f"incomplete-{os.path.basename(path)}")
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(os.path.dirname(path), f"incomplete-{os.path.basename(path)}-{suffix}")
    os.replace(path, target)
    logger.warning("Not resuming from %s: %s. Moved it to %s; resuming from the last complete one.", path, problem,
                   target)  # fmt: skip
    return target


def checkpoint_problem(path: str) -> str | None:
    """Why the training checkpoint folder `path` cannot be resumed from, or `None` if it can."""
    if not os.path.isdir(path):
        return "no such folder"
    state = os.path.join(path, "trainer_state.json")
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except FileNotFoundError:
        return "it has no trainer_state.json (it was not finished)"
    except (OSError, ValueError) as error:
        return f"its trainer_state.json cannot be read ({_first_line(error)})"
    names = os.listdir(path)
    weights = [n for n in names if n.endswith(".safetensors")]
    # FSDP's sharded state dicts and DeepSpeed's ZeRO states are folders, and accelerate may write .bin files.
    other = [n for n in names if n.startswith(("pytorch_model_fsdp", "global_step")) or n.endswith(".bin")]
    if not weights and not other:
        return "it holds no model weights"
    for name in weights:
        try:
            safe_open(os.path.join(path, name), framework="pt")  # checks the header covers the whole file
        except (OSError, SafetensorError) as error:
            return f"its {name} cannot be read ({_first_line(error)})"
    return None
