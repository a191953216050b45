"""Peak memory and time of one real training step (the trainer's own `Trainer.train()`), per backbone, mode and batch.

Prints, all measured in this run (random weights, CPU, float32):
  table        per backbone (ViT-B/32, ViT-L/14: the OpenAI architectures), mode and batch size, from three steps of
               `Trainer.train()`: a warm-up, the measured step (a steady-state one: the optimiser state exists, the
               gradients are allocated anew) and the timed step:
               step s          the timed step, by a callback from on_step_begin to on_step_end: attack, forward,
                               backward, optimiser and scheduler step, one torch thread
               step peak MB    the measured step's peak RSS minus the RSS once the model, the frozen reference and the
                               trainer are built: the step's own memory (activations, gradients, optimiser state and
                               temporaries, allocator slack)
               total peak MB   the measured step's peak RSS itself (weights, reference, libraries included)
               trainable       parameters with requires_grad (full and checkpointing: the vision tower and its
                               projection; lora: the adapters alone)
               fwd+bwd peak MB the same as step peak, up to the optimiser step (attack, forward, backward)
               saved act. MB   the peak bytes of the tensors autograd held for backward in those passes, parameters
                               left out: the activations, whatever the allocator does (under checkpointing it misses
                               the one layer recomputed at a time)
  fit          per backbone and mode, least-squares lines over the batch sizes. For GPU planning: the fwd+bwd peak's
               MB/sample (activations) and intercept (optimiser state, gradients, batch-independent overheads), and
               the batch that would fit in 80 GB, (80 GB - intercept - weights) / slope, weights the float32 model
               and reference copy. Beside it the step peak's own line: at small batches the peak is the optimiser
               step (state, gradients, the optimiser's temporaries), flat in the batch. An EXTRAPOLATION from CPU
               float32 RSS: CUDA's caching allocator and kernels (attention, workspaces) allocate differently,
               fp16/bf16 autocast roughly halves activations, and only a GPU run can confirm it.
  attack steps the same step with the recipe's attack steps (FARE: 10) against --train_steps, on the first backbone
               at batch 1: time ratio measured against (steps + 1) / (train_steps + 1), and both peaks (PGD frees
               each step's graph, so the peak should not grow with the steps).

Modes: full (every vision weight trains), checkpointing (transformers' activation_checkpointing: each encoder layer's
activations are recomputed in the backward), lora (use_peft: rank-r adapters on the vision attention and MLP
projections; the reference is the base with its adapters off, no second copy).

Each configuration runs in a fresh process forked from this one (which only imports). Until the timed step glibc's
mmap threshold is fixed (--mmap_threshold_kb, 128 KB), so every large tensor has its own mapping, returned on free:
with glibc's dynamic threshold (which rises to 32 MB) freed activations stay in a fragmented heap and RSS misstates
them by up to 2x (ViT-L/14 lora batch 2: an attack peak of 2,062 MB RSS against 1,020 MB with the fixed threshold,
for 970 MB of saved activations; setting it only after two steps is too late). Before the measured step free heap
memory is returned (malloc_trim) and the peak RSS is reset (/proc/self/clear_refs). The small threshold costs page
faults (B/32 batch 1: about +70% step time), so the timed step runs after the threshold is raised to the 32 MB that
glibc's own ends at. MB is 2**20 bytes, 80 GB is 80 * 1024 MB.

    OMP_NUM_THREADS=1 python benchmarks/memory.py --json /tmp/memory.json
    python benchmarks/memory.py --backbones b32 --modes full,lora --batch_sizes 1,2 --method tecoa
    python benchmarks/memory.py --quick  # the tiny CLIP, batch 1 and 2: seconds
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image
from transformers import CLIPConfig, CLIPModel, PrinterCallback, TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ARCHITECTURES  # noqa: E402

from pmg_aft import TRAINERS  # noqa: E402
from pmg_aft.tiny import tiny_clip_config, tiny_tokenizer  # noqa: E402

MB = 2**20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MEASURED_STEP, TIMED_STEP = 2, 3  # of Trainer.train()'s steps, after a warm-up
GPU_MB = 80 * 1024  # 80 GB
BACKBONES = {"b32": ("ViT-B/32", "vit-b-32"), "l14": ("ViT-L/14", "vit-l-14"), "tiny": ("tiny", None)}
MODES = ("full", "checkpointing", "lora")
VOCAB, CONTEXT = 49408, 77  # OpenAI CLIP's tokenizer and context length
CLASSES = [f"class {i}" for i in range(10)]


def clip_config(backbone: str) -> CLIPConfig:
    """The OpenAI architecture's shape (quick_gelu, vocabulary 49408, context 77), or the embedded tiny CLIP."""
    if backbone == "tiny":
        return tiny_clip_config()
    (vh, vl, va, patch, image), (th, tl, ta), proj = ARCHITECTURES[BACKBONES[backbone][1]]
    return CLIPConfig(
        vision_config={"hidden_size": vh, "intermediate_size": 4 * vh, "num_hidden_layers": vl,
                       "num_attention_heads": va, "patch_size": patch, "image_size": image,
                       "hidden_act": "quick_gelu"},
        text_config={"hidden_size": th, "intermediate_size": 4 * th, "num_hidden_layers": tl,
                     "num_attention_heads": ta, "vocab_size": VOCAB, "max_position_embeddings": CONTEXT,
                     "hidden_act": "quick_gelu", "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        projection_dim=proj,
    )  # fmt: skip


def image_set(rows: int, size: int, seed: int = 0) -> Dataset:
    """`rows` smooth random RGB images of `size` px with a 10-class `ClassLabel` (FARE ignores the labels)."""
    rng = np.random.default_rng(seed)
    cells = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(rows)]
    images = [Image.fromarray(cell).resize((size, size), Image.Resampling.BILINEAR) for cell in cells]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=CLASSES)})
    return Dataset.from_dict({"image": images, "label": (np.arange(rows) % len(CLASSES)).tolist()}, features=features)


def memory_status() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset), in MB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / MB
    return values["VmRSS"], values["VmHWM"]


def settle_and_reset_peak() -> bool:
    """Free what can be freed, hand free heap pages back (glibc), and reset the peak RSS to the current RSS.
    Returns whether the reset worked (Linux >= 4.0)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class SavedTensors:
    """Autograd's saved-tensor hooks that count the bytes of the distinct storages held for the backward passes,
    parameters left out: the activations themselves, whatever the allocator does, and their peak."""

    def __init__(self, parameters) -> None:
        self.skip = {p.untyped_storage().data_ptr() for p in parameters}
        self.held: dict[int, list[int]] = {}  # storage address -> [references, bytes]
        self.bytes = self.peak = 0
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def pack(self, tensor: torch.Tensor):
        key = tensor.untyped_storage().data_ptr()
        if key in self.skip:
            return tensor
        entry = self.held.setdefault(key, [0, tensor.untyped_storage().nbytes()])
        if entry[0] == 0:
            self.bytes += entry[1]
            self.peak = max(self.peak, self.bytes)
        entry[0] += 1
        return _Held(tensor, key, self)

    def unpack(self, packed):
        return packed.tensor if isinstance(packed, _Held) else packed

    def release(self, key: int) -> None:
        entry = self.held[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.bytes -= entry[1]
            del self.held[key]


class _Held:
    def __init__(self, tensor: torch.Tensor, key: int, owner: SavedTensors) -> None:
        self.tensor, self.key, self.owner = tensor, key, owner

    def __del__(self):
        self.owner.release(self.key)


def mallopt(parameter: int, value: int) -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt(parameter, value)
    except (OSError, AttributeError):  # not glibc
        pass


class StepProbe(TrainerCallback):
    """Three steps of the Trainer's loop: a warm-up, the measured step and the timed step. The measured step is a
    steady-state one (the optimiser state exists, the gradients are allocated anew), its peak RSS reset at its start:
    the peak RSS of its forward and backward passes, read before its optimiser step, and of the whole step, and the
    peak of the tensors saved for backward (`SavedTensors`). After it glibc's mmap threshold is raised to the 32 MB
    its dynamic threshold grows to (`fixed_mmap`: the process runs under a fixed small one until then) and the last
    step is timed."""

    def __init__(self, saved: SavedTensors, fixed_mmap: bool) -> None:
        self.saved, self.fixed_mmap = saved, fixed_mmap
        self.times, self.began, self.reset, self.rss_before = [], None, None, None
        self.backward_peak = self.step_peak = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == MEASURED_STEP - 1:
            self.reset = settle_and_reset_peak()
            self.rss_before = memory_status()[0]
            self.saved.hooks.__enter__()
        self.began = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step == MEASURED_STEP - 1:
            self.backward_peak = memory_status()[1]
            self.saved.hooks.__exit__(None, None, None)

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.began)
        if state.global_step == MEASURED_STEP:
            self.step_peak = memory_status()[1]
            if self.fixed_mmap:
                mallopt(M_MMAP_THRESHOLD, 32 * MB)
                mallopt(M_TRIM_THRESHOLD, 64 * MB)


def params_bytes(module: torch.nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def measure(spec: dict) -> dict:
    """One configuration in this (fresh) process: build, then train three steps (`StepProbe`)."""
    torch.set_num_threads(spec["threads"])
    if spec["mmap_threshold_kb"]:
        # A fixed threshold (glibc's dynamic one rises to 32 MB) puts every large tensor in its own mapping, returned
        # on free: RSS then follows the live tensors instead of a fragmented heap's high-water mark.
        mallopt(M_MMAP_THRESHOLD, spec["mmap_threshold_kb"] * 1024)
    rss_start, _ = memory_status()
    torch.manual_seed(0)
    config = clip_config(spec["backbone"])
    model = CLIPModel(config)
    size = config.vision_config.image_size
    trainer_class = TRAINERS[spec["method"]]
    mode = spec["mode"]
    args = trainer_class.config_class(
        output_dir=tempfile.mkdtemp(), use_cpu=True, fp16=False, bf16=False, report_to="none", save_strategy="no",
        disable_tqdm=True, logging_steps=10**6, per_device_train_batch_size=spec["batch"], max_steps=TIMED_STEP,
        warmup_steps=0, native_resolution=True, dataloader_num_workers=0, train_steps=spec["train_steps"],
        activation_checkpointing=mode == "checkpointing", use_peft=mode == "lora", lora_r=spec["lora_r"], seed=0,
    )  # fmt: skip
    trainer = trainer_class(model, args, train_dataset=image_set(TIMED_STEP * spec["batch"], size),
                            processing_class=tiny_tokenizer())  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # the loop's log lines
    saved = SavedTensors([*trainer.model.parameters(), *(trainer.ref_model or torch.nn.Module()).parameters()])
    probe = StepProbe(saved, bool(spec["mmap_threshold_kb"]))
    trainer.add_callback(probe)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    weights = params_bytes(trainer.model) + params_bytes(trainer.ref_model)
    settle_and_reset_peak()
    rss_built, _ = memory_status()
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    state_bytes = sum(t.numel() * t.element_size() for values in optimizer.state.values() for t in values.values()
                      if torch.is_tensor(t) and t.dim() > 0)  # fmt: skip
    return dict(backbone=spec["backbone"], mode=mode, batch=spec["batch"], method=spec["method"],
                train_steps=spec["train_steps"], step_s=probe.times[TIMED_STEP - 1], step_times_s=probe.times,
                step_peak_mb=probe.step_peak - rss_built, backward_peak_mb=probe.backward_peak - rss_built,
                saved_activations_mb=saved.peak / MB, optimizer_state_mb=state_bytes / MB,
                total_peak_mb=probe.step_peak, built_rss_mb=rss_built, measured_step_start_rss_mb=probe.rss_before,
                start_rss_mb=rss_start, weights_mb=weights / MB, trainable_params=trainable,
                peak_reset=probe.reset)  # fmt: skip


def _child(connection, spec: dict) -> None:
    try:
        connection.send(measure(spec))
    except BaseException as error:  # reported (and the run stopped) by the parent
        connection.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        connection.close()


def run_fresh(spec: dict) -> dict:
    """`measure(spec)` in a fresh process forked from this one (which has imported, not allocated, anything)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, spec))
    process.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        result = {"error": "the process died without a result (out of memory?)"}
    process.join()
    if "error" in result:
        raise SystemExit(f"{spec}: {result['error']}")
    return result


def line_fit(rows: list[dict], key: str) -> tuple[float, float]:
    """Least-squares slope (MB/sample) and intercept (MB) of `rows[i][key]` over the batch size."""
    slope, intercept = np.polyfit([r["batch"] for r in rows], [r[key] for r in rows], 1)
    return float(slope), float(intercept)


def names(text: str, allowed) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise SystemExit(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="b32,l14", help="comma-separated: b32, l14 (and tiny)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: full, checkpointing, lora")
    parser.add_argument("--batch_sizes", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--method", default="fare", choices=["fare", "tecoa", "pmg_aft"])
    parser.add_argument("--train_steps", type=int, default=2, help="PGD steps of the training attack")
    parser.add_argument("--check_steps", type=int, default=None,
                        help="attack steps of the extra runs (first backbone, batch 1, every mode); default: the "
                        "method's recipe (FARE 10); 0 or --train_steps skips them")  # fmt: skip
    parser.add_argument("--lora_r", type=int, default=16, help="LoRA rank of the lora mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each measurement (default 1)")
    parser.add_argument(
        "--mmap_threshold_kb",
        type=int,
        default=128,
        help="glibc's fixed mmap threshold until the timed step (0: glibc's dynamic one)",
    )
    parser.add_argument("--quick", action="store_true", help="the tiny CLIP at batch 1 and 2 (a smoke test)")
    parser.add_argument("--json", default=None, help="write the rows, fits and settings to this file")
    args = parser.parse_args()
    if args.quick:
        args.backbones, args.batch_sizes = "tiny", "1,2"
    backbones = names(args.backbones, BACKBONES)
    modes = names(args.modes, MODES)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    recipe_steps = TRAINERS[args.method].config_class.train_steps  # the dataclass default: the recipe's
    check_steps = recipe_steps if args.check_steps is None else args.check_steps
    spec = dict(method=args.method, train_steps=args.train_steps, lora_r=args.lora_r, threads=args.threads,
                mmap_threshold_kb=args.mmap_threshold_kb)  # fmt: skip
    print(f"method {args.method}, {args.train_steps}-step PGD (recipe: {recipe_steps}), float32, random weights, CPU, "
          f"{args.threads} torch thread(s) per measurement (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
          f"lora r {args.lora_r}; one fresh process per configuration, glibc mmap threshold "
          f"{args.mmap_threshold_kb or 'dynamic'} KB until the timed step; Trainer.train() runs 3 steps: a warm-up, "
          "the measured step, the timed step", flush=True)  # fmt: skip

    began = time.perf_counter()
    rows = []
    for backbone in backbones:
        for mode in modes:
            for batch in batches:
                row = run_fresh({**spec, "backbone": backbone, "mode": mode, "batch": batch})
                rows.append(row)
                so_far = time.perf_counter() - began
                print(f"  measured {BACKBONES[backbone][0]} {mode} batch {batch}: {row['step_s']:.2f} s, step peak "
                      f"{row['step_peak_mb']:.0f} MB ({so_far:.0f} s so far)", flush=True)  # fmt: skip
    checks = []
    if check_steps and check_steps != args.train_steps:
        for mode in modes:
            more = run_fresh({**spec, "train_steps": check_steps, "backbone": backbones[0], "mode": mode, "batch": 1})
            base = next(r for r in rows if r["backbone"] == backbones[0] and r["mode"] == mode and r["batch"] == 1)
            checks.append((base, more))
    if not all(r["peak_reset"] for r in rows):
        print("note: the peak RSS could not be reset here: the peaks are the process's since it began")

    print()
    print("| backbone | mode | batch | step s | step peak MB | total peak MB | trainable params | fwd+bwd peak MB | "
          "saved act. MB |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {BACKBONES[r['backbone']][0]} | {r['mode']} | {r['batch']} | {r['step_s']:.3f} | "
              f"{r['step_peak_mb']:.1f} | {r['total_peak_mb']:.1f} | {r['trainable_params']:,} | "
              f"{r['backward_peak_mb']:.1f} | {r['saved_activations_mb']:.1f} |")  # fmt: skip
    print("(step s: the 3rd step of Trainer.train(), on_step_begin to on_step_end, glibc's mmap threshold at 32 MB; "
          "step peak: the peak RSS of the 2nd step, a steady-state one, minus the RSS after the build (activations, "
          "gradients, optimiser state and temporaries); total peak: that peak RSS itself; fwd+bwd peak: the same "
          "as step peak up to its optimiser step; saved act.: the peak of the tensors autograd held for backward "
          "in its passes, parameters left out, allocator-independent (under checkpointing it misses the one layer "
          "recomputed at a time))")  # fmt: skip

    fits = []
    print()
    print(f"GPU planning: least-squares fit over batch {', '.join(map(str, batches))} of the fwd+bwd peak (MB/sample: "
          "activations; intercept: optimiser state, gradients and batch-independent overheads), and the batch in "
          "80 GB = (80 GB - intercept - weights) / slope, weights the float32 model + reference copy. The step "
          "peak's own line is beside it: at small batches the step's peak is its optimiser step (state, gradients "
          "and the optimiser's temporaries), flat in the batch; at large ones it is the fwd+bwd peak. "
          "EXTRAPOLATION from CPU float32 RSS: CUDA allocates differently, fp16/bf16 autocast roughly halves "
          "activations; only a GPU run can confirm.")  # fmt: skip
    print()
    print("| backbone | mode | MB/sample | intercept MB | weights MB | batch in 80 GB (extrapolated) | "
          "optimiser state MB | step-peak MB/sample | step-peak intercept MB | saved act. MB/sample |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backbone in backbones:
        for mode in modes:
            group = [r for r in rows if r["backbone"] == backbone and r["mode"] == mode]
            weights, state = group[0]["weights_mb"], group[0]["optimizer_state_mb"]
            label = f"| {BACKBONES[backbone][0]} | {mode} |"
            if len({r["batch"] for r in group}) < 2:
                print(f"{label} n/a | n/a | {weights:.1f} | n/a (one batch size) | {state:.1f} | n/a | n/a | n/a |")
                continue
            slope, intercept = line_fit(group, "backward_peak_mb")
            step_slope, step_intercept = line_fit(group, "step_peak_mb")
            saved_slope, _ = line_fit(group, "saved_activations_mb")
            fit = (GPU_MB - intercept - weights) / slope if slope > 0 else float("inf")
            fits.append(dict(backbone=backbone, mode=mode, mb_per_sample=slope, intercept_mb=intercept,
                             weights_mb=weights, batch_in_80gb=fit, optimizer_state_mb=state,
                             step_peak_mb_per_sample=step_slope, step_peak_intercept_mb=step_intercept,
                             saved_activations_mb_per_sample=saved_slope))  # fmt: skip
            print(f"{label} {slope:.1f} | {intercept:.1f} | {weights:.1f} | {fit:,.0f} | {state:.1f} | "
                  f"{step_slope:.1f} | {step_intercept:.1f} | {saved_slope:.1f} |")  # fmt: skip

    if checks:
        print()
        print(f"Attack steps: {check_steps} (the recipe's) against {args.train_steps}, {BACKBONES[backbones[0]][0]} "
              f"batch 1. The claim: time x (steps + 1) / ({args.train_steps} + 1) = "
              f"{(check_steps + 1) / (args.train_steps + 1):.2f}, peak unchanged.")  # fmt: skip
        print()
        print(f"| mode | step s ({args.train_steps}) | step s ({check_steps}) | time ratio | step peak MB "
              f"({args.train_steps}) | step peak MB ({check_steps}) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for base, more in checks:
            ratio = more["step_s"] / base["step_s"]
            print(f"| {base['mode']} | {base['step_s']:.3f} | {more['step_s']:.3f} | {ratio:.2f} | "
                  f"{base['step_peak_mb']:.1f} | {more['step_peak_mb']:.1f} |")  # fmt: skip
    print()
    print(f"total run time {time.perf_counter() - began:.0f} s")

    if args.json:
        settings = dict(vars(args), recipe_steps=recipe_steps, check_steps=check_steps,
                        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), torch=torch.__version__)  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(dict(settings=settings, rows=rows, fits=fits,
                           attack_steps=[dict(base=b, more=m) for b, m in checks]), f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
