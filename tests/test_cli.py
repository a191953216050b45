import json
import re

import pytest

from pmg_aft import cli
from pmg_aft.data import BENCHMARKS


def test_datasets_list_shows_every_benchmark(capsys):
    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for bench in BENCHMARKS.values():
        assert bench.name in out and (bench.hub_id or "generated") in out
    assert "49ae7f94508f" in out and "not pinned" in out and "(gated)" in out


def test_datasets_download_fetches_each_split_at_the_resolved_revision(monkeypatch, tmp_path, capsys):
    calls = []

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            return type("Info", (), {"sha": f"sha-of-{repo_id}"})()

    monkeypatch.setattr("pmg_aft.data.download.HfApi", FakeApi)
    monkeypatch.setattr("pmg_aft.data.download.get_token", lambda: "hf_token")  # ImageNet is gated
    monkeypatch.setattr(
        "pmg_aft.data.download.hub_split_files", lambda bench, split, sha: calls.append((bench.hub_id, split, sha))
    )
    lock = tmp_path / "lock.json"
    assert cli.main(["datasets", "download", "tiny-imagenet", "cifar10", "--lock", str(lock)]) == 0
    assert calls == [
        ("zh-plus/tiny-imagenet", "train", "sha-of-zh-plus/tiny-imagenet"),
        ("zh-plus/tiny-imagenet", "valid", "sha-of-zh-plus/tiny-imagenet"),
        ("uoft-cs/cifar10", "test", "sha-of-uoft-cs/cifar10"),
    ]
    assert json.loads(lock.read_text()) == {"tiny-imagenet": "sha-of-zh-plus/tiny-imagenet",
                                             "cifar10": "sha-of-uoft-cs/cifar10"}  # fmt: skip
    calls.clear()
    assert cli.main(["datasets", "download", "all"]) == 0
    assert len({hub_id for hub_id, _, _ in calls}) == len(BENCHMARKS) - 1  # all but the generated toy set


def test_download_errors_say_what_and_how(monkeypatch, capsys):
    assert cli.main(["datasets", "download", "cifar-1O"]) == 2
    assert "Valid benchmarks" in capsys.readouterr().err

    class Offline:
        def dataset_info(self, repo_id, revision=None):
            raise ConnectionError("no network")

    monkeypatch.setattr("pmg_aft.data.download.HfApi", Offline)
    monkeypatch.setattr("pmg_aft.data.download.get_token", lambda: None)
    # One handler for every command's input errors: one line on stderr; a download that cannot be made exits 1.
    assert cli.main(["datasets", "download", "imagenet"]) == 1  # said before anything is fetched
    err = capsys.readouterr().err
    assert re.search(r"^pmg-aft: imagenet \(ILSVRC/imagenet-1k\) is gated .*accept its terms.*HF_TOKEN", err), err
    assert cli.main(["datasets", "download", "cifar10"]) == 1
    assert re.search(r"^pmg-aft: could not download cifar10 .*no network", capsys.readouterr().err)


def test_unknown_command(capsys):
    assert cli.main(["bogus"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_help_and_snake_case_flags_like_train(command, capsys):
    assert cli.main([command, "--help"]) == 0  # an exit status, as for every outcome of a command
    out = capsys.readouterr().out
    assert out.strip(), f"pmg-aft {command} --help printed nothing"
    flags = [w for w in out.split() if w.startswith("--")]
    names = {f.strip("[],.:;()").split("=")[0] for f in flags} - {"--help"}
    # HfArgumentParser also accepts the dashed spelling; the snake_case one is the documented name of each.
    documented = {n for n in names if "-" not in n[2:] or n.replace("-", "_")[2:] not in {m[2:] for m in names}}
    assert all("-" not in n[2:] for n in documented), documented


@pytest.mark.parametrize("synopsis", [s for c in cli.COMMANDS.values() for s, _ in c.lines], ids=str)
def test_every_command_refuses_an_unknown_flag_with_status_2(synopsis, capsys):
    words = [w for w in synopsis.split() if w.islower() and w.isalpha()]  # `zoo import NAME` -> zoo import
    assert cli.main([*words, "--no_such_flag_anywhere", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_flag_anywhere" in err and "Traceback" not in err


def test_one_name_for_each_concept_everywhere():
    import dataclasses
    import inspect

    from pmg_aft import TRAINERS
    from pmg_aft.evaluation import benchmark_eval_set, evaluate_robustness
    from pmg_aft.finetune import DataArguments, ScriptArguments

    groups = [DataArguments, ScriptArguments, cli.SuiteArguments, cli.EvalModelArguments, cli.PushArguments,
              cli.ZooImportArguments, cli.LeaderboardArguments]  # fmt: skip
    groups += [t.config_class for t in TRAINERS.values()]
    names = {f.name for group in groups for f in dataclasses.fields(group)}
    names |= set(inspect.signature(evaluate_robustness).parameters) | set(
        inspect.signature(benchmark_eval_set).parameters
    )
    assert {"max_eval_samples", "benchmark_data_dir", "output_dir", "model_name_or_path", "protocol"} <= names
    # The names of earlier releases are gone from every flag group and from the Python API.
    old = {"eval_max_samples", "max_samples", "data_dir", "eval_protocol", "tga_alpha", "tga_beta", "method_name"}
    assert not names & old, names & old
    assert "method" in {f.name for f in dataclasses.fields(ScriptArguments)}  # the job's, never a config's


def test_train_names_the_owner_or_a_close_spelling_of_an_unknown_flag(capsys):
    assert cli.main(["train", "--method", "tecoa", "--alpha", "3"]) == 2
    assert "unknown flags for method tecoa: ['alpha'] (alpha is a field of pmg_aft" in capsys.readouterr().err
    assert cli.main(["train", "--eval_max_samples", "5"]) == 2
    assert "(did you mean --max_eval_samples for --eval_max_samples?)" in capsys.readouterr().err
    assert cli.main(["eval", "--model_name_or_path", "m", "--output_dir", "o", "--max_sample", "5"]) == 2
    err = capsys.readouterr().err
    assert "did you mean --max_eval_samples for --max_sample?" in err and len(err.strip().splitlines()) == 1


def test_help_after_a_flagless_action_and_from_hub_with_models(capsys, tmp_path):
    for argv in (["datasets", "list", "--help"], ["zoo", "list", "--help"], ["protocols", "pmg_aft", "--help"]):
        assert cli.main(argv) == 0, argv
    capsys.readouterr()
    assert cli.main(["leaderboard", "--from_hub", "org/x", "--models", "a=b", "--output_dir", str(tmp_path)]) == 2
    assert "--from_hub reads published results" in capsys.readouterr().err  # nothing is evaluated without a word
