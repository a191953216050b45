"""What a trainer writes and publishes: safetensors checkpoints with their processor, training arguments (JSON) and
`pmg_aft.json`, the recipe a model card shows, the card itself, and uploads that never carry a pickle."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_utils import HubStrategy

from ..cards import build_model_card
from ..domains import field_concern
from ..errors import UploadError, scrub
from ..hub import upload_checkpoint
from ..outputs import write_text
from ..provenance import Provenance, publish_licence, state_digest
from .base_config import PIXEL_FIELDS, RobustCLIPConfig
from .guards import check_finite_state
from .lora import merged_copy, save_adapter

# Optimisation settings a model card's recipe table shows beside the method's own fields.
RECIPE_KEYS = ("optim", "optim_args", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps",
               "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
               "max_grad_norm", "bf16", "fp16", "seed")  # fmt: skip
# Fields that change how a run is watched, saved, evaluated or published, never the weights it makes: a resumed run
# may change them. Any other field that differs makes it another run (a field transformers adds later included).
RUN_CONTROL = frozenset({
    "output_dir", "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node",
    "logging_nan_inf_filter", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name", "project",
    "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "include_num_input_tokens_seen",
    "skip_memory_metrics", "do_train", "do_eval", "do_predict", "eval_strategy", "eval_steps", "eval_delay",
    "per_device_eval_batch_size", "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object",
    "eval_accumulation_steps", "include_for_metrics", "batch_eval_metrics", "prediction_loss_only", "eval_eps",
    "eval_step_size", "eval_attack_steps", "eval_mixed_precision", "bf16_full_eval", "fp16_full_eval",
    "save_only_model", "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "enable_jit_checkpoint",
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "resume_from_checkpoint",
    "ignore_data_skip", "restore_callback_states_from_checkpoint", "dataloader_pin_memory", "local_rank",
    "ddp_timeout", "torch_empty_cache_steps",
})  # fmt: skip


def recipe_of(config_class: type[RobustCLIPConfig], values: dict) -> dict:
    """The settings a model card shows for a run with these argument `values` (a config's JSON): the method's own
    fields, the shared attack/head/data fields, then the optimisation, without the fields the method does not use;
    pixel quantities as fractions of 255. Fields declared with a concern other than the recipe are left out (how the
    data is read; LoRA's unless the run used it)."""
    shown = {None, "peft"} if values.get("use_peft") else {None}
    concerns = {f.name for f in fields(config_class) if field_concern(config_class, f.name) not in shown}
    exclude = (*concerns, *config_class.unused_fields())
    inherited = {f.name for f in fields(TrainingArguments)}
    shared = [f.name for f in fields(RobustCLIPConfig) if f.name not in inherited]
    method = [f.name for f in fields(config_class) if f.name not in inherited and f.name not in shared]
    keys = [k for k in method + shared + list(RECIPE_KEYS) if k not in exclude]
    linf = values.get("attack_norm", "linf") == "linf"
    return {k: (f"{values[k] * 255:g}/255" if k in PIXEL_FIELDS and linf else values[k]) for k in keys if k in values}


def run_config(method: str, args: RobustCLIPConfig) -> dict:
    """The part of a run record the arguments alone give: the method and every config field but the
    [`RUN_CONTROL`] ones."""
    config = {k: v for k, v in json.loads(args.to_json_string()).items() if k not in RUN_CONTROL}
    return {"method": method, "config": config}


def save_checkpoint(output_dir: str, model, processor, args: RobustCLIPConfig, provenance: Provenance,
                    state_dict=None) -> None:  # fmt: skip
    """Save the full `CLIPModel` (safetensors), its processor, the training arguments as JSON (no pickle) and, last,
    its [`Provenance`] as `pmg_aft.json`: the method, recipe, run, base, licence and the weights' digest (what the
    card needs and the checkpoint cannot say; transformers does not save `_name_or_path`)."""
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=True)
    processor.save_pretrained(output_dir)
    write_text(os.path.join(output_dir, "training_args.json"), args.to_json_string())
    provenance.save(output_dir)


class SavingMixin:
    """What a [`RobustCLIPTrainer`] writes and publishes, overriding `Trainer`'s: `_save` (safetensors, JSON, never a
    pickle), `create_model_card`, `push_to_hub` and checkpoint pushes (from a staging folder of publishable files),
    and the evaluation report beside them."""

    def recipe(self) -> dict:
        """The settings a model card shows ([`recipe_of`]), without the fields the method does not use."""
        return recipe_of(type(self.args), json.loads(self.args.to_json_string()))

    def saved_weights_digest(self) -> str | None:
        """The digest of the weights as [`_save`] would write them now (merged under LoRA; gathered under FSDP or
        DeepSpeed, where every process takes part and the main one gets it)."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if self.lora_config is not None:
            return state_digest(merged_copy(model).state_dict())
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            state = self.accelerator.get_state_dict(self.model)
            return state_digest(state) if state else None
        return state_digest(model.state_dict())

    def run_record(self) -> dict:
        """What decides this run's weights, compared when it is resumed: the method and config ([`run_config`]), the
        data (`data_record`, set by the job), the class texts, the base weights' digest and the process count."""
        return {**run_config(self.method_info.key, self.args), "data": {**self.data_record, "rows": self.train_rows},
                "class_names": self.class_names, "base_digest": self.base_digest,
                "world_size": self.args.world_size}  # fmt: skip

    def provenance(self, digest: str) -> Provenance:
        """The [`Provenance`] of the weights with `digest` that this run saves."""
        return Provenance(kind="trained", weights_digest=digest, licence=self.base_licence,
                          credits=self.base_credits, base_model=self.base_name or None, base_digest=self.base_digest,
                          method=self.method_info, recipe=self.recipe(), run=self.run_record(),
                          train_dataset=self.train_dataset_id, class_names=self.class_names,
                          step=self.state.global_step)  # fmt: skip

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          license: str | None = None, finetuned_from: str | None = None,
                          dataset: str | list[str] | None = None, **kwargs: Any) -> None:  # fmt: skip
        """Write `README.md` in `output_dir`: the method and its paper, usage, the recipe, and the last evaluation's
        clean and robust accuracy in the `model-index`, so `push_to_hub` publishes a card with the table.

        Accepts the arguments `Trainer.push_to_hub` passes on (`license`, `finetuned_from`, `dataset` may be a list).
        """
        if not self.is_world_process_zero():
            return
        repo_id = (getattr(self, "hub_model_id", None) or self.args.hub_model_id or model_name
                   or os.path.basename(os.path.abspath(self.args.output_dir)))  # fmt: skip
        dataset = dataset[0] if isinstance(dataset, (list, tuple)) and dataset else dataset
        licence = publish_licence(self.base_licence, license, upload=False)
        card = build_model_card(repo_id, self.report, finetuned_from or self.base_model, self.recipe(),
                                dataset_name or dataset or self.train_dataset_id, licence=licence,
                                method=self.method_info, credits=self.base_credits)  # fmt: skip
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Trainer's, with a Hub that cannot be reached (offline, a token without rights) said in one line, scrubbed
        of the token, instead of a traceback from the trainer's construction."""
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as error:  # network, token, permissions: a condition the user can act on
            raise UploadError(
                f"creating the Hub repository {self.args.hub_model_id} failed: {type(error).__name__}: "
                f"{scrub(str(error))[:300]}. Check HF_TOKEN (write access) and the network, or train without "
                "--push_to_hub and use `pmg-aft push` afterwards."
            ) from None

    def push_to_hub(self, commit_message: str | None = None, blocking: bool = True, token: str | None = None,
                    revision: str | None = None, private: bool | None = None, **kwargs: Any):  # fmt: skip
        """Save the model, write the card, and upload what may be published (safetensors weights, configs, processor,
        card, the last evaluation's report files; never pickles) from a staging folder, committing as "{method}
        fine-tuned CLIP" unless a message is given. `kwargs` go to [`create_model_card`]. Always blocks."""
        # Not Trainer's push (no super()): it uploads the whole output folder, pickles included, without the checks.
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        kwargs.setdefault("model_name", self.hub_model_id.split("/")[-1])
        self.create_model_card(**kwargs)
        self.save_report()
        message = commit_message or self.method_info.commit_message
        token, revision = token or self.args.hub_token, revision or self.args.hub_revision
        return upload_checkpoint(self.hub_model_id, self.args.output_dir, message, report=self.report, token=token,
                                 revision=revision)  # fmt: skip

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Private hook (transformers 5.25): Trainer's version writes training_args.bin (a pickle) and uploads the
        # whole output folder; this one uploads what may be published, from a staging folder.
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
        """Save the checkpoint ([`save_checkpoint`]) with its provenance in `pmg_aft.json`; weights that are not
        finite are never saved ([`check_finite_state`])."""
        # Private hook: `save_model` and every checkpoint write the weights through it (transformers 5.25); the
        # public `save_model` is not called for checkpoints.
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.lora_config is not None:  # a plain CLIPModel users load without peft, and the adapter beside it
            model, state_dict = merged_copy(model), None
        state = state_dict if state_dict is not None else model.state_dict()
        check_finite_state(state, self.state.global_step, self.args)
        if self.lora_config is not None:
            save_adapter(self.accelerator.unwrap_model(self.model), self.lora_config, output_dir, self.base_model)
        save_checkpoint(output_dir, model, self.processing_class, self.args, self.provenance(state_digest(state)),
                        state_dict)  # fmt: skip
