"""`RobustCLIPTrainer`: what every robust fine-tuning method of a `CLIPModel` shares.

Each method subclasses it with a small `compute_loss` (see `pmg_aft_trainer.py` and its siblings). The base freezes all
but the image tower, holds the frozen reference model, caches class embeddings, runs the training attack, evaluates
through the evaluation engine, saves safetensors checkpoints and writes the model card.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from accelerate.utils import is_compiled_module
from torch import nn
from transformers import CLIPModel, Trainer, TrainingArguments
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput
from transformers.trainer_utils import HubStrategy

from ..attacks import pgd
from ..constants import RUN_INFO_FILE, TRAINABLE_PREFIXES, TRAINER_PROTOCOL
from ..data import (
    DecodedCollator,
    DecodedImages,
    ImageClassificationCollator,
    check_class_count,
    check_dataset,
    check_labels,
    dataset_class_names,
    preprocess_on_device,
    resolve_class_names,
)
from ..evaluation.checks import sanity_warnings
from ..evaluation.engine import evaluate_dataset
from ..evaluation.eval_set import EvalSet, as_eval_set
from ..evaluation.report import Report
from ..hub import MethodInfo, build_model_card, upload_checkpoint
from ..prompts import clean_class_name
from ..zeroshot import ZeroShotClassifier, build_class_embeddings, check_clip_model, clip_processor
from .base_config import PIXEL_FIELDS, RobustCLIPConfig

# Optimisation settings a model card's recipe table shows beside the method's own fields.
RECIPE_KEYS = ("optim", "optim_args", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps",
               "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
               "max_grad_norm", "bf16", "fp16", "seed")  # fmt: skip
DATA_PLUMBING = ("image_column", "label_column")


def recipe_of(config_class: type[RobustCLIPConfig], values: dict) -> dict:
    """The settings a model card shows for a run with these argument `values` (a config's JSON): the method's own
    fields, the shared attack/head/data fields, then the optimisation, without the fields the method does not use;
    pixel quantities as fractions of 255."""
    exclude = (*DATA_PLUMBING, *config_class.unused_fields())
    inherited = {f.name for f in fields(TrainingArguments)}
    shared = [f.name for f in fields(RobustCLIPConfig) if f.name not in inherited]
    method = [f.name for f in fields(config_class) if f.name not in inherited and f.name not in shared]
    keys = [k for k in method + shared + list(RECIPE_KEYS) if k not in exclude]
    linf = values.get("attack_norm", "linf") == "linf"
    return {k: (f"{values[k] * 255:g}/255" if k in PIXEL_FIELDS and linf else values[k]) for k in keys if k in values}


def copy_without_text_tower(model: CLIPModel) -> CLIPModel:
    """A frozen copy of `model` for the reference, without its text tower: the copy's class embeddings are the
    target's (the text tower is frozen), so a second text tower would only hold memory (ViT-B/32: 63M parameters)."""
    text_model = model.text_model
    model.text_model = nn.Identity()
    try:
        return copy.deepcopy(model)
    finally:
        model.text_model = text_model


def freeze_all_but_vision(model: nn.Module) -> list[str]:
    """Make only `vision_model` and `visual_projection` trainable; return the names of the trainable parameters."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(TRAINABLE_PREFIXES))
        if param.requires_grad:
            trainable.append(name)
    return trainable


class RobustCLIPTrainer(Trainer):
    r"""Base trainer for robust fine-tuning of a `transformers.CLIPModel`'s image tower.

    Only `vision_model` and `visual_projection` train; the text tower and `logit_scale` are frozen, so class text
    embeddings are computed once per class list and cached. A method declares its config class, its
    [`MethodInfo`] (name, paper, tags) for cards and Hub commits, whether it needs labels and a frozen reference,
    and overrides `compute_loss`.

    Args:
        model (`CLIPModel` or `str`): the model to fine-tune, or a Hub id / path to load it from.
        args (the method's config): training arguments and the method's hyper-parameters.
        train_dataset (`datasets.Dataset`): rows with an image column and (for supervised methods) an integer label
            column.
        eval_dataset (`datasets.Dataset`, [`EvalSet`] or a `dict` of them, *optional*): evaluated for clean and PGD
            robust zero-shot accuracy. An `EvalSet` brings its class names, prompts and resolution; a plain dataset
            uses its `ClassLabel` names (else `class_names`), `prompt_template` and `native_resolution`.
        processing_class (`CLIPProcessor` or `CLIPTokenizer`): tokenises the prompts; saved with the model, with the
            training normalisation as its image mean and std.
        class_names (`Sequence[str]`, *optional*): training class names in label order; by default the train set's
            `ClassLabel` names. WordNet ids are mapped to ImageNet names, then names are cleaned for the prompt.
        ref_model (`CLIPModel`, *optional*): the frozen reference of methods that have one; defaults to a copy of
            `model` taken before training.
        data_collator (`Callable`, *optional*): defaults to [`ImageClassificationCollator`].
    """

    config_class: ClassVar[type[RobustCLIPConfig]] = RobustCLIPConfig
    method_info: ClassVar[MethodInfo]
    uses_labels: ClassVar[bool] = True

    def __init__(
        self,
        model: CLIPModel | str,
        args: RobustCLIPConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        class_names: Sequence[str] | None = None,
        ref_model: CLIPModel | None = None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
        **kwargs: Any,
    ) -> None:
        if not hasattr(type(self), "method_info"):
            raise TypeError(
                f"{type(self).__name__} is the shared base; use a method's trainer: PMGAFTTrainer, TeCoATrainer, "
                "FARETrainer, TGAZSRTrainer or CleanFinetuneTrainer."
            )
        if isinstance(model, str):
            model = CLIPModel.from_pretrained(model)
        check_clip_model(model)
        if args is None:
            args = self.config_class(output_dir=f"{self.method_info.key.replace('_', '-')}-output")
        if not isinstance(args, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__} (its method's recipe), "
                f"got {type(args).__name__}."
            )
        self.check_arguments(args, ref_model)
        # Recorded for the model card: the Hub id the training set was loaded from, if datasets knows it.
        self.train_dataset_id = getattr(getattr(train_dataset, "info", None), "dataset_name", None)
        columns = (args.image_column, args.label_column) if self.uses_labels else (args.image_column,)
        check_dataset(train_dataset, "train_dataset", columns)
        check_dataset(eval_dataset, "eval_dataset")

        if class_names is None and train_dataset is not None and self.uses_labels:
            class_names = dataset_class_names(train_dataset, args.label_column)
            if class_names is None:
                raise ValueError(
                    f"Cannot find class names: train_dataset's '{args.label_column}' column is not a ClassLabel. "
                    "Pass class_names=[...] in label order."
                )
        self.class_names = [clean_class_name(n) for n in resolve_class_names(class_names)] if class_names else None
        if self.class_names is not None and self.uses_labels:
            check_class_count(self.class_names, "The training set")
        if train_dataset is not None and self.class_names is not None:
            check_labels(train_dataset, "train_dataset", args.label_column, len(self.class_names))

        name = getattr(model.config, "_name_or_path", "") or ""
        self.base_model = name if name.count("/") == 1 and not os.path.exists(name) else None  # a Hub id
        freeze_all_but_vision(model)
        if not self.uses_reference(args) and ref_model is not None:
            warnings.warn(f"{self.method_info.name} uses no reference model: ref_model is ignored.", stacklevel=2)
            ref_model = None
        # A copy of the target has the same (frozen) text tower: it shares the target's class embeddings.
        self._ref_is_copy = ref_model is None
        if ref_model is None and self.uses_reference(args):
            ref_model = copy_without_text_tower(model)
        if ref_model is not None:
            check_clip_model(ref_model)
            ref_model.requires_grad_(False).eval()

        processor = clip_processor(processing_class, model, args.image_mean, args.image_std)
        self.image_size = model.config.vision_config.image_size
        if args.preprocess_on_device and train_dataset is not None:
            label_column = args.label_column if self.uses_labels else None
            train_dataset = DecodedImages(train_dataset, args.image_column, label_column, name="train_dataset")
            data_collator = data_collator or DecodedCollator()
        if data_collator is None:
            data_collator = ImageClassificationCollator(
                args.image_column,
                args.label_column,
                image_size=model.config.vision_config.image_size,
                native_resolution=args.native_resolution,
                interpolation=args.interpolation,
                require_labels=self.uses_labels,
                crop_pct=args.crop_pct,
            )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processor,
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        if self.args.n_gpu > 1:
            raise ValueError(
                f"{self.args.n_gpu} GPUs are visible to a single process, which would use nn.DataParallel. "
                "Launch one process per GPU instead: `accelerate launch examples/finetune.py ...` (or torchrun), "
                "or pick one GPU with CUDA_VISIBLE_DEVICES=0."
            )
        # Losses are per-batch means that know nothing of `num_items_in_batch`: let Trainer divide them by the
        # number of accumulation steps, so accumulation gives the same update as the large batch.
        self.model_accepts_loss_kwargs = False
        self.train_attack_setting = args.train_attack_setting()
        self.eval_attack_setting = args.eval_attack_setting()
        # Never a submodule of the trained model (so never saved); placed (and cast) by accelerate, without DDP.
        self.ref_model = (
            self.accelerator.prepare_model(ref_model, evaluation_mode=True) if ref_model is not None else None
        )
        self.report: Report | None = None  # the last evaluate()'s results
        self.reports: list[Report] = []  # every evaluate()'s, in order
        self.report_steps: list[int] = []  # the training step each of them was made at
        self._class_embeddings: dict[tuple[str, tuple[str, ...], tuple[str, ...]], torch.Tensor] = {}
        self._classifiers: dict[tuple, ZeroShotClassifier] = {}  # built once: no per-step tensor copies to the device
        self._vision_towers: dict[int, nn.Module] = {}  # compiled vision towers under torch_compile
        self._metrics: dict[str, list[torch.Tensor]] = defaultdict(list)

    @classmethod
    def uses_reference(cls, args: RobustCLIPConfig) -> bool:
        """Whether the method needs the frozen reference model with these arguments."""
        return False

    @classmethod
    def check_arguments(cls, args: RobustCLIPConfig, ref_model: CLIPModel | None) -> None:
        """Raise for arguments that cannot work together with this method (the config alone cannot tell)."""

    # ---- zero-shot heads and the attack ----------------------------------------------------------------------

    def classifier(
        self, names: Sequence[str] | None = None, reference: bool = False, templates: Sequence[str] | None = None
    ) -> ZeroShotClassifier:
        """The zero-shot head over `names` (already cleaned; default: the training classes) on the target model, or
        on the frozen reference. `templates` defaults to `[prompt_template]`; embeddings are averaged over them."""
        names = self.class_names if names is None else names
        if names is None:
            raise ValueError("No class names: pass class_names= or a train_dataset with a ClassLabel column.")
        if reference and self.ref_model is None:
            raise ValueError(f"{self.method_info.name} has no reference model with these arguments.")
        model = self.accelerator.unwrap_model(self.ref_model if reference else self.model)
        templates = tuple(templates or [self.args.prompt_template])
        key = ("ref" if reference and not self._ref_is_copy else "target", tuple(names), templates)
        if key not in self._class_embeddings:
            # The text tower is frozen, so these stay valid for the whole run.
            text = self.accelerator.unwrap_model(self.model) if key[0] == "target" else model  # a copy has no text
            self._class_embeddings[key] = build_class_embeddings(text, self.processing_class.tokenizer, names,
                                                                 templates)  # fmt: skip
        # Rebuilt only if the model object or its device changed (FSDP and DeepSpeed place it in train()).
        cache = (key, id(model), model.visual_projection.weight.device)
        if cache not in self._classifiers:
            self._classifiers[cache] = ZeroShotClassifier(
                model,
                class_embeddings=self._class_embeddings[key],
                image_mean=self.args.image_mean,
                image_std=self.args.image_std,
                logit_scale=self.args.resolved_logit_scale(),
                vision_model=self.vision_tower(model),
            )
        return self._classifiers[cache]

    def vision_tower(self, model: nn.Module) -> nn.Module:
        """`model.vision_model`, compiled under `torch_compile` with static shapes (the attack's and the frozen
        model's forwards run through it; `Trainer` compiles the target's own forward)."""
        if not self.args.torch_compile:
            return model.vision_model
        if id(model) not in self._vision_towers:
            args = self.args
            self._vision_towers[id(model)] = torch.compile(
                model.vision_model, backend=args.torch_compile_backend, mode=args.torch_compile_mode, dynamic=False
            )
        return self._vision_towers[id(model)]

    def attack(self, classifier, images: torch.Tensor, targets: torch.Tensor, loss="ce") -> torch.Tensor:
        """The training attack ([`RobustCLIPConfig.train_attack_setting`]) on the current model.

        `loss` is `pgd`'s: `"ce"`, or a function of (outputs, targets) such as FARE's embedding distance.
        """
        # The batches come from the collators, in [0, 1]: pgd's range check (a host sync) is skipped.
        kwargs = self.train_attack_setting.pgd_kwargs() | {"loss": loss, "check_range": False}
        return pgd(classifier, images, targets, **kwargs)

    def forward_images(self, model: nn.Module, pixel_values: torch.Tensor) -> CLIPOutput:
        """`CLIPModel` outputs for normalised pixels through the training model: `image_embeds` (unit norm, float32)
        and `vision_model_output` (`last_hidden_state`, and `pooler_output`: the projected embedding).

        A model wrapped for distributed training (DDP, FSDP, DeepSpeed) is called itself, so that its forward
        prepares the gradient all-reduce (or gathers the shards); `CLIPModel.forward` needs text, so it gets a
        one-token dummy. A model that is not wrapped (one process) runs only its vision tower ([`vision_tower`],
        compiled under `torch_compile`), under the caller's autocast: the dummy text forward reads every text
        weight once per step for nothing.
        """
        clip = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        if (model._orig_mod if is_compiled_module(model) else model) is not clip:
            dummy_text = torch.zeros((1, 1), dtype=torch.long, device=pixel_values.device)
            return model(input_ids=dummy_text, pixel_values=pixel_values)
        vision = self.vision_tower(clip)(pixel_values=pixel_values)
        projected = clip.visual_projection(vision.pooler_output).float()  # float32, as accelerate returns it
        return CLIPOutput(
            image_embeds=F.normalize(projected, dim=-1),
            vision_model_output=BaseModelOutputWithPooling(
                last_hidden_state=vision.last_hidden_state, pooler_output=projected
            ),
        )

    def image_embeddings(self, model: nn.Module, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Projected image embeddings through [`forward_images`] (unit norm when `normalize`)."""
        out = self.forward_images(model, pixel_values)
        # transformers 5: the vision output's pooler_output is the projected, unnormalised image embedding.
        return out.image_embeds if normalize else out.vision_model_output.pooler_output

    # ---- training --------------------------------------------------------------------------------------------

    def _prepare_inputs(self, inputs: dict) -> dict:
        """Inputs on the device; uint8 batches of the decode-once path ([`DecodedImages`]) resized and cropped
        there."""
        inputs = super()._prepare_inputs(inputs)
        if inputs.get("pixel_values") is not None:
            inputs["pixel_values"] = self.prepare_pixels(inputs["pixel_values"])
        return inputs

    def prepare_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] at the model's size: uint8 batches ([`DecodedImages`]) are resized and cropped where they
        are ([`preprocess_on_device`]); float batches, finished by the host collator, pass through."""
        if pixels.dtype != torch.uint8:
            return pixels
        resize = None if self.args.native_resolution else round(self.image_size / self.args.crop_pct)
        return preprocess_on_device(pixels, self.image_size, resize)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        raise NotImplementedError(f"{type(self).__name__} must define compute_loss.")

    @torch.no_grad()
    def log_metric(self, name: str, value: torch.Tensor) -> None:
        """Record a per-step value; `log` adds its mean over steps and processes to the training logs."""
        self._metrics[name].append(value.detach().float())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss terms and training accuracies (over steps and processes) to the training logs."""
        if "loss" in logs and self._metrics:
            names = list(self._metrics)
            values = torch.stack([torch.stack(self._metrics[n]).mean() for n in names])
            values = self.accelerator.reduce(values, reduction="mean")
            logs.update({n: round(v, 6) for n, v in zip(names, values.tolist())})
            self._metrics.clear()
        super().log(logs, start_time)

    # ---- evaluation ------------------------------------------------------------------------------------------

    def eval_sets(self, eval_dataset=None) -> dict[str, EvalSet]:
        """The eval sets `evaluate(eval_dataset)` runs on, keyed by metric name (`""` for a single one)."""
        data = eval_dataset if eval_dataset is not None else self.eval_dataset
        if data is None:
            raise ValueError("evaluate() needs an eval_dataset (a dataset, an EvalSet or a dict of them).")
        if isinstance(data, str):
            if not isinstance(self.eval_dataset, dict) or data not in self.eval_dataset:
                known = list(self.eval_dataset) if isinstance(self.eval_dataset, dict) else []
                raise KeyError(f"No eval dataset named {data!r}; the trainer has {known}. Pass datasets, not names.")
            data = {data: self.eval_dataset[data]}
        defaults = dict(class_names=self.class_names, **self.args.eval_set_defaults())
        if isinstance(data, (list, tuple)):
            raise TypeError(
                "evaluate() takes datasets, EvalSets or a dict of them, not names: build a benchmark's eval set with "
                "pmg_aft.benchmark_eval_set(name)."
            )
        if not isinstance(data, dict):
            return {"": as_eval_set(data.name if isinstance(data, EvalSet) else "eval", data, **defaults)}
        return {name: as_eval_set(name, value, **defaults) for name, value in data.items()}

    def evaluate(
        self,
        eval_dataset=None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Clean and PGD robust zero-shot top-1 accuracy on each eval set, through the evaluation engine.

        The attack is `eval_attack_setting` (PGD with `eval_eps`, `eval_step_size`, `eval_attack_steps`, each
        sample's first success kept, random starts seeded with `seed`) on the training head (logit scale,
        normalisation): the `trainer` protocol. It runs in float32 unless `eval_mixed_precision`. For one dataset
        the metrics are `{prefix}_clean_accuracy`, `..._robust_accuracy` and `..._samples`; for a dict they are
        `{prefix}_{name}_...` per dataset, and `{prefix}_clean_accuracy` / `{prefix}_robust_accuracy` are the means
        over datasets. The results are kept as a [`Report`] in
        `self.report` (and `self.reports`).
        """
        sets = self.eval_sets(eval_dataset)
        args = self.args
        precision = (self.accelerator.mixed_precision or "no") if args.eval_mixed_precision else "no"
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        start = time.time()
        results = {}
        try:
            for name, eval_set in sets.items():
                classifier = self.classifier(eval_set.class_names, templates=eval_set.templates)
                results[name or eval_set.name] = evaluate_dataset(
                    classifier, eval_set, [self.eval_attack_setting], self.accelerator, args.eval_batch_size,
                    precision, args.dataloader_num_workers, args.dataloader_pin_memory, args.seed,
                )  # fmt: skip
        finally:
            model.train(was_training)
        self.report = self._report(results, precision)
        self.reports.append(self.report)
        self.report_steps.append(self.state.global_step)
        key = self.eval_attack_setting.key
        metrics: dict[str, float] = {}
        for name, result in zip(sets, results.values()):  # results are in the order of sets
            prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
            metrics[f"{prefix}_clean_accuracy"] = result["clean_accuracy"]
            metrics[f"{prefix}_robust_accuracy"] = result["robust_accuracy"][key]
            metrics[f"{prefix}_samples"] = result["samples"]
        if "" not in sets:  # a dict: the means, so metric_for_best_model="robust_accuracy" works
            summary = self.report.summary()
            metrics[f"{metric_key_prefix}_clean_accuracy"] = summary["clean"]
            metrics[f"{metric_key_prefix}_robust_accuracy"] = summary[key]
        runtime = time.time() - start
        total = sum(r["samples"] for r in results.values())
        metrics[f"{metric_key_prefix}_runtime"] = round(runtime, 4)
        metrics[f"{metric_key_prefix}_samples_per_second"] = round(total / max(runtime, 1e-9), 3)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _report(self, results: dict[str, dict], precision: str) -> Report:
        args = self.args
        scale = args.resolved_logit_scale()
        if scale is None:
            scale = float(self.accelerator.unwrap_model(self.model).logit_scale.exp())
        caps = {r["max_eval_samples"] for r in results.values()}
        report = Report(
            model=args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
            protocol=TRAINER_PROTOCOL,  # each result names the protocol of its prompts
            logit_scale=scale,
            image_mean=list(args.image_mean),
            image_std=list(args.image_std),
            settings=[self.eval_attack_setting],
            max_eval_samples=caps.pop() if len(caps) == 1 else None,
            mixed_precision=precision,
            seed=args.seed,
            results=results,
        )
        report.warnings = sanity_warnings(report)
        return report

    # ---- model card, Hub and saving --------------------------------------------------------------------------

    def recipe(self) -> dict:
        """The settings a model card shows ([`recipe_of`]), without the fields the method does not use."""
        return recipe_of(type(self.args), json.loads(self.args.to_json_string()))

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        license: str | None = None,
        finetuned_from: str | None = None,
        dataset: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write `README.md` in `output_dir`: the method and its paper, usage, the recipe, and the last evaluation's
        clean and robust accuracy in the `model-index`, so `push_to_hub` publishes a card with the table.

        Accepts the arguments `Trainer.push_to_hub` passes on (`license`, `finetuned_from`, `dataset`, ...).
        """
        if not self.is_world_process_zero():
            return
        repo_id = (
            getattr(self, "hub_model_id", None)
            or self.args.hub_model_id
            or model_name
            or os.path.basename(os.path.abspath(self.args.output_dir))
        )
        dataset = dataset[0] if isinstance(dataset, (list, tuple)) and dataset else dataset
        card = build_model_card(
            repo_id,
            self.report,
            finetuned_from or self.base_model,
            self.recipe(),
            dataset_name or dataset or self.train_dataset_id,
            license=license or "mit",
            method=self.method_info,
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def push_to_hub(
        self,
        commit_message: str | None = None,
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Save the model, write the card, and upload what may be published (safetensors weights, configs, processor,
        card, the last evaluation's report files; never pickles) from a staging folder, committing as "{method}
        fine-tuned CLIP" unless a message is given. `kwargs` go to [`create_model_card`]. Always blocks."""
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        kwargs.setdefault("model_name", self.hub_model_id.split("/")[-1])
        self.create_model_card(**kwargs)
        report_dir = self.save_report()
        message = commit_message or self.method_info.commit_message
        token, revision = token or self.args.hub_token, revision or self.args.hub_revision
        return upload_checkpoint(self.hub_model_id, self.args.output_dir, message, report_dir=report_dir, token=token,
                                 revision=revision)  # fmt: skip

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Trainer's version writes training_args.bin (a pickle) and uploads the whole output folder.
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        upload_checkpoint(self.hub_model_id, checkpoint_folder,
                          f"{self.method_info.name}: training in progress, step {self.state.global_step}",
                          token=self.args.hub_token, revision=self.args.hub_revision)  # fmt: skip

    def save_report(self, output_dir: str | None = None) -> str | None:
        """Write the last evaluation's report (JSON, Markdown, plots) to `output_dir` (default: `output_dir/eval`)
        on the main process; return the folder (`None` before any evaluation)."""
        if self.report is None or not self.is_world_process_zero():
            return None
        folder = output_dir or os.path.join(self.args.output_dir, "eval")
        self.report.save(folder)
        return folder

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the full `CLIPModel` (safetensors), its processor, the training arguments as JSON (no pickle) and
        `pmg_aft.json` (method, recipe, base model, training data, class names) for the model card."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=True)
        self.processing_class.save_pretrained(output_dir)
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string())
        # What the card needs that the checkpoint cannot say: transformers does not save `_name_or_path`.
        info = {"method": self.method_info.to_dict(), "recipe": self.recipe(), "base_model": self.base_model,
                "train_dataset": self.train_dataset_id, "class_names": self.class_names}  # fmt: skip
        with open(os.path.join(output_dir, RUN_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
