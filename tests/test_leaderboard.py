"""The leaderboard: one row per model and protocol whose means are the reports', resumed without recomputing, the
papers' figures beside the measured means with the right gap, and a table rebuilt from model cards that keeps only
results of the matching protocol."""

import json
import os

import pytest

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, cli
from pmg_aft.cards import build_model_card
from pmg_aft.errors import InputError
from pmg_aft.evaluation import EvalLoader, get_protocol
from pmg_aft.evaluation.leaderboard import Leaderboard, Row, rows_from_cards, run_leaderboard
from pmg_aft.zeroshot import clip_processor

from .utils import perturbed


@pytest.fixture
def two_models(model, tokenizer):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    return {"base": (model, processor), "other": (perturbed(model, 0.02), processor)}


def protocols():
    # Two protocols at a small budget (overridden, so recorded as such), on 12 images.
    return [get_protocol("pmg_aft").override(steps=2), get_protocol("tga_zsr").override(steps=2)]


@pytest.mark.slow
def test_one_row_per_model_and_protocol_with_the_reports_means_and_a_resume_that_recomputes_nothing(
    two_models, test_set, tmp_path, monkeypatch
):
    data = {"patches": test_set.select(range(12))}
    common = dict(datasets=data, loader=EvalLoader(batch_size=6), progress=False)
    board = run_leaderboard(two_models, protocols(), str(tmp_path), **common)
    assert [(r.model, r.protocol) for r in board.rows] == [
        ("base", "pmg_aft"), ("base", "tga_zsr"), ("other", "pmg_aft"), ("other", "tga_zsr")
    ]  # fmt: skip
    report = json.load(open(tmp_path / "base" / "tga_zsr" / "report.json"))
    assert board.rows[1].mean("clean") == pytest.approx(report["results"]["patches"]["clean_accuracy"])
    key = board.rows[1].columns[1]
    assert board.rows[1].mean(key) == pytest.approx(report["results"]["patches"]["robust_accuracy"][key])
    for name in ("leaderboard.json", "leaderboard.md", "tradeoff_pmg_aft.png", "heatmap_tga_zsr.png"):
        assert os.path.getsize(tmp_path / name) > 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "## Protocol `pmg_aft`" in markdown and "## Protocol `tga_zsr`" in markdown
    assert "measured (overridden: steps)" in markdown  # a budget changed from the protocol's is said
    computed = []
    monkeypatch.setattr("pmg_aft.evaluation.suite.evaluate_dataset", lambda *a, **k: computed.append(1))
    again = run_leaderboard(two_models, protocols(), str(tmp_path), **common)  # as after a kill: all finished
    assert computed == [] and again.to_dict() == board.to_dict()


def test_the_gap_column_is_measured_minus_reported_over_the_papers_datasets():
    figures = [
        {"protocol": "tga_zsr", "metric": "robust", "attack": "pgd-100-rs-last@1/255", "datasets": ["a", "b"],
         "value": 40.0, "evidence": "hand-made"},
        {"protocol": "tga_zsr", "metric": "clean", "attack": None, "datasets": ["a", "c"], "value": 50.0,
         "evidence": "hand-made"},
    ]  # fmt: skip
    per_dataset = {"a": {"clean": 0.6, "pgd-100-rs-last@1/255": 0.5},
                   "b": {"clean": 0.4, "pgd-100-rs-last@1/255": 0.2},
                   "d": {"clean": 0.9, "pgd-100-rs-last@1/255": 0.9}}  # fmt: skip
    row = Row("m", "tga_zsr", ["clean", "pgd-100-rs-last@1/255"], per_dataset, reported=figures)
    robust, clean = row.gaps()
    assert robust["measured"] == pytest.approx(0.35) and robust["gap"] == pytest.approx(-5.0)  # (50+20)/2 - 40
    assert clean["gap"] is None and clean["no_gap_because"] == "not evaluated: c"
    table = Leaderboard([row]).to_markdown()
    assert "| 40.00 pgd-100-rs-last@1/255 | 35.00 | -5.00 |" in table and "n/a (not evaluated: c)" in table
    overridden = Row("m", "tga_zsr", row.columns, per_dataset, overrides=["steps"], reported=figures)
    assert overridden.gaps()[0]["gap"] is None and "overridden" in overridden.gaps()[0]["no_gap_because"]


def test_from_cards_keeps_only_results_of_the_matching_protocol(two_models, test_set, tmp_path, capsys):
    data = {"patches": test_set.select(range(8))}
    model, processor = two_models["base"]
    exact = run_leaderboard({"base": (model, processor)}, [get_protocol("pmg_aft").override(steps=2)],
                            str(tmp_path / "run"), datasets=data, progress=False)  # fmt: skip
    from pmg_aft.evaluation import Report

    report = Report.load(str(tmp_path / "run" / "base" / "pmg_aft" / "report.json"))
    overridden_card = tmp_path / "overridden" / "README.md"
    overridden_card.parent.mkdir()
    build_model_card("org/overridden", report).save(str(overridden_card))
    with pytest.raises(InputError, match="none of the cards .* has results of pmg_aft as the protocol runs them"):
        rows_from_cards({"overridden": str(overridden_card)}, ["pmg_aft"])  # steps overridden: not kept, and said
    report.overrides = []  # as a card of the unaltered protocol writes it
    report.protocol_record = get_protocol("pmg_aft")
    matching = tmp_path / "matching" / "README.md"
    matching.parent.mkdir()
    build_model_card("org/matching", report).save(str(matching))
    (row,) = rows_from_cards({"matching": str(matching)}, ["pmg_aft", "tga_zsr"])
    assert row.source == "model card" and row.protocol == "pmg_aft"
    assert row.mean("clean") == pytest.approx(round(100 * exact.rows[0].mean("clean"), 2) / 100)
    command = ["leaderboard", "--from_hub", f"{matching.parent},{overridden_card.parent}", "--protocols", "pmg_aft",
               "--output_dir", str(tmp_path / "cards")]  # fmt: skip
    assert cli.main(command) == 0
    out = capsys.readouterr().out
    assert "| matching | model card |" in out and "overridden |" not in out
    assert cli.main(["leaderboard", "--protocols", "pmg", "--models", "x", "--output_dir", str(tmp_path)]) == 2
    assert "unknown ['pmg']; the protocols are" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["150.0", ".nan", "-20.0", "'85.1'"])
def test_a_card_value_no_evaluation_gives_is_refused(value, two_models, test_set, tmp_path, capsys):
    # Was: the leaderboard took 150% and NaN from cards (and a value of the wrong type was a traceback).
    from pmg_aft.evaluation import evaluate_robustness

    model, processor = two_models["base"]
    report = evaluate_robustness(model, processor, get_protocol("pmg_aft").override(steps=1),
                                 datasets={"patches": test_set.select(range(8))})  # fmt: skip
    report.overrides, report.protocol_record = [], get_protocol("pmg_aft")
    card = build_model_card("org/m", report)
    first = card.data.eval_results[0].metric_value
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").write_text(str(card).replace(f"value: {first}", f"value: {value}", 1))
    command = ["leaderboard", "--from_hub", str(tmp_path / "m"), "--protocols", "pmg_aft",
               "--output_dir", str(tmp_path / "board")]  # fmt: skip
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "which is no accuracy in [0, 100] %" in err and not (tmp_path / "board" / "leaderboard.json").exists()
