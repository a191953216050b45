"""A generated sweep of hostile inputs and faults through the `pmg-aft` commands, offline, with what came of each.

    python scripts/fault_sweep.py [--workdir /tmp/pmg_aft_sweep] [--json sweep.json] [--only fields|scenarios]

Two parts:

- Fields: every field of every registered record (each method's config, the job's and each command's, found through
  `pmg_aft.TRAINERS` and `pmg_aft.cli.COMMANDS`) given hostile values by its type (nan, inf, -inf, 0, -1, 1e30,
  empty, a word where a number belongs, ...), as flags and, for a config's numbers, in a YAML file. A refusal must be
  one line naming the field; a value the command takes is run, and its result checked (the weights load, are finite
  and changed; the report's figures are fractions; the value is recorded as given).
- Scenarios: kills inside each file of a checkpoint, a small full disk (as root), two runs into one folder, read-only
  folders, output folders that are inputs, other runs' and models' folders, resumes with another recipe, hostile model
  folders (custom code, pickles, NaN, tampered weights), hostile files and cards, a token in the environment.

Each case is classified: clear error, warning, correct (the checks behind it passed), or a failure: silent wrong,
lost, stuck, traceback, unclear, security. Prints one line per failure and warning, then the counts by family, and
exits 1 if any case failed. The whole sweep takes about 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import typing
from collections import Counter
from dataclasses import MISSING, dataclass, field, fields

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FAMILIES = {
    1: "non-finite numbers", 2: "degenerate runs", 3: "class texts", 4: "resume mixes runs", 5: "folders",
    6: "cards and push", 7: "converters", 8: "stuck reruns", 9: "security", 10: "a user's situation",
    11: "streaming resume",
}  # fmt: skip
GOOD = ("clear error", "warning", "correct")
FAILURES = ("silent wrong", "lost", "stuck", "traceback", "unclear", "security")
TOKEN = "hf_sweepsecrettoken0123456789"
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "configs", "tiny_offline.yaml")


@dataclass
class Run:
    """What one command did: its exit status, everything it printed, whether it raised past its boundary."""

    code: int
    output: str
    raised: BaseException | None = None
    seconds: float = 0.0

    @property
    def last(self) -> str:
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("pmg-aft") or " error: " in line]
        return (said or lines or [""])[-1].strip()[:220]


class Stuck(Exception):
    pass


def invoke(argv: list[str], timeout: int = 240) -> Run:
    """`pmg-aft ARGV` in this process, as the console script runs it, its output captured, stopped after `timeout`."""
    from pmg_aft import cli

    out = io.StringIO()
    start, code, raised = time.time(), 0, None

    def alarm(*args):
        raise Stuck(f"no exit within {timeout} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _captured_logs(out):
            code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        out.write(f"\n{stop.code}" if not isinstance(stop.code, int) else "")
    except Stuck as error:
        code, raised = -1, error
    except BaseException as error:  # past the command's boundary: a traceback for the user
        code, raised = 1, error
        out.write("".join(traceback.format_exception(error)))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Run(code if code is not None else 0, out.getvalue(), raised, time.time() - start)


@contextlib.contextmanager
def _captured_logs(stream):
    import logging

    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def failure_of(run: Run) -> str | None:
    """The failure any run shows whatever was expected: stuck, a token printed, a traceback."""
    if isinstance(run.raised, Stuck):
        return "stuck"
    if TOKEN in run.output:
        return "security"
    if "Traceback (most recent call last)" in run.output:
        return "traceback"
    return None


def refused(run: Run, *names: str) -> str:
    """The outcome of a run that should stop with one line naming one of `names`."""
    failure = failure_of(run)
    if failure:
        return failure
    if run.code == 0:
        return "silent wrong"
    lines = [line for line in run.output.splitlines() if line.startswith("pmg-aft") or " error: argument" in line]
    named = any(name in line for line in lines for name in names)
    return "clear error" if lines and named else "unclear"


# ---- the material: a trained tiny model, an OpenAI-layout CLIP and its files, data ---------------------------------


@dataclass
class Material:
    root: str
    model: str = ""  # a pmg-aft training's output folder
    base: str = ""  # an OpenAI-layout CLIPModel folder (converts and exports)
    visual: str = ""  # its image tower as a released file (openai_visual)
    counter: list[int] = field(default_factory=lambda: [0])

    def fresh(self, name: str = "out") -> str:
        """A new path for one case (removed after it)."""
        self.counter[0] += 1
        return os.path.join(self.root, "cases", f"{self.counter[0]:04d}-{name}")

    def shared(self, name: str) -> str:
        """A path for what several cases read (kept)."""
        return os.path.join(self.root, "shared", name)


def prepare(root: str) -> Material:
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPModel

    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    material = Material(root)
    material.model = os.path.join(root, "model")
    run = invoke(["train", "--config", CONFIG, "--output_dir", material.model, "--max_steps", "30",
                  "--save_strategy", "no", "--eval_attack_steps", "2", "--disable_tqdm", "true"])  # fmt: skip
    if run.code != 0:
        raise SystemExit(f"could not train the sweep's model:\n{run.output[-2000:]}")
    vocab = len(tiny_tokenizer())
    config = CLIPConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "patch_size": 8, "image_size": 32},
        text_config={"hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "vocab_size": vocab, "max_position_embeddings": 12, "eos_token_id": vocab - 1},
        projection_dim=24,
    )  # fmt: skip
    torch.manual_seed(1)
    base = CLIPModel(config)
    material.base = os.path.join(root, "base")
    base.save_pretrained(material.base)
    clip_processor(tiny_tokenizer(), base, [0.5] * 3, [0.5] * 3).save_pretrained(material.base)
    from pmg_aft.convert import hf_to_openai

    state = hf_to_openai(load_file(os.path.join(material.base, "model.safetensors")))
    material.visual = os.path.join(root, "visual.pt")
    torch.save({k[7:]: v + 0.01 for k, v in state.items() if k.startswith("visual.")}, material.visual)
    return material


# ---- fields ---------------------------------------------------------------------------------------------------------


def records() -> dict[type, str]:
    """Every registered record and the command that parses it (train: each method's config)."""
    from pmg_aft.cli import COMMANDS

    found: dict[type, str] = {}
    for name, command in COMMANDS.items():
        for record in command.argument_records():
            found.setdefault(record, name)
    return found


def field_type(record: type, name: str):
    from pmg_aft.parsing import field_kind

    return field_kind(record, name)


def hostile_values(kind, default) -> list[tuple[str, list[str]]]:
    """`(label, flag values)` to give a field of type `kind`."""
    from pmg_aft.pixels import LogitScale, PixelValue, PixelValues, StepCounts

    numbers = [("nan", ["nan"]), ("inf", ["inf"]), ("-inf", ["-inf"]), ("0", ["0"]), ("negative", ["-1"]),
               ("huge", ["1e30"]), ("empty", [""]), ("wrong type", ["abc"])]  # fmt: skip
    if kind in (int, float, PixelValue, LogitScale):
        return numbers
    if kind in (PixelValues, StepCounts):
        return [*numbers, ("empty list", [","])]
    if kind is bool:
        return [("wrong type", ["maybe"]), ("empty", [""])]
    if kind == list[float]:
        return [("nan", ["nan", "nan", "nan"]), ("inf", ["inf", "0.5", "0.5"]), ("too few", ["0.5"]),
                ("wrong type", ["a", "b", "c"]), ("negative", ["-1", "-1", "-1"])]  # fmt: skip
    if kind == list[str]:
        return [("empty", [""])]
    if kind is str:
        return [("empty", [""]), ("blank", ["   "])]
    return []


def command_argv(command: str, material: Material, out: str) -> list[str]:
    """The command's words and a valid set of its other flags, so that the field under test decides the outcome."""
    quick_eval = ["--benchmarks", "colour-patches", "--steps", "1", "--max_eval_samples", "16"]
    return {
        "train": ["train", "--config", CONFIG, "--model_name_or_path", material.model, "--output_dir", out,
                  "--max_steps", "2", "--eval_attack_steps", "1", "--save_strategy", "no", "--eval_on_start",
                  "false", "--disable_tqdm", "true", "--do_eval", "false"],
        "eval": ["eval", "--model_name_or_path", material.model, "--output_dir", out, *quick_eval],
        "compare": ["compare", "--models", f"m={material.model}", "--output_dir", out, *quick_eval],
        "push": ["push", "--model_dir", material.model, "--hub_model_id", "me/sweep"],
        "convert": ["convert", "--checkpoint", material.visual, "--base_model", material.base, "--output_dir", out],
        "zoo": ["zoo", "import", "--file", material.visual, "--format", "openai_visual", "--base_model",
                material.base, "--output_dir", out],
        "export": ["export", "--model_name_or_path", material.base, "--output_dir", out],
        "datasets": ["datasets", "download", "colour-patches", "--lock", os.path.join(out, "revisions.json")],
        "leaderboard": ["leaderboard", "--models", f"m={material.model}", "--protocols", "pmg_aft", "--benchmarks",
                        "colour-patches", "--output_dir", out],
    }[command]  # fmt: skip


def check_result(command: str, out: str, material: Material, record: type, name: str, given: list[str]) -> str | None:
    """Why the result of an accepted value is wrong, or `None`: the checks behind a "correct"."""
    from safetensors.torch import load_file

    from pmg_aft.checkpoints import load_clip

    if command == "train":
        try:
            model, _ = load_clip(out)  # whole, finite, bound to its provenance
        except Exception as error:
            return f"the trained model does not load: {error}"
        base = load_file(os.path.join(material.model, "model.safetensors"))
        if all(base[k].equal(v) for k, v in model.state_dict().items() if k in base):
            return "the weights did not change"
        saved = json.load(open(os.path.join(out, "training_args.json")))
        if name in saved and len(given) == 1 and given[0] not in ("", "abc", "maybe"):
            value = saved[name]
            try:
                number = float(given[0].split("/")[0]) / (255 if "/" in given[0] else 1)
                if isinstance(value, (int, float)) and not math.isclose(float(value), number, rel_tol=1e-6):
                    return f"{name} was recorded as {value}, given {given[0]}"
            except ValueError:
                pass
        return None
    if command in ("eval", "compare", "leaderboard"):
        from pmg_aft.evaluation import Report

        reports = [os.path.join(root, "report.json") for root, _, files in os.walk(out) if "report.json" in files]
        if not reports:
            return "no report was written"
        for path in reports:
            try:
                Report.load(path)  # checked: its digest, every value a fraction
            except Exception as error:
                return f"{path}: {error}"
        return None
    if command in ("convert", "zoo"):
        try:
            load_clip(out)
        except Exception as error:
            return f"the converted model does not load: {error}"
        return None
    if command == "export":
        return None if os.path.isfile(os.path.join(out, "open_clip_model.safetensors")) else "no open_clip weights"
    return None


def accepted(run: Run, command: str) -> bool:
    """Whether the command took the value and did its job (push: it reached the upload, which fails offline)."""
    if command == "push":
        return run.code == 1 and "Uploading" in run.output
    return run.code == 0


def field_cases(material: Material) -> list[tuple[int, str, typing.Callable[[], tuple[str, str]]]]:
    from pmg_aft import TRAINERS

    shared = {f.name for f in fields(TRAINERS["pmg_aft"].config_class.__mro__[1])}
    methods = {t.config_class: key for key, t in TRAINERS.items()}
    cases = []
    for record, command in records().items():
        for f in fields(record):
            if not f.init or (record in methods and f.name in shared and methods[record] != "pmg_aft"):
                continue
            kind = field_type(record, f.name)
            default = f.default if f.default is not MISSING else None
            for label, values in hostile_values(kind, default):
                family = {"nan": 1, "inf": 1, "-inf": 1}.get(label, 10 if label == "wrong type" else 2)
                extra = ["--method", methods[record]] if record in methods else []
                cases.append((family, f"{command} --{f.name} {' '.join(values) or repr('')} ({label})",
                              _field_case(material, command, record, f.name, values, extra)))  # fmt: skip
            if record in methods and kind in (int, float) and command == "train":
                cases.append((1, f"train YAML {f.name}: .nan",
                              _yaml_case(material, methods[record], f.name, ".nan")))  # fmt: skip
    return cases


def _field_case(material, command, record, name, values, extra):
    def run() -> tuple[str, str]:
        out = material.fresh(name)
        result = invoke([*command_argv(command, material, out), *extra, f"--{name}", *values])
        failure = failure_of(result)
        if failure:
            return failure, result.last
        if not accepted(result, command):
            return refused(result, name), result.last
        wrong = check_result(command, out, material, record, name, values)
        if wrong:
            return "silent wrong", wrong
        warned = "warning" in result.output.lower() or "UserWarning" in result.output
        return ("warning" if warned else "correct"), f"accepted, checked ({result.seconds:.0f} s)"

    return run


def _yaml_case(material, method, name, text):
    def run() -> tuple[str, str]:
        out = material.fresh(name)
        path = out + ".yaml"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(f"method: {method}\n{name}: {text}\n")
        fixed = {"--max_steps": "2", "--save_strategy": "no", "--do_eval": "false", "--eval_on_start": "false"}
        flags = [a for flag, value in fixed.items() if flag != f"--{name}" for a in (flag, value)]
        result = invoke(["train", "--config", path, "--model_name_or_path", material.model, "--output_dir", out,
                         *flags])  # fmt: skip
        if accepted(result, "train") and not failure_of(result):
            wrong = check_result("train", out, material, None, name, [text])
            return ("silent wrong", wrong) if wrong else ("silent wrong", f"{name}: {text} was accepted")
        return refused(result, name), result.last

    return run


# ---- scenarios ------------------------------------------------------------------------------------------------------


def train_argv(material: Material, out: str, *extra: str, steps: int = 4) -> list[str]:
    return ["train", "--config", CONFIG, "--model_name_or_path", material.model, "--output_dir", out, "--max_steps",
            str(steps), "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "5", "--do_eval",
            "false", "--eval_on_start", "false", "--disable_tqdm", "true", *extra]  # fmt: skip


def snapshot(folder: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not name.startswith("."):
                out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def weights(folder: str):
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def same_weights(one: str, two: str) -> bool:
    a, b = weights(one), weights(two)
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def kill_after(out: str, step: int) -> None:
    """Leave `out` as a run killed after it saved checkpoint-`step`."""
    for name in os.listdir(out):
        path = os.path.join(out, name)
        number = name.removeprefix("checkpoint-")
        if (number.isdigit() and int(number) > step) or name == "eval":
            shutil.rmtree(path)
        elif os.path.isfile(path) and not name.startswith("."):
            os.remove(path)


def scenario_cases(material: Material) -> list[tuple[int, str, typing.Callable[[], tuple[str, str]]]]:
    cases: list = []
    whole = {}

    def uninterrupted() -> str:
        if "run" not in whole:
            whole["run"] = material.shared("whole")
            invoke(train_argv(material, whole["run"]))
        return whole["run"]

    # 8, 11: a kill inside each file of the last checkpoint (the file cut short, the later ones never written)
    def kills() -> list:
        out = []
        reference = material.shared("reference")
        invoke(train_argv(material, reference))
        files = sorted(os.listdir(os.path.join(reference, "checkpoint-4")),
                       key=lambda n: os.path.getmtime(os.path.join(reference, "checkpoint-4", n)))  # fmt: skip
        for index, name in enumerate(files):

            def case(index=index, name=name, reference=reference, files=files) -> tuple[str, str]:
                out = material.fresh("kill")
                shutil.copytree(reference, out)
                kill_after(out, 4)
                folder = os.path.join(out, "checkpoint-4")
                for later in files[index + 1 :]:
                    path = os.path.join(folder, later)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    data = open(path, "rb").read()
                    open(path, "wb").write(data[: len(data) // 2])
                run = invoke(train_argv(material, out))
                failure = failure_of(run)
                if failure:
                    return ("stuck" if failure == "traceback" else failure), run.last
                if run.code != 0:
                    return "stuck", run.last
                return ("correct", "resumed, the uninterrupted run's weights") if same_weights(out, reference) else (
                    "silent wrong", "resumed to other weights")  # fmt: skip

            out.append((8, f"a kill while writing checkpoint-4/{name}, then the same command", case))
        return out

    cases += kills()

    def streaming_resume() -> tuple[str, str]:
        from pmg_aft.tiny import colour_patches

        shards = os.path.join(material.root, "shards")
        if not os.path.isdir(shards):
            os.makedirs(shards)
            data = colour_patches(num_per_class=8, seed=0)
            for index in range(4):
                data.shard(4, index).to_parquet(os.path.join(shards, f"train-{index:05d}-of-00004.parquet"))
        stream = ["--dataset_name", shards, "--streaming", "true", "--eval_split", "train", "--shuffle_buffer_size",
                  "8", "--per_device_train_batch_size", "8"]  # fmt: skip
        one, two = material.fresh("stream"), material.fresh("stream")
        invoke(train_argv(material, one, *stream))
        invoke(train_argv(material, two, *stream))
        kill_after(two, 2)
        run = invoke(train_argv(material, two, *stream))
        if run.code != 0:
            return failure_of(run) or "stuck", run.last
        return ("correct", "bit-identical") if same_weights(one, two) else ("silent wrong", "resumed to other weights")

    cases.append((11, "a streamed run killed after checkpoint-2, then the same command", streaming_resume))

    # 4: a resume with another recipe
    for flags, what in ((["--learning_rate", "0.01"], "learning rate"), (["--method", "tecoa"], "method"),
                        (["--train_eps", "2/255"], "eps"), (["--max_train_samples", "64"], "data"),
                        (["--max_steps", "6"], "max_steps")):  # fmt: skip

        def resume(flags=flags) -> tuple[str, str]:
            out = material.fresh("resume")
            invoke(train_argv(material, out))
            kill_after(out, 2)
            before = snapshot(out)
            run = invoke(train_argv(material, out, *flags))
            if failure_of(run):
                return failure_of(run), run.last
            if run.code == 0:
                return "silent wrong", "resumed another run's checkpoint"
            lost = snapshot(out) != before
            return ("lost" if lost else refused(run, "another run")), run.last

        cases.append((4, f"a resume with another {what}", resume))

    def logging_resume() -> tuple[str, str]:
        out = material.fresh("resume")
        invoke(train_argv(material, out))
        kill_after(out, 2)
        run = invoke(train_argv(material, out, "--logging_steps", "1", "--save_total_limit", "1"))
        if run.code != 0:
            return failure_of(run) or "unclear", run.last
        return ("correct", "resumed") if same_weights(out, uninterrupted()) else ("silent wrong", "other weights")

    cases.append((4, "a resume with another logging and saving cadence (allowed)", logging_resume))

    # 5: folders
    def into(target: str, *extra: str, command: str = "train") -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            path = {"model": material.model, "base": material.base}.get(target, target)
            before = snapshot(path) if os.path.isdir(path) else {}
            argv = {
                "train": train_argv(material, path, *extra),
                "eval": ["eval", "--model_name_or_path", material.model, "--benchmarks", "colour-patches", "--steps",
                         "1", "--max_eval_samples", "8", "--output_dir", path, *extra],
                "export": ["export", "--model_name_or_path", material.base, "--output_dir", path, *extra],
                "convert": ["convert", "--checkpoint", material.visual, "--base_model", material.base,
                            "--output_dir", path, *extra],
                "zoo": ["zoo", "import", "--file", material.visual, "--format", "openai_visual", "--base_model",
                        material.base, "--output_dir", path, *extra],
            }[command]  # fmt: skip
            run = invoke(argv)
            if failure_of(run):
                return failure_of(run), run.last
            if before and snapshot(path) != before:
                return "lost", f"{path} changed ({run.last})"
            return refused(run, "--output_dir", "holds", "input", "another"), run.last

        return case

    cases += [
        (5, "train into its own base model's folder", into("model")),
        (5, "eval into the model's folder", into("model", command="eval")),
        (5, "export into its input folder", into("base", command="export")),
        (5, "convert into its base model's folder", into("base", command="convert")),
        (5, "zoo import into its base model's folder", into("base", command="zoo")),
    ]

    def other_run() -> tuple[str, str]:
        out = material.fresh("finished")
        invoke(train_argv(material, out, "--save_strategy", "no"))
        return into(out, "--save_strategy", "no", "--learning_rate", "0.01")()

    cases.append((5, "a second training with another recipe into a finished run's folder", other_run))

    def foreign(command: str) -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            out = material.fresh("foreign")
            os.makedirs(out)
            for name in ("README.md", "preprocessor_config.json", "report.json", "notes.txt"):
                open(os.path.join(out, name), "w").write("someone else's file\n")
            return into(out, command=command)()

        return case

    cases += [(5, f"{command} into a folder of someone else's files", foreign(command))
              for command in ("train", "eval", "export", "convert", "zoo")]  # fmt: skip

    def other_model_eval() -> tuple[str, str]:
        out = material.fresh("eval")
        other = material.fresh("other")
        invoke(train_argv(material, other, "--save_strategy", "no"))
        invoke(["eval", "--model_name_or_path", other, "--benchmarks", "colour-patches", "--steps", "1",
                "--max_eval_samples", "8", "--output_dir", out])  # fmt: skip
        return into(out, command="eval")()

    cases.append((5, "an evaluation of another model into a used folder", other_model_eval))

    def concurrent(second: str) -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            out = material.fresh("busy")
            code = f"from pmg_aft.outputs import output_lock\nimport time\nwith output_lock({out!r}):\n" \
                   "    print('held', flush=True)\n    time.sleep(120)\n"  # fmt: skip
            holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            try:
                holder.stdout.readline()
                return into(out, command=second)()
            finally:
                holder.kill()
                holder.wait()

        return case

    cases += [(5, "a training while another run writes the folder", concurrent("train")),
              (5, "an evaluation while another run writes the folder", concurrent("eval"))]  # fmt: skip

    def collision() -> tuple[str, str]:
        out = material.fresh("board")
        run = invoke(["leaderboard", "--models", f"org/a={material.model},org_a={material.model}", "--protocols",
                      "pmg_aft", "--benchmarks", "colour-patches", "--output_dir", out])  # fmt: skip
        return refused(run, "share"), run.last

    cases.append((5, "leaderboard model names that share a folder", collision))

    # 10: the machine's conditions
    def mounted(options: str, command: str) -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            if os.geteuid() != 0:
                return "correct", "skipped: needs root to mount"
            disk = material.fresh("disk")
            os.makedirs(disk)
            if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", disk]).returncode:
                return "correct", "skipped: cannot mount"
            try:
                run = invoke({"train": train_argv(material, os.path.join(disk, "out")),
                              "eval": ["eval", "--model_name_or_path", material.model, "--benchmarks",
                                       "colour-patches", "--steps", "1", "--max_eval_samples", "8", "--output_dir",
                                       os.path.join(disk, "out")]}[command])  # fmt: skip
                return refused(run, "no space left", "not writable", "read-only"), run.last
            finally:
                subprocess.run(["umount", disk])

        return case

    cases += [(10, "a training onto a small full disk", mounted("size=600k", "train")),
              (10, "an evaluation onto a full disk", mounted("size=4k", "eval")),
              (10, "a training into a read-only folder", mounted("size=1m,ro", "train")),
              (10, "an evaluation into a read-only folder", mounted("size=1m,ro", "eval"))]  # fmt: skip

    def path_case(make: str, command: str) -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            base = material.fresh("path")
            os.makedirs(base)
            open(os.path.join(base, "file"), "w").write("x")
            target = {"a file": os.path.join(base, "file"), "under a file": os.path.join(base, "file", "out")}[make]
            return into(target, command=command)()

        return case

    cases += [(10, f"{command} --output_dir {make}", path_case(make, command))
              for make in ("a file", "under a file") for command in ("train", "eval", "export")]  # fmt: skip

    def hostile_file(kind: str) -> tuple[str, str]:
        base = material.fresh(kind.replace(" ", "-"))
        os.makedirs(base)
        if kind == "binary config":
            open(os.path.join(base, "c.yaml"), "wb").write(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
            run = invoke(["train", "--config", os.path.join(base, "c.yaml"), "--output_dir", os.path.join(base, "o")])
            return refused(run, "c.yaml"), run.last
        from pmg_aft.tiny import colour_patches

        data = colour_patches(num_per_class=4, seed=0)
        for index in range(2):
            data.shard(2, index).to_parquet(os.path.join(base, f"train-{index:05d}-of-00002.parquet"))
        broken = os.path.join(base, "train-00001-of-00002.parquet")
        open(broken, "r+b").truncate(300)
        run = invoke(train_argv(material, base + "-out", "--dataset_name", base, "--eval_split", "train"))
        return refused(run, broken), run.last

    cases += [(10, "a binary --config", lambda: hostile_file("binary config")),
              (10, "a corrupt parquet shard", lambda: hostile_file("corrupt shard"))]  # fmt: skip

    # 3: class texts
    for names, label in ((["red", "green", "blue", "yellow", "purple", "Red"], "names equal after cleaning"),
                         (["red", "green", "", "yellow", "purple", "orange"], "a blank name"),
                         (["red", "green", "blue", "yellow", "purple", "green"], "a duplicate name")):  # fmt: skip

        def names_case(names=names) -> tuple[str, str]:
            out = material.fresh("names")
            os.makedirs(out)
            path = os.path.join(out, "names.json")
            json.dump(names, open(path, "w"))
            run = invoke(train_argv(material, os.path.join(out, "o"), "--class_names_file", path))
            return refused(run, "class"), run.last

        cases.append((3, f"a class-names file with {label}", names_case))

    def classlabel_case() -> tuple[str, str]:
        from datasets import ClassLabel

        from pmg_aft.tiny import colour_patches

        out = material.fresh("classlabel")
        names = ["red", "green", "blue", "yellow", "purple", "Green"]
        colour_patches(num_per_class=4).cast_column("label", ClassLabel(names=names)).save_to_disk(out + "-data")
        run = invoke(train_argv(material, out, "--dataset_name", out + "-data", "--eval_split", "train"))
        return refused(run, "class"), run.last

    cases.append((3, "a training ClassLabel with names equal after cleaning", classlabel_case))

    # 9 and 10: hostile model folders
    def model_folder(kind: str) -> tuple[str, str]:
        import torch
        from safetensors.torch import save_file

        folder = material.fresh(kind.replace(" ", "-"))
        shutil.copytree(material.model, folder)
        marker = folder + ".ran"
        config = json.load(open(os.path.join(folder, "config.json")))
        state = weights(folder)
        if kind == "custom code":
            config.update(model_type="evil", auto_map={"AutoConfig": "evil.Config", "AutoModel": "evil.Model"})
            json.dump(config, open(os.path.join(folder, "config.json"), "w"))
            open(os.path.join(folder, "evil.py"), "w").write(f"open({marker!r}, 'w').write('ran')\n")
        elif kind == "pickle-only weights":
            torch.save(state, os.path.join(folder, "pytorch_model.bin"))
            os.remove(os.path.join(folder, "model.safetensors"))
        elif kind == "NaN weights":
            state["visual_projection.weight"][0, 0] = float("nan")
            save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
            os.remove(os.path.join(folder, "pmg_aft.json"))
        elif kind == "a zero std in the processor":
            processor = json.load(open(os.path.join(folder, "processor_config.json")))
            processor["image_processor"]["image_std"] = [0.2, 0.0, 0.2]
            json.dump(processor, open(os.path.join(folder, "processor_config.json"), "w"))
        elif kind == "weights changed after training":
            state["visual_projection.weight"].mul_(1.01)
            save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        elif kind == "a truncated model.safetensors":
            path = os.path.join(folder, "model.safetensors")
            open(path, "r+b").truncate(os.path.getsize(path) // 2)
        elif kind == "a corrupt pmg_aft.json":
            open(os.path.join(folder, "pmg_aft.json"), "w").write('{"kind": "trained", "weights')
        run = invoke(["eval", "--model_name_or_path", folder, "--benchmarks", "colour-patches", "--steps", "1",
                      "--max_eval_samples", "8", "--output_dir", material.fresh("eval")], timeout=120)  # fmt: skip
        if os.path.exists(marker):
            return "security", "the folder's code ran"
        return refused(run, folder), run.last

    for kind, family in (("custom code", 9), ("pickle-only weights", 9), ("NaN weights", 10),
                         ("a zero std in the processor", 10), ("weights changed after training", 6),
                         ("a truncated model.safetensors", 10), ("a corrupt pmg_aft.json", 10)):  # fmt: skip
        cases.append((family, f"a model folder with {kind}", lambda kind=kind: model_folder(kind)))

    # 6: reports, cards and push
    def report_case(edit: str) -> tuple[str, str]:
        report = material.fresh("report")
        run = invoke(["eval", "--model_name_or_path", material.model, "--benchmarks", "colour-patches", "--steps",
                      "1", "--max_eval_samples", "8", "--output_dir", report])  # fmt: skip
        path = os.path.join(report, "report.json")
        values = json.load(open(path))
        model = material.model
        if edit == "another model's report":
            model = material.fresh("other")
            invoke(train_argv(material, model, "--save_strategy", "no"))
        else:
            values["results"]["colour-patches"]["clean_accuracy"] = {"150%": 1.5, "NaN": math.nan, "-20%": -0.2,
                                                                     "a plausible edit": 0.99}[edit]  # fmt: skip
            open(path, "w").write(json.dumps(values))
        run = invoke(["push", "--model_dir", model, "--hub_model_id", "me/x", "--report_dir", report])
        if failure_of(run):
            return failure_of(run), run.last
        if "Uploading" in run.output:
            return "silent wrong", "staged for upload"
        return refused(run, "report"), run.last

    for edit in ("150%", "NaN", "-20%", "a plausible edit", "another model's report"):
        cases.append((6, f"push with a report.json holding {edit}", lambda edit=edit: report_case(edit)))

    def relicense() -> tuple[str, str]:
        out = material.fresh("import")
        invoke(["zoo", "import", "tga-zsr-vitb32", "--file", material.visual + ".tga", "--base_model", material.base,
                "--output_dir", out])  # fmt: skip
        run = invoke(["push", "--model_dir", out, "--hub_model_id", "me/x"])
        if "Uploading" in run.output:
            return "silent wrong", "an unlicensed release staged for upload"
        return refused(run, "licence"), run.last

    def card_value(value: str) -> tuple[str, str]:
        out = material.fresh("card")
        os.makedirs(out)
        card = open(os.path.join(material.root, "card.md")).read()
        first = card.split("value: ", 1)[1].split("\n", 1)[0]
        open(os.path.join(out, "README.md"), "w").write(card.replace(f"value: {first}", f"value: {value}", 1))
        run = invoke(["leaderboard", "--from_hub", out, "--protocols", "pmg_aft", "--output_dir", out + "-board"])
        return refused(run, "accuracy"), run.last

    cases.append((6, "push of a release whose licence is not stated", relicense))
    cases += [(6, f"a leaderboard card value of {v}", lambda v=v: card_value(v)) for v in ("150.0", ".nan", "'x'")]

    # 7: converters
    def converter(kind: str, command: str) -> tuple[str, str]:
        import torch

        state = torch.load(material.visual, weights_only=True)
        state = {**state, "transformer.resblocks.0.ls_1.gamma": torch.ones(32)} if kind == "LayerScale" else {
            **state, "extra_head.weight": torch.ones(3)}  # fmt: skip
        path = material.fresh(kind) + ".pt"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(state, path)
        out = material.fresh("converted")
        argv = (["convert", "--checkpoint", path] if command == "convert" else
                ["zoo", "import", "--file", path, "--format", "openai_visual"])  # fmt: skip
        run = invoke([*argv, "--base_model", material.base, "--output_dir", out])
        return refused(run, "LayerScale", "does not have", "tensor"), run.last

    cases += [(7, f"{command} of a checkpoint with {kind}", lambda k=kind, c=command: converter(k, c))
              for kind in ("LayerScale", "an extra tensor") for command in ("convert", "zoo")]  # fmt: skip

    # 9: a token in the environment while things fail
    def token_case() -> tuple[str, str]:
        os.environ["HF_TOKEN"] = TOKEN
        try:
            run = invoke(["push", "--model_dir", material.model, "--hub_model_id", "me/x"])
        finally:
            os.environ.pop("HF_TOKEN", None)
        return (failure_of(run) or "clear error"), run.last

    cases.append((9, "a failing push with a token in the environment", token_case))

    def token_in_train_error() -> tuple[str, str]:
        os.environ["HF_TOKEN"] = TOKEN
        try:
            run = invoke(train_argv(material, material.fresh("t"), "--class_names_file", f"/nonexistent/{TOKEN}"))
        finally:
            os.environ.pop("HF_TOKEN", None)
        return refused(run, "class_names_file"), run.last

    cases.append((9, "a training error that quotes a token from the environment", token_in_train_error))
    cases += more_scenarios(material, uninterrupted)
    return cases


def more_scenarios(material: Material, uninterrupted) -> list:
    """The cases of an earlier hostile run: reruns of finished runs, edited results, checkpoints missing states,
    foreign licences, empty training sets, stale plots, mappings in config files."""
    import torch

    cases = []

    def finished_rerun() -> tuple[str, str]:
        out = material.fresh("finished")
        invoke(train_argv(material, out))
        first = weights(out)
        run = invoke(train_argv(material, out))
        if run.code != 0:
            return failure_of(run) or "unclear", run.last
        step = json.load(open(os.path.join(out, "trainer_state.json")))["global_step"]
        same = all(first[k].equal(v) for k, v in weights(out).items())
        return ("correct", "nothing trained again") if same and step == 4 else ("silent wrong", f"step {step}")

    cases.append((4, "a finished run, the same command again", finished_rerun))

    def edited_result() -> tuple[str, str]:
        out = material.fresh("eval")
        argv = ["eval", "--model_name_or_path", material.model, "--benchmarks", "colour-patches", "--steps", "1",
                "--max_eval_samples", "16", "--output_dir", out]  # fmt: skip
        invoke(argv)
        measured = json.load(open(os.path.join(out, "report.json")))["results"]["colour-patches"]["clean_accuracy"]
        path = os.path.join(out, "results", "colour-patches.json")
        saved = json.load(open(path))
        saved["result"]["clean_accuracy"] = 0.5 if measured != 0.5 else 0.25
        json.dump(saved, open(path, "w"))
        run = invoke(argv)
        now = json.load(open(os.path.join(out, "report.json")))["results"]["colour-patches"]["clean_accuracy"]
        return ("correct", "recomputed") if run.code == 0 and now == measured else ("silent wrong", f"{now} reported")

    cases.append((6, "a hand-edited result file, then the same evaluation", edited_result))

    for damage in ("optimizer.pt removed", "rng_state.pth removed", "a step edited in trainer_state.json",
                   "an optimizer.pt of another structure", "an rng_state.pth pickle that runs code"):  # fmt: skip

        def damaged(damage=damage) -> tuple[str, str]:
            out = material.fresh("damaged")
            shutil.copytree(material.shared("reference"), out)
            kill_after(out, 4)
            folder = os.path.join(out, "checkpoint-4")
            if damage.endswith("removed"):
                os.remove(os.path.join(folder, damage.split()[0]))
            elif "step" in damage:
                state = json.load(open(os.path.join(folder, "trainer_state.json")))
                state["global_step"] = 1
                json.dump(state, open(os.path.join(folder, "trainer_state.json"), "w"))
            elif "structure" in damage:
                torch.save({"something": torch.zeros(2)}, os.path.join(folder, "optimizer.pt"))
            else:
                torch.save({"python": os.system}, os.path.join(folder, "rng_state.pth"))
            run = invoke(train_argv(material, out))
            if failure_of(run) or run.code != 0:
                return "stuck" if not failure_of(run) or failure_of(run) == "traceback" else failure_of(run), run.last
            same = same_weights(out, material.shared("reference"))
            return ("correct", "set aside, resumed exactly") if same else ("silent wrong", "resumed to other weights")

        cases.append((8, f"a last checkpoint with {damage}, then the same command", damaged))

    def changed_rows() -> tuple[str, str]:
        from pmg_aft.tiny import colour_patches

        data = material.fresh("data")
        colour_patches(num_per_class=16, seed=0).save_to_disk(data)
        out = material.fresh("run")
        argv = train_argv(material, out, "--dataset_name", data)
        invoke(argv)
        kill_after(out, 2)
        shutil.rmtree(data)
        colour_patches(num_per_class=16, seed=5).save_to_disk(data)
        run = invoke(argv)
        return ("silent wrong", "resumed on other rows") if run.code == 0 else (refused(run, "data.rows"), run.last)

    cases.append((4, "a resume after the training rows changed under the same path", changed_rows))

    def foreign_card_licence() -> tuple[str, str]:
        folder = material.fresh("theirs")
        shutil.copytree(material.model, folder)
        os.remove(os.path.join(folder, "pmg_aft.json"))
        open(os.path.join(folder, "README.md"), "w").write("---\nlicense: cc-by-nc-4.0\n---\n# theirs\n")
        run = invoke(["push", "--model_dir", folder, "--hub_model_id", "me/x", "--license", "mit"])
        return ("silent wrong", "relicensed") if "Uploading" in run.output else (refused(run, "licensed"), run.last)

    cases.append((6, "push --license mit of a folder whose own card says cc-by-nc-4.0", foreign_card_licence))

    def no_batch() -> tuple[str, str]:
        out = material.fresh("nobatch")
        run = invoke(train_argv(material, out, "--method", "fare", "--max_train_samples", "8"))
        return refused(run, "no batch"), run.last

    cases.append((2, "a training set smaller than one batch with the last batch dropped", no_batch))

    def stale_plot() -> tuple[str, str]:
        out = material.fresh("eval")
        common = ["eval", "--model_name_or_path", material.model, "--benchmarks", "colour-patches", "--steps", "1",
                  "--max_eval_samples", "16", "--output_dir", out]  # fmt: skip
        invoke([*common, "--eps", "1/255,4/255"])
        invoke([*common, "--eps", "1/255", "--overwrite_output_dir", "true"])
        stale = os.path.exists(os.path.join(out, "accuracy_vs_eps.png"))
        return ("silent wrong", "the other report's plot kept") if stale else ("correct", "removed")

    cases.append((6, "a second evaluation with one budget where two ran", stale_plot))

    def config_text(text: str, name: str) -> typing.Callable[[], tuple[str, str]]:
        def case() -> tuple[str, str]:
            out = material.fresh("cfg")
            os.makedirs(out)
            path = os.path.join(out, "c.yaml")
            open(path, "w").write(text)
            run = invoke(["train", "--config", path, "--model_name_or_path", material.model, "--max_steps", "2"]
                         + ([] if "output_dir" in text else ["--output_dir", os.path.join(out, "o")]))  # fmt: skip
            return refused(run, name), run.last

        return case

    nan_kwargs = "do_train: true\nlr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr: .nan}\n"
    cases += [(1, "YAML lr_scheduler_kwargs: {min_lr: .nan}", config_text(nan_kwargs, "lr_scheduler_kwargs")),
              (10, "YAML output_dir: [a, b]", config_text("do_train: true\noutput_dir: [a, b]\n", "output_dir")),
              (2, "YAML output_dir: null", config_text("do_train: true\noutput_dir:\n", "output_dir")),
              (2, "a job with nothing to do", config_text("output_dir: nothing\n", "do_train"))]  # fmt: skip
    return cases


def prepare_extras(material: Material) -> None:
    """The files some scenarios read: a TGA-ZSR-layout release, a card of the model's evaluation."""
    import torch

    state = torch.load(material.visual, weights_only=True)
    torch.save({"epoch": 10, "state_dict": {}, "vision_encoder_state_dict": state}, material.visual + ".tga")
    out = os.path.join(material.root, "card-eval")
    invoke(["eval", "--model_name_or_path", material.model, "--benchmarks", "colour-patches", "--steps", "10",
            "--max_eval_samples", "16", "--output_dir", out])  # fmt: skip
    from pmg_aft.cards import build_model_card
    from pmg_aft.evaluation import Report, get_protocol

    report = Report.load(out)
    report.overrides, report.protocol_record = [], get_protocol("pmg_aft")
    report.max_eval_samples = None
    open(os.path.join(material.root, "card.md"), "w").write(str(build_model_card("me/m", report)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/pmg_aft_sweep")
    parser.add_argument("--json", help="write every case and its outcome here")
    parser.add_argument("--only", choices=("fields", "scenarios"))
    parser.add_argument("--match", default="", help="run only the cases whose name holds this text")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    start = time.time()
    material = prepare(args.workdir)
    prepare_extras(material)
    cases = []
    if args.only != "scenarios":
        cases += field_cases(material)
    if args.only != "fields":
        cases += scenario_cases(material)
    results = []
    for family, name, case in [c for c in cases if args.match in c[1]]:
        try:
            outcome, said = case()
        except Exception as error:  # the sweep's own fault: shown, counted apart
            outcome, said = "sweep error", f"{type(error).__name__}: {error}"
        results.append({"family": family, "case": name, "outcome": outcome, "said": said})
        if outcome not in ("clear error", "correct"):
            print(f"{outcome:13s} [{family}] {name}: {said}", flush=True)
        shutil.rmtree(os.path.join(args.workdir, "cases"), ignore_errors=True)
    counts = Counter(r["outcome"] for r in results)
    print(f"\n{len(results)} cases in {(time.time() - start) / 60:.0f} min: "
          + ", ".join(f"{counts[k]} {k}" for k in GOOD) + "; failures: "
          + ", ".join(f"{counts[k]} {k}" for k in FAILURES)
          + (f"; {counts['sweep error']} sweep errors" if counts["sweep error"] else ""))  # fmt: skip
    print("\n| family | cases | " + " | ".join(GOOD + FAILURES) + " |")
    print("|---|---:|" + "---:|" * len(GOOD + FAILURES))
    for number, title in FAMILIES.items():
        mine = Counter(r["outcome"] for r in results if r["family"] == number)
        if mine:
            cells = " | ".join(str(mine[k]) for k in GOOD + FAILURES)
            print(f"| {number}. {title} | {sum(mine.values())} | {cells} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "counts": dict(counts)}, f, indent=1)
    sys.exit(1 if any(counts[k] for k in (*FAILURES, "sweep error")) else 0)


if __name__ == "__main__":
    main()
