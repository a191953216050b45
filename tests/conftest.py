"""Shared offline fixtures: a tiny CLIP pre-trained in-process on generated images, datasets in the Hub schema, and
configs of every method."""

from __future__ import annotations

import copy

import pytest

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, TRAINERS, clip_processor
from pmg_aft.data import ImageClassificationCollator
from pmg_aft.tiny import colour_patches, pretrain_tiny_clip, tiny_clip, tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def train_set():
    return colour_patches(num_per_class=16, seed=0)


@pytest.fixture(scope="session")
def test_set():
    return colour_patches(num_per_class=8, seed=1)


@pytest.fixture(scope="session")
def pretrained(tokenizer):
    return pretrain_tiny_clip(tiny_clip(seed=0), tokenizer, colour_patches(num_per_class=32, seed=2), steps=150)


@pytest.fixture
def model(pretrained):
    """A fresh copy of the pre-trained tiny CLIP (clean accuracy well above chance, little robustness)."""
    return copy.deepcopy(pretrained)


@pytest.fixture
def checkpoint(model, tokenizer, tmp_path):
    """The tiny pre-trained CLIP saved as a user's checkpoint folder (weights, config, processor)."""
    path = tmp_path / "clip"
    model.save_pretrained(str(path))
    clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD).save_pretrained(str(path))
    return str(path)


@pytest.fixture
def batch(test_set):
    collator = ImageClassificationCollator(image_size=32, native_resolution=True)
    return collator([test_set[i] for i in range(len(test_set))])


@pytest.fixture
def make_config(tmp_path):
    """`make_config(method="pmg_aft", **overrides)`: that method's config for a 1-step CPU run on the tiny model."""

    def make(method: str = "pmg_aft", **overrides):
        values = dict(
            output_dir=str(tmp_path / "out"),
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=16,
            max_steps=1,
            learning_rate=1e-2,
            optim="sgd",
            optim_args=None,
            weight_decay=0.0,
            warmup_steps=0,
            native_resolution=True,
            logging_steps=1,
            seed=0,
        )
        values.update(overrides)
        return TRAINERS[method].config_class(**values)

    return make


@pytest.fixture
def make_trainer(make_config, tokenizer, train_set):
    """`make_trainer(method, model, ref_model=None, train_dataset=train_set, class_names=None, **config overrides)`."""

    def make(method, model, ref_model=None, train_dataset=train_set, eval_dataset=None, class_names=None, **overrides):
        config = make_config(method, **overrides)
        return TRAINERS[method](model, config, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                processing_class=tokenizer, ref_model=ref_model, class_names=class_names)  # fmt: skip

    return make


@pytest.fixture(autouse=True)
def _private_revisions_file(tmp_path, monkeypatch):
    """Keep tests away from the user's ~/.cache/pmg_aft/revisions.json."""
    monkeypatch.setenv("PMG_AFT_REVISIONS", str(tmp_path / "revisions.json"))
