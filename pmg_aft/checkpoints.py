"""Loading a CLIP checkpoint for training or evaluation, refusing anything that is not one, with one clear line."""

from __future__ import annotations

import json
import logging
import math
import os
import re

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import AutoConfig, CLIPModel, CLIPProcessor

from .errors import InputError
from .provenance import Provenance, state_digest, weights_digest

logger = logging.getLogger(__name__)


class CheckpointError(InputError):
    """A checkpoint that cannot serve: missing, not a CLIP model, or with unreadable or incomplete weights."""


def looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id (`org/name`)."""
    windows = os.sep != "/" and os.sep in name
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or windows


def load_clip(name_or_path: str, revision: str | None = None) -> tuple[CLIPModel, CLIPProcessor]:
    """A `CLIPModel` and its `CLIPProcessor` from a folder or the Hub, checked to be a whole, finite CLIP checkpoint
    that loads without running any code.

    transformers builds a randomly initialised CLIP from any config it can map and fills in what the weights lack;
    training or evaluating that would report numbers of a random model. This refuses it instead, and refuses what
    would run code or read pickles: a config with `auto_map` (custom code), weights only in pickle files; nothing is
    loaded with `trust_remote_code`. A folder pmg_aft wrote must hold the weights its `pmg_aft.json` records.

    Raises:
        [`CheckpointError`]: one line naming the checkpoint and what is wrong: no such folder, a config of another
            model type or asking for custom code, pickle-only, truncated or non-finite weights, weights that do not
            cover the CLIP parameters, a processor whose mean/std are not finite (std > 0), weights that are not the
            ones its provenance records.
    """
    where = os.path.expanduser(name_or_path)
    local = os.path.isdir(where)
    if looks_like_path(name_or_path) and not local:
        raise CheckpointError(
            f"{name_or_path}: no such checkpoint folder. Pass a folder written by save_pretrained (or save_model), "
            "or a Hub id such as openai/clip-vit-base-patch32."
        )
    if local:
        check_local_folder(where, name_or_path)
    try:
        config = AutoConfig.from_pretrained(where, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{name_or_path}: no model config can be read ({_first_line(error)}).") from error
    if config.model_type != "clip":
        raise CheckpointError(
            f"{name_or_path} is a {config.model_type} checkpoint ({type(config).__name__}), not a CLIP model: "
            "pmg_aft needs a CLIPModel with its image and text towers, e.g. openai/clip-vit-base-patch32."
        )
    if getattr(config, "auto_map", None):
        raise CheckpointError(_custom_code(name_or_path, config.auto_map))
    try:
        model, info = CLIPModel.from_pretrained(where, revision=revision, output_loading_info=True,
                                                use_safetensors=True, trust_remote_code=False)  # fmt: skip
    except (OSError, ValueError, SafetensorError) as error:
        raise CheckpointError(
            f"{name_or_path}: its weights cannot be read as safetensors ({_first_line(error)}); the file may be "
            "truncated (save or download it again), or the release has pickle weights only, which pmg_aft does not "
            "load (ask for a safetensors release)."
        ) from error
    missing = info.get("missing_keys") or []
    if missing:
        raise CheckpointError(
            f"{name_or_path}: its weights do not cover the CLIP model: {len(missing)} parameter(s) missing "
            f"({', '.join(sorted(missing)[:3])}...). transformers would initialise them at random."
        )
    check_finite(model, name_or_path)
    try:
        processor = CLIPProcessor.from_pretrained(where, revision=revision, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{name_or_path}: no CLIP processor (tokenizer and image processor) can be read ({_first_line(error)})."
        ) from error
    check_processor(processor, name_or_path, model)
    record = Provenance.load(where) if local else None
    if record is not None:
        record.check_weights(weights_digest(model), name_or_path)
    return model, processor


# Pickle files that may hold weights: never read here (unpickling can run code).
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_local_folder(folder: str, name: str) -> None:
    """Refuse, before transformers reads it, a folder whose config asks for custom code or names another model type,
    and one whose weights are pickle files only."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{name}: no config.json; pass a folder written by save_pretrained (or save_model).")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{name}: its config.json cannot be read ({_first_line(error)}).") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: its config.json holds no model config.")
    if config.get("auto_map"):
        raise CheckpointError(_custom_code(name, config["auto_map"]))
    if config.get("model_type") != "clip":
        raise CheckpointError(
            f"{name} is a {config.get('model_type')!r} checkpoint, not a CLIP model: pmg_aft needs a CLIPModel with "
            "its image and text towers, e.g. openai/clip-vit-base-patch32."
        )
    names = os.listdir(folder)
    pickles = sorted(n for n in names if n.endswith(PICKLE_WEIGHTS))
    if pickles and not any(n.endswith(".safetensors") for n in names):
        raise CheckpointError(
            f"{name}: its weights are pickle files only ({', '.join(pickles[:3])}), which pmg_aft does not load "
            "(unpickling can run code): use a safetensors copy of the weights."
        )


def _custom_code(name: str, auto_map) -> str:
    return (
        f"{name}: its config asks for custom code (auto_map: {auto_map}); pmg_aft never runs code from a model "
        "folder. Use a plain CLIPModel checkpoint."
    )


def check_finite(model, name: str) -> None:
    """Refuse weights with a NaN or an infinity, naming the first such tensor."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(
                f"{name}: its weights hold non-finite values (NaN or inf) in {key}: they cannot give a meaningful "
                "number. Use the checkpoint before the training diverged, or retrain with a lower learning rate."
            )


def check_processor(processor, name: str, model=None) -> None:
    """Refuse an image processor whose normalisation is not 3 finite means and 3 finite stds > 0, and a tokenizer
    with more tokens than `model`'s text tower embeds (its prompts would index past the embedding table)."""
    tokenizer = getattr(processor, "tokenizer", None)
    if model is not None and tokenizer is not None and len(tokenizer) > model.config.text_config.vocab_size:
        raise CheckpointError(
            f"{name}: its tokenizer has {len(tokenizer)} tokens but the text tower embeds "
            f"{model.config.text_config.vocab_size}: the processor is not this model's."
        )
    image_processor = getattr(processor, "image_processor", processor)
    for field_name in ("image_mean", "image_std"):
        values = getattr(image_processor, field_name, None)
        if not isinstance(values, (list, tuple)) or len(values) != 3:
            raise CheckpointError(f"{name}: its image processor's {field_name} is {values!r}, not 3 values.")
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        bad = len(numbers) != 3 or not all(math.isfinite(v) for v in numbers)
        if bad or (field_name == "image_std" and min(numbers) <= 0):
            domain = "finite numbers > 0" if field_name == "image_std" else "finite numbers"
            raise CheckpointError(
                f"{name}: its image processor's {field_name} is {list(values)}; it must be 3 {domain} "
                "(preprocessor_config.json)."
            )


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


# What a Trainer checkpoint needs to continue its run exactly (a checkpoint of FSDP or DeepSpeed keeps its states in
# folders of its own): a checkpoint without them would resume as another run.
RUN_STATE = ("optimizer.pt", "scheduler.pt")
# The top-level keys each torch file of a checkpoint must hold (loaded with weights_only=True: nothing runs).
TORCH_FILES = {"optimizer.pt": ("state", "param_groups"), "rng_state": ("python", "numpy", "cpu"), "scheduler.pt": ()}


def checkpoint_problem(path: str) -> str | None:
    """Why the training checkpoint folder `path` cannot be resumed from, or `None` if it can: any of its files that
    cannot be read (a kill or a full disk cut it short) or is not what its name says, a missing optimizer, scheduler
    or RNG state, weights or a step that are not the ones its `pmg_aft.json` records. Trainer would fail on such a
    checkpoint at every rerun, or resume it as another run."""
    if not os.path.isdir(path):
        return "no such folder"
    state = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state):
        return "it has no trainer_state.json (it was not finished)"
    names = os.listdir(path)
    weights = sorted(n for n in names if n.endswith(".safetensors"))
    # FSDP's sharded state dicts and DeepSpeed's ZeRO states are folders, and accelerate may write .bin files.
    sharded = [n for n in names if n.startswith(("pytorch_model_fsdp", "global_step", "optimizer_0"))]
    if not weights and not sharded and not any(n.endswith(".bin") for n in names):
        return "it holds no model weights"
    missing = [n for n in RUN_STATE if n not in names] + ([] if any(n.startswith("rng_state") for n in names)
                                                          else ["rng_state.pth"])  # fmt: skip
    if missing and not sharded:
        return f"it has no {', '.join(missing)} (it cannot continue its run exactly)"
    for root, _, files in os.walk(path):
        for name in sorted(files):
            problem = file_problem(os.path.join(root, name))
            if problem is not None:
                return f"its {os.path.relpath(os.path.join(root, name), path)} cannot be read ({problem})"
    try:
        record = Provenance.load(path)
    except InputError as error:
        return str(error)
    if record is not None:
        with open(state, encoding="utf-8") as f:
            step = json.load(f).get("global_step")
        if record.step is not None and step != record.step:
            return f"its trainer_state.json says step {step}, its pmg_aft.json step {record.step} (changed by hand?)"
        if weights:
            tensors = {}
            for name in weights:
                tensors.update(load_file(os.path.join(path, name)))
            if state_digest(tensors) != record.weights_digest:
                return "its weights are not the ones its pmg_aft.json records (the files were changed)"
    return None


def file_problem(path: str) -> str | None:
    """Why a file of a checkpoint cannot be read, or `None`: a JSON file that does not parse, a safetensors file
    whose header does not cover it, a torch file that does not load with `weights_only=True` (nothing is run) or
    lacks what its name says it holds."""
    name = os.path.basename(path)
    try:
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif name.endswith(".safetensors"):
            safe_open(path, framework="pt")  # checks the header covers the whole file
        elif name.endswith((".pt", ".pth", ".bin")):
            from transformers.trainer_pt_utils import safe_globals  # what Trainer allows in an RNG state

            with safe_globals():
                loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            keys = next((k for prefix, k in TORCH_FILES.items() if name.startswith(prefix)), None)
            if keys is not None and (not isinstance(loaded, dict) or any(k not in loaded for k in keys)):
                found = sorted(map(str, loaded))[:5] if isinstance(loaded, dict) else type(loaded).__name__
                return f"it is not the state its name says: expected {list(keys) or 'a dict'}, found {found}"
    except Exception as error:  # torch and safetensors raise many types for a damaged or unsafe file; each is that
        return _first_line(error)
    return None
