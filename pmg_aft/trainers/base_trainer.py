"""`RobustCLIPTrainer`: what every robust fine-tuning method of a `CLIPModel` shares.

Each method subclasses it with a small `compute_loss` (see `pmg_aft_trainer.py` and its siblings). The base freezes all
but the image tower, holds the frozen reference model, runs the training attack and evaluates through the evaluation
engine; its data checks ([`training_data`]), models ([`models`]), cached heads ([`heads`]), evaluation metrics
([`eval_metrics`]) and checkpoints, cards and uploads ([`saving`]) live in their own modules.
"""

from __future__ import annotations

import copy
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from accelerate.utils import is_compiled_module
from torch import nn
from transformers import CLIPModel, Trainer
from transformers.models.clip.modeling_clip import CLIPOutput
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PredictionOutput, TrainOutput, get_last_checkpoint

from ..attacks import Objective, pgd
from ..checkpoints import load_clip
from ..data import preprocess_on_device, rows_digest
from ..data.streaming import StreamingImages, decode_on_device
from ..errors import InputError
from ..evaluation import EvalLoader, Report, evaluate_dataset
from ..methods import MethodInfo
from ..provenance import base_provenance, weights_digest
from ..zeroshot import ImageEncoder, ZeroShotClassifier, check_clip_model, clip_processor
from .base_config import RobustCLIPConfig
from .engines import fsdp_kwargs, place_reference, shard_clip, sharding_problem
from .eval_metrics import eval_metrics, eval_sets, trainer_report
from .guards import (
    NothingLearnedError,
    check_batches,
    check_finite_loss,
    check_same_run,
    nothing_learned_message,
    trainable_fingerprint,
)
from .heads import Heads
from .lora import add_lora, load_adapter_weights
from .models import freeze_all_but_vision, reference_model
from .saving import SavingMixin
from .schedules import first_step_cosine_schedule
from .training_data import check_training_data, training_inputs


def stream_state_file(args) -> str:
    return f"stream_state_{args.process_index}.pt"


class RobustCLIPTrainer(SavingMixin, Trainer):
    r"""Base trainer for robust fine-tuning of a `transformers.CLIPModel`'s image tower.

    Only `vision_model` and `visual_projection` train; the text tower and `logit_scale` are frozen, so class text
    embeddings are computed once per class list and cached. A method declares its config class (which says what the
    method needs: labels, a training attack, a reference model) and its [`MethodInfo`] (name, paper, tags) for cards
    and Hub commits, and overrides `compute_loss`.

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
        model = load_clip(model)[0] if isinstance(model, str) else model
        args = self._checked_arguments(model, args, ref_model)
        name = getattr(model.config, "_name_or_path", "") or ""
        self.base_model = name if name.count("/") == 1 and not os.path.exists(name) else None  # a Hub id
        # What the weights start from, for their provenance: name, digest, licence and credits.
        self.base_name, self.base_digest = name, weights_digest(model)
        self.base_licence, self.base_credits = base_provenance(name)
        self.data_record: dict = {}  # where the training data comes from (set by the job; part of the run record)
        self.image_size = model.config.vision_config.image_size
        # Recorded for the model card: the Hub id the training set was loaded from, if datasets knows it.
        self.train_dataset_id = getattr(getattr(train_dataset, "info", None), "dataset_name", None)
        self.class_names = check_training_data(args, train_dataset, eval_dataset, class_names)
        # What the training rows are (a changed file under the same path is other data): part of the run record.
        map_style = hasattr(train_dataset, "__len__") and hasattr(train_dataset, "column_names")
        self.train_rows = rows_digest(train_dataset, args.image_column, args.label_column) if map_style else None
        freeze_all_but_vision(model)
        self.lora_config = None
        if args.use_peft:
            self.lora_config = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout,
                                        args.lora_target_modules)  # fmt: skip
        # Under LoRA the reference is the model itself with its adapters off: the base, with no second copy.
        self.reference_is_base = args.use_peft and args.uses_reference and ref_model is None
        ref_model, self._ref_is_copy = (None, False) if self.reference_is_base else reference_model(
            model, args, ref_model, self.method_info.name
        )  # fmt: skip
        processor = clip_processor(processing_class, model, args.image_mean, args.image_std)
        train_dataset, data_collator = training_inputs(args, train_dataset, data_collator, self.image_size)
        if isinstance(train_dataset, StreamingImages):
            # The stream resumes from its saved position: nothing is re-read to skip. A copy: the caller's
            # arguments stay as they were given.
            args = copy.copy(args)
            args.ignore_data_skip = True
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processor, callbacks=callbacks,
                         optimizers=optimizers, **kwargs)  # fmt: skip
        if self.args.n_gpu > 1:
            raise InputError(
                f"{self.args.n_gpu} GPUs are visible to a single process, which would use nn.DataParallel. "
                "Launch one process per GPU instead: `accelerate launch examples/finetune.py ...` (or torchrun), "
                "or pick one GPU with CUDA_VISIBLE_DEVICES=0."
            )
        # Losses are per-batch means that know nothing of `num_items_in_batch`: let Trainer divide them by the
        # number of accumulation steps, so accumulation gives the same update as the large batch.
        self.model_accepts_loss_kwargs = False
        self.train_attack_setting = args.train_attack_setting() if args.uses_training_attack else None
        self.eval_attack_grid = args.eval_attack_grid()
        self.eval_settings = self.eval_attack_grid.settings()  # built (and their budgets checked) once
        problem = sharding_problem(self.accelerator, args)
        if problem is not None:
            raise InputError(problem)
        if self.is_fsdp_enabled:  # sharded here: accelerate's FSDP2 wrapping expects a language model
            self.model = self.model_wrapped = shard_clip(model.to(self.accelerator.device),
                                                         **fsdp_kwargs(self.accelerator))  # fmt: skip
        # Never a submodule of the trained model (so never saved); sharded or replicated as the engine needs.
        self.ref_model, self.reference_placement = None, None
        if ref_model is not None:
            self.ref_model, self.reference_placement = place_reference(
                self.accelerator, ref_model, args.per_device_train_batch_size
            )
        self.heads = Heads(processor.tokenizer, args)
        self.report: Report | None = None  # the last evaluate()'s results
        self.reports: list[Report] = []  # every evaluate()'s, in order
        self.report_steps: list[int] = []  # the training step each of them was made at
        self._metrics: dict[str, list[torch.Tensor]] = defaultdict(list)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resume a LoRA run from its adapter (the checkpoint's top level is the merged model); else Trainer's."""
        # Private hook: Trainer has no public one for how a checkpoint's weights are loaded (transformers 5.25).
        if self.lora_config is None:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_adapter_weights(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        """Trainer's `train`, refusing to resume a checkpoint of another run ([`check_same_run`]) and to end a run
        that changed no trained weight ([`NothingLearnedError`]); a non-finite loss stops it ([`log`])."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            check_same_run(resume_from_checkpoint, self.run_record())
            finished = self._finished(resume_from_checkpoint)
            if finished is not None:
                return finished
        else:
            check_batches(self)
        watch = not self.is_deepspeed_enabled  # ZeRO-3 holds no parameter values in place to compare
        before = trainable_fingerprint(self.model) if watch else None
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        if watch and self.state.global_step > 0:
            same = torch.equal(before, trainable_fingerprint(self.model).to(before.device))
            if bool(self.accelerator.reduce(torch.tensor([float(same)], device=self.args.device), "min").item()):
                raise NothingLearnedError(nothing_learned_message(self.state.global_step, self.args))
        return result

    def _finished(self, checkpoint: str) -> TrainOutput | None:
        """For a checkpoint at or past `max_steps` (the run ended, or was killed after its last checkpoint), its
        weights and state, without a step: Trainer would train one more step past the end on each rerun."""
        state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        if self.args.max_steps <= 0 or state.global_step < self.args.max_steps:
            return None
        self._load_from_checkpoint(checkpoint)
        self.state = state
        return TrainOutput(state.global_step, 0.0, {"train_runtime": 0.0, "global_step": state.global_step})

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """transformers' scheduler, except the cosine warm-up counted from the first step where the method's code
        counts it so (`warmup_from_first_step`)."""
        warmup = self.args.get_warmup_steps(num_training_steps)
        if self.lr_scheduler is None and self.args.warmup_from_first_step and warmup > 0 and str(
            getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)
        ) == "cosine":  # fmt: skip
            self.lr_scheduler = first_step_cosine_schedule(optimizer or self.optimizer, warmup, num_training_steps)
            # Trainer's own flag for "this trainer made the scheduler" (saved and reloaded with checkpoints); no public
            # setter exists (transformers 5.25).
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """transformers' rule (no decay for biases and LayerNorm weights), or every parameter where the method's code
        decays them all (`weight_decay_all_parameters`, FARE's AdamW)."""
        if self.args.weight_decay_all_parameters:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def _checked_arguments(self, model, args: RobustCLIPConfig | None, ref_model) -> RobustCLIPConfig:
        """`args` (by default the method's recipe) after the checks only the trainer can make."""
        if not hasattr(type(self), "method_info"):
            raise TypeError(
                f"{type(self).__name__} is the shared base; use a method's trainer from pmg_aft.TRAINERS "
                "(PMGAFTTrainer, ...)."
            )
        check_clip_model(model)
        if args is None:
            args = self.config_class(output_dir=f"{self.method_info.key.replace('_', '-')}-output")
        if not isinstance(args, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__} (its method's recipe), "
                f"got {type(args).__name__}."
            )
        self.check_arguments(args, ref_model)
        return args

    @classmethod
    def check_arguments(cls, args: RobustCLIPConfig, ref_model: CLIPModel | None) -> None:
        """Raise for arguments that cannot work together with this method (the config alone cannot tell)."""

    # ---- zero-shot heads and the attack ----------------------------------------------------------------------

    def unwrapped(self, reference: bool = False) -> CLIPModel:
        """The target (or the frozen reference) model itself, without its distributed-training wrapper."""
        if reference and self.ref_model is None and not self.reference_is_base:
            raise InputError(f"{self.method_info.name} has no reference model with these arguments.")
        held = self.ref_model if reference and not self.reference_is_base else self.model
        return self.accelerator.unwrap_model(held)

    def classifier(
        self, names: Sequence[str] | None = None, reference: bool = False, templates: Sequence[str] | None = None
    ) -> ZeroShotClassifier:
        """The zero-shot head over `names` (already cleaned; default: the training classes) on the target model, or
        on the frozen reference. `templates` defaults to `[prompt_template]`; embeddings are averaged over them."""
        names = self.class_names if names is None else names
        if names is None:
            raise InputError("No class names: pass class_names= or a train_dataset with a ClassLabel column.")
        model = self.unwrapped(reference)
        text_model = self.unwrapped() if reference and self._ref_is_copy else model  # a copy has no text tower
        return self.heads.classifier(model, names, templates or [self.args.prompt_template], text_model,
                                     without_adapters=reference and self.reference_is_base)  # fmt: skip

    def image_encoder(self, reference: bool = False) -> ImageEncoder:
        """The image side of the target (or the frozen reference) on pixels in [0, 1], with the run's normalisation."""
        return self.heads.encoder(self.unwrapped(reference), without_adapters=reference and self.reference_is_base)

    def attack(self, classifier, images: torch.Tensor, targets: torch.Tensor, loss: str | Objective = "ce"):
        """The training attack ([`RobustCLIPConfig.train_attack_setting`]) on the current model.

        `loss` is `pgd`'s: `"ce"`, or a function of (outputs, targets) such as FARE's embedding distance.
        """
        if self.train_attack_setting is None:
            raise RuntimeError(f"{self.method_info.name} runs no training attack.")
        # The batches come from the collators, in [0, 1]: pgd's range check (a host sync) is skipped.
        kwargs = self.train_attack_setting.pgd_kwargs() | {"loss": loss, "check_range": False}
        return pgd(classifier, images, targets, **kwargs)

    def forward_images(self, model: nn.Module, pixel_values: torch.Tensor) -> CLIPOutput:
        """`CLIPModel` outputs for normalised pixels through the training model: `image_embeds` (unit norm, float32)
        and `vision_model_output` (`last_hidden_state`, and `pooler_output`: the projected embedding).

        A model wrapped for distributed training (DDP, FSDP, DeepSpeed) is called itself, so that its forward
        prepares the gradient all-reduce (or gathers the shards); `CLIPModel.forward` needs text, so it gets a
        one-token dummy. A model that is not wrapped (one process) runs only its vision tower (compiled under
        `torch_compile`), under the caller's autocast: the dummy text forward reads every text weight once per step
        for nothing.
        """
        clip = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        if (model._orig_mod if is_compiled_module(model) else model) is not clip:
            dummy_text = torch.zeros((1, 1), dtype=torch.long, device=pixel_values.device)
            return model(input_ids=dummy_text, pixel_values=pixel_values)
        return self.heads.vision_forward(clip, pixel_values)

    def image_embeddings(self, model: nn.Module, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Projected image embeddings through [`forward_images`] (unit norm when `normalize`)."""
        out = self.forward_images(model, pixel_values)
        # transformers 5: the vision output's pooler_output is the projected, unnormalised image embedding.
        return out.image_embeds if normalize else out.vision_model_output.pooler_output

    # ---- training --------------------------------------------------------------------------------------------

    def _prepare_inputs(self, inputs: dict) -> dict:
        # Private hook: the one place every batch passes after it is moved to the device and before the loss
        # (transformers 5.25); pixels are decoded, resized and cropped there, on the accelerator.
        encoded = inputs.pop("encoded_images", None)
        inputs = super()._prepare_inputs(inputs)
        if encoded is not None:  # decode_on_device: JPEG bytes decoded, resized and cropped where training runs
            inputs["pixel_values"] = decode_on_device(encoded, self.args.device, self.image_size, self.resize_size,
                                                      self.args.interpolation)  # fmt: skip
        elif inputs.get("pixel_values") is not None:
            inputs["pixel_values"] = self.prepare_pixels(inputs["pixel_values"])
        return inputs

    # ---- streaming data: its own resumable loader ---------------------------------------------------------------

    def get_train_dataloader(self):
        """Trainer's loader, except for a stream ([`StreamingImages`]): a `StatefulDataLoader` whose position is saved
        with each checkpoint, so a resumed run continues at the same sample instead of re-reading the epoch. It is
        not handed to accelerate: the stream already deals its shards to the processes."""
        if not isinstance(self.train_dataset, StreamingImages):
            return super().get_train_dataloader()
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
        except ImportError as error:
            raise InputError("Streaming training data needs torchdata: pip install 'pmg_aft[streaming]'.") from error
        args, workers = self.args, self.args.dataloader_num_workers
        self.stream_loader = StatefulDataLoader(
            self.train_dataset, batch_size=self._train_batch_size, collate_fn=self.data_collator, num_workers=workers,
            pin_memory=args.dataloader_pin_memory, drop_last=args.dataloader_drop_last,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            persistent_workers=args.dataloader_persistent_workers if workers else False,
            # Its own generator: making the iterator draws a base seed, which from the global generator would shift
            # the attack's random starts after a resume (the checkpoint's RNG state is restored before that draw).
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
        return self.stream_loader

    # The stream's position is saved and restored with the RNG states: Trainer saves and restores them at exactly the
    # points a resumable position must be (per process, in the checkpoint, before the first batch of a resumed run),
    # and has no public hook there (transformers 5.25). The file is `stream_state_file(args)` in the checkpoint.
    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if getattr(self, "stream_loader", None) is not None:  # every process: its own position in the stream
            torch.save(self.stream_loader.state_dict(), os.path.join(output_dir, stream_state_file(self.args)))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None or getattr(self, "stream_loader", None) is None:
            return
        path = os.path.join(checkpoint, stream_state_file(self.args))
        if not os.path.isfile(path):
            raise InputError(
                f"{checkpoint} has no {os.path.basename(path)}: it was not saved by a streaming run with "
                f"{self.args.world_size} process(es), so the stream cannot resume where it stopped."
            )
        self.stream_loader.load_state_dict(torch.load(path, weights_only=True))

    @property
    def resize_size(self) -> int | None:
        """The shorter side before the centre crop on the device paths (`None`: native resolution, no resize)."""
        return None if self.args.native_resolution else round(self.image_size / self.args.crop_pct)

    def prepare_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] at the model's size: uint8 batches ([`DecodedImages`]) are resized and cropped where they
        are ([`preprocess_on_device`]); float batches, finished by the host collator, pass through."""
        if pixels.dtype != torch.uint8:
            return pixels
        return preprocess_on_device(pixels, self.image_size, self.resize_size)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        raise NotImplementedError(f"{type(self).__name__} must define compute_loss.")

    @torch.no_grad()
    def log_metric(self, name: str, value: torch.Tensor) -> None:
        """Record a per-step value; `log` adds its mean over steps and processes to the training logs."""
        self._metrics[name].append(value.detach().float())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss terms and training accuracies (over steps and processes) to the training logs; a
        non-finite training loss stops the run ([`check_finite_loss`])."""
        check_finite_loss(logs, self.state.global_step, self.args)
        if "loss" in logs and self._metrics:
            names = list(self._metrics)
            values = torch.stack([torch.stack(self._metrics[n]).mean() for n in names])
            values = self.accelerator.reduce(values, reduction="mean")
            logs.update({n: round(v, 6) for n, v in zip(names, values.tolist())})
            self._metrics.clear()
        super().log(logs, start_time)

    # ---- evaluation ------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"):
        """Clean and PGD robust zero-shot top-1 accuracy on each eval set, through the evaluation engine.

        The attack is `eval_attack_grid` (PGD with `eval_eps`, `eval_step_size`, `eval_attack_steps`, each sample's
        first success kept, random starts seeded with `seed`) on the training head (logit scale, normalisation): the
        `trainer` protocol. It runs in float32 unless `eval_mixed_precision`. For one dataset the metrics are
        `{prefix}_clean_accuracy`, `..._robust_accuracy` and `..._samples`; for a dict they are `{prefix}_{name}_...`
        per dataset, and `{prefix}_clean_accuracy` / `{prefix}_robust_accuracy` are the means over datasets. The
        results are kept as a [`Report`] in `self.report` (and `self.reports`).
        """
        args = self.args
        sets, single = self._eval_sets(eval_dataset if eval_dataset is not None else self.eval_dataset)
        precision = (self.accelerator.mixed_precision or "no") if args.eval_mixed_precision else "no"
        loader = self._eval_loader()
        settings, model, start = self.eval_settings, self.unwrapped(), time.time()
        was_training = model.training
        model.eval()
        try:
            results = {
                name: evaluate_dataset(
                    self.classifier(eval_set.class_names, templates=eval_set.templates),
                    eval_set,
                    settings=settings,
                    accelerator=self.accelerator,
                    loader=loader,
                    precision=precision,
                    seed=args.seed,
                )  # fmt: skip
                for name, eval_set in sets.items()
            }
        finally:
            model.train(was_training)
        self.report = trainer_report(results, args, model, precision, self.eval_attack_grid, settings)
        self.report.model_digest = self.saved_weights_digest()  # a push pairs the report with the saved weights
        self.reports.append(self.report)
        self.report_steps.append(self.state.global_step)
        metrics = eval_metrics(self.report, single, metric_key_prefix, time.time() - start)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _eval_sets(self, data) -> tuple[dict, bool]:
        """The eval sets `data` names ([`eval_sets`]), read and prompted as this run's."""
        defaults = dict(class_names=self.class_names, **self.args.eval_set_defaults())
        return eval_sets(data, self.eval_dataset, defaults)

    def _eval_loader(self) -> EvalLoader:
        args = self.args
        return EvalLoader(batch_size=args.eval_batch_size, num_workers=args.dataloader_num_workers,
                          pin_memory=args.dataloader_pin_memory)  # fmt: skip

    def predict(self, test_dataset, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test"):
        """[`evaluate`] on one dataset under the `test` prefix, with each sample's clean zero-shot logits (on the
        same head, in the dataset's order) and label: `predictions.argmax(-1) == label_ids` averages to the
        metrics' clean accuracy, so `predict` and `evaluate` never disagree.

        Returns:
            `transformers.trainer_utils.PredictionOutput`: `predictions` `(samples, classes)`, `label_ids`
            `(samples,)`, `metrics` (evaluate()'s, `test_` prefixed).
        """
        sets, single = self._eval_sets(test_dataset)
        if not single:
            raise InputError("predict() takes one dataset (its predictions are one array); evaluate() takes a dict.")
        metrics = self.evaluate(test_dataset, ignore_keys, metric_key_prefix)
        eval_set = next(iter(sets.values()))
        classifier = self.classifier(eval_set.class_names, templates=eval_set.templates)
        loader = self._eval_loader()
        rows = []
        model = self.unwrapped()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in loader.loader(eval_set, classifier.image_size, self.accelerator):
                    logits = classifier(batch["pixel_values"]).float()
                    row = torch.cat([batch["indices"][:, None].float(), batch["labels"][:, None].float(), logits], 1)
                    rows.append(self.accelerator.gather_for_metrics(row))
        finally:
            model.train(was_training)
        table = torch.cat(rows).cpu()
        table = table[table[:, 0].argsort()]  # the dataset's order, whatever the sharding
        return PredictionOutput(predictions=table[:, 2:].numpy(), label_ids=table[:, 1].long().numpy(),
                                metrics=metrics)  # fmt: skip

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool, ignore_keys: list[str] | None = None):
        """`(None, clean zero-shot logits on the training head, labels)` for one batch, as [`predict`] computes them
        (no loss: a method's loss needs its attack, which prediction does not run)."""
        inputs = self._prepare_inputs(inputs)
        if prediction_loss_only:
            return None, None, None
        with torch.no_grad():
            logits = self.classifier()(inputs["pixel_values"])
        return None, logits, inputs.get("labels")
