"""`PMGAFTTrainer`: adversarial fine-tuning of a `CLIPModel` image tower with PMG-AFT (or TeCoA)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import CLIPModel, CLIPProcessor, Trainer
from transformers.utils import is_torchvision_available, logging

from .attacks import pgd
from .config import PMGAFTConfig
from .data import (
    BENCHMARKS,
    EVAL_SUITE,
    ImageClassificationCollator,
    dataset_class_names,
    get_benchmark,
    load_benchmark,
    resolve_class_names,
)
from .data.registry import pinned_revision
from .evaluation.report import Report
from .hub import build_model_card
from .losses import (
    clean_loss,
    fare_loss,
    pmg_aft_loss,
    squared_distance,
    text_guided_attention,
    tga_zsr_loss,
)
from .zeroshot import (
    ImageEncoder,
    ZeroShotClassifier,
    build_class_embeddings,
    check_clip_model,
    clean_class_name,
    token_embeddings,
)

logger = logging.get_logger(__name__)

TRAINABLE_PREFIXES = ("vision_model.", "visual_projection.")


def freeze_all_but_vision(model: nn.Module) -> list[str]:
    """Make only `vision_model` and `visual_projection` trainable; return the names of the trainable parameters."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(TRAINABLE_PREFIXES))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def load_named_datasets(train_dataset, eval_dataset, args: PMGAFTConfig):
    """Replace benchmark names by datasets: `"tiny-imagenet"` (train split), `"cifar10,stl10"`, a list, or `"all"`."""

    def load(name: str, split: str | None, max_samples: int | None = None):
        bench = get_benchmark(name)
        local = os.path.join(args.benchmark_data_dir, bench.name) if args.benchmark_data_dir else None
        return load_benchmark(bench.name, split, local, max_samples=max_samples, on_bad_image=args.on_bad_image)

    if isinstance(train_dataset, str):
        train_dataset = load(train_dataset, "train")
    if isinstance(eval_dataset, str):
        eval_dataset = EVAL_SUITE if eval_dataset.strip() == "all" else [n.strip() for n in eval_dataset.split(",")]
    if isinstance(eval_dataset, (list, tuple)):
        eval_dataset = {get_benchmark(n).name: load(n, None, args.eval_max_samples) for n in eval_dataset if n}
    return train_dataset, eval_dataset


def check_dataset(dataset, name: str, columns: Sequence[str] | None) -> None:
    """Fail early, before training, on an empty dataset or missing columns (`None`: the columns its spec needs)."""
    if dataset is None:
        return
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            check_dataset(value, f"{name}[{key!r}]", columns)
        return
    found = getattr(dataset, "column_names", None)
    if found is not None and columns is not None:
        missing = [c for c in columns if c not in found]
        if missing:
            raise ValueError(
                f"{name} has no column(s) {missing}; its columns are {list(found)}. "
                "Set image_column / label_column in PMGAFTConfig (or --image_column / --label_column)."
            )
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"{name} is empty (0 rows); check the split name and any filtering or max_samples.")


def check_labels(dataset, name: str, label_column: str, num_classes: int) -> None:
    """Raise if a `datasets.Dataset` has labels outside `[0, num_classes)`."""
    if not hasattr(dataset, "with_format") or label_column not in (getattr(dataset, "column_names", None) or []):
        return
    import pyarrow as pa
    import pyarrow.compute as pc

    # Through the "arrow" format, so filter/shuffle/select index mappings are respected.
    column = dataset.with_format("arrow")[label_column]
    if not pa.types.is_integer(column.type):
        return
    bounds = pc.min_max(column).as_py()
    if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= num_classes):
        raise ValueError(
            f"{name} has labels in [{bounds['min']}, {bounds['max']}] but {num_classes} class names; "
            "labels must be in [0, num_classes). Check class_names or the label column."
        )


def clip_processor_for(processing_class, model: CLIPModel, image_mean: Sequence[float], image_std: Sequence[float]):
    """A `CLIPProcessor` whose image normalisation is the one the model is trained and attacked with."""
    if processing_class is None:
        raise ValueError(
            "PMGAFTTrainer needs processing_class: a CLIPProcessor or CLIPTokenizer to embed the class prompts, "
            "e.g. CLIPProcessor.from_pretrained('openai/clip-vit-base-patch32')."
        )
    image_processor = getattr(processing_class, "image_processor", None)
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if image_processor is not None:
        image_processor = copy.deepcopy(image_processor)
    else:
        # Same saved format either way; the PIL backend avoids a warning when torchvision is not installed.
        if is_torchvision_available():
            from transformers import CLIPImageProcessor
        else:
            from transformers import CLIPImageProcessorPil as CLIPImageProcessor
        size = model.config.vision_config.image_size
        image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    image_processor.image_mean = [float(v) for v in image_mean]
    image_processor.image_std = [float(v) for v in image_std]
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


class PMGAFTTrainer(Trainer):
    r"""Trainer for PMG-AFT (Wang et al., CVPR 2024) adversarial fine-tuning of a `transformers.CLIPModel`.

    Each step attacks the current model with PGD (`train_eps`, `train_step_size`, `train_steps`), then minimises
    `CE(z_t(x'), y) + alpha * KL(p_0(x') || p_t(x')) + beta * KL(p_t(x) || p_t(x'))`, where `p_0` comes from a frozen
    copy of the pre-trained model. Only `vision_model` and `visual_projection` are trained; the text tower and
    `logit_scale` are frozen, so class text embeddings are computed once per class list and cached.

    Args:
        model (`CLIPModel` or `str`): the model to fine-tune, or a Hub id / path to load it from.
        args (`PMGAFTConfig`): training arguments and method hyper-parameters.
        train_dataset (`datasets.Dataset`): rows with an image column and an integer label column.
        eval_dataset (`datasets.Dataset` or `dict[str, datasets.Dataset]`, *optional*): evaluated for clean and PGD
            robust zero-shot accuracy; class names come from each dataset's `ClassLabel` feature, else from
            `class_names`.
        processing_class (`CLIPProcessor` or `CLIPTokenizer`): tokenises the prompts; saved with the model, with the
            training normalisation as its image mean and std.
        class_names (`Sequence[str]`, *optional*): training class names in label order; by default the train set's
            `ClassLabel` names. WordNet ids are mapped to ImageNet names, then names are cleaned for the prompt.
        ref_model (`CLIPModel`, *optional*): the frozen guide; defaults to a copy of `model` taken before training.
        data_collator (`Callable`, *optional*): defaults to [`ImageClassificationCollator`].
    """

    def __init__(
        self,
        model: CLIPModel | str,
        args: PMGAFTConfig | None = None,
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
        if isinstance(model, str):
            model = CLIPModel.from_pretrained(model)
        check_clip_model(model)
        if args is None:
            args = PMGAFTConfig(output_dir="pmg-aft-output")
        if not isinstance(args, PMGAFTConfig):
            raise TypeError(f"args must be a PMGAFTConfig, got {type(args).__name__}.")
        # Recorded for the model card: a benchmark name, or the Hub id a dataset was loaded from.
        self.train_dataset_id = (
            get_benchmark(train_dataset).hub_id
            if isinstance(train_dataset, str)
            else getattr(getattr(train_dataset, "info", None), "dataset_name", None)
        )
        train_dataset, eval_dataset = load_named_datasets(train_dataset, eval_dataset, args)
        unsupervised = args.method == "fare"
        columns = (args.image_column,) if unsupervised else (args.image_column, args.label_column)
        check_dataset(train_dataset, "train_dataset", columns)
        check_dataset(eval_dataset, "eval_dataset", None)

        if class_names is None and train_dataset is not None and not unsupervised:
            class_names = dataset_class_names(train_dataset, args.label_column)
            if class_names is None:
                raise ValueError(
                    f"Cannot find class names: train_dataset's '{args.label_column}' column is not a ClassLabel. "
                    "Pass class_names=[...] in label order."
                )
        self.class_names = self._prompt_names(class_names) if class_names is not None else None
        if train_dataset is not None and self.class_names is not None:
            check_labels(train_dataset, "train_dataset", args.label_column, len(self.class_names))

        name = getattr(model.config, "_name_or_path", "") or ""
        self.base_model = name if name.count("/") == 1 and not os.path.exists(name) else None  # a Hub id
        freeze_all_but_vision(model)
        # A copy of the target has the same (frozen) text tower: it shares the target's class embeddings.
        self._ref_is_copy = ref_model is None
        if ref_model is None and (args.alpha > 0 or args.method in ("fare", "tga_zsr")):
            ref_model = copy.deepcopy(model)
        if ref_model is not None:
            check_clip_model(ref_model)
            ref_model.requires_grad_(False).eval()

        processor = clip_processor_for(processing_class, model, args.image_mean, args.image_std)
        if data_collator is None:
            data_collator = ImageClassificationCollator(
                args.image_column,
                args.label_column,
                image_size=model.config.vision_config.image_size,
                native_resolution=args.native_resolution,
                require_labels=not unsupervised,
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
        # The loss is a per-batch mean that knows nothing of `num_items_in_batch`: let Trainer divide it by the
        # number of accumulation steps, so accumulation gives the same update as the large batch.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        # Never a submodule of the trained model (so never saved); placed (and cast) by accelerate, without DDP.
        self.ref_model = (
            self.accelerator.prepare_model(ref_model, evaluation_mode=True) if ref_model is not None else None
        )
        self._class_embeddings: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        self._metrics: dict[str, list[torch.Tensor]] = defaultdict(list)

    # ---- zero-shot heads -------------------------------------------------------------------------------------

    @staticmethod
    def _prompt_names(names: Sequence[str]) -> list[str]:
        return [clean_class_name(n) for n in resolve_class_names(names)]

    def classifier(
        self, names: Sequence[str], reference: bool = False, templates: Sequence[str] | None = None
    ) -> ZeroShotClassifier:
        """The zero-shot head over `names` (already cleaned) on the target model, or on the frozen reference.

        `templates` defaults to `[prompt_template]`; embeddings are averaged over them.
        """
        model = self.accelerator.unwrap_model(self.ref_model if reference else self.model)
        templates = tuple(templates or [self.args.prompt_template])
        key = ("ref" if reference and not self._ref_is_copy else "target", tuple(names), templates)
        if key not in self._class_embeddings:
            # The text tower is frozen, so these stay valid for the whole run.
            text_model = self.accelerator.unwrap_model(self.ref_model if key[0] == "ref" else self.model)
            self._class_embeddings[key] = build_class_embeddings(
                text_model, self.processing_class.tokenizer, names, templates
            )
        return ZeroShotClassifier(
            model,
            class_embeddings=self._class_embeddings[key],
            image_mean=self.args.image_mean,
            image_std=self.args.image_std,
            logit_scale=self.args.resolved_logit_scale(),
        )

    def _eval_spec(self, key: str, dataset, prefix: str) -> tuple[list[str], list[str], Any]:
        """Class names, prompt templates and collator for one eval dataset.

        A dataset keyed by a registered benchmark name whose labels are that benchmark's, or some of them (as
        `load_benchmark` returns it), gets the benchmark's prompts (`eval_protocol`) and resolution; any other
        dataset gets its own `ClassLabel` names, `prompt_template` and the trainer's collator.
        """
        bench = BENCHMARKS.get(key)
        names = dataset_class_names(dataset, "label" if bench else self.args.label_column)
        if bench is not None and names is not None and (not bench.class_names or set(names) <= set(bench.class_names)):
            protocol = self.args.eval_protocol
            collator = ImageClassificationCollator(
                image_size=self.accelerator.unwrap_model(self.model).config.vision_config.image_size,
                native_resolution=bench.native_resolution,
            )
            return bench.prompt_names(names, protocol), bench.templates(protocol), collator
        check_dataset(dataset, prefix, (self.args.image_column, self.args.label_column))
        if names is not None:
            return self._prompt_names(names), [self.args.prompt_template], self.data_collator
        if self.class_names is None:
            raise ValueError(f"{prefix} has no ClassLabel names and the trainer has no class_names; pass class_names.")
        return self.class_names, [self.args.prompt_template], self.data_collator

    def attack(
        self, classifier, images: torch.Tensor, labels: torch.Tensor, training: bool, loss="ce"
    ) -> torch.Tensor:
        """PGD with the training budget (`train_eps`, ...) or the evaluation one (`eval_eps`, ...).

        `loss` is `pgd`'s: `"ce"`, or a function of (outputs, targets) such as FARE's embedding distance.
        """
        args = self.args
        budget = (
            (args.train_eps, args.train_step_size, args.train_steps)
            if training
            else (args.eval_eps, args.eval_step_size, args.eval_attack_steps)
        )
        return pgd(
            classifier, images, labels, *budget, norm=args.attack_norm, random_start=args.attack_random_start,
            loss=loss, early_stop=not training,  # evaluation keeps each sample's first success
        )  # fmt: skip

    @staticmethod
    def _forward_images(model: nn.Module, pixel_values: torch.Tensor):
        # Call the (possibly DDP-wrapped) model itself so DDP prepares its gradient all-reduce and accelerate applies
        # autocast. CLIPModel.forward needs text, so it gets a one-token dummy; the class embeddings come from cache.
        dummy_text = torch.zeros((1, 1), dtype=torch.long, device=pixel_values.device)
        return model(input_ids=dummy_text, pixel_values=pixel_values)

    def _image_embeddings(self, model: nn.Module, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        out = self._forward_images(model, pixel_values)
        # transformers 5: the vision output's pooler_output is the projected, unnormalised image embedding.
        return out.image_embeds if normalize else out.vision_model_output.pooler_output

    # ---- training --------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Attack the current model, then return the method's loss on the batch (a batch mean)."""
        args = self.args
        if args.method == "fare":
            return self._fare_loss(model, inputs["pixel_values"], return_outputs)
        if self.class_names is None:
            raise ValueError("No class names: pass class_names= or a train_dataset with a ClassLabel column.")
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier(self.class_names)
        if args.method == "clean":
            with self.accelerator.autocast():
                clean_logits = target.logits_from_embeddings(self._image_embeddings(model, target.preprocess(images)))
            loss = clean_loss(clean_logits, labels)
            self._metrics["ce"].append(loss.detach())
            self._metrics["train_clean_accuracy"].append((clean_logits.argmax(-1) == labels).float().mean())
            return (loss, {"clean_logits": clean_logits}) if return_outputs else loss
        if args.method == "tga_zsr":
            return self._tga_zsr_loss(model, target, images, labels, return_outputs)
        with self.accelerator.autocast():
            adv_images = self.attack(target, images, labels, training=True)
            # One forward of [x'; x] instead of two: the same maths (no batch statistics in ViT), one DDP forward.
            batch = torch.cat([adv_images, images]) if args.beta > 0 else adv_images
            logits = target.logits_from_embeddings(self._image_embeddings(model, target.preprocess(batch)))
            adv_logits = logits[: len(images)]
            clean_logits = logits[len(images) :] if args.beta > 0 else None
            ref_logits = None
            if args.alpha > 0:
                with torch.no_grad():
                    ref_logits = self.classifier(self.class_names, reference=True)(adv_images)
        terms = pmg_aft_loss(
            adv_logits,
            labels,
            clean_logits,
            ref_logits,
            alpha=args.alpha,
            beta=args.beta,
            kl_direction=args.kl_direction,
        )
        self._record(terms, adv_logits, clean_logits, labels)
        outputs = {"adv_logits": adv_logits, "clean_logits": clean_logits}
        return (terms.loss, outputs) if return_outputs else terms.loss

    def _tga_zsr_loss(self, model, target: ZeroShotClassifier, images, labels, return_outputs: bool):
        """TGA-ZSR: cross-entropy on x' plus text-guided attention terms against the frozen model on x."""
        args = self.args
        clip = self.accelerator.unwrap_model(self.model)
        reference = self.accelerator.unwrap_model(self.ref_model)
        size = clip.config.vision_config.image_size
        text = target.class_embeddings[labels]  # each sample's class prompt embedding (unit norm)
        with self.accelerator.autocast():
            adv_images = self.attack(target, images, labels, training=True)
            out = self._forward_images(model, target.preprocess(torch.cat([adv_images, images])))
            tokens = token_embeddings(clip, out.vision_model_output.last_hidden_state)
            adv_logits = target.logits_from_embeddings(out.image_embeds[: len(images)])
            attention = text_guided_attention(tokens, torch.cat([text, text]), size)
            with torch.no_grad():
                hidden = reference.vision_model(pixel_values=target.preprocess(images)).last_hidden_state
                ref_attention = text_guided_attention(token_embeddings(reference, hidden), text, size)
        terms = tga_zsr_loss(
            adv_logits, labels, attention[: len(images)], attention[len(images) :], ref_attention,
            alpha=args.tga_alpha, beta=args.tga_beta,
        )  # fmt: skip
        self._metrics["ce"].append(terms.ce.detach())
        self._metrics["attention_refinement"].append(terms.refinement.detach())
        self._metrics["attention_constraint"].append(terms.constraint.detach())
        self._metrics["train_robust_accuracy"].append((adv_logits.argmax(-1) == labels).float().mean())
        return (terms.loss, {"adv_logits": adv_logits}) if return_outputs else terms.loss

    def _fare_loss(self, model: nn.Module, images: torch.Tensor, return_outputs: bool):
        """FARE: maximise, then minimise, `||E_t(x') - E_0(x)||^2` on unnormalised image embeddings."""
        args = self.args
        mean, std = args.image_mean, args.image_std
        target = ImageEncoder(self.accelerator.unwrap_model(self.model), mean, std)
        reference = ImageEncoder(self.accelerator.unwrap_model(self.ref_model), mean, std)
        with self.accelerator.autocast():
            with torch.no_grad():
                anchor = reference.encode_images(images, normalize=False).float()
            adv_images = self.attack(target, images, anchor, training=True, loss=squared_distance)
            embeddings = self._image_embeddings(model, target.preprocess(adv_images), normalize=False)
        loss = fare_loss(embeddings, anchor)
        self._metrics["fare_distance"].append(loss.detach())
        return (loss, {"adv_embeddings": embeddings}) if return_outputs else loss

    @torch.no_grad()
    def _record(self, terms, adv_logits, clean_logits, labels) -> None:
        self._metrics["ce"].append(terms.ce.detach())
        self._metrics["guidance_kl"].append(terms.guidance_kl.detach())
        self._metrics["clean_kl"].append(terms.clean_kl.detach())
        self._metrics["train_robust_accuracy"].append((adv_logits.argmax(-1) == labels).float().mean())
        if clean_logits is not None:
            self._metrics["train_clean_accuracy"].append((clean_logits.argmax(-1) == labels).float().mean())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss terms and training accuracies (over steps and processes) to the training logs."""
        if "loss" in logs and self._metrics:
            names = list(self._metrics)
            values = torch.stack([torch.stack(self._metrics[n]).float().mean() for n in names])
            values = self.accelerator.reduce(values, reduction="mean")
            logs.update({n: round(v, 6) for n, v in zip(names, values.tolist())})
            self._metrics.clear()
        super().log(logs, start_time)

    # ---- evaluation ------------------------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset=None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Clean and PGD robust zero-shot top-1 accuracy on each eval dataset.

        The attack is PGD (`attack_norm`) with `eval_eps`, `eval_step_size`, `eval_attack_steps` and the training
        logit scale, in float32 unless `eval_mixed_precision`.
        With a dict of datasets, metrics are named `{prefix}_{name}_clean_accuracy` and `..._robust_accuracy`;
        with one dataset `{prefix}_clean_accuracy` and `{prefix}_robust_accuracy`. Samples are sharded across
        processes and gathered, each counted once.
        """
        datasets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if datasets is None:
            raise ValueError("evaluate() needs an eval_dataset (a dataset or a dict of datasets).")
        if isinstance(datasets, str) and isinstance(self.eval_dataset, dict) and datasets in self.eval_dataset:
            datasets = {datasets: self.eval_dataset[datasets]}
        elif isinstance(datasets, (str, list, tuple)):  # benchmark names
            _, datasets = load_named_datasets(None, datasets, self.args)
        if not isinstance(datasets, dict):
            datasets = {"": datasets}
        check_dataset(datasets, "eval_dataset", None)
        args = self.args
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        start = time.time()
        total = 0
        for name, dataset in datasets.items():
            prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
            names, templates, collator = self._eval_spec(name, dataset, prefix)
            classifier = self.classifier(names, templates=templates)
            correct = []
            for batch in self._robust_eval_dataloader(dataset, collator):
                batch = self._prepare_inputs(batch)
                images, labels = batch["pixel_values"], batch["labels"]
                with self.accelerator.autocast() if args.eval_mixed_precision else contextlib.nullcontext():
                    with torch.no_grad():
                        clean = classifier(images).argmax(-1) == labels
                    adv = self.attack(classifier, images, labels, training=False)
                    with torch.no_grad():
                        robust = classifier(adv).argmax(-1) == labels
                correct.append(self.accelerator.gather_for_metrics(torch.stack([clean, robust], dim=1)))
            counts = torch.cat(correct).float()
            metrics[f"{prefix}_clean_accuracy"] = counts[:, 0].mean().item()
            metrics[f"{prefix}_robust_accuracy"] = counts[:, 1].mean().item()
            metrics[f"{prefix}_samples"] = len(counts)
            total += len(counts)
        model.train(was_training)
        runtime = time.time() - start
        metrics[f"{metric_key_prefix}_runtime"] = round(runtime, 4)
        metrics[f"{metric_key_prefix}_samples_per_second"] = round(total / max(runtime, 1e-9), 3)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _robust_eval_dataloader(self, dataset, collator) -> DataLoader:
        # Not Trainer.get_eval_dataloader: it caches persistent-worker loaders under one key for every dataset
        # object, and drops the last partial batch with dataloader_drop_last; accuracy counts every sample once.
        args = self.args
        loader = DataLoader(
            dataset,
            batch_size=args.eval_batch_size,
            shuffle=False,
            drop_last=False,
            collate_fn=collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
        )
        return self.accelerator.prepare_data_loader(loader)

    # ---- model card ------------------------------------------------------------------------------------------

    def evaluation_report(self) -> Report | None:
        """The last `evaluate()` results as a [`Report`] (PGD with the eval settings), or `None` before any."""
        args = self.args
        entries = [e for e in self.state.log_history if any(k.endswith("_robust_accuracy") for k in e)]
        if not entries:
            return None
        last = entries[-1]
        # Random-start PGD (the trainer's) is keyed apart from the suite's deterministic PGD.
        attack = "pgd_rs" if args.attack_random_start else "pgd"
        key = f"{attack}-{args.eval_attack_steps}@{args.eval_eps * 255:g}/255"
        report = Report(
            model=self.args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
            protocol=args.eval_protocol,
            logit_scale=args.resolved_logit_scale()
            or float(self.accelerator.unwrap_model(self.model).logit_scale.exp()),
            norm=args.attack_norm,
            image_mean=list(args.image_mean),
            image_std=list(args.image_std),
            settings=[
                {
                    "attack": "pgd",
                    "eps": args.eval_eps,
                    "steps": args.eval_attack_steps,
                    "step_size": args.eval_step_size,
                    "key": key,
                }
            ],  # fmt: skip
        )
        for metric in (k for k in last if k.endswith("_robust_accuracy")):
            prefix = metric[: -len("_robust_accuracy")]
            name = prefix.removeprefix("eval").lstrip("_") or "eval"
            bench = BENCHMARKS.get(name)
            report.results[name] = {
                "dataset": name,
                "hub_id": bench.hub_id if bench else None,
                "split": bench.split if bench else None,
                "revision": pinned_revision(name) if bench else None,
                "samples": int(last.get(prefix + "_samples", 0)),
                "clean_accuracy": last[prefix + "_clean_accuracy"],
                "robust_accuracy": {key: last[metric]},
            }
        return report

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        license: str | None = None,
        finetuned_from: str | None = None,
        dataset: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write `README.md` in `output_dir`: usage, the recipe, and the last evaluation's clean and robust accuracy
        in the `model-index`, so `push_to_hub` publishes a card with the robust-accuracy table.

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
            self.evaluation_report(),
            finetuned_from or self.base_model,
            json.loads(self.args.to_json_string()),
            dataset_name or dataset or self.train_dataset_id,
            license=license or "mit",
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))

    # ---- saving ----------------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the full `CLIPModel` (safetensors), its processor and the training arguments as JSON (no pickle)."""
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
        info = {"base_model": self.base_model, "train_dataset": self.train_dataset_id, "class_names": self.class_names}
        with open(os.path.join(output_dir, "pmg_aft.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
