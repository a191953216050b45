"""Publishing checkpoints to the Hugging Face Hub with their model card ([`cards`]) and report files.

Uploads go from a staging folder holding only what may be published (safetensors weights, configs, processor and
tokenizer files, the card and the report; never pickles), so a failed upload changes nothing locally.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from huggingface_hub import HfApi, ModelCard

from .cards import checkpoint_card
from .errors import MissingInputError, UploadError, scrub
from .evaluation.report import Report, ReportError
from .provenance import weights_digest

# What a checkpoint folder may publish: weights as safetensors, configs, processor and tokenizer files.
PUBLISHED = (".safetensors", ".json", ".txt", ".model", ".md", ".png")
NEVER = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def push(
    model_dir: str,
    repo_id: str,
    report_dir: str | None = None,
    private: bool = False,
    base_model: str | None = None,
    license: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a checkpoint folder (safetensors weights, configs, processor), its model card and plots.

    Everything is checked first: the weights load (whole, finite, the ones the folder's `pmg_aft.json` records),
    the report is one pmg_aft wrote (unchanged, every value possible) and measured these weights (its digest), and
    the licence is the weights' own ([`publish_licence`]: `license` may state one where none is recorded, never
    replace it). The card is built in a staging folder: the checkpoint folder is never modified, so a failed upload
    loses nothing and the same command can simply be run again. The token comes from the environment (`HF_TOKEN`) or
    `hf auth login`, never from an argument, and is never printed. The method, recipe, base model, training data and
    credits come from the folder's provenance.

    Returns:
        `str`: the URL of the uploaded commit.
    """
    from .checkpoints import load_clip  # the trainers import this module; the checks load models

    if not os.path.isdir(model_dir) or not any(f.endswith(".safetensors") for f in os.listdir(model_dir)):
        raise MissingInputError(f"{model_dir} has no .safetensors weights; save the model with save_pretrained first.")
    report = Report.load(report_dir) if report_dir else None  # before the model loads: a broken report is cheap
    digest = weights_digest(load_clip(model_dir)[0])
    if report is not None and report.model_digest != digest:
        raise ReportError(
            f"{report_dir} measured other weights (digest {report.model_digest}) than {model_dir} holds ({digest}): "
            f"a card may only carry the figures of its own weights. Run `pmg-aft eval --model_name_or_path "
            f"{model_dir}` and push with that report."
        )
    card, method = checkpoint_card(model_dir, repo_id, report, base_model, license, upload=True)
    message = commit_message or (method.commit_message if method else "Upload CLIP checkpoint (pmg_aft)")
    return upload_checkpoint(repo_id, model_dir, message, card=card, report=report, private=private)


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
    report: Report | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload the publishable files of `folder` ([`stage`]), with `card` as README.md (else the folder's own) and
    `report`'s files, written afresh from the checked report (its JSON, Markdown and plots: nothing edited by hand, no
    plot of another report), from a staging folder; return the commit URL. Blocks until done."""
    with tempfile.TemporaryDirectory() as staging:
        stage(folder, staging, keep_card=card is None)
        if report is not None:
            report.save(staging)
        if card is not None:
            card.save(os.path.join(staging, "README.md"))
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message,
                                       revision=revision)  # fmt: skip
        except Exception as error:
            raise UploadError(
                f"Uploading {folder} to {repo_id} failed: {type(error).__name__}: {_scrub(str(error))}. Nothing "
                "local was changed; check HF_TOKEN (write access) and the network, then run the same command again."
            ) from None
    return getattr(commit, "commit_url", str(commit))


def _scrub(text: str) -> str:
    """Remove the token from a message (some HTTP errors echo request headers)."""
    return scrub(text)
