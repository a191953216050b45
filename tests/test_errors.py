"""InputError is bad input, answered with one line; every other exception is a bug and keeps its traceback."""

from __future__ import annotations

import os
import re

import pytest

from pmg_aft import InputError
from pmg_aft.cli import main as cli
from pmg_aft.errors import DownloadError, MissingInputError, UnknownNameError, UploadError, exit_on_input_error
from pmg_aft.finetune import main

CONFIG = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "tiny_offline.yaml")


def test_the_input_error_family_is_what_callers_already_catch():
    assert issubclass(InputError, ValueError)
    assert issubclass(UnknownNameError, KeyError) and str(UnknownNameError("no 'x' here")) == "no 'x' here"
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(UploadError, RuntimeError)
    assert DownloadError.exit_status == 1
    assert InputError.exit_status == 2 and UploadError.exit_status == 1  # the input was fine; the upload was not
    with pytest.raises(SystemExit, match="^pmg-aft: bad value$"):
        with exit_on_input_error():
            raise InputError("bad value")


def test_a_contributors_own_value_error_keeps_its_traceback(checkpoint, tmp_path, monkeypatch, capsys):
    # Was: any error whose traceback's last line began with `raise` became one line, so a bug raised as ValueError
    # lost its traceback.
    def buggy(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr("pmg_aft.cli.evaluate_robustness", buggy)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        cli(["eval", "--model_name_or_path", checkpoint, "--output_dir", str(tmp_path / "e"), "--steps", "1"])
    monkeypatch.setattr("pmg_aft.finetune.build_trainer", buggy)
    with pytest.raises(ValueError, match="an internal invariant broke") as raised:
        main(["--config", CONFIG, "--output_dir", str(tmp_path / "run"), "--model_name_or_path", checkpoint])
    assert not isinstance(raised.value, InputError)
    assert "pmg-aft:" not in capsys.readouterr().err  # nothing printed as if it were the user's mistake


def test_options_transformers_rejects_are_one_line_too():
    # TrainingArguments' own checks raise ValueError while the arguments are built: input, by where it happens.
    with pytest.raises(SystemExit, match=r"^pmg-aft: At most one of fp16 and bf16 can be True"):
        main(["--config", CONFIG, "--output_dir", "x", "--fp16", "true", "--bf16", "true"])


def test_the_commands_answer_input_errors_with_their_exit_status(checkpoint, tmp_path, capsys):
    assert cli(["eval", "--model_name_or_path", checkpoint, "--output_dir", str(tmp_path), "--benchmarks", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmg-aft: Unknown benchmark 'x'") and len(err.strip().splitlines()) == 1
    assert cli(["compare", "--models", f"a={checkpoint}", "--output_dir", str(tmp_path), "--protocol", "nope"]) == 2
    err = capsys.readouterr().err  # a former command says where it went, then answers as that one
    assert "compare is now `pmg-aft leaderboard`" in err and "--protocols: unknown ['nope']" in err


def test_missing_files_are_one_line(checkpoint, tmp_path, capsys):
    assert cli(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x", "--report_dir", str(tmp_path)]) == 2
    assert re.search(r"^pmg-aft: .*report.json: no such report", capsys.readouterr().err)
    command = ["convert", "--checkpoint", str(tmp_path / "nope.pt"), "--base_model", checkpoint, "--output_dir", "o"]
    assert cli(command) == 2
    assert re.search(r"^pmg-aft: .*nope.pt: no such checkpoint file", capsys.readouterr().err, re.MULTILINE)
