"""Model cards with robust-accuracy tables, and publishing checkpoints to the Hugging Face Hub.

A card names the method that trained the checkpoint, from the trainer's [`MethodInfo`] (saved beside the weights in
`pmg_aft.json`), and cites that method's paper only. A checkpoint without it (a converted or third-party one) gets a
card that claims no training method.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token

from .constants import RUN_INFO_FILE
from .evaluation.report import Report

BASE_TAGS = ["clip", "zero-shot-image-classification"]
# What a checkpoint folder may publish: weights as safetensors, configs, processor and tokenizer files.
PUBLISHED = (".safetensors", ".json", ".txt", ".model", ".md", ".png")
NEVER = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class Paper:
    """A method's paper, as its model card cites it."""

    title: str
    authors: str
    venue: str
    arxiv_id: str
    bibtex: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def short(self) -> str:
        """`Wang et al., CVPR 2024`."""
        first = self.authors.split(",")[0].split(" and ")[0].strip().split()[-1]
        return f"{first} et al., {self.venue}"


@dataclass(frozen=True)
class MethodInfo:
    """What a trainer declares about its method for cards and Hub commits.

    Args:
        key (`str`): the `--method` name (`pmg_aft`, `tecoa`, ...).
        name (`str`): the display name (`PMG-AFT`).
        description (`str`): what training did, completing "fine-tuned ... with {name}, ...".
        paper (`Paper`, *optional*): the method's paper; `None` for plain fine-tuning.
        tags (`tuple[str, ...]`): Hub tags beside the base ones.
    """

    key: str
    name: str
    description: str
    paper: Paper | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def commit_message(self) -> str:
        return f"{self.name} fine-tuned CLIP (pmg_aft)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MethodInfo:
        paper = values.get("paper")
        return cls(**{**values, "paper": Paper(**paper) if paper else None, "tags": tuple(values.get("tags", ()))})


def eval_results(report: Report) -> list[EvalResult]:
    """`model-index` entries: clean and robust accuracy (in %) per dataset, named with the protocol, the logit scale
    (which changes what an attack sees) and the attack settings."""
    results = []
    head = f"{report.protocol} protocol, logit scale {report.logit_scale:g}"
    head += f", overridden: {' '.join(report.overrides)}" if report.overrides else ""
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
                metric_name=f"clean accuracy ({head})",
                metric_value=round(100 * result["clean_accuracy"], 2),
                **common,
            )  # fmt: skip
        )
        for setting in report.settings:
            results.append(
                EvalResult(
                    metric_type="accuracy",
                    metric_name=f"robust accuracy ({setting.key}, {setting.norm}, {head})",
                    metric_value=round(100 * result["robust_accuracy"][setting.key], 2),
                    metric_config=setting.key,
                    **common,
                )
            )
        if "worst_case_accuracy" in result and report.settings:
            attacks = " + ".join(report.attack_keys)
            results.append(
                EvalResult(
                    metric_type="accuracy",
                    metric_name=f"worst-case robust accuracy (per sample over {attacks} and every iterate, {head})",
                    metric_value=round(100 * result["worst_case_accuracy"], 2),
                    metric_config="worst-case",
                    **common,
                )
            )
    return results


def build_model_card(
    repo_id: str,
    report: Report | None = None,
    base_model: str | None = None,
    recipe: dict | None = None,
    train_dataset: str | None = None,
    license: str = "mit",
    plots: list[str] | tuple[str, ...] = (),
    method: MethodInfo | None = None,
) -> ModelCard:
    """A model card for a (robust) CLIP checkpoint.

    Args:
        repo_id (`str`): the Hub repository, e.g. `org/pmg-aft-vitb32`.
        report (`Report`, *optional*): evaluation results for the `model-index` and the table.
        base_model (`str`, *optional*): the checkpoint it was fine-tuned from.
        recipe (`dict`, *optional*): the training settings worth a row each (the trainer's `recipe()`).
        train_dataset (`str`, *optional*): the training dataset's Hub id.
        license (`str`): the licence of the weights (OpenAI CLIP's is MIT).
        plots (`Sequence[str]`): image files shipped beside the card (shown in it).
        method (`MethodInfo`, *optional*): the training method; its name, description, tags and paper go in the
            card. Without it the card claims no training method.
    """
    data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        base_model=base_model,
        datasets=[train_dataset] if train_dataset else None,
        tags=BASE_TAGS + list(method.tags if method else ()),
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(report) if report and report.results else None,
    )
    sections = [f"# {repo_id.split('/')[-1]}", _summary(method, base_model), _usage(repo_id)]
    if report and report.results:
        sections.append("## Zero-shot accuracy\n\n" + _evaluation_text(report) + "\n\n" + report.to_markdown())
        sections += [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
        if report.warnings:
            sections.append("Sanity warnings from the evaluation:\n\n" + "\n".join(f"- {w}" for w in report.warnings))
    if recipe:
        rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in recipe.items())
        sections.append("## Training recipe\n\n| setting | value |\n|---|---|\n" + rows)
    if method and method.paper:
        paper = method.paper
        sections.append(
            f"## Citation\n\n{method.name}: [{paper.title}]({paper.url}), {paper.authors}, {paper.venue}.\n\n"
            f"```bibtex\n{paper.bibtex}\n```"
        )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def _summary(method: MethodInfo | None, base_model: str | None) -> str:
    base = f" from [`{base_model}`](https://huggingface.co/{base_model})" if base_model else ""
    plain = "It is a plain `CLIPModel`: no custom code is needed."
    if method is None:
        return f"A CLIP model{base}, evaluated with the `pmg_aft` toolkit. {plain}"
    cite = f" ([{method.paper.short}]({method.paper.url}))" if method.paper else ""
    return (
        f"A CLIP model whose image encoder was fine-tuned{base} with {method.name}{cite} using the `pmg_aft` "
        f"toolkit: {method.description} The text tower is unchanged. {plain}"
    )


def _usage(repo_id: str) -> str:
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
    caps = {r.get("max_eval_samples") for r in report.results.values()} | {report.max_eval_samples}
    caps.discard(None)
    if not caps:
        limit = "on full test sets"
    elif len(caps) == 1:
        limit = f"on the first {caps.pop()} test samples of each dataset (at most)"
    else:
        limit = "on the first samples of each dataset, as many as the table's `samples` column says"
    comparable = {
        "pmg_aft": " The `pmg_aft` protocol is the official PMG-AFT evaluation; its figures compare with that "
        "paper's tables, not with `tga_zsr` or `clip_benchmark` (RobustBench/FARE) ones.",
        "tga_zsr": " The `tga_zsr` protocol is the TGA-ZSR paper's re-run of all methods; its figures compare with "
        "that paper's tables only.",
        "clip_benchmark": " The `clip_benchmark` protocol is the RobustBench/FARE evaluation; its figures cannot be "
        "compared with `pmg_aft` or `tga_zsr` ones.",
        "trainer": " The `trainer` protocol is the fine-tuning run's own evaluation (its head, each eval set's "
        "prompts); use `pmg-aft eval` for figures comparable with the papers'.",
        "paper": " The `paper` protocol is pmg_aft 0.1's (one prompt per dataset, s = 1, PGD from the image with "
        "the first success kept); its figures compare with no paper's.",
    }.get(report.protocol, "")
    overridden = (
        f" The protocol's {', '.join(report.overrides)} were overridden, so these are not the named protocol's "
        "figures." if report.overrides else ""
    )  # fmt: skip
    return (
        f"Top-1 accuracy (%) {limit}, logit scale {report.logit_scale:g}, normalisation mean {report.image_mean} / "
        f"std {report.image_std}.{comparable}{overridden} Evaluated with pmg_aft {report.pmg_aft_version} on "
        f"{report.created}."
    )


def push(
    model_dir: str,
    repo_id: str,
    report_dir: str | None = None,
    private: bool = False,
    base_model: str | None = None,
    license: str = "mit",
    commit_message: str | None = None,
    method: MethodInfo | None = None,
    recipe: dict | None = None,
) -> str:
    """Upload a checkpoint folder (safetensors weights, configs, processor), its model card and plots.

    The card is built in a staging folder: the checkpoint folder is never modified, so a failed upload loses
    nothing and the same command can simply be run again. The token comes from the environment (`HF_TOKEN`) or
    `hf auth login`, never from an argument, and is never printed. The method, recipe, base model and training
    data come from the folder's `pmg_aft.json`, written by the trainers' `save_model` (`method` and `recipe`
    override it, e.g. for checkpoints of earlier releases).

    Returns:
        `str`: the URL of the uploaded commit.
    """
    if not os.path.isdir(model_dir) or not any(f.endswith(".safetensors") for f in os.listdir(model_dir)):
        raise FileNotFoundError(f"{model_dir} has no .safetensors weights; save the model with save_pretrained first.")
    report = Report.load(report_dir) if report_dir else None
    card, method = checkpoint_card(model_dir, repo_id, report, report_dir, base_model, license, method, recipe)
    message = commit_message or (method.commit_message if method else "Upload CLIP checkpoint (pmg_aft)")
    return upload_checkpoint(repo_id, model_dir, message, card=card, report_dir=report_dir, private=private)


def checkpoint_card(
    model_dir: str,
    repo_id: str,
    report: Report | None = None,
    report_dir: str | None = None,
    base_model: str | None = None,
    license: str = "mit",
    method: MethodInfo | None = None,
    recipe: dict | None = None,
) -> tuple[ModelCard, MethodInfo | None]:
    """The model card of a checkpoint folder with `report` (and the plots in `report_dir`), as [`push`] uploads it,
    and the method it names. The method, recipe, base model and training data come from the folder's
    `pmg_aft.json`; `method`, `recipe` and `base_model` override it."""
    info = read_run_info(model_dir)
    method = method or (MethodInfo.from_dict(info["method"]) if info.get("method") else None)
    plots = [
        n for n in REPORT_FILES if n.endswith(".png") and report_dir and os.path.exists(os.path.join(report_dir, n))
    ]
    card = build_model_card(repo_id, report, base_model or info.get("base_model"), recipe or info.get("recipe"),
                            info.get("train_dataset"), license=license, plots=plots, method=method)  # fmt: skip
    return card, method


REPORT_FILES = ("accuracy.png", "accuracy_vs_eps.png", "report.json", "report.md")


def stage(folder: str, staging: str, keep_card: bool = False) -> list[str]:
    """Copy what a checkpoint folder may publish into `staging`: safetensors weights, configs, processor and
    tokenizer files, never pickles (optimizer, scheduler, RNG states, `training_args.bin`)."""
    copied = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        publishable = name.endswith(PUBLISHED) and not name.endswith(NEVER) and (keep_card or name != "README.md")
        if os.path.isfile(path) and publishable:
            shutil.copy2(path, staging)
            copied.append(name)
    return copied


def upload_checkpoint(
    repo_id: str,
    folder: str,
    commit_message: str,
    card: ModelCard | None = None,
    report_dir: str | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload the publishable files of `folder` ([`stage`]), with `card` as README.md (else the folder's own) and
    the report files of `report_dir`, from a staging folder; return the commit URL. Blocks until done."""
    with tempfile.TemporaryDirectory() as staging:
        stage(folder, staging, keep_card=card is None)
        for name in REPORT_FILES if report_dir else ():
            if os.path.exists(os.path.join(report_dir, name)):
                shutil.copy2(os.path.join(report_dir, name), staging)
        if card is not None:
            card.save(os.path.join(staging, "README.md"))
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message,
                                       revision=revision)  # fmt: skip
        except Exception as error:
            raise RuntimeError(
                f"Uploading {folder} to {repo_id} failed: {type(error).__name__}: {_scrub(str(error))}. Nothing "
                "local was changed; check HF_TOKEN (write access) and the network, then run the same command again."
            ) from None
    return getattr(commit, "commit_url", str(commit))


def _scrub(text: str) -> str:
    """Remove the token from a message (some HTTP errors echo request headers)."""
    token = get_token()
    return text.replace(token, "***") if token else text


def read_run_info(model_dir: str) -> dict:
    """What a trainer recorded beside a checkpoint (`pmg_aft.json`: method, recipe, base model, training data, class
    names); `{}` for a folder without it."""
    path = os.path.join(model_dir, RUN_INFO_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
