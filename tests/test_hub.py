import json
import os

import pytest
from datasets import DatasetDict
from huggingface_hub import ModelCard

from pmg_aft import TRAINERS, AttackSetting, DatasetResult, EvalSet, Report, cli, get_protocol
from pmg_aft.cards import build_model_card
from pmg_aft.errors import InputError
from pmg_aft.hub import push
from pmg_aft.provenance import Licence

from .utils import METHODS, FakeApi, hub_fixture

PAPERS = {key: trainer.method_info.paper for key, trainer in TRAINERS.items() if trainer.method_info.paper}


def sample_report() -> Report:
    settings = [AttackSetting(attack="pgd", eps=1 / 255, steps=10), AttackSetting(attack="autoattack", eps=1 / 255)]
    report = Report("org/robust-clip", "pmg_aft", 1.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], settings)
    for name, hub_id, clean in (("cifar10", "uoft-cs/cifar10", 0.8), ("pcam", "1aurent/PatchCamelyon", 0.5)):
        robust = {"pgd-10@1/255": 0.3, "autoattack@1/255": 0.25}
        report.results[name] = DatasetResult(dataset=name, hub_id=hub_id, split="test", revision="abc", samples=100,
                                             clean_accuracy=clean, robust_accuracy=robust)  # fmt: skip
    return report


def test_card_renders_reloads_and_holds_every_result(tmp_path):
    report = sample_report()
    card = build_model_card("org/robust-clip", report, base_model="openai/clip-vit-base-patch32",
                            recipe={"alpha": 256, "beta": 256, "learning_rate": 5e-5},
                            train_dataset="zh-plus/tiny-imagenet", plots=["accuracy.png"],
                            method=TRAINERS["pmg_aft"].method_info, licence=Licence("mit", None, "OpenAI's release"),
                            credits=("OpenAI's CLIP",))  # fmt: skip
    card.save(str(tmp_path / "README.md"))
    loaded = ModelCard.load(str(tmp_path / "README.md"))
    data = loaded.data
    assert data.pipeline_tag == "zero-shot-image-classification" and data.base_model == "openai/clip-vit-base-patch32"
    assert data.license == "mit" and "adversarial-robustness" in data.tags and "pmg-aft" in data.tags
    assert data.datasets == ["zh-plus/tiny-imagenet"]  # trained on; the evaluation sets are in the model-index
    assert {r.dataset_type for r in data.eval_results} == {"uoft-cs/cifar10", "1aurent/PatchCamelyon"}
    found = {(r.dataset_name, r.metric_name, r.metric_value) for r in data.eval_results}
    for name, result in report.results.items():
        assert (
            name,
            "clean accuracy (pmg_aft protocol, logit scale 1)",
            round(100 * result.clean_accuracy, 2),
        ) in found
        for key, value in result.robust_accuracy.items():
            metric = f"robust accuracy ({key}, linf, pmg_aft protocol, logit scale 1)"
            assert (name, metric, round(100 * value, 2)) in found
    assert len(found) == 6
    text = loaded.text
    assert (
        'CLIPModel.from_pretrained("org/robust-clip")' in text and "| cifar10 | 100 | 80.00 | 30.00 | 25.00 |" in text
    )
    assert "![accuracy](accuracy.png)" in text and "| `alpha` | `256` |" in text
    assert "`pgd-10@1/255`: PGD-10 (L-inf, eps 1/255, step 1/255" in text
    assert "Licence: mit (OpenAI's release)." in text and "Credit: OpenAI's CLIP." in text
    unknown = build_model_card("org/robust-clip", report)  # no provenance: no licence is claimed
    assert unknown.data.license == "other" and unknown.data.license_name == "not-stated"


@pytest.mark.parametrize("method", METHODS)
def test_each_methods_card_names_that_method_and_only_its_paper(method, model, make_trainer, test_set):
    trainer = make_trainer(method, model, eval_dataset={"patches": test_set.select(range(8))}, eval_attack_steps=1)
    trainer.evaluate()
    trainer.create_model_card()
    card = ModelCard.load(os.path.join(trainer.args.output_dir, "README.md"))
    info = TRAINERS[method].method_info
    assert f"fine-tuned with {info.name}" in card.text
    for other, paper in PAPERS.items():
        cited = paper.title in card.text or paper.arxiv_id in card.text
        assert cited == (other == method), (method, other)
    for other in set(TRAINERS) - {method}:
        assert f"with {TRAINERS[other].method_info.name} " not in card.text
    assert set(info.tags) <= set(card.data.tags)
    assert ("adversarial-robustness" in card.data.tags) == ("adversarial-robustness" in info.tags)
    assert ("pmg-aft" in card.data.tags) == (method == "pmg_aft")
    assert "PMG-AFT" not in card.text or method == "pmg_aft"
    recipe = card.text[card.text.index("## Training recipe") :]
    assert ("| `train_eps` |" in recipe) == (method != "clean")  # clean fine-tuning runs no attack
    assert "| `train_eps` | `0.0" not in recipe  # pixel budgets read as fractions of 255


def test_trainer_writes_the_card_from_its_last_evaluation(model, make_trainer, test_set):
    trainer = make_trainer("pmg_aft", model, eval_dataset={"patches": test_set}, eval_attack_steps=2)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.create_model_card(model_name="local-name", license="apache-2.0", finetuned_from="org/base",
                              dataset=["zh-plus/tiny-imagenet"])  # what Trainer.push_to_hub passes on  # fmt: skip
    card = ModelCard.load(os.path.join(trainer.args.output_dir, "README.md"))
    assert card.data.license == "apache-2.0" and card.data.base_model == "org/base"
    assert card.data.datasets == ["zh-plus/tiny-imagenet"] and 'from_pretrained("local-name")' in card.text
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["clean accuracy (trainer protocol, logit scale 1)"] == round(
        100 * metrics["eval_patches_clean_accuracy"], 2
    )
    assert values["robust accuracy (pgd-2-rs-last@1/255, linf, trainer protocol, logit scale 1)"] == round(
        100 * metrics["eval_patches_robust_accuracy"], 2
    )
    assert "| `train_eps` | `1/255` |" in card.text and "| `alpha` | `256.0` |" in card.text
    assert "on full test sets" in card.text and "use `pmg-aft eval` for figures comparable" in card.text


def test_a_capped_evaluation_never_says_full_test_sets(model, make_trainer, test_set):
    eval_set = EvalSet.from_dataset("patches", test_set).take(10)
    trainer = make_trainer("tecoa", model, eval_dataset={"patches": eval_set}, eval_attack_steps=1)
    trainer.evaluate()
    trainer.create_model_card()
    card = ModelCard.load(os.path.join(trainer.args.output_dir, "README.md"))
    assert "on the first 10 test samples of each dataset" in card.text and "full test sets" not in card.text
    assert trainer.report.results["patches"].samples == 10 and trainer.report.max_eval_samples == 10


def test_training_with_push_to_hub_uploads_no_pickle_and_names_the_method(model, make_trainer, test_set, monkeypatch):
    commits = []

    class Api(FakeApi):
        def create_repo(self, repo_id, private=False, exist_ok=False, token=None):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            commits.append((commit_message, sorted(os.listdir(folder_path))))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/{len(commits)}"})()

    monkeypatch.setattr("pmg_aft.hub.HfApi", Api)
    monkeypatch.setattr("transformers.trainer.hf_api", lambda *a, **k: Api())  # the Trainer's repo creation
    trainer = make_trainer("fare", model, eval_dataset={"patches": test_set.select(range(8))}, max_steps=2,
                           save_strategy="steps", save_steps=1, push_to_hub=True, hub_model_id="org/fare-tiny",
                           eval_attack_steps=1)  # fmt: skip
    trainer.train()
    trainer.evaluate()
    url = trainer.push_to_hub()
    assert url.startswith("https://huggingface.co/org/fare-tiny/commit/")
    messages = [m for m, _ in commits]
    assert messages[:2] == ["FARE: training in progress, step 1", "FARE: training in progress, step 2"]
    assert messages[-1] == "FARE fine-tuned CLIP (pmg_aft)"
    for _, files in commits:
        assert "model.safetensors" in files and "pmg_aft.json" in files
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))], files
    assert {"README.md", "report.json", "accuracy.png"} <= set(commits[-1][1])
    with pytest.raises(ValueError, match="pickle files; use hub_strategy='every_save'"):
        make_trainer("fare", model, push_to_hub=True, hub_model_id="org/x", hub_strategy="checkpoint")


@pytest.fixture
def checkpoint(model, make_trainer, tmp_path, monkeypatch):
    model.config.name_or_path = "org/base-clip"  # as from_pretrained("org/base-clip") sets it
    base = (Licence("mit", None, "org/base-clip's model card"), ("the authors of org/base-clip",))  # its card says
    monkeypatch.setattr("pmg_aft.trainers.base_trainer.base_provenance", lambda name: base)
    trainer = make_trainer("tecoa", model)
    trainer.save_model(str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "optimizer.pt").write_bytes(b"never published")
    return str(tmp_path / "ckpt")


def evaluated(checkpoint: str, out: str) -> str:
    """`pmg-aft eval` of the checkpoint into `out` (a quick one): the report a push pairs with its weights."""
    assert cli.main(["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches",
                     "--max_eval_samples", "16", "--steps", "1", "--output_dir", out]) == 0  # fmt: skip
    return out


def test_push_uploads_weights_processor_card_and_plots(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    report = evaluated(checkpoint, str(tmp_path / "report"))
    before = sorted(os.listdir(checkpoint))
    command = ["push", "--model_dir", checkpoint, "--hub_model_id", "org/robust-clip", "--report_dir", report]
    assert cli.main(command) == 0
    assert "uploaded to https://huggingface.co/org/robust-clip" in capsys.readouterr().out
    assert {"model.safetensors", "config.json", "README.md", "accuracy.png", "report.json"} <= set(FakeApi.uploaded)
    assert not [f for f in FakeApi.uploaded if f.endswith((".pt", ".bin", ".pth"))]
    assert sorted(os.listdir(checkpoint)) == before  # the local folder is not touched
    card = ModelCard.load(FakeApi.card)
    assert card.data.base_model == "org/base-clip" and len(card.data.eval_results) == 3
    assert card.data.license == "mit" and "Credit: the authors of org/base-clip." in card.text
    # The method comes from the checkpoint (saved by TeCoATrainer), never guessed from hyper-parameters.
    assert "fine-tuned from [`org/base-clip`](https://huggingface.co/org/base-clip) with TeCoA" in card.text
    assert PAPERS["tecoa"].arxiv_id in card.text and PAPERS["pmg_aft"].arxiv_id not in card.text
    assert FakeApi.message == "TeCoA fine-tuned CLIP (pmg_aft)"


def test_push_refuses_a_report_of_other_weights_or_edited_and_relicensing(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    FakeApi.uploaded = []
    other = sample_report()  # another model's figures (its digest is not these weights')
    other.save(str(tmp_path / "other"))
    push_other = [
        "push",
        "--model_dir",
        checkpoint,
        "--hub_model_id",
        "org/x",
        "--report_dir",
        str(tmp_path / "other"),
    ]
    assert cli.main(push_other) == 2
    assert "measured other weights" in capsys.readouterr().err
    report = evaluated(checkpoint, str(tmp_path / "report"))
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    for column, value in (("clean_accuracy", 1.5), ("clean_accuracy", float("nan")), ("clean_accuracy", -0.2),
                          ("clean_accuracy", 0.99)):  # fmt: skip
        edited = json.loads(json.dumps(saved))
        edited["results"]["colour-patches"][column] = value
        (tmp_path / "report" / "report.json").write_text(json.dumps(edited))
        assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x", "--report_dir", report]) == 2
        err = capsys.readouterr().err
        assert ("which no evaluation gives" in err) if value != 0.99 else ("was changed after pmg_aft wrote" in err)
    (tmp_path / "report" / "report.json").write_text(json.dumps(saved))
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x", "--license", "apache-2.0"]) == 2
    assert "pmg_aft does not relicense someone else's weights as 'apache-2.0'" in capsys.readouterr().err
    assert FakeApi.uploaded == []  # nothing was uploaded by any of them
    weights = os.path.join(checkpoint, "model.safetensors")
    data = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])  # a truncated file is not published
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x", "--report_dir", report]) == 2
    assert "its weights cannot be read" in capsys.readouterr().err and FakeApi.uploaded == []


def test_a_checkpoint_without_a_method_gets_a_card_that_claims_none(checkpoint, monkeypatch):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    os.remove(os.path.join(checkpoint, "pmg_aft.json"))  # e.g. a converted or third-party checkpoint
    with pytest.raises(InputError, match="the licence of these weights is not known .* pass --license"):
        push(checkpoint, "org/converted")  # no licence is assumed for someone else's weights
    push(checkpoint, "org/converted", license="mit")
    card = ModelCard.load(FakeApi.card)
    assert "fine-tuned" not in card.text and all(p.arxiv_id not in card.text for p in PAPERS.values())
    assert "adversarial-robustness" not in card.data.tags and FakeApi.message == "Upload CLIP checkpoint (pmg_aft)"
    assert card.data.license == "mit" and "stated by the uploader (--license)" in card.text


def test_a_failed_push_loses_nothing_and_says_how_to_retry(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    monkeypatch.setattr(FakeApi, "fail", True)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    before = sorted(os.listdir(checkpoint))
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "org/x"]) == 1
    err = capsys.readouterr().err
    assert "Nothing local was changed" in err and "run the same command again" in err
    assert "hf_secret_value" not in err
    assert sorted(os.listdir(checkpoint)) == before
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        push(os.path.dirname(checkpoint), "org/x")


def test_eval_command_end_to_end(checkpoint, tmp_path, capsys):
    root = tmp_path / "benchmarks"
    DatasetDict({"test": hub_fixture("dtd")}).save_to_disk(str(root / "dtd"))
    out = tmp_path / "eval"
    command = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "dtd", "--benchmark_data_dir", str(root),
               "--output_dir", str(out), "--eps", "1/255,2/255", "--steps", "2", "--attacks", "pgd,cw"]  # fmt: skip
    assert cli.main(command) == 0
    report = Report.load(str(out))
    assert report.results["dtd"].samples == 3 and set(report.results["dtd"].robust_accuracy) == {
        "pgd-2-rs-last@1/255", "pgd-2-rs-last@2/255", "cw-2-rs-last@1/255", "cw-2-rs-last@2/255"}  # fmt: skip
    # pmg_aft normalises every model with ImageNet's statistics, whatever its processor says (CLIP's for TeCoA).
    assert report.image_mean == pytest.approx([0.485, 0.456, 0.406]) and report.protocol == "pmg_aft"
    card = ModelCard.load(str(out / "README.md"))  # the card `pmg-aft push` would publish with this report
    assert "with TeCoA" in card.text and "| dtd | 3 |" in card.text
    assert report.results["dtd"].revision is None  # a local copy: no Hub revision is claimed
    assert "| dtd | 3 |" in capsys.readouterr().out
    # A rerun resumes, even once a download has recorded a revision for dtd (local copies claim none).
    with open(os.environ["PMG_AFT_REVISIONS"], "w") as f:
        f.write('{"dtd": "abc123"}')
    stamp = (out / "results" / "dtd.json").stat().st_mtime_ns
    assert cli.main(command) == 0
    assert (out / "results" / "dtd.json").stat().st_mtime_ns == stamp


def test_eval_of_a_local_checkpoint_writes_the_card_push_uploads(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    out = evaluated(checkpoint, str(tmp_path / "eval"))
    written = ModelCard.load(os.path.join(out, "README.md"))
    assert "with TeCoA" in written.text and written.data.base_model == "org/base-clip"
    assert written.data.eval_results and "colour-patches" in written.text
    push(checkpoint, os.path.basename(checkpoint), report_dir=out)
    assert ModelCard.load(FakeApi.card).text == written.text


def test_cards_say_exactly_how_samples_were_chosen_and_what_the_figures_compare_with(model, make_trainer, test_set):
    eval_set = EvalSet.from_dataset("patches", test_set).take(10, sample_seed=3)
    trainer = make_trainer("tecoa", model, eval_dataset={"patches": eval_set}, eval_attack_steps=1)
    trainer.evaluate()
    trainer.create_model_card()
    card = ModelCard.load(os.path.join(trainer.args.output_dir, "README.md"))
    assert "on a random sample of 10 test samples of each dataset (at most; seed 3, kept in dataset order)" in (
        card.text
    )
    assert "the first 10" not in card.text
    report = sample_report()
    report.protocol_record = get_protocol("pmg_aft")
    text = build_model_card("org/robust-clip", report).text
    assert get_protocol("pmg_aft").comparable_with in text and get_protocol("pmg_aft").description in text


def test_a_trained_folder_pushes_with_the_report_its_job_saved(tmp_path, monkeypatch, checkpoint):
    # The job's final evaluation (OUTPUT_DIR/eval) measured the weights it saved: its digest is theirs.
    from pmg_aft.finetune import main

    from .utils import CONFIG

    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    out = tmp_path / "run"
    main(["--config", CONFIG, "--output_dir", str(out), "--model_name_or_path", checkpoint, "--max_steps", "2",
          "--eval_attack_steps", "1", "--eval_on_start", "false", "--save_strategy", "no"])  # fmt: skip
    assert cli.main(["push", "--model_dir", str(out), "--hub_model_id", "me/run", "--report_dir", str(out / "eval"),
                     "--license", "mit"]) == 0  # fmt: skip
    assert "report.json" in FakeApi.uploaded
