import json

import pytest

from pmg_aft import cli
from pmg_aft.data import BENCHMARKS


def test_datasets_list_shows_every_benchmark(capsys):
    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for bench in BENCHMARKS.values():
        assert bench.name in out and bench.hub_id in out
    assert "A surface with a {} texture." in out


def test_datasets_download_fetches_each_split_at_the_resolved_revision(monkeypatch, tmp_path, capsys):
    calls = []

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            return type("Info", (), {"sha": f"sha-of-{repo_id}"})()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: calls.append((a, k)))
    lock = tmp_path / "lock.json"
    assert cli.main(["datasets", "download", "tiny-imagenet", "cifar10", "--lock", str(lock)]) == 0
    assert [(a[0], k["split"], k["revision"]) for a, k in calls] == [
        ("zh-plus/tiny-imagenet", "train", "sha-of-zh-plus/tiny-imagenet"),
        ("zh-plus/tiny-imagenet", "valid", "sha-of-zh-plus/tiny-imagenet"),
        ("uoft-cs/cifar10", "test", "sha-of-uoft-cs/cifar10"),
    ]
    assert json.loads(lock.read_text()) == {"tiny-imagenet": "sha-of-zh-plus/tiny-imagenet",
                                             "cifar10": "sha-of-uoft-cs/cifar10"}  # fmt: skip
    calls.clear()
    assert cli.main(["datasets", "download", "all"]) == 0
    assert len({a[0] for a, _ in calls}) == len(BENCHMARKS)


def test_download_errors_say_what_and_how(monkeypatch, capsys):
    assert cli.main(["datasets", "download", "cifar-1O"]) == 2
    assert "Valid benchmarks" in capsys.readouterr().err

    class Offline:
        def dataset_info(self, repo_id, revision=None):
            raise ConnectionError("no network")

    monkeypatch.setattr("huggingface_hub.HfApi", Offline)
    with pytest.raises(SystemExit, match=r"could not download imagenet .*gated: accept its terms.*HF_TOKEN"):
        cli.main(["datasets", "download", "imagenet"])


def test_unknown_command(capsys):
    assert cli.main(["bogus"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
