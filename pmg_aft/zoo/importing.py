"""`pmg-aft zoo import`: a published checkpoint to a plain `CLIPModel` folder, checked, credited and traceable.

The folder holds the weights (safetensors), a `CLIPProcessor` with the normalisation the model was trained with,
`pmg_aft_zoo.json` (the zoo record, the source file's sha256, the reader, the check's result) and a model card that
credits the authors and states their licence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from huggingface_hub import ModelCard
from transformers import CLIPModel, CLIPProcessor

from ..cards import build_model_card
from ..checkpoints import load_clip
from ..constants import IMAGE_STATS, __version__
from ..convert import convert_openai_checkpoint, openai_to_hf
from ..errors import DownloadError, InputError
from .architecture import check_image_tower, clip_config_from_open_clip
from .formats import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, Source, read_checkpoint
from .registry import ZooEntry

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "pmg_aft_zoo.json"
DEFAULT_TOKENIZER = "openai/clip-vit-base-patch32"
HUB_LICENCES = {"MIT": "mit", "Apache-2.0": "apache-2.0"}  # any other statement: `other`, spelled out in the card


def sha256(path: str) -> str:
    """The sha256 of a file, or of a folder's files in name order (name and content)."""
    digest = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(os.path.join(path, n) for n in os.listdir(path))
    for name in files:
        if os.path.isdir(name):
            continue
        if len(files) > 1:
            digest.update(os.path.basename(name).encode())
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fetch_source(entry: ZooEntry) -> str:
    """Download a Hub release into the Hugging Face cache and return its path (a folder for open_clip releases)."""
    if not entry.downloadable:
        where = entry.source.get("url") or "nowhere public yet"
        raise InputError(
            f"{entry.name} is not on the Hub ({where}): download it by hand, then pass the file with --file PATH."
        )
    from huggingface_hub import hf_hub_download, snapshot_download

    repo, file = entry.source["repo"], entry.source.get("file")
    try:
        if entry.format == "open_clip":
            return snapshot_download(repo, allow_patterns=[OPEN_CLIP_CONFIG, *OPEN_CLIP_WEIGHTS])
        if entry.format == "hf_clip":
            return repo
        return hf_hub_download(repo, file)
    except Exception as error:  # network, gating, a renamed file: the user can act on each, not a bug
        raise DownloadError(
            f"{entry.name}: cannot download {entry.location} ({type(error).__name__}: {str(error)[:200]}); on an "
            "offline machine download the file elsewhere and pass it with --file PATH."
        ) from error


def build_model(
    source: Source, base_model: str | None, hidden_act: str | None, what: str
) -> tuple[CLIPModel, CLIPProcessor | None]:
    """A `CLIPModel` from a whole open_clip CLIP (its config; no processor: open_clip folders carry no tokenizer), or
    an image tower merged into `base_model` (with the base's processor)."""
    if source.full:
        model = CLIPModel(clip_config_from_open_clip(source.model_cfg or {}, hidden_act))
        state = openai_to_hf(source.state)
        target = model.state_dict()
        missing = sorted(k for k in target if k not in state and "position_ids" not in k)
        wrong = sorted(k for k in state if k in target and state[k].shape != target[k].shape)
        if missing or wrong:
            raise InputError(
                f"{what}: the weights do not fit their own open_clip config: {len(missing)} tensors missing "
                f"({missing[:3]}), {len(wrong)} of another shape ({wrong[:3]})."
            )
        model.load_state_dict(state, strict=False)
        return model, None
    if base_model is None:
        raise InputError(f"{what}: an image tower alone needs --base_model (the CLIP it was fine-tuned from).")
    base, processor = load_clip(base_model)
    return convert_openai_checkpoint(dict(source.state), base), processor


def image_processor_stats(entry: ZooEntry | None, source: Source | None, normalization: str | None):
    """The mean/std the model was trained with: the flag, the zoo record, the release's preprocess_cfg."""
    choice = normalization or (entry.normalization if entry else None)
    if choice:
        if choice not in IMAGE_STATS:
            raise InputError(f"normalization {choice!r}: one of {list(IMAGE_STATS)}.")
        return IMAGE_STATS[choice], choice
    if source and source.preprocess_cfg and "mean" in source.preprocess_cfg:
        return (
            tuple(source.preprocess_cfg["mean"]),
            tuple(source.preprocess_cfg["std"]),
        ), "the release's preprocess_cfg"
    return IMAGE_STATS["clip"], "clip (not stated by the release)"


def import_checkpoint(
    output_dir: str,
    entry: ZooEntry | None = None,
    file: str | None = None,
    layout: str | None = None,
    base_model: str | None = None,
    tokenizer_from: str | None = None,
    normalization: str | None = None,
) -> tuple[CLIPModel, CLIPProcessor, dict]:
    r"""Convert a published checkpoint to a `CLIPModel` folder, after checking the conversion.

    Args:
        output_dir (`str`): the folder to write (weights, processor, `pmg_aft_zoo.json`, `README.md`).
        entry ([`ZooEntry`], *optional*): the zoo record (its format, base model, normalisation, credits).
        file (`str`, *optional*): the downloaded file (or open_clip folder); default: download a Hub release.
        layout (`str`, *optional*): the format, for a file without a zoo record (`formats.READERS` or `hf_clip`).
        base_model (`str`, *optional*): the CLIP an image tower is merged into (default: the record's).
        tokenizer_from (`str`, *optional*): where a whole open_clip CLIP takes its tokenizer (default: the base).
        normalization (`str`, *optional*): `clip` or `imagenet`, overriding the record.

    Returns:
        `(model, processor, provenance)`.

    Raises:
        [`InputError`]: a file of another layout, weights that do not cover the architecture, or converted
            embeddings that differ from the source architecture's; nothing is written then.
    """
    layout = layout or (entry.format if entry else None)
    if layout is None:
        raise InputError("Pass a zoo name or --format for a file without a zoo record (pmg-aft zoo list).")
    what = entry.name if entry else (file or "checkpoint")
    path = file or fetch_source(entry)
    base_model = base_model or (entry.base_model if entry else None)
    source, check = None, None
    if layout == "hf_clip":
        model, processor = load_clip(path)
    else:
        source = read_checkpoint(path, layout)
        model, processor = build_model(source, base_model, entry.hidden_act if entry else None, what)
        check = check_image_tower(model, source.state, what)
        if processor is None:
            # open_clip's ViT CLIPs all tokenize with OpenAI's BPE (49408 tokens): a release without a base takes it
            processor = CLIPProcessor.from_pretrained(tokenizer_from or base_model or DEFAULT_TOKENIZER)
    image_processor = processor.image_processor
    if layout == "hf_clip" and not (normalization or (entry and entry.normalization)):
        stats_from = "the release's own processor"
    else:
        (mean, std), stats_from = image_processor_stats(entry, source, normalization)
        size = model.config.vision_config.image_size
        image_processor.image_mean, image_processor.image_std = list(mean), list(std)
        image_processor.size, image_processor.crop_size = {"shortest_edge": size}, {"height": size, "width": size}
    provenance = {
        "zoo_entry": entry.to_dict() if entry else None,
        "source_file": os.path.basename(os.path.normpath(path)) if os.path.exists(path) else path,
        "source_sha256": sha256(path) if os.path.exists(path) else None,
        "format": layout,
        "base_model": None if source is not None and source.full else base_model,
        "normalization": stats_from,
        "image_embedding_check": None if check is None else {
            "reference": "an independent forward of the OpenAI-layout image tower on a fixed batch",
            "max_relative_difference": check,
        },
        "pmg_aft_version": __version__,
    }  # fmt: skip
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)  # safetensors
    processor.save_pretrained(output_dir)
    with open(os.path.join(output_dir, PROVENANCE_FILE), "w", encoding="utf-8") as f:
        json.dump(provenance, f, indent=2)
    import_card(provenance, os.path.basename(os.path.normpath(output_dir))).save(os.path.join(output_dir, "README.md"))
    return model, processor, provenance


def read_provenance(model_dir: str) -> dict:
    """What `import_checkpoint` recorded beside a model (`{}` for any other folder)."""
    path = os.path.join(model_dir, PROVENANCE_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def import_card(provenance: dict, repo_id: str) -> ModelCard:
    """The model card of an imported checkpoint: the authors' work credited, their licence as they state it, and
    where the weights came from (file and sha256)."""
    entry = provenance.get("zoo_entry") or {}
    licence = entry.get("licence", "none stated")
    card = build_model_card(repo_id, base_model=provenance.get("base_model") or entry.get("base_model"),
                            license=HUB_LICENCES.get(licence, "other"))  # fmt: skip
    paper = entry.get("paper") or {}
    title = paper.get("title") or "the authors' paper"
    arxiv = f" (arXiv:{paper['arxiv']})" if paper.get("arxiv") else ""
    lines = [
        "## Credits and provenance",
        "",
        f"These weights are the work of the authors of {entry.get('method', 'the release')}: *{title}*"
        f"{', ' + paper['venue'] if paper.get('venue') else ''}{arxiv}, released by {entry.get('released_by', '?')}. "
        "pmg_aft only converted them to the `transformers` layout; cite the authors, not pmg_aft.",
        "",
        f"- Licence as stated by the authors: **{licence}**.",
        f"- Source: {entry.get('source', {}).get('url') or entry.get('source', {}).get('repo') or 'a local file'}"
        f", file `{provenance['source_file']}`, sha256 `{provenance['source_sha256']}`.",
        f"- Format read: `{provenance['format']}` (with `weights_only=True` or safetensors); image-tower base: "
        f"`{provenance.get('base_model') or 'the release itself'}`; normalisation: {provenance['normalization']}.",
    ]
    if provenance.get("image_embedding_check"):
        check = provenance["image_embedding_check"]
        lines.append(f"- Checked: image embeddings equal {check['reference']} (largest relative difference "
                     f"{check['max_relative_difference']:.1e}).")  # fmt: skip
    if entry.get("train_eps") or entry.get("training_data"):
        lines.append(f"- Trained on {entry.get('training_data') or '?'} at eps {entry.get('train_eps') or '?'} "
                     "(as its authors report).")  # fmt: skip
    if entry.get("verified", {}).get("unverified"):
        lines.append(f"- Not verified against the authors' code: {entry['verified']['unverified']}")
    return ModelCard(str(card).rstrip() + "\n\n" + "\n".join(lines) + "\n")
