"""Hostile inputs and faults, each run as a user would (the `pmg-aft` command, offline), and what came of it.

    python examples/finetune.py --config examples/configs/tiny_offline.yaml   # the checkpoint the cases use
    python scripts/fault_sweep.py [--model outputs/tiny-pmg-aft] [--workdir /tmp/pmg_aft_faults]

Prints one line per case (outcome, exit status, the line the user saw) and the counts: clear errors, warnings,
correct results, and the failures this sweep looks for (silent wrong results, lost results, stuck runs, tracebacks,
unclear errors). Takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "examples", "configs", "tiny_offline.yaml")
CLI = [sys.executable, "-m", "pmg_aft.cli"]
ENV = dict(os.environ, HF_HUB_OFFLINE="1")
FAILURES = ("silent wrong", "lost", "stuck", "traceback", "unclear error")


def run(args: list[str], timeout: int = 600) -> tuple[int, str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "stuck: no exit within the timeout"
    return done.returncode, done.stdout + done.stderr


def make_data(model: str) -> None:
    """The hostile datasets and checkpoints, in the Hub schemas users have."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature
    from transformers import BertConfig, BertModel

    from pmg_aft.data import BENCHMARKS
    from pmg_aft.tiny import colour_patches

    patches = colour_patches(num_per_class=4, seed=0)
    image = ImageFeature()
    Dataset.from_dict(
        {"image": [], "label": []}, features=Features({"image": image, "label": ClassLabel(names=["a", "b"])})
    ).save_to_disk("empty")
    patches.cast_column("label", Value("string")).save_to_disk("text-labels")
    fractional = patches.cast_column("label", Value("float32"))
    fractional.map(lambda r, i: {"label": r["label"] + (0.7 if i == 3 else 0)}, with_indices=True).save_to_disk(
        "fractional-labels"
    )
    patches.filter(lambda r: r["label"] == 0).cast_column("label", ClassLabel(names=["red"])).save_to_disk("one-class")
    for i, row in enumerate(patches):
        os.makedirs(f"unsplit/c{row['label']}", exist_ok=True)
        row["image"].save(f"unsplit/c{row['label']}/{i}.png")
    cifar = ClassLabel(names=list(BENCHMARKS["cifar10"].class_names))  # CIFAR-10's Hub schema: img, label
    for folder, rows in (("bench-a", 3), ("bench-b", 2)):
        data = Dataset.from_dict({"img": [patches[i]["image"] for i in range(rows)], "label": list(range(rows))},
                                 features=Features({"img": image, "label": cifar}))  # fmt: skip
        DatasetDict({"test": data}).save_to_disk(f"{folder}/cifar10")
    os.makedirs("bench-empty", exist_ok=True)
    bert = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64)
    BertModel(bert).save_pretrained("bert")
    for name in os.listdir(model):
        if name.startswith(("tokenizer", "processor")):
            shutil.copy(os.path.join(model, name), "bert")
    shutil.copytree(model, "truncated", ignore=shutil.ignore_patterns("checkpoint-*", "eval"), dirs_exist_ok=True)
    with open("truncated/model.safetensors", "rb") as f:
        weights = f.read()
    with open("truncated/model.safetensors", "wb") as f:
        f.write(weights[: len(weights) // 2])
    with open("names.txt", "w") as f:
        f.write("red\ngreen\nblue\nyellow\npurple\norange\n")
    for name, text in (("alpha.yaml", "alpha: [256]\n"), ("mean.yaml", "image_mean: 0.5\n")):
        with open(name, "w") as f:
            f.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(HERE, "..", "outputs", "tiny-pmg-aft"))
    parser.add_argument("--workdir", default="/tmp/pmg_aft_faults")
    args = parser.parse_args()
    model = os.path.abspath(args.model)
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        raise SystemExit(f"{model}: no checkpoint; run the demo first (see this script's docstring).")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    os.chdir(args.workdir)
    ENV["PMG_AFT_REVISIONS"] = os.path.join(args.workdir, "revisions.json")
    make_data(model)
    results = []

    def train(*extra: str, out: str | None = None) -> tuple[int, str]:
        out = out or f"run-{len(results)}"  # a folder per case: no case resumes another's checkpoint
        return run([*CLI, "train", "--config", CONFIG, "--model_name_or_path", model, "--output_dir", out,
                    "--max_steps", "2", "--eval_attack_steps", "1", "--disable_tqdm", "true", *extra])  # fmt: skip

    def evaluate(*extra: str, out: str = "eval", benchmarks: str = "colour-patches") -> tuple[int, str]:
        return run([*CLI, "eval", "--model_name_or_path", model, "--benchmarks", benchmarks, "--output_dir", out,
                    "--steps", "1", *extra])  # fmt: skip

    def record(name: str, outcome: str, code: int, shown: str) -> None:
        results.append((name, outcome, code, shown))
        print(f"{outcome:14s} rc={code:<3d} {name}: {shown[:150]}", flush=True)

    def expect(name: str, kind: str, result: tuple[int, str], text: str) -> None:
        """kind "error": a non-zero exit with one line holding `text`; "warning": exit 0 and `text` said."""
        code, output = result
        lines = output.strip().splitlines() or [""]
        said = [line for line in lines if text in line]
        shown = next((line for line in said if line.startswith("pmg-aft")), said[0] if said else lines[-1])
        if "Traceback" in output:
            outcome = "traceback"
        elif kind == "error":
            outcome = (
                "clear error" if code > 0 and text in output else ("silent wrong" if code == 0 else "unclear error")
            )
        else:
            outcome = "warning" if code == 0 and text in output else ("silent wrong" if code == 0 else "unclear error")
        record(name, outcome, code, shown.strip())

    expect("a BERT folder as --model_name_or_path", "error", train("--model_name_or_path", "bert"), "not a CLIP model")
    expect("a truncated model.safetensors", "error", train("--model_name_or_path", "truncated"), "cannot be read")
    expect("a model path that does not exist", "error", train("--model_name_or_path", "./nope"), "no such checkpoint")
    expect(
        "a one-class training set",
        "error",
        train("--dataset_name", "one-class", "--eval_split", "train"),
        "at least 2",
    )
    expect("--train_step_size 0 with train_steps 5", "error", train("--train_step_size", "0"), "never move")
    expect("--train_eps 0 with train_steps 5", "warning", train("--train_eps", "0"), "eps is 0 with")
    expect(
        "a fractional label (3.7)",
        "error",
        train("--dataset_name", "fractional-labels", "--class_names_file", "names.txt"),
        "fractional",
    )
    expect(
        "text labels with --class_names_file",
        "error",
        train("--dataset_name", "text-labels", "--class_names_file", "names.txt"),
        "holds text",
    )
    expect(
        "--eval_split test of an unsplit folder",
        "warning",
        train("--dataset_name", "unsplit", "--eval_split", "test"),
        "training images",
    )
    expect("--max_train_samples 0", "error", train("--max_train_samples", "0"), "--max_train_samples 0")
    expect("an empty save_to_disk dataset", "error", train("--dataset_name", "empty"), "empty dataset")
    expect(
        "YAML alpha: [256]",
        "error",
        run([*CLI, "train", "--config", "alpha.yaml", "--output_dir", "o"]),
        "alpha must be a number",
    )
    expect(
        "YAML image_mean: 0.5",
        "error",
        run([*CLI, "train", "--config", "mean.yaml", "--output_dir", "o"]),
        "image_mean must be a list",
    )
    expect("--train_eps -1/255", "error", train("--train_eps", "-1/255"), "negative")
    expect(
        "a --config file that does not exist", "error", run([*CLI, "train", "--config", "nope.yaml"]), "no such file"
    )
    expect("eval --max_eval_samples 0", "error", evaluate("--max_eval_samples", "0"), "--max_eval_samples 0")
    expect("eval --steps abc", "error", evaluate("--steps", "abc"), "--steps abc")
    expect("eval --per_device_eval_batch_size 0", "error", evaluate("--per_device_eval_batch_size", "0"), ">= 1")
    expect("eval --batch-size 0 (an earlier release's flag)", "error", evaluate("--batch-size", "0"), "is now")
    expect(
        "eval of a truncated model.safetensors",
        "error",
        run([*CLI, "eval", "--model_name_or_path", "truncated", "--output_dir", "e"]),
        "cannot be read",
    )

    # Resume of an evaluation: other data under the same name, a folder without the dataset, a truncated result.
    evaluate("--benchmark_data_dir", "bench-a", out="resume", benchmarks="cifar10")
    code, output = evaluate("--benchmark_data_dir", "bench-b", out="resume", benchmarks="cifar10")
    with open("resume/report.json") as f:
        samples = json.load(f)["results"]["cifar10"]["samples"]
    record("eval resume with another --benchmark_data_dir", "correct" if samples == 2 else "silent wrong", code,
           f"{samples} samples reported; the new folder has 2")  # fmt: skip
    expect(
        "eval resume with a folder that lacks the dataset",
        "error",
        evaluate("--benchmark_data_dir", "bench-empty", out="resume", benchmarks="cifar10"),
        "cifar10",
    )
    with open("resume/results/cifar10.json") as f:
        text = f.read()
    with open("resume/results/cifar10.json", "w") as f:
        f.write(text[:30])  # a disk that filled up mid-write
    expect(
        "eval resume over a truncated result file",
        "warning",
        evaluate("--benchmark_data_dir", "bench-b", out="resume", benchmarks="cifar10"),
        "cannot be read",
    )
    with open("resume/report.json", "w") as f:
        f.write('{"model": "x", "res')
    expect(
        "push --report_dir with a truncated report.json",
        "error",
        run([*CLI, "push", "--model_dir", model, "--hub_model_id", "org/x", "--report_dir", "resume"]),
        "not a readable report",
    )

    # Two evaluations into one folder at once: the first is slow (PGD-300) and still running.
    with open("first.log", "w") as log:
        first = subprocess.Popen(
            [
                *CLI,
                "eval",
                "--model_name_or_path",
                model,
                "--benchmarks",
                "colour-patches",
                "--output_dir",
                "busy",
                "--steps",
                "300",
            ],
            env=ENV,
            stdout=log,
            stderr=log,
        )
        while not os.path.exists("busy/.pmg_aft_eval.lock") and first.poll() is None:
            time.sleep(0.5)
        code, output = evaluate(out="busy")
        running = first.poll() is None
        first.wait()
    busy = code > 0 and "another evaluation is writing" in output and running and first.returncode == 0
    record(
        "a second eval into a folder one is writing",
        "clear error" if busy else "lost",
        code,
        f"{output.strip().splitlines()[-1][:100]} (the first: still running {running}, exit {first.returncode})",
    )

    # A checkpoint cut short (only config.json), then the same command.
    common = ["--save_strategy", "steps", "--save_steps", "2", "--do_eval", "false", "--eval_on_start", "false"]
    train(*common, out="cut")
    os.makedirs("cut/checkpoint-3")
    with open("cut/checkpoint-3/config.json", "w") as f:
        f.write("{}")
    code, output = train(*common, "--max_steps", "4", out="cut")
    ok = os.path.exists("cut/checkpoint-4/trainer_state.json") and os.path.isdir("cut/incomplete-checkpoint-3")
    expect(
        "a half-written checkpoint-3, then the same command", "warning", (code if ok else 1, output), "Not resuming"
    )

    # Ctrl-C of the demo config once it has saved a checkpoint, then the same command.
    command = [*CLI, "train", "--config", CONFIG, "--model_name_or_path", model, "--output_dir", "demo",
               "--disable_tqdm", "true"]  # fmt: skip
    with open("demo.log", "w") as log:  # SIGINT at its default, as in a terminal (not ignored as in a background job)
        demo = subprocess.Popen(command, env=ENV, stdout=log, stderr=log,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        while not (os.path.isdir("demo") and any(d.startswith("checkpoint-") for d in os.listdir("demo"))):
            time.sleep(0.2)
        time.sleep(1.5)
        demo.send_signal(signal.SIGINT)
        demo.wait()
    left = sorted(d for d in os.listdir("demo") if "checkpoint" in d)
    code, output = run(command)
    resumed = [line.strip() for line in output.splitlines() if "at resume (step" in line]
    record(
        f"Ctrl-C of the demo (exit {demo.returncode}, left {left}), then the same command",
        "correct" if code == 0 and resumed else "stuck",
        code,
        resumed[0] if resumed else output[-150:],
    )

    counts = Counter(outcome for _, outcome, _, _ in results)
    print(f"\n{len(results)} cases: " + ", ".join(f"{counts[k]} {k}" for k in ("clear error", "warning", "correct")))
    print("failures: " + ", ".join(f"{counts[k]} {k}" for k in FAILURES))
    sys.exit(1 if any(counts[k] for k in FAILURES) else 0)


if __name__ == "__main__":
    main()
