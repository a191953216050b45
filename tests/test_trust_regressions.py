"""Cases a hostile run through the commands once got wrong, each reproduced as a user would and held: a token
printed by `pmg-aft train`, finished runs trained further on a rerun, edited results reused, licences of foreign
folders lost, empty training sets saved as fine-tunes, names files ignored by the eval split, checkpoints missing
their states, stale plots published, another model's folder written into, user folders removed by
--overwrite_output_dir, and tracebacks or unclear lines for a user's mistakes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from pmg_aft import cli
from pmg_aft.checkpoints import checkpoint_problem
from pmg_aft.finetune import main

from .utils import CONFIG, FakeApi, fails, kill_after

TOKEN = "hf_abcdefghijklmnop0123"


def quick(out, checkpoint, *extra):
    return ["--config", CONFIG, "--output_dir", str(out), "--model_name_or_path", checkpoint, "--max_steps", "2",
            "--eval_attack_steps", "1", "--do_eval", "false", "--eval_on_start", "false", "--disable_tqdm", "true",
            *extra]  # fmt: skip


def test_pmg_aft_train_never_prints_a_token_and_exits_2_for_bad_input(tmp_path, checkpoint, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code = cli.main(["train", *quick(tmp_path / "o", checkpoint), "--class_names_file", f"/nonexistent/{TOKEN}.txt"])
    out = capfd.readouterr()
    assert code == 2 and TOKEN not in out.out + out.err and "no such file" in out.err


def test_a_finished_run_run_again_does_not_train_further(tmp_path, checkpoint):
    out = tmp_path / "run"
    main(quick(out, checkpoint, "--save_strategy", "steps", "--save_steps", "2"))
    first = load_file(str(out / "model.safetensors"))
    main(quick(out, checkpoint, "--save_strategy", "steps", "--save_steps", "2"))  # was: trained step 3
    assert json.load(open(out / "trainer_state.json"))["global_step"] == 2
    second = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_hand_edited_result_is_recomputed_not_reused(checkpoint, tmp_path, caplog):
    out = tmp_path / "eval"
    command = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
               "--max_eval_samples", "16", "--output_dir", str(out)]  # fmt: skip
    assert cli.main(command) == 0
    measured = json.load(open(out / "report.json"))["results"]["colour-patches"]["clean_accuracy"]
    path = out / "results" / "colour-patches.json"
    saved = json.load(open(path))
    saved["result"]["clean_accuracy"] = 0.9375 if measured != 0.9375 else 0.5
    path.write_text(json.dumps(saved))
    assert cli.main(command) == 0
    assert "changed after pmg_aft wrote it" in caplog.text
    assert json.load(open(out / "report.json"))["results"]["colour-patches"]["clean_accuracy"] == measured


def test_the_licence_of_a_foreign_folders_own_card_is_kept(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    with open(os.path.join(checkpoint, "README.md"), "w") as f:
        f.write("---\nlicense: cc-by-nc-4.0\n---\n# someone's model\n")
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "me/x", "--license", "mit"]) == 2
    assert "licensed cc-by-nc-4.0" in capsys.readouterr().err


def test_a_training_set_that_gives_no_batch_is_refused(tmp_path, checkpoint):
    fails(quick(tmp_path / "o", checkpoint, "--method", "fare", "--max_train_samples", "8"),
          r"the training set gives no batch: 8 rows, a batch of 32 with the last partial batch dropped")  # fmt: skip
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_a_names_file_names_the_eval_split_too_and_must_fit_its_classes(tmp_path, checkpoint):
    (tmp_path / "names.txt").write_text("scarlet\nlime\nnavy\ngold\nviolet\ntangerine\n")  # other texts, same labels
    main([*quick(tmp_path / "o", checkpoint, "--class_names_file", str(tmp_path / "names.txt")), "--do_eval", "true"])
    from pmg_aft.evaluation import Report

    report = Report.load(str(tmp_path / "o" / "eval"))
    assert report.results["eval"].num_classes == 6
    (tmp_path / "eight.txt").write_text("red\ngreen\nblue\nyellow\npurple\norange\nwhite\nblack\n")
    fails(quick(tmp_path / "o8", checkpoint, "--class_names_file", str(tmp_path / "eight.txt")),
          r"has 8 names but test's 'label' ClassLabel has 6 classes: give one name per class")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["optimizer.pt removed", "rng_state.pth removed", "step edited",
                                    "optimizer of another structure", "a pickle that runs code"])  # fmt: skip
def test_a_checkpoint_that_cannot_continue_its_run_is_set_aside(damage, tmp_path, checkpoint):
    out = tmp_path / "run"
    main(quick(out, checkpoint, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
               "--save_total_limit", "5"))  # fmt: skip
    kill_after(out, 4)
    folder = out / "checkpoint-4"
    if damage.endswith("removed"):
        os.remove(folder / damage.split()[0])
    elif damage == "step edited":
        state = json.load(open(folder / "trainer_state.json"))
        state["global_step"] = 1
        (folder / "trainer_state.json").write_text(json.dumps(state))
    elif damage == "optimizer of another structure":
        torch.save({"something": torch.zeros(2)}, folder / "optimizer.pt")
    else:
        torch.save({"python": os.system}, folder / "rng_state.pth")  # unpickling would call os.system
    assert checkpoint_problem(str(folder)) is not None
    main(quick(out, checkpoint, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"))
    assert (out / "incomplete-checkpoint-4").is_dir()
    assert json.load(open(out / "trainer_state.json"))["global_step"] == 4


def test_other_training_rows_under_the_same_path_are_another_run(tmp_path, checkpoint):
    from pmg_aft.tiny import colour_patches

    data = colour_patches(num_per_class=16, seed=0)
    data.save_to_disk(str(tmp_path / "data"))
    args = quick(tmp_path / "run", checkpoint, "--dataset_name", str(tmp_path / "data"), "--max_steps", "4",
                 "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "5")  # fmt: skip
    main(args)
    kill_after(tmp_path / "run", 2)
    import shutil

    shutil.rmtree(tmp_path / "data")
    data.map(lambda row: {"label": (row["label"] + 1) % 6}).save_to_disk(str(tmp_path / "data"))  # relabelled
    with pytest.raises(SystemExit, match=r"another run \(data.rows: "):
        main(args)


def test_a_stale_plot_is_removed_and_a_push_publishes_the_checked_report(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr("pmg_aft.hub.HfApi", FakeApi)
    out = tmp_path / "eval"
    common = ["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
              "--max_eval_samples", "16", "--output_dir", str(out)]  # fmt: skip
    assert cli.main([*common, "--eps", "1/255,4/255"]) == 0 and (out / "accuracy_vs_eps.png").exists()
    assert cli.main([*common, "--eps", "1/255", "--overwrite_output_dir", "true"]) == 0
    assert not (out / "accuracy_vs_eps.png").exists()  # it showed the other report's figures
    (out / "report.md").write_text("| colour-patches | 16 | 99.00 |\n")  # edited by hand
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "me/x", "--report_dir", str(out),
                     "--license", "mit"]) == 0  # fmt: skip
    assert "accuracy_vs_eps.png" not in FakeApi.uploaded
    published = open(os.path.join(os.path.dirname(FakeApi.card), "uploaded-README.md")).read()
    assert "99.00" not in published


def test_an_evaluation_never_writes_into_another_models_folder(tmp_path, checkpoint, capsys):
    other = tmp_path / "other"
    main(quick(other, checkpoint, "--save_strategy", "no"))
    before = sorted(os.listdir(other))
    assert cli.main(["eval", "--model_name_or_path", checkpoint, "--benchmarks", "colour-patches", "--steps", "1",
                     "--max_eval_samples", "8", "--output_dir", str(other)]) == 2  # fmt: skip
    assert "pmg_aft.json (a model folder)" in capsys.readouterr().err and sorted(os.listdir(other)) == before


def test_overwrite_removes_only_what_a_run_wrote(tmp_path, checkpoint):
    out = tmp_path / "mine"
    (out / "eval").mkdir(parents=True)
    (out / "eval" / "mine.txt").write_text("mine")
    main(quick(out, checkpoint, "--save_strategy", "no", "--overwrite_output_dir", "true"))
    assert (out / "eval" / "mine.txt").read_text() == "mine" and (out / "model.safetensors").exists()
    (out / "checkpoint-7").mkdir()  # a folder a checkpoint rotation would take for its own
    (out / "checkpoint-7" / "mine.txt").write_text("mine")
    (out / "pmg_aft.json").unlink()
    fails(quick(out, checkpoint, "--overwrite_output_dir", "true"), r"holds checkpoint-7, which no training run wrote")
    assert (out / "checkpoint-7" / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "text, match",
    [
        ("lr_scheduler_kwargs: {min_lr: .nan}\nlr_scheduler_type: cosine_with_min_lr\n",
         r"lr_scheduler_kwargs holds nan: every number in it must be finite"),
        ("output_dir: [a, b]\n", r"output_dir must be a single value"),
        ("output_dir:\n", r"output_dir is not set"),
    ],
)  # fmt: skip
def test_config_file_mistakes_are_one_line(text, match, tmp_path, checkpoint):
    (tmp_path / "c.yaml").write_text(text)
    extra = [] if text.startswith("output_dir") else ["--output_dir", str(tmp_path / "o")]
    fails(["--config", str(tmp_path / "c.yaml"), *extra], match)


def test_yaml_numbers_inside_a_mapping_are_numbers(tmp_path, checkpoint):
    (tmp_path / "c.yaml").write_text("do_train: true\nlr_scheduler_type: cosine_with_min_lr\n"
                                     "lr_scheduler_kwargs: {min_lr: 1e-6}\n")  # fmt: skip
    args = quick(tmp_path / "o", checkpoint)
    args[1] = str(tmp_path / "c.yaml")  # this file instead of the demo's: its scheduler's minimum as 1e-6
    main(args)
    assert json.load(open(tmp_path / "o" / "training_args.json"))["lr_scheduler_kwargs"] == {"min_lr": 1e-6}


def test_a_run_with_nothing_to_do_is_refused(tmp_path):
    fails(["--output_dir", str(tmp_path / "o")], r"nothing to do: do_train is false")
    assert not (tmp_path / "o").exists()


def test_unclear_lines_are_clear_now(tmp_path, checkpoint, capsys):
    fails(["--config", CONFIG, "--output_dir", str(tmp_path / "o"), "--num_train_epochs", "0"],
          r"^pmg-aft: num_train_epochs=0")  # the flag's value, not blamed on the config file  # fmt: skip
    fails(["--config", CONFIG, "--output_dir", str(tmp_path / "o"), "--train_eps", "300/255"],
          r"units\.$")  # no "did you mean 1.17647/255"  # fmt: skip
    fails(["--config", CONFIG, "--output_dir", str(tmp_path / "o"), "--train_eps", "1/0"], r"train_eps='1/0'")
    assert cli.main(["push", "--model_dir", checkpoint, "--hub_model_id", "not a repo id!!"]) == 2
    assert "is not a Hub repository id" in capsys.readouterr().err
    assert cli.main(["export", "--model_name_or_path", checkpoint, "--output_dir", str(tmp_path / "oc")]) == 2
    assert "has no open_clip form" in capsys.readouterr().err


def test_a_provenance_file_of_another_shape_is_one_line(checkpoint, tmp_path, capsys):
    main(quick(tmp_path / "m", checkpoint, "--save_strategy", "no"))
    (tmp_path / "m" / "pmg_aft.json").write_text("[]")
    assert cli.main(["eval", "--model_name_or_path", str(tmp_path / "m"), "--benchmarks", "colour-patches",
                     "--output_dir", str(tmp_path / "e")]) == 2  # fmt: skip
    assert "cannot be read as pmg_aft provenance" in capsys.readouterr().err


def test_a_push_to_an_unreachable_hub_from_training_is_one_line(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code = cli.main(["train", *quick(tmp_path / "o", checkpoint), "--push_to_hub", "true", "--hub_model_id",
                     "me/x", "--license", "mit"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "creating the Hub repository me/x failed" in err and "Traceback" not in err


def _image_folder(root, classes: dict[str, int], broken: str | None = None):
    from PIL import Image

    for split in ("train", "test"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (40 * i, 200 if name == "red" else 0, 0)).save(
                    root / split / name / f"{i}.png"
                )
    if broken:
        (root / "train" / broken).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return root


def test_a_second_hostile_run_s_findings_are_held(tmp_path, checkpoint):
    # A mapping where a text is expected was a TypeError traceback.
    (tmp_path / "map.yaml").write_text("method: pmg_aft\nmodel_name_or_path: {a: 1}\n")
    fails(["--config", str(tmp_path / "map.yaml"), "--output_dir", str(tmp_path / "o")],
          r"map.yaml: model_name_or_path must be a single value, got a mapping")  # fmt: skip
    # A key given twice in a config file: the last one won without a word.
    (tmp_path / "twice.yaml").write_text("method: pmg_aft\ntrain_eps: 4/255\ntrain_eps: 3/255\n")
    fails(["--config", str(tmp_path / "twice.yaml"), "--output_dir", str(tmp_path / "o")],
          r"the key 'train_eps' is given twice \(line 3\)")  # fmt: skip
    # An evaluation asked for with nothing to evaluate was skipped silently.
    (tmp_path / "noeval.yaml").write_text(open(CONFIG).read().replace("eval_split:", "# eval_split:"))
    fails(["--config", str(tmp_path / "noeval.yaml"), "--output_dir", str(tmp_path / "o"), "--model_name_or_path",
           checkpoint, "--do_eval", "true"], r"an evaluation is asked for .* but no eval set is named")  # fmt: skip
    assert not (tmp_path / "o").exists()
    # A folder with one class folder: the error pointed at label_column.
    one = _image_folder(tmp_path / "one", {"red": 3})
    fails(quick(tmp_path / "o", checkpoint, "--dataset_name", str(one)), r"one class folder .* at least 2 classes")
    # A broken image is named by its file, not only its row.
    junk = _image_folder(tmp_path / "junk", {"blue": 3, "red": 3}, broken="blue/broken.png")
    fails(quick(tmp_path / "o", checkpoint, "--dataset_name", str(junk)), r"index \d+ \(.*blue/broken.png\)")


def test_a_names_file_with_a_bom_or_in_another_order_than_the_data(tmp_path, checkpoint):
    from pmg_aft.finetune import read_class_names

    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfred\r\nblue\r\n")  # as Windows editors save it
    assert read_class_names(str(tmp_path / "bom.txt")) == ["red", "blue"]
    # The folder's labels are its class folders in sorted order (blue, red): `red, blue` names every label wrongly.
    data = _image_folder(tmp_path / "data", {"blue": 3, "red": 3})
    names = ["--class_names_file", str(tmp_path / "bom.txt")]
    fails(quick(tmp_path / "o", checkpoint, "--dataset_name", str(data), *names),
          r"own ClassLabel names in another order \(label 0 is 'blue' in the data but 'red'")  # fmt: skip
    (tmp_path / "ok.txt").write_text("navy blue\ncrimson\n")  # other texts for the same labels: a renaming, kept
    main(quick(tmp_path / "ok", checkpoint, "--dataset_name", str(data), "--class_names_file",
               str(tmp_path / "ok.txt"), "--max_steps", "1"))  # fmt: skip
    assert json.loads((tmp_path / "ok" / "pmg_aft.json").read_text())["run"]["class_names"] == ["navy blue", "crimson"]


def test_lists_with_an_empty_item_and_fractions_over_zero_are_refused():
    from pmg_aft import AttackGrid

    with pytest.raises(ValueError, match=r"eps: '1/255,,2/255' has an empty item between its commas"):
        AttackGrid(eps="1/255,,2/255")
    with pytest.raises(ValueError, match=r"'4/0' divides by zero"):
        AttackGrid(eps="4/0")
