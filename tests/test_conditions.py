"""A user's situation is one line naming the condition and the file (a full disk, a read-only folder, a binary
config, a corrupt shard); a bug keeps its traceback."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from pmg_aft import cli
from pmg_aft.errors import ConditionError, machine_condition, machine_conditions
from pmg_aft.finetune import main

from .utils import CONFIG, fails


def test_os_conditions_become_one_line_and_bugs_do_not():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/model.safetensors")
    assert str(machine_condition(full)).startswith("no space left on the device: /data/out/model.safetensors: free")
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/out")
    assert "permission denied: /data/out" in str(machine_condition(_chained(denied)))  # found under a wrapper
    assert machine_condition(KeyError("clean_accuracy")) is None and machine_condition(ValueError("bug")) is None
    with pytest.raises(ConditionError, match="the file system is read-only"), machine_conditions("/out"):
        raise OSError(errno.EROFS, "Read-only file system", "/out/x")
    with pytest.raises(KeyError), machine_conditions("/out"):
        raise KeyError("a bug keeps its type and traceback")


def _chained(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except OSError as error:
            raise RuntimeError("torch's writer failed") from error
    except RuntimeError as outer:
        return outer


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a small full disk is a tmpfs mount, which needs root")
def test_a_full_disk_during_training_is_one_line(tmp_path, checkpoint):
    # Was: "unexpected pos ..." from torch's zip writer, in a traceback, never "no space left".
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        fails(["--config", CONFIG, "--output_dir", str(disk / "out"), "--model_name_or_path", checkpoint,
               "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--do_eval", "false",
               "--eval_on_start", "false"], r"no space left on the device")  # fmt: skip
    finally:
        subprocess.run(["umount", str(disk)])


def test_a_binary_config_and_a_corrupt_parquet_shard_are_named(tmp_path, checkpoint):
    (tmp_path / "c.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    fails(["--config", str(tmp_path / "c.yaml")], r"c.yaml is not a text file \(YAML or JSON\)")
    from pmg_aft.tiny import colour_patches

    (tmp_path / "shards").mkdir()
    data = colour_patches(num_per_class=4, seed=0)
    for index in range(2):
        data.shard(2, index).to_parquet(str(tmp_path / "shards" / f"train-{index:05d}-of-00002.parquet"))
    broken = tmp_path / "shards" / "train-00001-of-00002.parquet"
    broken.write_bytes(broken.read_bytes()[:300])  # a copy cut short
    common = ["--config", CONFIG, "--dataset_name", str(tmp_path / "shards"), "--model_name_or_path", checkpoint,
              "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--eval_split", "train"]  # fmt: skip
    fails(common, rf"{broken} is not a readable parquet file \(.*\): it may be truncated")
    fails([*common, "--streaming"], rf"{broken} is not a readable parquet file")


def test_the_command_line_says_a_condition_in_one_line(tmp_path, checkpoint, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "e" / "report.json"))

    monkeypatch.setattr("pmg_aft.evaluation.report.write_json", full)
    code = cli.main(["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
                     "--max_eval_samples", "8", "--output_dir", str(tmp_path / "e")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines()[-1].startswith("pmg-aft: no space left on the device: ")
    assert "Traceback" not in err
    with pytest.raises(SystemExit, match="no space left on the device"):
        monkeypatch.setattr("pmg_aft.finetune.build_trainer", full)
        main(["--config", CONFIG, "--output_dir", str(tmp_path / "t"), "--model_name_or_path", checkpoint])


def test_a_hub_training_set_that_cannot_be_reached_is_one_line(tmp_path, checkpoint, monkeypatch):
    # Was: datasets' ConnectionError in a traceback from the shipped Tiny-ImageNet configs on a machine offline.
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    common = ["--config", CONFIG, "--dataset_name", "someone/not-cached-set", "--model_name_or_path", checkpoint,
              "--output_dir", str(tmp_path / "out"), "--max_steps", "1"]  # fmt: skip
    message = r"someone/not-cached-set is not in the local Hugging Face cache and the Hub cannot be reached .* local"
    fails(common, message)
    fails([*common, "--streaming"], message)
    assert not (tmp_path / "out").exists()
