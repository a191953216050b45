"""Model cards with robust-accuracy tables: the `model-index` from a [`Report`], the method and its paper from the
trainer's [`MethodInfo`] (saved beside the weights in `pmg_aft.json`). A checkpoint without it (a converted or
third-party one) gets a card that claims no training method."""

from __future__ import annotations

import os
from dataclasses import replace

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .data import SAMPLE_LISTS
from .evaluation.protocols import protocol_digest
from .evaluation.report import Report
from .methods import MethodInfo
from .provenance import Licence, Provenance, base_provenance, publish_licence

BASE_TAGS = ["clip", "zero-shot-image-classification"]


def eval_results(report: Report) -> list[EvalResult]:
    """`model-index` entries: clean and robust accuracy (in %) per dataset, named with the protocol, the logit scale
    (which changes what an attack sees) and the attack settings."""
    report.check_values("the report")  # a card never carries a value no evaluation gives
    results = []
    head = f"{report.protocol} protocol, logit scale {report.logit_scale:g}"
    # Which protocol ran, exactly, for `pmg-aft leaderboard --from_hub` to keep only like results.
    digest = protocol_digest(report.protocol_record) if report.protocol_record else None
    args = {"protocol": report.protocol, "overrides": list(report.overrides), "protocol_digest": digest}
    head += f", overridden: {' '.join(report.overrides)}" if report.overrides else ""
    for name, result in report.results.items():
        common = dict(
            task_type="zero-shot-image-classification",
            dataset_type=result.hub_id or name,
            dataset_name=name,
            dataset_split=result.split,
            dataset_revision=result.revision,
            metric_args=args,
        )
        results.append(
            EvalResult(
                metric_type="accuracy",
                metric_name=f"clean accuracy ({head})",
                metric_value=round(100 * result.clean_accuracy, 2),
                **common,
            )  # fmt: skip
        )
        for setting in report.settings:
            results.append(
                EvalResult(
                    metric_type="accuracy",
                    metric_name=f"robust accuracy ({setting.key}, {setting.norm}, {head})",
                    metric_value=round(100 * result.robust_accuracy[setting.key], 2),
                    metric_config=setting.key,
                    **common,
                )
            )
        if result.worst_case_accuracy is not None and report.settings:
            attacks = " + ".join(report.attack_keys)
            results.append(
                EvalResult(
                    metric_type="accuracy",
                    metric_name=f"worst-case robust accuracy (per sample over {attacks} and every iterate, {head})",
                    metric_value=round(100 * result.worst_case_accuracy, 2),
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
    licence: Licence | None = None,
    plots: list[str] | tuple[str, ...] = (),
    method: MethodInfo | None = None,
    credits: tuple[str, ...] | list[str] = (),
) -> ModelCard:
    """A model card for a (robust) CLIP checkpoint.

    Args:
        repo_id (`str`): the Hub repository, e.g. `org/pmg-aft-vitb32`.
        report (`Report`, *optional*): evaluation results for the `model-index` and the table.
        base_model (`str`, *optional*): the checkpoint it was fine-tuned from.
        recipe (`dict`, *optional*): the training settings worth a row each (the trainer's `recipe()`).
        train_dataset (`str`, *optional*): the training dataset's Hub id.
        licence ([`Licence`], *optional*): the weights' licence, from their provenance; `None` or an unknown one is
            written as `other`, "not stated" (never a default licence).
        plots (`Sequence[str]`): image files shipped beside the card (shown in it).
        method (`MethodInfo`, *optional*): the training method; its name, description, tags and paper go in the
            card. Without it the card claims no training method.
        credits (`Sequence[str]`): whom the weights are credited to (their provenance).
    """
    licence = licence or Licence(None, None, "no provenance")
    data = ModelCardData(
        license=licence.id or "other",
        license_name=licence.name or (None if licence.id else "not-stated"),
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
    sections.append(_licence_text(licence, credits))
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


def _licence_text(licence: Licence, credits) -> str:
    lines = ["## Licence and credits", "", f"Licence: {licence.describe()}."]
    if licence.id is None:
        lines[-1] += " Check the terms of the weights' owner before any use."
    lines += [f"Credit: {credit}." for credit in credits]
    return "\n".join(lines)


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
    overridden = (
        f" The protocol's {', '.join(report.overrides)} were overridden, so these are not the named protocol's "
        "figures." if report.overrides else ""
    )  # fmt: skip
    return (  # what the protocol is and compares with opens the table below ([`Report.description`])
        f"Top-1 accuracy (%) {samples_text(report)}, logit scale {report.logit_scale:g}, normalisation mean "
        f"{report.image_mean} / std {report.image_std}, precision {report.mixed_precision}"
        f"{report.numerics_text}.{overridden} Evaluated with pmg_aft "
        f"{report.pmg_aft_version} on {report.created}."
    )


def samples_text(report: Report) -> str:
    """How the evaluated samples of each dataset were chosen, exactly: all of them, the first N, or a seeded random
    sample of N."""
    listed = sorted({f"{name}: {SAMPLE_LISTS[r.sample_list]}" for name, r in report.results.items() if r.sample_list})
    if listed:  # a published list of samples for some datasets, the protocol's sample for the others
        rest = {k: r for k, r in report.results.items() if not r.sample_list}
        return (f"{samples_text(replace(report, results=rest))} ({'; '.join(listed)})" if rest
                else f"on published sample lists ({'; '.join(listed)})")  # fmt: skip
    ways = {(r.max_eval_samples, r.sample_seed) for r in report.results.values() if r.max_eval_samples is not None}
    if not ways:
        return "on full test sets"
    if len(ways) > 1:
        return "on subsets of some datasets, as the table's `samples` column says (report.json: each cap and seed)"
    cap, seed = ways.pop()
    if seed is None:
        return f"on the first {cap} test samples of each dataset (at most)"
    return f"on a random sample of {cap} test samples of each dataset (at most; seed {seed}, kept in dataset order)"


def checkpoint_card(
    model_dir: str,
    repo_id: str,
    report: Report | None = None,
    base_model: str | None = None,
    license: str | None = None,
    upload: bool = False,
) -> tuple[ModelCard, MethodInfo | None]:
    """The model card of a checkpoint folder with `report` (and the plots it makes), as [`push`] uploads it,
    and the method it names. The method, recipe, base model, training data, licence and credits come from the
    folder's provenance (`pmg_aft.json`; a folder without one claims no method and states no licence);
    `base_model` names the base where none is recorded, and `license` is checked against the recorded licence
    ([`publish_licence`]; for an `upload` a licence must be known)."""
    record = Provenance.load(model_dir)
    plots = report.plot_files() if report is not None else []
    recorded = record.licence if record else base_provenance(model_dir)[0]  # its own card's, where it states one
    licence = publish_licence(recorded, license, upload=upload)
    method = record.method if record else None
    base = base_model or (record.base_model if record else None)
    hub_base = base if base and base.count("/") == 1 and not os.path.exists(base) else None
    card = build_model_card(repo_id, report, hub_base, record.recipe if record else None,
                            record.train_dataset if record else None, licence=licence, plots=plots, method=method,
                            credits=record.credits if record else ())  # fmt: skip
    return card, method
