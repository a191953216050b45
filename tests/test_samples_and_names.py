"""Which samples and which class names a protocol evaluates: RobustBench's ImageNet list (FARE's figures), the
checkpoint's own logit scale there, and the two readings of the official Caltech-256 names, each said in the report."""

import hashlib
import io
import os
import re
from dataclasses import replace

import pytest
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, clip_processor
from pmg_aft.data import get_benchmark, robustbench_imagenet_files
from pmg_aft.errors import InputError
from pmg_aft.evaluation import EvalLoader, EvalSet, benchmark_eval_set, evaluate_robustness, get_protocol
from pmg_aft.evaluation import eval_set as eval_set_module

from .utils import png

CHEAP = dict(attacks=("pgd",), eps=(1 / 255,), steps=1, mixed_precision="no")


def rows(name: str, files: list[str | None], labels: list[int]) -> Dataset:
    """`name`'s common schema (registry ClassLabel), images carrying the given file names (None: none)."""
    buffer = io.BytesIO()
    png(size=8).save(buffer, format="PNG")
    images = [{"bytes": buffer.getvalue(), "path": f} for f in files]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=get_benchmark(name).class_names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def file_names(data) -> list[str]:
    plain = data.with_format(None).cast_column("image", ImageFeature(decode=False))
    return [os.path.basename(r["path"]) for r in plain["image"]]


def test_the_shipped_robustbench_list_is_its_5000_validation_file_names():
    files = robustbench_imagenet_files()
    assert len(files) == len(set(files)) == 5000
    assert all(re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", f) for f in files)
    assert files[0] == "ILSVRC2012_val_00015253.JPEG"  # robustbench's order, not sorted
    path = os.path.join(os.path.dirname(eval_set_module.__file__), "..", "data", "robustbench_imagenet_ids.txt")
    with open(path, "rb") as f:  # the data file as shipped (NOTICE gives the upstream checksum)
        assert hashlib.sha256(f.read()).hexdigest().startswith("49cc660768bb59fb")


def test_clip_benchmark_imagenet_takes_robustbenchs_images_by_file_name(monkeypatch):
    listed = robustbench_imagenet_files()[:3]
    monkeypatch.setattr(eval_set_module, "robustbench_imagenet_files", lambda: listed)
    files = [listed[2], "ILSVRC2012_val_00000001.JPEG", listed[0], listed[1], "ILSVRC2012_val_00000002.JPEG"]
    data = rows("imagenet", files, [5, 6, 7, 8, 9])
    bench = benchmark_eval_set("imagenet", "clip_benchmark", dataset=data)
    assert file_names(bench.dataset) == list(listed)  # the list's rows, in its order; the others dropped
    assert list(bench.dataset.with_format(None)["label"]) == [7, 8, 5]
    assert bench.sample_list == "robustbench" and bench.logit_scale == "model"
    assert bench.provenance()["sample_list"] == "robustbench"
    other = benchmark_eval_set("imagenet", "pmg_aft", dataset=data)  # the other protocols: every row, own scale
    assert len(other.dataset) == 5 and other.sample_list is None and other.logit_scale is None
    chosen = benchmark_eval_set("imagenet", get_protocol("clip_benchmark").override(imagenet_samples="all"),
                                dataset=data)  # fmt: skip
    assert len(chosen.dataset) == 5 and chosen.sample_list is None


def test_robustbench_selection_without_file_names_says_what_is_missing(monkeypatch):
    listed = robustbench_imagenet_files()[:2]
    monkeypatch.setattr(eval_set_module, "robustbench_imagenet_files", lambda: listed)
    with pytest.raises(InputError, match=r"0 of the 2 images .* 3 rows carry no file name.*--imagenet_samples all"):
        benchmark_eval_set("imagenet", "clip_benchmark", dataset=rows("imagenet", [None] * 3, [0, 1, 2]))
    with pytest.raises(InputError, match=r"1 of the 2 images .*missing e\.g\."):
        benchmark_eval_set("imagenet", "clip_benchmark", dataset=rows("imagenet", [listed[0]], [0]))


def test_a_dataset_scaled_by_the_checkpoints_own_logit_scale_says_so(model, tokenizer, test_set):
    """FARE's ImageNet: CLIP_benchmark's scale 100 elsewhere, the model's exp(logit_scale) there."""
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    protocol = get_protocol("clip_benchmark").override(**CHEAP, max_eval_samples=16)
    data = EvalSet.from_dataset("patches", test_set.select(range(16)), native_resolution=True)
    own = replace(data, logit_scale="model")
    report = evaluate_robustness(model, processor, protocol, datasets={"patches": data, "imagenet-like": own},
                                 loader=EvalLoader(batch_size=16))  # fmt: skip
    scale = model.logit_scale.exp().item()
    assert report.logit_scale == 100 and abs(scale - 100) > 1
    assert report.results["patches"].logit_scale is None
    assert report.results["imagenet-like"].logit_scale == pytest.approx(scale)
    assert f"Data: imagenet-like: logit scale {scale:g} (the checkpoint's own)" in report.to_markdown()


@pytest.mark.parametrize("reading", ["cleaned", "literal"])
def test_caltech256_names_have_two_readings_and_the_report_says_which(reading, model, tokenizer):
    protocol = get_protocol("pmg_aft").override(**CHEAP, caltech256_names=reading)
    data = benchmark_eval_set("caltech256", protocol, dataset=rows("caltech256", [None] * 4, [0, 1, 250, 256]))
    kept_101 = [n for n in data.class_names if n.endswith(" 101")]
    assert len(data.class_names) == 257 and len(kept_101) == (30 if reading == "literal" else 0)
    assert ("airplanes 101" in data.class_names) == (reading == "literal")
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    report = evaluate_robustness(model, processor, protocol, datasets={"caltech256": data})
    assert f"Data: caltech256: the official class names read {reading}." in report.to_markdown()
    assert report.protocol_record.caltech256_names == reading
    assert ("caltech256_names" in report.overrides) == (reading == "literal")
