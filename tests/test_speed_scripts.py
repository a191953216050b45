"""The benchmark scripts run and print their figures. No timing is asserted: the numbers are measured by running the
scripts, on a quiet machine; here only that each figure is printed, and the counts that do not depend on time."""

import os
import re
import sys

import pytest

from .utils import run

ROOT = os.path.join(os.path.dirname(__file__), "..")


def script(name: str, *args: str) -> str:
    return run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args], cwd=ROOT).stdout


@pytest.mark.slow
def test_train_step_prints_the_loop_the_data_path_and_the_parts():
    out = script("train_step.py", "--model", "tiny", "--batch_size", "16", "--steps", "2", "--warmup", "1",
                 "--rounds", "1", "--threads", "1", "--preprocess_on_device")  # fmt: skip
    assert re.search(r"host \(decode, resize, crop, float\)\s+[\d,]+\n", out), out
    assert re.search(r"decode-once \(uint8 slices\)\s+[\d,]+\n", out), out
    assert re.search(r"Trainer loop\s+[\d.]+ ms/step\s+[\d.]+ images/s", out)
    for part in ("preprocess", "attack", "target", "frozen", "optimiser"):
        assert re.search(rf"  {part}\s+[\d.]+ ms", out), part
    assert re.search(r"step / sum of parts\s+[\d.]+", out)


@pytest.mark.slow
def test_eval_suite_prints_each_attack_and_the_forwards_it_saved():
    out = script("eval_suite.py", "--model", "tiny", "--images", "32", "--batch_size", "16", "--steps", "5",
                 "--eps", "8/255", "--threads", "1")  # fmt: skip
    first = re.search(r"PGD-5 first success\s+[\d.]+ images/s\s+([\d.]+) forwards/image", out)
    final = re.search(r"PGD-5 final iterate\s+[\d.]+ images/s\s+([\d.]+) forwards/image", out)
    # Every sample: clean + 5 steps + the judged final image (+ the first batch's gradient-health check).
    assert 7.0 <= float(final.group(1)) <= 7.5
    assert float(first.group(1)) < float(final.group(1))  # fooled samples left the batch


@pytest.mark.slow
def test_attack_numerics_prints_both_numerics_per_batch_size():
    out = script("attack_numerics.py", "--batch_sizes", "8,32", "--per_class", "6", "--steps", "1")
    for numerics, precision in (("exact", "no"), ("official", "fp16")):
        for size in (8, 32):
            assert re.search(rf"{numerics}\s+{size}\s+{precision}\s+[\d.]+%\s+[\d.]+%\s+[\d.]+%", out), out


@pytest.mark.slow
def test_memory_prints_peak_memory_and_time_per_mode_and_batch():
    out = script("memory.py", "--quick")
    trainable, number = {}, r"([\d.]+) \|\s*"
    for mode in ("full", "checkpointing", "lora"):
        for batch in (1, 2):
            row = re.search(rf"\| tiny \| {mode} \| {batch} \| {number * 3}([\d,]+) \| {number * 2}$", out, re.M)
            assert row, out
            step_s, step_peak, total_peak, params, backward_peak, saved = row.groups()
            assert all(float(v) > 0 for v in (step_s, step_peak, backward_peak)), row.group(0)
            assert float(saved) > 0 or mode == "checkpointing", row.group(0)  # its layers save only their inputs
            assert float(total_peak) > float(step_peak), row.group(0)
            trainable[mode] = int(params.replace(",", ""))
        assert re.search(rf"\| tiny \| {mode} \| -?[\d.]+ \| -?[\d.]+ \| [\d.]+ \| ", out), mode  # the fit
    assert 0 < trainable["lora"] < trainable["full"] == trainable["checkpointing"]
    assert "EXTRAPOLATION" in out
    assert re.search(r"Attack steps: 10 \(the recipe's\) against 2", out), out
