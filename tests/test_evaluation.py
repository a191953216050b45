import json
import os
import sys

import pytest
import torch
from PIL import Image

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, AttackSetting, ZeroShotClassifier, clean_class_name, clip_processor
from pmg_aft.data import ImageClassificationCollator
from pmg_aft.evaluation import (
    DatasetResult,
    EvalLoader,
    Report,
    autoattack,
    autoattack_plan,
    evaluate_dataset,
    evaluate_robustness,
    get_protocol,
    sanity_warnings,
)
from pmg_aft.outputs import OutputFolderError

from .utils import free_port, run

# The suite's own start-at-the-image, first-success PGD in float32: deterministic, so more steps never help a sample.
DETERMINISTIC = dict(random_start=False, first_success=True, mixed_precision="no")


def deterministic(**overrides):
    """The pmg_aft protocol with DETERMINISTIC's attack and `overrides`."""
    return get_protocol("pmg_aft").override(**{**DETERMINISTIC, **overrides})


@pytest.fixture
def processor(model, tokenizer):
    return clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)


def test_clean_accuracy_is_a_hand_count_and_attacks_only_lower_it(model, processor, tokenizer, test_set):
    protocol = deterministic(attacks=("pgd", "cw"), eps=(1 / 255, 4 / 255), steps=(1, 5, 20))
    report = evaluate_robustness(model, processor, protocol, datasets={"patches": test_set},
                                 loader=EvalLoader(batch_size=16))  # fmt: skip
    result = report.results["patches"]
    names = [clean_class_name(n) for n in test_set.features["label"].names]
    head = ZeroShotClassifier(model, tokenizer, names, ["This is a photo of a {}"], IMAGENET_MEAN, IMAGENET_STD, 1.0)
    batch = ImageClassificationCollator(image_size=32)([row for row in test_set])
    with torch.no_grad():
        hand = (head(batch["pixel_values"]).argmax(-1) == batch["labels"]).sum().item()
    assert result.samples == len(test_set)
    assert result.clean_accuracy == pytest.approx(hand / len(test_set))
    robust = result.robust_accuracy
    assert all(v <= result.clean_accuracy for v in robust.values())
    for attack in ("pgd", "cw"):
        for eps in ("1/255", "4/255"):  # same samples, same start: more steps never help the model
            assert robust[f"{attack}-1@{eps}"] >= robust[f"{attack}-5@{eps}"] >= robust[f"{attack}-20@{eps}"]
    assert robust["pgd-20@4/255"] < result.clean_accuracy
    assert report.warnings == []
    # The worst case over all twelve settings and their iterates is never above any of them.
    assert result.worst_case_accuracy <= min(robust.values())
    assert report.overrides == ["attacks", "eps", "first_success", "mixed_precision", "random_start", "steps"]


@pytest.mark.slow
def test_autoattack_runs_end_to_end_on_a_handful_of_samples(model, processor, test_set):
    pytest.importorskip("pyautoattack")
    two = test_set.filter(lambda row: row["label"] < 2).select(range(4))
    data = {"two": two.cast_column("label", _two_classes(test_set)), "six": test_set.select(range(4))}
    # A small budget, so some samples survive APGD and FAB-T and Square run too.
    protocol = deterministic(attacks=("autoattack", "pgd"), eps=(1 / 255,), steps=20)
    report = evaluate_robustness(model, processor, protocol, datasets=data, loader=EvalLoader(batch_size=4))
    assert all(p.grad is None for p in model.parameters()) and all(p.requires_grad for p in model.parameters())
    for result in report.results.values():
        assert result.robust_accuracy["autoattack@1/255"] <= result.robust_accuracy["pgd-20@1/255"] + 0.25
        assert result.robust_accuracy["autoattack@1/255"] <= result.clean_accuracy
    assert report.results["six"].autoattack_attacks["autoattack@1/255"] == [
        "apgd-ce", "apgd-t (5 targets)", "fab-t (5 targets)", "square"]  # fmt: skip
    assert report.results["two"].autoattack_attacks["autoattack@1/255"] == [
        "apgd-ce", "fab-t (1 target)", "square"]  # fmt: skip
    assert autoattack_plan(3) == ("custom", ["apgd-ce", "fab-t", "square"], 2, 1)
    assert autoattack_plan(2, "apgd-ce+apgd-t") == ("custom", ["apgd-ce"], 1, 5)  # FARE's: APGD-CE alone on PCAM
    assert autoattack_plan(10, "apgd-ce+apgd-t") == ("custom", ["apgd-ce", "apgd-t"], 9, 5)
    assert autoattack_plan(10, "apgd-ce+apgd-dlr").attacks == ["apgd-ce", "apgd-dlr"]  # TGA-ZSR's
    head = ZeroShotClassifier(model, class_embeddings=torch.nn.functional.normalize(torch.randn(6, 32), dim=-1))
    batch = ImageClassificationCollator(image_size=32)([test_set[i] for i in range(2)])
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    autoattack(head, batch["pixel_values"], batch["labels"], 8 / 255, 6)
    assert torch.equal(torch.random.get_rng_state(), state)  # AutoAttack's reseeding does not leak out


def _two_classes(data):
    from datasets import ClassLabel

    labels = data.features["label"].names  # a 2-class task, like PCAM
    return ClassLabel(names=labels[:2])


def test_an_interrupted_suite_resumes_without_recomputing(model, processor, test_set, tmp_path, monkeypatch):
    data = {"first": test_set.select(range(6)), "second": test_set.select(range(6, 12))}
    computed = []
    original = evaluate_dataset

    def flaky(classifier, eval_set, *args, **kwargs):
        computed.append(eval_set.name)
        if eval_set.name == "second" and computed.count("second") == 1:
            raise KeyboardInterrupt  # killed during the second dataset
        return original(classifier, eval_set, *args, **kwargs)

    monkeypatch.setattr("pmg_aft.evaluation.suite.evaluate_dataset", flaky)
    common = dict(datasets=data, loader=EvalLoader(batch_size=8), output_dir=str(tmp_path))
    protocol = deterministic(eps=(2 / 255,), steps=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_robustness(model, processor, protocol, **common)
    first = tmp_path / "results" / "first.json"
    stamp = first.stat().st_mtime_ns
    report = evaluate_robustness(model, processor, protocol, **common)
    assert computed == ["first", "second", "second"]  # 'first' was not computed again
    assert first.stat().st_mtime_ns == stamp and sorted(report.results) == ["first", "second"]
    evaluate_robustness(model, processor, protocol.override(steps=3), **common)  # other settings: recomputed
    assert computed[-2:] == ["first", "second"]
    with torch.no_grad():
        model.visual_projection.weight.mul_(1.01)  # other weights: another model's evaluation, refused ...
    with pytest.raises(OutputFolderError, match=r"holds another model's evaluation .*--overwrite_output_dir"):
        evaluate_robustness(model, processor, protocol.override(steps=3), **common)
    assert computed[-2:] == ["first", "second"]
    before = json.loads((tmp_path / "report.json").read_text())["model_digest"]
    evaluate_robustness(model, processor, protocol.override(steps=3), overwrite_output_dir=True, **common)
    assert computed[-2:] == ["first", "second"]  # ... unless replaced on purpose: recomputed, none reused
    assert json.loads((tmp_path / "report.json").read_text())["model_digest"] != before
    report = evaluate_robustness(model, processor, protocol.override(steps=3, max_eval_samples=4), **common)
    assert report.results["first"].samples == 4 and report.max_eval_samples == 4


def test_report_files_table_and_plots(model, processor, test_set, tmp_path):
    report = evaluate_robustness(model, processor, deterministic(eps=(1 / 255, 2 / 255), steps=2),
                                 datasets={"a": test_set, "b": test_set.select(range(8))},
                                 loader=EvalLoader(batch_size=16), output_dir=str(tmp_path),
                                 model_id="org/tiny")  # fmt: skip
    saved = Report.load(str(tmp_path))
    assert saved.results == report.results and saved.model == "org/tiny" and saved.protocol == "pmg_aft"
    assert saved.protocol_record.normalization == "imagenet" and "first_success" in saved.overrides
    table = (tmp_path / "report.md").read_text()
    assert "| a | 48 |" in table and "**mean**" in table and "pgd-2@2/255" in table and "worst case" in table
    assert "Protocol `pmg_aft` with eps, first_success, mixed_precision, random_start, steps overridden" in table
    for png in ("accuracy.png", "accuracy_vs_eps.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(tmp_path / png) as image:
            assert image.size[0] > 100
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["results"]["a"]["samples"] == 48 and data["settings"][0]["steps"] == 2
    assert data["settings"][0]["key"] == "pgd-2@1/255" and saved.settings == report.settings
    record = data["protocol_record"]  # the effective protocol, its attack grid in plain values
    assert (record["steps"], record["attacks"], record["eps"]) == ([2], ["pgd"], [1 / 255, 2 / 255])
    assert "- `pgd-2@2/255`: PGD-2 (L-inf, eps 2/255, step 1/255, cross-entropy, start at the image" in table


def test_sanity_checks_flag_impossible_numbers():
    settings = [
        AttackSetting(attack="pgd", eps=1 / 255, steps=10),
        AttackSetting(attack="pgd", eps=1 / 255, steps=100),
    ]
    report = Report("m", "pmg_aft", 1.0, [0.5] * 3, [0.5] * 3, settings=settings)
    report.results["x"] = DatasetResult(
        dataset="x",
        samples=4,
        clean_accuracy=0.5,
        robust_accuracy={"pgd-10@1/255": 0.6, "pgd-100@1/255": 0.7},
        gradient_health={"zero_gradient": 0.25, "non_finite_gradient": 0.0},
    )
    warnings = " ".join(sanity_warnings(report))
    assert "above clean" in warnings and "with 100 steps" in warnings and "zero gradient" in warnings


def test_bad_settings_are_clear_errors(model, processor, test_set):
    with pytest.raises(ValueError, match="attacks must be one of pgd, cw, autoattack"):
        evaluate_robustness(model, processor, get_protocol("pmg_aft").override(attacks=("fgsm",)),
                            datasets={"a": test_set})  # fmt: skip
    with pytest.raises(ValueError, match="Did you mean 8/255"):
        evaluate_robustness(model, processor, get_protocol("pmg_aft").override(eps=(8,)), datasets={"a": test_set})
    with pytest.raises(KeyError, match="Valid benchmarks"):
        evaluate_robustness(model, processor, benchmarks="cifar-9000")


@pytest.mark.slow
def test_two_processes_give_the_same_report_as_one(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "eval_dist.py")
    run([sys.executable, script, str(tmp_path / "one")], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         script, str(tmp_path / "two")], tmp_path)  # fmt: skip
    one, two = Report.load(str(tmp_path / "one")), Report.load(str(tmp_path / "two"))
    assert one.results["patches"].samples == two.results["patches"].samples == 11
    assert one.settings[0].random_start and not one.settings[0].first_success  # the protocol's random starts
    for key in ("clean_accuracy", "robust_accuracy", "worst_case_accuracy"):
        assert getattr(one.results["patches"], key) == getattr(two.results["patches"], key)


@pytest.mark.slow
def test_compare_methods_example_writes_one_table(tmp_path):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "compare_methods.py")
    spec = importlib.util.spec_from_file_location("compare_methods", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    table = example.main(["--methods", "clean,fare", "--output_dir", str(tmp_path), "--max_steps", "2"])
    assert "| clean |" in table and "| fare |" in table and "pgd-10-rs-last@4/255 (mean)" in table
    assert "worst case (mean)" in table and "Protocol `pmg_aft` with attacks, eps overridden" in table
    assert (tmp_path / "comparison.md").read_text() == table
    assert Report.load(str(tmp_path / "fare" / "pmg_aft")).model == "fare"  # one protocol of a leaderboard
    assert (tmp_path / "leaderboard.json").is_file()


def test_comparison_refuses_unlike_settings():
    from pmg_aft.evaluation import comparison_table

    a = Report("a", "pmg_aft", 1.0, [0.5] * 3, [0.5] * 3, [AttackSetting(attack="pgd", eps=1 / 255, steps=10)])
    b = Report(
        "b", "clip_benchmark", 100.0, [0.5] * 3, [0.5] * 3, [AttackSetting(attack="pgd", eps=1 / 255, steps=10)]
    )
    with pytest.raises(ValueError, match="compare like with like"):
        comparison_table({"a": a, "b": b})


def test_trainer_and_suite_share_one_engine(model, processor, test_set, make_trainer):
    """The same settings give the same numbers through Trainer.evaluate and evaluate_robustness."""
    data = test_set.select(range(20))
    trainer = make_trainer("pmg_aft", model, attack_random_start=False, native_resolution=False, eval_eps="2/255",
                           eval_attack_steps=3)  # fmt: skip
    metrics = trainer.evaluate({"patches": data})
    report = evaluate_robustness(model, processor, deterministic(eps=(2 / 255,), steps=3, first_success=False),
                                 datasets={"patches": data},
                                 loader=EvalLoader(batch_size=16))  # fmt: skip
    # The trainer counts the final iterate, as every official evaluation does.
    assert trainer.report.attack_keys == report.attack_keys == ["pgd-3-last@2/255"]
    ours, theirs = trainer.report.results["patches"], report.results["patches"]
    assert ours.clean_accuracy == theirs.clean_accuracy == metrics["eval_patches_clean_accuracy"]
    assert ours.robust_accuracy == theirs.robust_accuracy
    assert ours.robust_accuracy["pgd-3-last@2/255"] < ours.clean_accuracy


def test_tf32_is_a_cuda_precision_recorded_as_float32_elsewhere():
    from pmg_aft.evaluation.engine import effective_precision, tf32_matmuls

    assert effective_precision("tf32", torch.device("cpu")) == "no"
    assert effective_precision("tf32", torch.device("cuda")) == "tf32"
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with tf32_matmuls():
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_loader_workers_give_the_same_results(model, processor, test_set):
    protocol = get_protocol("pmg_aft").override(eps=(4 / 255,), steps=3, random_start=True, first_success=True,
                                                mixed_precision="no")  # fmt: skip
    alone = evaluate_robustness(model, processor, protocol, datasets={"patches": test_set},
                                loader=EvalLoader(batch_size=16))  # fmt: skip
    workers = evaluate_robustness(model, processor, protocol, datasets={"patches": test_set},
                                  loader=EvalLoader(batch_size=16, num_workers=2, pin_memory=False))  # fmt: skip
    assert workers.results["patches"].robust_accuracy == alone.results["patches"].robust_accuracy
    assert workers.results["patches"].clean_accuracy == alone.results["patches"].clean_accuracy


def test_results_are_typed_and_read_back_from_their_json(model, processor, test_set, tmp_path):
    report = evaluate_robustness(model, processor, deterministic(steps=1), datasets={"a": test_set.select(range(8))},
                                 output_dir=str(tmp_path))  # fmt: skip
    result = report.results["a"]
    assert isinstance(result, DatasetResult) and result.samples == 8 and result.dataset == "a"
    assert Report.load(str(tmp_path)).results["a"] == result
    saved = json.loads((tmp_path / "results" / "a.json").read_text())["result"]
    assert DatasetResult.from_dict(saved, "a") == result and set(saved) == set(result.to_dict())


def test_the_suite_takes_keywords_after_the_protocol(model, processor, test_set):
    with pytest.raises(TypeError):
        evaluate_robustness(model, processor, "pmg_aft", "cifar10")  # benchmarks= must be named
    with pytest.raises(ValueError, match=r"batch_size=0: batch_size must be a whole number in \[1, 65536\]"):
        EvalLoader(batch_size=0)


def test_a_reports_protocol_is_a_typed_record_read_back_checked(model, processor, test_set, tmp_path, make_trainer):
    from pmg_aft.evaluation import Protocol, Report
    from pmg_aft.evaluation.results import ReportError

    protocol = get_protocol("pmg_aft").override(steps=(1,), max_eval_samples=8)
    evaluate_robustness(model, processor, protocol, datasets={"a": test_set}, output_dir=str(tmp_path / "r"))
    saved = Report.load(str(tmp_path / "r"))
    assert isinstance(saved.protocol_record, Protocol) and saved.protocol_record == protocol
    # A record no protocol can have is refused on load, naming the file, even with its digest recomputed.
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    data["protocol_record"]["texts"] = "somebody_elses"
    data.pop("report_digest")
    (tmp_path / "r" / "report.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"report.json is not a pmg_aft report .*texts"):
        Report.load(str(tmp_path / "r"))
    # A trainer's own evaluation is a protocol too: its texts are each eval set's, its normalisation the run's.
    trainer = make_trainer("tecoa", model, eval_dataset={"patches": test_set.select(range(8))}, eval_attack_steps=1)
    trainer.evaluate()
    record = trainer.report.protocol_record
    assert (record.name, record.texts, record.normalization) == ("trainer", "custom", "run")
    assert record.attack.steps == (1,)
