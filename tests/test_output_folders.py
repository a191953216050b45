"""One output-folder policy for every command: never an input folder, never over another run's or model's results
or files pmg_aft did not write (unless --overwrite_output_dir), one run at a time, result files whole or not at all,
and a folder that is a file, under a file, empty or not writable refused before any compute."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pmg_aft import cli
from pmg_aft.evaluation.leaderboard import Leaderboard, Row, model_folders
from pmg_aft.outputs import OutputFolderError, check_output_dir, write_json

from .utils import CONFIG, fails, random_openai_state, tiny_base


def digest(folder) -> dict[str, str]:
    """The sha256 of every file under `folder`: a folder byte-identical before and after has the same digest."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def train(out, model, *extra):
    return ["--config", CONFIG, "--output_dir", str(out), "--model_name_or_path", model, "--max_steps", "2",
            "--eval_attack_steps", "1", "--disable_tqdm", "true", "--save_strategy", "no", "--eval_on_start", "false",
            "--do_eval", "false", *extra]  # fmt: skip


def test_a_folder_that_is_a_file_under_a_file_empty_or_read_only_is_refused_before_compute(tmp_path):
    (tmp_path / "file").write_text("x")
    for output, match in ((tmp_path / "file", "is a file, not a folder"), (tmp_path / "file" / "sub", "is a file, so"),
                          (" ", "is empty")):  # fmt: skip
        with pytest.raises(OutputFolderError, match=match):
            check_output_dir(str(output))
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only mount is what refuses it
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(readonly)]).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        readonly.chmod(0o555)
    try:
        with pytest.raises(OutputFolderError, match=r"is not writable \(.*\): choose a folder you can write to"):
            check_output_dir(str(readonly / "out"))
    finally:
        subprocess.run(["umount", str(readonly)]) if os.geteuid() == 0 else readonly.chmod(0o755)
    assert check_output_dir(str(tmp_path / "new" / "out")) and not (tmp_path / "new").exists()  # nothing created


def test_training_never_writes_into_its_input_folders(tmp_path, checkpoint):
    before = digest(checkpoint)
    fails(train(checkpoint, checkpoint), rf"--output_dir {checkpoint} is the input {checkpoint}")
    fails(train(os.path.join(checkpoint, "sub"), checkpoint), r"is inside the input")
    os.makedirs(tmp_path / "runs" / "base")
    for name in os.listdir(checkpoint):
        (tmp_path / "runs" / "base" / name).write_bytes(open(os.path.join(checkpoint, name), "rb").read())
    fails(train(tmp_path / "runs", str(tmp_path / "runs" / "base")), r"holds the input .*may rotate or overwrite")
    assert digest(checkpoint) == before


@pytest.mark.slow
def test_a_second_training_into_a_folder_is_refused_and_the_first_result_kept(tmp_path, checkpoint):
    out = tmp_path / "run"
    cli.main(["train", *train(out, checkpoint)])
    kept = digest(out)
    fails(train(out, checkpoint, "--learning_rate", "0.01"), r"model saved in .* another run \(learning_rate: ")
    fails(train(out, checkpoint, "--method", "tecoa"), r"another run \(method: \"pmg_aft\" -> \"tecoa\"; alpha")
    assert digest(out) == kept  # the first run's result, byte-identical
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    fails(train(tmp_path / "theirs", checkpoint), r"holds files that are no pmg_aft training run \(notes.txt\)")
    cli.main(["train", *train(out, checkpoint, "--learning_rate", "0.01", "--overwrite_output_dir", "true")])
    assert json.load(open(out / "pmg_aft.json"))["run"]["config"]["learning_rate"] == 0.01
    cli.main(["train", *train(tmp_path / "theirs", checkpoint, "--overwrite_output_dir", "true")])
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "mine"  # files pmg_aft does not write are left


@pytest.mark.slow
def test_two_runs_at_once_into_one_folder_the_second_stops(tmp_path, checkpoint):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pmg_aft.outputs import output_lock
        with output_lock({str(out)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        fails(train(out, checkpoint), r"another pmg-aft run is writing into .*wait for it to finish")
        code = cli.main(["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
                         "--output_dir", str(out)])  # fmt: skip
        assert code == 2
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "model.safetensors").exists()


def test_evaluating_another_model_into_a_used_folder_is_refused(tmp_path, checkpoint, capsys):
    out = tmp_path / "eval"
    command = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
               "--max_eval_samples", "16", "--output_dir", str(out)]  # fmt: skip
    assert cli.main(command) == 0
    kept = digest(out)
    other = tmp_path / "other"
    cli.main(["train", *train(other, checkpoint)])
    assert cli.main([*command[:2], str(other), *command[3:]]) == 2
    assert "holds another model's evaluation or files pmg_aft cannot read (report.json of weights" in (
        capsys.readouterr().err
    )
    assert digest(out) == kept
    assert cli.main([*command[:2], str(other), *command[3:], "--overwrite_output_dir", "true"]) == 0
    assert (
        json.load(open(out / "report.json"))["model_digest"]
        == json.load(open(other / "pmg_aft.json"))["weights_digest"]
    )
    assert cli.main([*command[:-1], checkpoint]) == 2  # the report card would overwrite the model's own files
    assert "is the input" in capsys.readouterr().err


def test_export_import_and_convert_refuse_foreign_folders_and_inputs(tmp_path, capsys):
    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    base = tmp_path / "base"  # an OpenAI-layout CLIP (the tiny demo model's text tower has no open_clip form)
    tiny_base().save_pretrained(str(base))
    clip_processor(tiny_tokenizer(), tiny_base(), [0.5] * 3, [0.5] * 3).save_pretrained(str(base))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "preprocessor_config.json").write_text("{}")  # a folder of someone else's files
    kept = digest(tmp_path / "mine")
    assert cli.main(["export", "--model_name_or_path", str(base), "--output_dir", str(tmp_path / "mine")]) == 2
    assert "holds files pmg_aft did not write" in capsys.readouterr().err and digest(tmp_path / "mine") == kept
    export = ["export", "--model_name_or_path", str(base), "--output_dir", str(tmp_path / "oc")]
    assert cli.main(export) == 0 and cli.main(export) == 0  # the same export again: rewritten, not refused
    torch.save({k[7:]: v for k, v in random_openai_state(5).items() if k.startswith("visual.")}, tmp_path / "v.pt")
    before = digest(base)
    convert = ["convert", "--checkpoint", str(tmp_path / "v.pt"), "--base_model", str(base), "--output_dir"]
    assert cli.main([*convert, str(base)]) == 2
    assert "is the input" in capsys.readouterr().err and digest(base) == before
    zoo = ["zoo", "import", "--file", str(tmp_path / "v.pt"), "--format", "openai_visual", "--base_model", str(base)]
    assert cli.main([*zoo, "--output_dir", str(base)]) == 2 and digest(base) == before
    assert cli.main([*convert, str(tmp_path / "converted")]) == 0
    assert cli.main([*zoo, "--output_dir", str(tmp_path / "converted")]) == 2  # another conversion's folder
    assert "holds another model" in capsys.readouterr().err


def test_leaderboard_names_that_share_a_folder_are_refused_and_a_failure_keeps_the_last_table(tmp_path, monkeypatch):
    with pytest.raises(OutputFolderError.__mro__[1], match=r"'org/a' and 'org_a' would share the results folder"):
        model_folders(["org/a", "org_a"])
    with pytest.raises(ValueError, match="would share"):
        model_folders(["Model", "model"])
    row = Row("m", "pmg_aft", ["clean"], {"d": {"clean": 0.5}})
    Leaderboard([row]).save(str(tmp_path))
    kept = digest(tmp_path)

    def broken(self):
        raise RuntimeError("the machine died mid-write")

    monkeypatch.setattr(Leaderboard, "to_markdown", broken)
    with pytest.raises(RuntimeError):
        Leaderboard([row, row]).save(str(tmp_path))
    assert digest(tmp_path) == kept or json.load(open(tmp_path / "leaderboard.json"))  # whole, never truncated
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_result_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    write_json(str(tmp_path / "r.json"), {"a": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dumps", full_disk)
    with pytest.raises(OSError):
        write_json(str(tmp_path / "r.json"), {"a": 2})
    assert json.load(open(tmp_path / "r.json")) == {"a": 1} and os.listdir(tmp_path) == ["r.json"]
