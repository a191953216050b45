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
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, clip_processor, pgd
from pmg_aft.data import BenchmarkUnavailableError, get_benchmark, hub_split_files, load_benchmark
from pmg_aft.evaluation import (
    PROTOCOL_RECORDS,
    DatasetResult,
    EvalLoader,
    benchmark_eval_set,
    evaluate_robustness,
    get_protocol,
    protocol_prompts,
)
from pmg_aft.metrics import robust_accuracy_metric

from .utils import card_with_configs, fake_hub_cache, hub_fixture, pmg_aft_head, png

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
        ours = protocol_prompts("pmg_aft", name)
    else:
        assert facts["names_certain"]
        expected = [template.format(n) for n in facts["class_names"]]
        ours = protocol_prompts("pmg_aft", name)
    assert all(len(texts) == 1 for texts in ours)  # one text per class, no ensembling
    assert Counter(t[0] for t in ours) == Counter(expected)
    assert len(ours) == facts["n_classes"]


def records(source):
    with open(FACTS, encoding="utf-8") as f:
        return json.load(f)[source]["datasets"]


@pytest.mark.parametrize("dataset", sorted(records("tga_zsr")))
def test_tga_zsr_texts_are_its_codes_where_they_differ_from_pmg_afts(dataset):
    facts = records("tga_zsr")[dataset]
    ours = protocol_prompts("tga_zsr", dataset)
    assert [t for (t,) in ours] == facts["texts"] and len(ours) == facts["n_classes"]
    if dataset == "caltech101":  # its own dataset file sets no template: the generic one, without a period
        assert ours[0] == ["This is a photo of a faces"] != protocol_prompts("pmg_aft", dataset)[0]
    else:  # TGA-ZSR's loader strips ' 101' and runs: no literal reading to choose
        assert not facts["literal_reading"]
        with pytest.raises(ValueError, match="no such reading"):
            get_protocol("tga_zsr").override(caltech256_names="literal")


@pytest.mark.parametrize("dataset", sorted(records("clip_benchmark")))
def test_clip_benchmark_names_are_its_own_verbatim(dataset):
    """Underscores, duplicates ('missile' twice) and the 102-way Caltech101 with background, as FARE evaluates."""
    facts = records("clip_benchmark")[dataset]
    with open(os.path.join(os.path.dirname(FACTS), "..", "..", "pmg_aft", "data", "benchmarks.json")) as f:
        templates = json.load(f)[dataset]["templates"]
    ours = protocol_prompts("clip_benchmark", dataset)
    expected = [[t.format(name) for t in templates] for name in facts["class_names"]]
    assert Counter(map(tuple, ours)) == Counter(map(tuple, expected)) and len(ours) == len(facts["class_names"])
    head = get_benchmark(dataset).head("clip_benchmark")
    if dataset == "imagenet":
        assert head.texts[657] == head.texts[744] == "missile" and head.texts[836] == head.texts[837] == "sunglasses"
    if dataset == "cifar100":
        assert "aquarium_fish" in head.texts and sum("_" in t for t in head.texts) == 9
    if dataset == "caltech101":
        assert len(head.classes) == 102 and "background" in head.texts
        assert len(get_benchmark(dataset).head("pmg_aft").classes) == 101


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
    assert pmg.attack.random_start and not pmg.attack.first_success and pmg.attack.steps == (10,)
    assert pmg.mixed_precision == "fp16"
    assert [s.key for s in pmg.settings()] == ["pgd-10-rs-last@1/255"]
    tga = get_protocol("tga_zsr")
    assert (tga.normalization, tga.native_resolution, tga.attack.steps, tga.logit_scale) == (
        "clip",
        False,
        (100,),
        None,
    )
    bench = get_protocol("clip_benchmark")
    assert [s.key for s in bench.settings()] == ["autoattack-apgd-ce+apgd-t@1/255", "autoattack-apgd-ce+apgd-t@2/255",
                                                  "autoattack-apgd-ce+apgd-t@4/255"]  # fmt: skip
    assert bench.max_eval_samples == 1000 and bench.normalization == "model" and bench.logit_scale == 100
    changed = pmg.override(eps=[2 / 255], steps=100, mixed_precision="fp16", logit_scale=None)
    assert changed.overridden == ("eps", "steps")  # the same value, or None, is not an override
    assert changed.override(norm="l2", eps=[0.5]).overridden == ("eps", "norm", "steps")
    with pytest.raises(TypeError, match="Unknown protocol field"):
        pmg.override(temperature=2)
    with pytest.raises(ValueError, match="normalization='mine': normalization must be one of imagenet, clip, model"):
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
    head = pmg_aft_head(model, tokenizer, test_set.features["label"].names)
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
    protocol = get_protocol("pmg_aft").override(attacks=("pgd", "cw"), eps=(2 / 255, 4 / 255), steps=(3, 10),
                                                mixed_precision="no")  # fmt: skip
    report = evaluate_robustness(model, processor, protocol, benchmarks="colour-patches",
                                 loader=EvalLoader(batch_size=96))  # fmt: skip
    result = report.results["colour-patches"]
    robust = result.robust_accuracy
    assert len(robust) == 8 and result.worst_case_accuracy <= min(robust.values()) <= result.clean_accuracy
    assert result.worst_case_accuracy < max(robust.values())  # the column says more than the per-attack ones
    assert report.protocol == "pmg_aft" and report.overrides == ["attacks", "eps", "mixed_precision", "steps"]
    assert result.protocol == "pmg_aft" and result.templates == ["This is a photo of a {}"]
    # The metric by hand.
    metric = robust_accuracy_metric()
    scores = metric.compute(predictions=[0, 1, 2, 0], references=[0, 1, 2, 1],
                            adversarial_predictions=[[0, 0], [1, 1], [0, 2], [1, 1]],
                            survived=[[True, True], [False, True], [True, True], [True, True]])  # fmt: skip
    # Per attack: accuracy on its images, as the official code counts it; the worst case also needs the clean image
    # right and every iterate survived: only sample 0 qualifies (1 fell at an iterate, 2 to the first attack, 3 clean).
    assert scores == {"clean_accuracy": 0.75, "robust_accuracy": [0.75, 1.0], "worst_case_accuracy": 0.25,
                      "samples": 4}  # fmt: skip


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache, offline: a test fills it, nothing can reach the network."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_a_cached_benchmark_loads_offline_from_its_splits_files_only(hub_cache):
    """As `pmg-aft datasets download` leaves it: the card and the test split's shard in the cache (the train split's
    files not even fetched); offline, the split loads from the cache with its ClassLabel, and only its files."""
    names = get_benchmark("cifar10").class_names
    test = Dataset.from_dict({"img": [png()] * 2, "label": [0, 9]},
                             features=Features({"img": ImageFeature(), "label": ClassLabel(names=names)}))  # fmt: skip
    card = card_with_configs("plain_text", {"train": "plain_text/train-*", "test": "plain_text/test-*"})
    fake_hub_cache(hub_cache, "uoft-cs/cifar10", {"README.md": card, "plain_text/test-00000-of-00001.parquet": test},
                   sha=get_benchmark("cifar10").revision)  # fmt: skip
    files = hub_split_files(get_benchmark("cifar10"), "test", get_benchmark("cifar10").revision, local_files_only=True)
    assert [os.path.basename(f) for f in files] == ["test-00000-of-00001.parquet"]
    data = load_benchmark("cifar10")
    assert len(data) == 2 and [data.features["label"].names[r["label"]] for r in data] == ["airplane", "truck"]
    with pytest.raises(ValueError, match=r"has no split 'valid'; its splits are \['train', 'test'\]"):
        hub_split_files(get_benchmark("cifar10"), "valid", get_benchmark("cifar10").revision)
    # A partly downloaded split (1 of 2 shards) is never half-loaded: offline, it is a clear line.
    fake_hub_cache(hub_cache, "tanganke/stl10", {"README.md": card_with_configs("default", {"test": "data/test-*"}),
                   "data/test-00000-of-00002.parquet": test.rename_column("img", "image")},
                   sha=get_benchmark("stl10").revision)  # fmt: skip
    with pytest.raises(BenchmarkUnavailableError, match=r"stl10 \(tanganke/stl10\) is not in the local .* cache"):
        load_benchmark("stl10")


def test_a_gated_benchmark_says_how_to_log_in_before_anything_is_fetched(hub_cache, monkeypatch):
    import huggingface_hub.constants

    from pmg_aft.data import loading

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # online, but not cached, no token
    monkeypatch.setattr(loading, "get_token", lambda: None)
    real = loading.hf_hub_download

    def only_the_cache(*args, local_files_only=False, **kwargs):
        assert local_files_only, "contacted the Hub"
        return real(*args, local_files_only=True, **kwargs)

    monkeypatch.setattr(loading, "hf_hub_download", only_the_cache)
    with pytest.raises(BenchmarkUnavailableError, match=r"imagenet \(ILSVRC/imagenet-1k\) is gated .*hf auth login"):
        load_benchmark("imagenet")


def test_caltech256_keeps_all_257_classes_when_capped_or_streamed(tmp_path):
    """Its Hub copy names each row in a `text` column: the head always has the 257 classes, in the archive's
    order, whatever rows are loaded."""
    from datasets import DatasetDict

    DatasetDict({"test": hub_fixture("caltech256")}).save_to_disk(str(tmp_path / "caltech256"))
    capped = load_benchmark("caltech256", benchmark_data_dir=str(tmp_path), max_samples=2)
    assert len(capped) == 2 and len(capped.features["label"].names) == 257
    assert capped.features["label"].names[:2] == ["ak47", "american flag"]
    streamed = load_benchmark("caltech256", benchmark_data_dir=str(tmp_path), streaming=True)
    assert [streamed.features["label"].names[r["label"]] for r in streamed] == ["ak47", "american flag", "clutter"]
    assert len(protocol_prompts("pmg_aft", "caltech256")) == 257


def test_a_capped_label_sorted_split_is_sampled_across_classes(tmp_path):
    from datasets import DatasetDict

    labels = sorted([i % 10 for i in range(200)])  # label-sorted, as the Hub copies are
    label = ClassLabel(names=get_benchmark("cifar10").class_names)
    data = Dataset.from_dict({"img": [png()] * 200, "label": labels},
                             features=Features({"img": ImageFeature(), "label": label}))  # fmt: skip
    DatasetDict({"test": data}).save_to_disk(str(tmp_path / "cifar10"))
    first = load_benchmark("cifar10", benchmark_data_dir=str(tmp_path), max_samples=20)
    sampled = benchmark_eval_set("cifar10", "clip_benchmark", benchmark_data_dir=str(tmp_path), max_eval_samples=20)
    assert len(set(first["label"])) == 1  # the first rows are one class
    assert len(set(sampled.dataset["label"])) >= 6 and sampled.max_eval_samples == 20 and sampled.sample_seed == 0
    again = benchmark_eval_set("cifar10", "clip_benchmark", benchmark_data_dir=str(tmp_path), max_eval_samples=20)
    assert again.dataset["label"] == sampled.dataset["label"]  # seeded: the same rows every time


def test_pgd_reports_which_samples_survived_every_iterate(model, tokenizer, batch, test_set):
    """return_survivors against a hand loop that predicts at every iterate of the same attack."""
    head = pmg_aft_head(model, tokenizer, test_set.features["label"].names)
    x, y = batch["pixel_values"], batch["labels"]
    adv, survived = pgd(head, x, y, eps=4 / 255, step_size=1 / 255, steps=5, random_start=False, return_survivors=True)
    delta, alive = torch.zeros_like(x), torch.ones_like(y, dtype=torch.bool)
    for _ in range(5):
        point = (x + delta).requires_grad_(True)
        logits = head(point)
        alive &= logits.argmax(-1) == y
        grad = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), point)[0]
        delta = (delta + grad.sign() / 255).clamp(-4 / 255, 4 / 255)
        delta = (x + delta).clamp(0, 1) - x
    assert torch.equal(survived, alive) and torch.allclose(adv, x + delta, atol=1e-6)
    with torch.no_grad():
        clean = head(x).argmax(-1) == y
    assert not (survived & ~clean).any() and survived.sum() < clean.sum()  # the start is an iterate too


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


def test_random_starts_do_not_depend_on_the_batching(model, tokenizer, test_set):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    protocol = get_protocol("pmg_aft").override(eps=(4 / 255,), steps=3, mixed_precision="no")
    runs = [evaluate_robustness(model, processor, protocol, datasets={"patches": test_set},
                                loader=EvalLoader(batch_size=size)) for size in (48, 7)]  # fmt: skip
    first, second = (run.results["patches"] for run in runs)
    assert runs[0].settings[0].random_start
    assert first.robust_accuracy == second.robust_accuracy and first.clean_accuracy > max(
        first.robust_accuracy.values()
    )
    other = evaluate_robustness(model, processor, protocol, datasets={"patches": test_set}, seed=1)
    assert other.seed == 1 and other.fingerprint() != runs[0].fingerprint()


def test_fp16_is_cuda_autocast_so_a_cpu_run_records_float32(model, tokenizer, test_set):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    report = evaluate_robustness(model, processor, get_protocol("pmg_aft").override(steps=1),
                                 datasets={"patches": test_set.select(range(8))})  # fmt: skip
    assert report.protocol_record.mixed_precision == "fp16" and report.mixed_precision == "no"
    assert report.overrides == ["steps"]  # not an override: the official code's autocast is CUDA-only too
    assert "the protocol's fp16 is CUDA-only; this ran without CUDA" in report.to_markdown()


def test_compare_refuses_reports_that_differ_in_any_protocol_field():
    from pmg_aft import AttackSetting, Report
    from pmg_aft.evaluation import comparison_table

    def report(**record):
        base = get_protocol("pmg_aft").override(**record)
        out = Report("m", "pmg_aft", 1.0, [0.5] * 3, [0.5] * 3, [AttackSetting(attack="pgd", eps=1 / 255, steps=10)],
                     protocol_record=base, overrides=list(base.overridden))  # fmt: skip
        out.results["cifar10"] = DatasetResult(dataset="cifar10", clean_accuracy=0.5, samples=10,
                                               robust_accuracy={"pgd-10@1/255": 0.2})  # fmt: skip
        return out

    assert "| a |" in comparison_table({"a": report(max_eval_samples=100), "b": report(max_eval_samples=100)})
    with pytest.raises(ValueError, match=r"differ in \['max_eval_samples'\]"):
        comparison_table({"a": report(max_eval_samples=100), "b": report(max_eval_samples=500)})
