"""Every registry entry loads from an on-disk fixture in its Hub dataset's own schema into the common schema."""

import io
import json

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from pmg_aft import clean_class_name
from pmg_aft.data import BENCHMARKS, EVAL_SUITE, BadImageError, get_benchmark, load_benchmark, normalize_name
from pmg_aft.evaluation import benchmark_eval_set, protocol_prompts

from .utils import hub_fixture as fixture
from .utils import hub_fixture_truth, hub_label_names, png

OFFICIAL_COUNTS = {
    "cifar10": 10, "cifar100": 100, "stl10": 10, "sun397": 397, "food101": 101, "pets": 37, "flowers102": 102,
    "dtd": 47, "eurosat": 10, "fgvc-aircraft": 100, "tiny-imagenet": 200, "imagenet": 1000, "caltech101": 102,
    "stanford-cars": 196, "pcam": 2, "colour-patches": 6,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(set(BENCHMARKS) - {"colour-patches"}))
def test_every_benchmark_loads_from_a_local_copy_in_its_hub_schema(name, tmp_path):
    """Each fixture has the Hub dataset's real columns, label type and label names (CIFAR-100's `cra`, Pets'
    underscores, Caltech101's 101 lowercase folders, Caltech-256's name column, PCAM's booleans, FGVC's ClassLabel)."""
    bench = get_benchmark(name)
    DatasetDict({bench.split: fixture(name)}).save_to_disk(str(tmp_path / name))
    data = load_benchmark(name, benchmark_data_dir=str(tmp_path))
    assert data.column_names == ["image", "label"]
    names = data.features["label"].names
    if bench.class_names:  # every registry class the source has, in the registry's order
        source = hub_label_names(name)
        assert names == [n for n in bench.class_names if name != "caltech101" or n != "background"], name
        assert source is None or len(names) == len(source)
    rows = [data[i] for i in range(len(data))]
    assert all(isinstance(r["image"], Image.Image) and r["image"].mode == "RGB" for r in rows)
    assert [names[r["label"]] for r in rows] == hub_fixture_truth(name)


def test_source_names_are_matched_by_name_not_position(tmp_path):
    # A Caltech101 copy without the background class, in another order: labels follow the names.
    bench = get_benchmark("caltech101")
    folders = ["Faces_easy", "accordion", "yin_yang"]
    data = Dataset.from_dict(
        {"image": [png()] * 3, "label": [0, 1, 2]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=folders)}),
    )
    data.save_to_disk(str(tmp_path / "caltech101"))
    loaded = load_benchmark("caltech101", benchmark_data_dir=str(tmp_path))
    assert loaded.features["label"].names == ["centered face", "accordion", "yin and yang symbol"]
    assert [loaded[i]["label"] for i in range(3)] == [0, 1, 2]
    assert bench.class_names[0] == "background"
    tiny = load_benchmark(
        "tiny-imagenet", benchmark_data_dir=_saved(tmp_path, "tiny-imagenet", fixture("tiny-imagenet"))
    )
    assert tiny.features["label"].names[0] == "goldfish"


def _saved(root, name, data) -> str:
    """`data` saved as `name`'s local copy in the folder `root`; returns `root` (a `benchmark_data_dir`)."""
    data.save_to_disk(str(root / name))
    return str(root)


def test_parquet_and_image_folder_copies(tmp_path):
    (tmp_path / "pq" / "pcam").mkdir(parents=True)
    fixture("pcam").to_parquet(str(tmp_path / "pq" / "pcam" / "test-00000-of-00001.parquet"))
    data = load_benchmark("pcam", benchmark_data_dir=str(tmp_path / "pq"))
    assert data.features["label"].names == ["lymph node", "lymph node containing metastatic tumor tissue"]
    assert [data[i]["label"] for i in range(3)] == [0, 1, 1]
    for name, cls in [(name, cls) for name in ("cifar10", "stl10") for cls in ("airplane", "truck")]:
        (tmp_path / "folder" / name / "test" / cls).mkdir(parents=True)
        png().save(tmp_path / "folder" / name / "test" / cls / "0.png")
    with pytest.raises(ValueError, match=r"column\(s\) \['img'\] not found"):
        load_benchmark("cifar10", benchmark_data_dir=str(tmp_path / "folder"))
    data = load_benchmark("stl10", benchmark_data_dir=str(tmp_path / "folder"))
    assert [data.features["label"].names[data[i]["label"]] for i in range(2)] == ["airplane", "truck"]


def test_class_name_lists_are_clean_and_prompts_format():
    assert sorted(OFFICIAL_COUNTS) == sorted(n for n in BENCHMARKS if n != "caltech256")
    assert len(EVAL_SUITE) == 16
    for name, count in OFFICIAL_COUNTS.items():
        bench = get_benchmark(name)
        names = bench.class_names
        assert len(names) == count, name
        assert all(n.strip() and "_" not in n for n in names), name
        assert len({clean_class_name(n) for n in names}) == count, f"{name} has duplicate names"
        for protocol in ("pmg_aft", "tga_zsr", "clip_benchmark"):
            prompts = protocol_prompts(protocol, name)
            assert len(prompts) == count - (name == "caltech101" and protocol != "clip_benchmark"), (name, protocol)
            assert all(p and all("{" not in t and t.strip() for t in p) for p in prompts), (name, protocol)
    assert protocol_prompts("pmg_aft", "food101")[0] == ["A photo of apple pie, a type of food."]
    assert protocol_prompts("pmg_aft", "cifar10")[0] == ["This is a photo of a airplane"]  # the paper's grammar
    assert len(protocol_prompts("clip_benchmark", "imagenet")[0]) == 80
    assert get_benchmark("cifar10").native_resolution and not get_benchmark("sun397").native_resolution


def test_unknown_names_and_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(KeyError, match=r"Did you mean 'stanford-cars'\?.*Valid benchmarks: cifar10, cifar100"):
        get_benchmark("stanford-car")
    with pytest.raises(ValueError, match=r"Unknown protocol 'tecoa'; choose one of pmg_aft, tga_zsr, clip_benchmark"):
        protocol_prompts("tecoa", "dtd")
    with pytest.raises(ValueError, match="on_bad_image"):
        load_benchmark("dtd", benchmark_data_dir=str(tmp_path), on_bad_image="ignore")
    bad = fixture("cifar10")
    bad = Dataset.from_dict({"img": bad["img"], "label": [0, 1, 10]})
    with pytest.raises(ValueError, match=r"cifar10: label\(s\) \[10\] outside the 10 classes"):
        load_benchmark("cifar10", benchmark_data_dir=_saved(tmp_path / "c", "cifar10", bad))
    strange = Dataset.from_dict(
        {"image": [png()], "label": [0]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=["x"])}),
    )
    with pytest.raises(ValueError, match=r"\['x'\] of the data are not in the registry"):
        load_benchmark("dtd", benchmark_data_dir=_saved(tmp_path / "d", "dtd", strange))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_every_image_kind_comes_out_rgb(mode, tmp_path):
    image = png("L").convert("I;16") if mode == "I;16" else png(mode)
    data = Dataset.from_dict(
        {"image": [image], "label": [1]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=get_benchmark("dtd").class_names)}),
    )
    loaded = load_benchmark("dtd", benchmark_data_dir=_saved(tmp_path / mode, "dtd", data))
    assert loaded[0]["image"].mode == "RGB" and loaded[0]["image"].size == (12, 12)


def corrupt_copy(tmp_path) -> str:
    good = io.BytesIO()
    png().save(good, format="PNG")
    rows = [{"bytes": good.getvalue(), "path": None}, {"bytes": good.getvalue()[:40], "path": None},
            {"bytes": good.getvalue(), "path": None}]  # fmt: skip
    data = Dataset.from_dict(
        {"image": rows, "label": [0, 1, 2]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=get_benchmark("dtd").class_names)}),
    )
    return _saved(tmp_path / "corrupt", "dtd", data)


def test_a_corrupt_image_is_named_or_skipped(tmp_path, caplog):
    path = corrupt_copy(tmp_path)
    with pytest.raises(BadImageError, match=r"dtd: the image at index 1 cannot be decoded"):
        load_benchmark("dtd", benchmark_data_dir=path)
    with caplog.at_level("WARNING"):
        data = load_benchmark("dtd", benchmark_data_dir=path, on_bad_image="skip")
    assert len(data) == 2 and [data[i]["label"] for i in range(2)] == [0, 2]
    assert "skipped 1 undecodable image" in caplog.text
    stream = load_benchmark("dtd", benchmark_data_dir=path, streaming=True, on_bad_image="skip")
    assert [row["label"] for row in stream] == [0, 2]
    with pytest.raises(BadImageError, match="index 1"):
        list(load_benchmark("dtd", benchmark_data_dir=path, streaming=True))


def test_max_samples_and_splits(tmp_path):
    bench = get_benchmark("tiny-imagenet")
    DatasetDict({"train": fixture("tiny-imagenet", 3), "valid": fixture("tiny-imagenet", 2)}).save_to_disk(
        str(tmp_path / "tiny-imagenet")
    )
    root = str(tmp_path)
    assert len(load_benchmark("tiny-imagenet", benchmark_data_dir=root)) == 2  # the eval split: valid
    assert len(load_benchmark("tiny-imagenet", split="train", benchmark_data_dir=root, max_samples=2)) == 2
    with pytest.raises(ValueError, match=r"splits are \['train', 'valid'\]"):
        load_benchmark("tiny-imagenet", split="extra", benchmark_data_dir=root)
    with pytest.raises(FileNotFoundError, match=r"has no cifar10/ sub-folder: put the local copy of cifar10 there"):
        load_benchmark("cifar10", benchmark_data_dir=root)
    assert bench.hub_split("test") == "valid"


@pytest.mark.slow
def test_finetune_trains_and_evaluates_on_benchmarks_by_name(tmp_path):
    from pmg_aft.finetune import main

    root = tmp_path / "benchmarks"
    DatasetDict({"train": fixture("tiny-imagenet"), "valid": fixture("tiny-imagenet")}).save_to_disk(
        str(root / "tiny-imagenet")
    )
    for name in ("cifar10", "pcam"):
        DatasetDict({get_benchmark(name).split: fixture(name)}).save_to_disk(str(root / name))
    out = tmp_path / "run"
    metrics = main(
        ["--train_benchmark", "tiny-imagenet", "--eval_benchmarks", "cifar10,pcam", "--benchmark_data_dir", str(root),
         "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "3", "--use_cpu", "true",
         "--do_train", "true", "--do_eval", "true", "--report_to", "none", "--disable_tqdm", "true",
         "--eval_attack_steps", "1", "--save_strategy", "no"]
    )  # fmt: skip
    assert metrics["eval_cifar10_samples"] == 3 and metrics["eval_pcam_samples"] == 3
    assert metrics["eval_pcam_robust_accuracy"] <= metrics["eval_pcam_clean_accuracy"]
    with open(out / "pmg_aft.json") as f:
        info = json.load(f)
    assert info["class_names"][0] == "goldfish"  # Tiny-ImageNet names in the prompts
    assert info["train_dataset"] == "zh-plus/tiny-imagenet"
    assert metrics["eval_robust_accuracy"] == pytest.approx(
        (metrics["eval_cifar10_robust_accuracy"] + metrics["eval_pcam_robust_accuracy"]) / 2
    )


def test_eval_benchmarks_carry_their_own_prompts_and_resolution(tmp_path, make_config, tokenizer, monkeypatch):
    from pmg_aft import PMGAFTTrainer
    from pmg_aft.tiny import tiny_clip

    root = tmp_path / "benchmarks"
    for name in ("cifar10", "pcam", "food101"):
        DatasetDict({get_benchmark(name).split: fixture(name)}).save_to_disk(str(root / name))
    pcam = benchmark_eval_set("pcam", benchmark_data_dir=str(root))  # the official evaluation's sentences, verbatim
    assert pcam.class_names == ["Tthis is a photo of healthy lymph node tissue.",
                                "This is a photo of lymph node tumor tissue."]  # fmt: skip
    assert pcam.templates == ["{}"] and not pcam.native_resolution and pcam.crop_pct == 224 / 256
    assert pcam.hub_id == "1aurent/PatchCamelyon" and pcam.revision is None  # a local copy claims no revision
    cifar = benchmark_eval_set("cifar10", benchmark_data_dir=str(root))
    assert cifar.templates == ["This is a photo of a {}"] and cifar.native_resolution  # attacked at 32 px
    resized = benchmark_eval_set("cifar10", "tga_zsr", benchmark_data_dir=str(root))  # TGA-ZSR: Resize(224) first
    assert not resized.native_resolution and resized.crop_pct == 1.0 and resized.class_names == cifar.class_names
    food = benchmark_eval_set("food101", "clip_benchmark", benchmark_data_dir=str(root), max_eval_samples=2)
    assert food.templates == ["a photo of {}, a type of food."] and food.class_names[0] == "apple pie"
    assert len(food) == 2 and food.interpolation == "bicubic" and food.crop_pct == 1.0
    # The trainer evaluates each with its own prompts: the class embeddings it builds say so.
    built = []
    monkeypatch.setattr("pmg_aft.trainers.heads.build_class_embeddings",
                        lambda model, tok, names, templates: built.append((list(names), list(templates)))
                        or torch.nn.functional.normalize(torch.randn(len(names), 32), dim=-1))  # fmt: skip
    config = make_config(eval_attack_steps=1, native_resolution=False)
    trainer = PMGAFTTrainer(tiny_clip(), config, eval_dataset={"pcam": pcam, "cifar10": cifar, "food101": food},
                            processing_class=tokenizer, class_names=["a", "b"])  # fmt: skip
    metrics = trainer.evaluate()
    assert metrics["eval_pcam_samples"] == 3 and metrics["eval_food101_samples"] == 2
    assert (pcam.class_names, pcam.templates) in built and (food.class_names, food.templates) in built
    assert trainer.report.results["food101"].protocol == "clip_benchmark"
    assert trainer.report.protocol == "trainer" and trainer.report.results["pcam"].protocol == "pmg_aft"


def test_any_local_training_set_is_checked_before_training(tmp_path):
    from pmg_aft.finetune import main

    path = str(tmp_path / "corrupt" / "dtd")  # the copy itself, as a dataset_name
    corrupt_copy(tmp_path)
    common = ["--dataset_name", path, "--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--use_cpu", "true",
              "--do_train", "true", "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
              "--per_device_train_batch_size", "2"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"^pmg-aft: .*the image at index 1 cannot be decoded") as stop:
        main(common)
    assert isinstance(stop.value.__cause__, BadImageError)  # one line for the user, the cause kept for a debugger
    assert main([*common, "--on_bad_image", "skip"])["train_loss"] > 0


def test_a_local_copy_never_serves_another_split(tmp_path):
    (tmp_path / "pq" / "pcam").mkdir(parents=True)
    fixture("pcam", 3).to_parquet(str(tmp_path / "pq" / "pcam" / "train-00000-of-00001.parquet"))
    fixture("pcam", 2).to_parquet(str(tmp_path / "pq" / "pcam" / "test-00000-of-00001.parquet"))
    assert len(load_benchmark("pcam", benchmark_data_dir=str(tmp_path / "pq"))) == 2  # test, not train + test
    for split in ("train", "val"):
        (tmp_path / "folder" / "stl10" / split / "airplane").mkdir(parents=True)
        png().save(tmp_path / "folder" / "stl10" / split / "airplane" / "0.png")
    with pytest.raises(ValueError, match=r"Split 'test' not found .* its splits are \['train', 'validation'\]"):
        load_benchmark("stl10", benchmark_data_dir=str(tmp_path / "folder"))


def test_streaming_keeps_the_schema_and_the_label_checks(tmp_path):
    path = _saved(tmp_path, "pcam", fixture("pcam"))
    stream = load_benchmark("pcam", benchmark_data_dir=path, streaming=True)
    assert stream.features["label"].names == get_benchmark("pcam").class_names
    rows = list(stream)
    assert [r["label"] for r in rows] == [0, 1, 1] and rows[0]["image"].mode == "RGB"
    bad = Dataset.from_dict(
        {"image": [png()], "label": [60]},
        features=Features({"image": ImageFeature(), "label": Value("int64")}),
    )
    with pytest.raises(ValueError, match=r"label\(s\) \[60\] outside the 47 classes"):
        list(load_benchmark("dtd", benchmark_data_dir=_saved(tmp_path, "dtd", bad), streaming=True))


def test_16_bit_images_keep_their_brightness(tmp_path):
    array = np.array([[65535, 32768], [0, 65535]], dtype=np.uint16)
    data = Dataset.from_dict(
        {"image": [Image.fromarray(array)], "label": [0]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=get_benchmark("dtd").class_names)}),
    )
    rgb = np.asarray(load_benchmark("dtd", benchmark_data_dir=_saved(tmp_path, "dtd", data))[0]["image"])
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [128, 128, 128] and rgb[1, 0].max() == 0


def test_label_orders_rest_on_facts():
    imagenet = get_benchmark("imagenet")
    assert imagenet.aliases == sorted(imagenet.aliases) and imagenet.aliases[0] == "n01440764"
    assert imagenet.class_names[0] == "tench" and imagenet.class_names[999] == "toilet paper"
    tiny = get_benchmark("tiny-imagenet")
    assert len(set(tiny.aliases)) == 200 and set(tiny.aliases) <= set(imagenet.aliases)
    assert tiny.aliases[0] == "n01443537" and tiny.class_names[0] == "goldfish"
    caltech = get_benchmark("caltech101")
    assert caltech.aliases == sorted(caltech.aliases) and caltech.class_names[:3] == [
        "background", "off-center face", "centered face"]  # fmt: skip
    assert get_benchmark("cifar100").class_names[26] == "crab"  # fixed from the source's 'cra'


def test_loads_use_the_revision_recorded_at_download(tmp_path, monkeypatch):
    import os

    seen = {}

    def split_files(bench, split, revision, local_files_only=False):
        seen.update(name=bench.name, revision=revision)
        return [f"{split}.parquet"]

    monkeypatch.setattr("pmg_aft.data.loading.hub_split_files", split_files)
    monkeypatch.setattr("pmg_aft.data.loading.load_dataset",
                        lambda *a, **k: seen.update(k) or fixture(seen["name"]))  # fmt: skip
    load_benchmark("pets")  # no public pin for Pets
    assert seen["revision"] is None and seen["data_files"] == {"test": ["test.parquet"]}
    with open(os.environ["PMG_AFT_REVISIONS"], "w") as f:
        json.dump({"pets": "abc123"}, f)
    load_benchmark("pets")
    assert seen["revision"] == "abc123"
    load_benchmark("pets", revision="main")
    assert seen["revision"] == "main"
    load_benchmark("stl10")  # the registry's pin wins over a recorded one
    assert seen["revision"] == "49ae7f94508f7feae62baf836db284306eab0b0f"


def test_a_benchmark_named_dataset_in_its_own_hub_schema_keeps_the_trainers_columns(make_trainer, model, tmp_path):
    raw = fixture("cifar10")  # the Hub's own schema: an `img` column, not the common `image`
    trainer = make_trainer("pmg_aft", model, train_dataset=None, eval_dataset={"cifar10": raw}, image_column="img",
                           eval_attack_steps=1, native_resolution=False)  # fmt: skip
    metrics = trainer.evaluate()
    assert metrics["eval_cifar10_samples"] == 3 and trainer.report.results["cifar10"].protocol == "custom"
    common = load_benchmark(
        "cifar10", benchmark_data_dir=_saved(tmp_path, "cifar10", raw)
    )  # common schema: official texts
    trainer.evaluate({"cifar10": common})
    assert trainer.report.results["cifar10"].protocol == "pmg_aft"


# What each Hub dataset's card (or the viewer) shows of its labels, written out from the cards, not from the
# registry: the registry's names at these positions must be these classes (compared by normalised name).
CARD_FACTS = {
    "cifar10": (10, {0: "airplane", 9: "truck"}),
    "cifar100": (100, {0: "apple", 26: "cra", 99: "worm"}),
    "stl10": (10, {0: "airplane", 1: "bird", 7: "monkey", 9: "truck"}),
    "sun397": (397, {0: "abbey", 1: "airplane cabin", 8: "apartment building outdoor"}),
    "food101": (101, {0: "apple_pie", 100: "waffles"}),
    "pets": (37, {0: "abyssinian", 1: "american_bulldog", 36: "yorkshire_terrier"}),
    "flowers102": (102, {0: "pink primrose", 1: "hard-leaved pocket orchid", 2: "canterbury bells"}),
    "dtd": (47, {0: "banded", 1: "blotchy"}),
    "eurosat": (10, {0: "annual crop land", 1: "forest", 9: "lake or sea"}),
    "fgvc-aircraft": (100, {0: "707-320"}),
    "stanford-cars": (196, {0: "AM General Hummer SUV 2000", 1: "Acura RL Sedan 2012",
                            195: "smart fortwo Convertible 2012"}),
    "tiny-imagenet": (200, {0: "n01443537"}),
    "caltech101": (101, {0: "accordion", 1: "airplanes", 36: "faces", 37: "faces_easy", 56: "leopards",
                         65: "motorbikes", 100: "yin_yang"}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CARD_FACTS))
def test_the_hub_label_names_map_onto_the_registry_as_the_cards_say(name):
    """The fixtures' label names (hub_label_names) agree with the cards where the cards were read."""
    count, known = CARD_FACTS[name]
    source = hub_label_names(name)
    assert len(source) == count
    for index, label in known.items():
        assert normalize_name(source[index]) == normalize_name(label), (name, index, source[index], label)
