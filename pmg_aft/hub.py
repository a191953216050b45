"""Model cards with robust-accuracy tables, and publishing checkpoints to the Hugging Face Hub."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .evaluation.report import Report

TAGS = ["clip", "adversarial-robustness", "adversarial-training", "pmg-aft", "zero-shot-image-classification"]
# What a checkpoint folder may publish: weights as safetensors, configs, processor and tokenizer files.
PUBLISHED = (".safetensors", ".json", ".txt", ".model", ".md", ".png")
NEVER = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def eval_results(report: Report) -> list[EvalResult]:
    """`model-index` entries: clean and robust accuracy (in %) per dataset, tagged with the attack settings."""
    results = []
    for name, result in report.results.items():
        common = dict(
            task_type="zero-shot-image-classification",
            dataset_type=result.get("hub_id") or name,
            dataset_name=name,
            dataset_split=result.get("split"),
            dataset_revision=result.get("revision"),
        )
        results.append(
            EvalResult(
                metric_type="accuracy",
                metric_name="clean accuracy",
                metric_value=round(100 * result["clean_accuracy"], 2),
                **common,
            )  # fmt: skip
        )
        for key, value in result["robust_accuracy"].items():
            results.append(
                EvalResult(
                    metric_type="accuracy",
                    metric_name=f"robust accuracy ({key}, {report.norm}, {report.protocol} protocol)",
                    metric_value=round(100 * value, 2),
                    metric_config=key,
                    **common,
                )
            )
    return results


def build_model_card(
    repo_id: str,
    report: Report | None = None,
    base_model: str | None = None,
    training: dict | None = None,
    train_dataset: str | None = None,
    license: str = "mit",
    plots: list[str] | tuple[str, ...] = (),
) -> ModelCard:
    """A model card for a robust CLIP checkpoint.

    Args:
        repo_id (`str`): the Hub repository, e.g. `org/pmg-aft-vitb32`.
        report (`Report`, *optional*): evaluation results for the `model-index` and the table.
        base_model (`str`, *optional*): the checkpoint it was fine-tuned from.
        training (`dict`, *optional*): the training arguments (`PMGAFTConfig.to_dict()`), for the recipe section.
        train_dataset (`str`, *optional*): the training dataset's Hub id.
        license (`str`): the licence of the weights (OpenAI CLIP's is MIT).
        plots (`Sequence[str]`): image files shipped beside the card (shown in it).
    """
    data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        base_model=base_model,
        datasets=[train_dataset] if train_dataset else None,
        tags=TAGS,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(report) if report and report.results else None,
    )
    sections = [f"# {repo_id.split('/')[-1]}", _summary(base_model, training)]
    sections.append(_usage(repo_id, training))
    if report and report.results:
        sections.append("## Robust zero-shot accuracy\n\n" + _evaluation_text(report) + "\n\n" + report.to_markdown())
        sections += [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
        if report.warnings:
            sections.append("Sanity warnings from the evaluation:\n\n" + "\n".join(f"- {w}" for w in report.warnings))
    if training:
        sections.append(_recipe(training))
    sections.append(CITATION)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def _summary(base_model: str | None, training: dict | None) -> str:
    method = "TeCoA" if training and training.get("alpha") == 0 and training.get("beta") == 0 else "PMG-AFT"
    base = f" from [`{base_model}`](https://huggingface.co/{base_model})" if base_model else ""
    return (
        f"A CLIP model whose image encoder was adversarially fine-tuned{base} with {method} "
        "(Wang et al., CVPR 2024) using the `pmg_aft` toolkit, for zero-shot "
        "classification that stays accurate under small adversarial perturbations. The text tower is unchanged. "
        "It is a plain `CLIPModel`: no custom code is needed."
    )


def _usage(repo_id: str, training: dict | None) -> str:
    return f"""## Usage

```python
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

model = CLIPModel.from_pretrained("{repo_id}")
processor = CLIPProcessor.from_pretrained("{repo_id}")  # normalises with the statistics used in training
image = Image.open("cat.jpg")
inputs = processor(text=["This is a photo of a cat", "This is a photo of a dog"], images=image,
                   return_tensors="pt", padding=True)
with torch.no_grad():
    probs = model(**inputs).logits_per_image.softmax(dim=-1)
```"""


def _evaluation_text(report: Report) -> str:
    attacks = ", ".join(s["key"] for s in report.settings)
    limit = f" on the first {report.max_samples} test samples of each" if report.max_samples else " on full test sets"
    return (
        f"Top-1 accuracy (%) under the `{report.protocol}` protocol (logit scale {report.logit_scale:g}), "
        f"{report.norm} attacks {attacks}{limit}. Keys read `attack-steps@eps`. Results of the TeCoA/PMG-AFT "
        "protocol and of the RobustBench/CLIP_benchmark one cannot be compared with each other. Evaluated with "
        f"pmg_aft {report.pmg_aft_version} on {report.created}."
    )


def _recipe(training: dict) -> str:
    keys = [
        "alpha", "beta", "kl_direction", "train_eps", "train_step_size", "train_steps", "attack_norm",
        "logit_scale", "image_mean", "image_std", "prompt_template", "optim", "optim_args", "learning_rate",
        "weight_decay", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "seed",
    ]  # fmt: skip
    rows = "\n".join(f"| `{k}` | `{training[k]}` |" for k in keys if k in training)
    return "## Training recipe\n\n| setting | value |\n|---|---|\n" + rows


CITATION = """## Citation

```bibtex
@inproceedings{wang2024pmgaft,
  title     = {Pre-trained Model Guided Fine-Tuning for Zero-Shot Adversarial Robustness},
  author    = {Wang, Sibo and Zhang, Jie and Yuan, Zheng and Shan, Shiguang},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}
```"""


def push(
    model_dir: str,
    repo_id: str,
    report_dir: str | None = None,
    private: bool = False,
    base_model: str | None = None,
    license: str = "mit",
    commit_message: str = "Upload robust CLIP checkpoint",
) -> str:
    """Upload a checkpoint folder (safetensors weights, configs, processor), its model card and plots.

    The card is built in a staging folder: the checkpoint folder is never modified, so a failed upload loses
    nothing and the same command can simply be run again. The token comes from the environment (`HF_TOKEN`) or
    `huggingface-cli login`, never from an argument, and is never printed.

    Returns:
        `str`: the URL of the uploaded commit.
    """
    if not os.path.isfile(os.path.join(model_dir, "model.safetensors")) and not any(
        f.endswith(".safetensors") for f in os.listdir(model_dir)
    ):
        raise FileNotFoundError(f"{model_dir} has no .safetensors weights; save the model with save_pretrained first.")
    report = Report.load(report_dir) if report_dir else None
    training = _read_json(os.path.join(model_dir, "training_args.json"))
    train_dataset = (_read_json(os.path.join(model_dir, "pmg_aft.json")) or {}).get("train_dataset")
    with tempfile.TemporaryDirectory() as staging:
        for name in sorted(os.listdir(model_dir)):
            path = os.path.join(model_dir, name)
            if os.path.isfile(path) and name.endswith(PUBLISHED) and not name.endswith(NEVER) and name != "README.md":
                shutil.copy2(path, staging)
        plots = []
        if report_dir:
            for name in ("accuracy.png", "accuracy_vs_eps.png", "report.json", "report.md"):
                if os.path.exists(os.path.join(report_dir, name)):
                    shutil.copy2(os.path.join(report_dir, name), staging)
                    plots += [name] if name.endswith(".png") else []
        base_model = base_model or _base_model(model_dir, training)
        card = build_model_card(repo_id, report, base_model, training, train_dataset, license=license, plots=plots)
        card.save(os.path.join(staging, "README.md"))
        api = HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message)
        except Exception as error:
            raise RuntimeError(
                f"Uploading {model_dir} to {repo_id} failed: {type(error).__name__}: {_scrub(str(error))}. Nothing "
                "local was changed; check HF_TOKEN (write access) and the network, then run the same command again."
            ) from None
    return getattr(commit, "commit_url", str(commit))


def _scrub(text: str) -> str:
    """Remove the token from a message (some HTTP errors echo request headers)."""
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "***") if token else text


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _base_model(model_dir: str, training: dict | None) -> str | None:
    """The checkpoint it was fine-tuned from, as `PMGAFTTrainer` records it in `pmg_aft.json`."""
    return (_read_json(os.path.join(model_dir, "pmg_aft.json")) or {}).get("base_model")
