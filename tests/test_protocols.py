"""Evaluation protocols as data: the official texts, the protocol records and overrides, the official PGD, the
worst-case column, and loading only the evaluation split."""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, ZeroShotClassifier, clip_processor, pgd
from pmg_aft.data import Benchmark, BenchmarkUnavailableError, hub_split_files, load_benchmark, normalize_name
from pmg_aft.evaluation import PROTOCOL_RECORDS, evaluate_robustness, get_protocol, protocol_prompts
from pmg_aft.metrics import robust_accuracy_metric

FACTS = os.path.join(os.path.dirname(__file__), "data", "official_pmg_aft_eval.json")  # a copy of shared/data's
REGISTRY = {"oxford_pets": "pets", "fgvc_aircraft": "fgvc-aircraft", "stanford_cars": "stanford-cars",
            "tiny_imagenet": "tiny-imagenet"}  # fmt: skip


def official():
    with open(FACTS, encoding="utf-8") as f:
        return json.load(f)["datasets"]


@pytest.mark.parametrize("dataset", sorted(official()))
def test_pmg_aft_texts_are_the_official_evaluations(dataset):
    """The texts fed to the tokenizer equal the official code's, as a multiset per dataset. Caltech's official loaders
    crash as written (`names_certain: false`): there the texts are the folder names cleaned as its rule says."""
    facts = official()[dataset]
    name = REGISTRY.get(dataset, dataset)
    template = facts["templates"][0]
    if dataset == "caltech101":
        expected = [template.format(f.lower().replace("_", " ").replace("-", " ")) for f in
                    facts["folder_names_label_order"]]  # fmt: skip
        ours = protocol_prompts("pmg_aft", name)
    elif dataset == "caltech256":  # names come from the data; loaded as load_benchmark cleans them
        expected = [template.format(n) for n in facts["tecoa_variant_class_names"]]
        ours = protocol_prompts("pmg_aft", name, [normalize_name(f) for f in facts["folder_names_label_order"]])
    else:
        assert facts["names_certain"]
        expected = [template.format(n) for n in facts["class_names"]]
        ours = protocol_prompts("pmg_aft", name)
    assert all(len(texts) == 1 for texts in ours)  # one text per class, no ensembling
    assert Counter(t[0] for t in ours) == Counter(expected)
    assert len(ours) == facts["n_classes"]


def test_some_official_texts_verbatim():
    assert protocol_prompts("pmg_aft", "pcam") == [["Tthis is a photo of healthy lymph node tissue."],
                                                   ["This is a photo of lymph node tumor tissue."]]  # fmt: skip
    eurosat = [t[0] for t in protocol_prompts("pmg_aft", "eurosat")]
    assert eurosat[1] == "A centered satellite photo of a forest." and eurosat[-1].endswith("a sea or a lake.")
    aircraft = [t[0] for t in protocol_prompts("pmg_aft", "fgvc-aircraft")]
    assert aircraft[0] == "A photo of a boeing 707-320, a type of aircraft." and "f/a-18" in " ".join(aircraft)
    cars = [t[0] for t in protocol_prompts("pmg_aft", "stanford-cars")]
    assert cars[0] == "A photo of a am general hummer suv." and not any(c[-6:-1].isdigit() for c in cars)
    flowers = [t[0] for t in protocol_prompts("pmg_aft", "flowers102")]
    assert "A photo of a cyclamen , a type of flower." in flowers  # its trailing space, as the code leaves it
    assert protocol_prompts("tga_zsr", "pcam") == protocol_prompts("pmg_aft", "pcam")
    assert len(protocol_prompts("clip_benchmark", "cifar10")[0]) == 18  # template ensembles


def test_protocol_records_and_overrides():
    pmg = get_protocol("pmg_aft")
    assert (pmg.logit_scale, pmg.normalization, pmg.native_resolution) == (1.0, "imagenet", True)
    assert pmg.random_start and not pmg.first_success and pmg.steps == (10,) and pmg.mixed_precision == "fp16"
    assert [s.key for s in pmg.settings()] == ["pgd-10-rs-last@1/255"]
    tga = get_protocol("tga_zsr")
    assert (tga.normalization, tga.native_resolution, tga.steps, tga.logit_scale) == ("clip", False, (100,), None)
    bench = get_protocol("clip_benchmark")
    assert [s.key for s in bench.settings()] == ["autoattack-apgd-ce+apgd-t@1/255", "autoattack-apgd-ce+apgd-t@2/255",
                                                  "autoattack-apgd-ce+apgd-t@4/255"]  # fmt: skip
    assert bench.max_eval_samples == 1000 and bench.normalization == "model" and bench.logit_scale == 100
    changed = pmg.override(eps=[2 / 255], steps=100, mixed_precision="fp16", logit_scale=None)
    assert changed.overridden == ("eps", "steps")  # the same value, or None, is not an override
    assert changed.override(norm="l2", eps=[0.5]).overridden == ("eps", "norm", "steps")
    with pytest.raises(TypeError, match="Unknown protocol field"):
        pmg.override(temperature=2)
    with pytest.raises(ValueError, match="normalization='mine'"):
        pmg.override(normalization="mine")
    assert set(PROTOCOL_RECORDS) == {"pmg_aft", "tga_zsr", "clip_benchmark"}
    assert all(record.evidence for record in PROTOCOL_RECORDS.values())


def independent_pgd(model_fn, x, y, eps, step, steps, generator):
    """PGD written out plainly (uniform start in the ball, clipped; sign steps; projection; final iterate)."""
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model_fn(x + delta), y)
        grad = torch.autograd.grad(loss, delta)[0]
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def test_the_official_pgd_agrees_with_an_independent_pgd_within_sampling_noise(model, tokenizer, batch, test_set):
    head = ZeroShotClassifier(model, tokenizer, test_set.features["label"].names, logit_scale=1.0)
    x, y = batch["pixel_values"], batch["labels"]
    setting = get_protocol("pmg_aft").override(eps=[4 / 255]).settings()[0]
    ours, theirs = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        adv = pgd(head, x, y, **setting.pgd_kwargs())
        other = independent_pgd(head, x, y, 4 / 255, 1 / 255, 10, torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            ours.append((head(adv).argmax(-1) == y).float().mean().item())
            theirs.append((head(other).argmax(-1) == y).float().mean().item())
    with torch.no_grad():
        clean = (head(x).argmax(-1) == y).float().mean().item()
    mean_ours, mean_theirs = sum(ours) / 4, sum(theirs) / 4
    noise = (mean_ours * (1 - mean_ours) / (4 * len(y))) ** 0.5  # binomial standard error of a 4-run mean
    assert max(mean_ours, mean_theirs) < clean - 0.2  # both attacks work
    assert abs(mean_ours - mean_theirs) <= 4 * noise + 1 / len(y), (ours, theirs)


def test_the_worst_case_is_never_above_any_attack_and_its_own_metric_adds_up(model, tokenizer, test_set):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    report = evaluate_robustness(model, processor, benchmarks="colour-patches", attacks=("pgd", "cw"),
                                 eps=(2 / 255, 4 / 255), steps=(3, 10), mixed_precision="no",
                                 batch_size=96)  # fmt: skip
    result = report.results["colour-patches"]
    robust = result["robust_accuracy"]
    assert len(robust) == 8 and result["worst_case_accuracy"] <= min(robust.values()) <= result["clean_accuracy"]
    assert result["worst_case_accuracy"] < max(robust.values())  # the column says more than the per-attack ones
    assert report.protocol == "pmg_aft" and report.overrides == ["attacks", "eps", "mixed_precision", "steps"]
    assert result["protocol"] == "pmg_aft" and result["templates"] == ["This is a photo of a {}"]
    # The metric by hand.
    metric = robust_accuracy_metric()
    scores = metric.compute(predictions=[0, 1, 2, 0], references=[0, 1, 2, 1],
                            adversarial_predictions=[[0, 0], [1, 1], [0, 2], [1, 1]],
                            survived=[[True, True], [False, True], [True, True], [True, True]])  # fmt: skip
    # Per attack: accuracy on its images, as the official code counts it; the worst case also needs the clean image
    # right and every iterate survived: only sample 0 qualifies (1 fell at an iterate, 2 to the first attack, 3 clean).
    assert scores == {"clean_accuracy": 0.75, "robust_accuracy": [0.75, 1.0], "worst_case_accuracy": 0.25,
                      "samples": 4}  # fmt: skip


def test_only_the_evaluation_splits_files_are_loaded(tmp_path, monkeypatch):
    """A repository in the Hub layout: the split's files are resolved from its configs and only they are read."""
    from pmg_aft.data import loading

    repo = tmp_path / "repo"  # like uoft-cs/cifar10: a named config whose card lists each split's files
    (repo / "plain_text").mkdir(parents=True)
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: plain_text\n  data_files:\n  - split: train\n"
        "    path: plain_text/train-*\n  - split: test\n    path: plain_text/test-*\n---\n"
    )
    train = Dataset.from_dict({"image": [None] * 5, "label": list(range(5))})
    train.to_parquet(str(repo / "plain_text" / "train-00000-of-00001.parquet"))
    test = Dataset.from_dict({"image": [None] * 2, "label": [0, 1]})
    test.to_parquet(str(repo / "plain_text" / "test-00000-of-00001.parquet"))
    bench = Benchmark("toy", str(repo), "test", config="plain_text")
    files = hub_split_files(bench, "test")
    assert [os.path.basename(f) for f in files] == ["test-00000-of-00001.parquet"]
    seen = {}
    real = loading.load_dataset
    monkeypatch.setattr(loading, "load_dataset", lambda *a, **k: seen.update(k) or real(*a, **k))
    data = loading.load_hub_split(bench, "test")
    assert len(data) == 2 and list(seen["data_files"]) == ["test"] and seen["data_files"]["test"] == files
    with pytest.raises(ValueError, match=r"has no split 'valid'; its splits are \['train', 'test'\]"):
        hub_split_files(bench, "valid")


def test_a_gated_benchmark_says_how_to_log_in_before_anything_is_fetched(monkeypatch):
    from pmg_aft.data import loading

    monkeypatch.setattr(loading, "get_token", lambda: None)
    monkeypatch.setattr(loading, "load_dataset_builder", lambda *a, **k: pytest.fail("contacted the Hub"))
    with pytest.raises(BenchmarkUnavailableError, match=r"imagenet \(ILSVRC/imagenet-1k\) is gated .*hf auth login"):
        load_benchmark("imagenet")


@pytest.mark.slow
def test_an_uncached_benchmark_offline_is_one_clear_line(tmp_path, model, tokenizer):
    folder = tmp_path / "ckpt"
    model.save_pretrained(str(folder))
    clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD).save_pretrained(str(folder))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "pmg_aft.cli", "eval", "--model_name_or_path", str(folder), "--benchmarks",
               "cifar10", "--output_dir", str(tmp_path / "eval")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("pmg-aft:")]
    assert len(line) == 1 and "cifar10 (uoft-cs/cifar10) is not in the local Hugging Face cache" in line[0]
    assert "pmg-aft datasets download cifar10" in line[0] and "--benchmark_data_dir" in line[0]


def test_pmg_aft_protocols_lists_every_field(capsys):
    from pmg_aft import cli

    assert cli.main(["protocols"]) == 0
    out = capsys.readouterr().out
    for name in PROTOCOL_RECORDS:
        assert f"{name}: " in out
    assert "normalization      imagenet" in out and "PMG_AFT.py" in out
