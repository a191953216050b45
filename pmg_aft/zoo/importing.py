"""`pmg-aft zoo import`: a published checkpoint to a plain `CLIPModel` folder, checked, credited and traceable.

The folder holds the weights (safetensors), a `CLIPProcessor` with the normalisation the model was trained with,
`pmg_aft.json` (its provenance: the zoo record, licence and credits, the source file's sha256, the reader, the
check's result, the weights' digest) and a model card that credits the authors and states their licence.
"""

from __future__ import annotations

import hashlib
import logging
import os

from huggingface_hub import ModelCard
from transformers import CLIPModel, CLIPProcessor

from ..cards import build_model_card
from ..checkpoints import check_finite, check_processor, load_clip
from ..constants import IMAGE_STATS
from ..convert import convert_openai_checkpoint, openai_to_hf
from ..errors import DownloadError, InputError
from ..outputs import check_output_dir, staged_folder, write_text
from ..provenance import Licence, Provenance, claim_model_dir, weights_digest
from .architecture import check_image_tower, clip_config_from_open_clip
from .formats import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, Source, read_checkpoint
from .registry import ZooEntry

logger = logging.getLogger(__name__)

DEFAULT_TOKENIZER = "openai/clip-vit-base-patch32"


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
        extra = sorted(k for k in state if k not in target)
        if missing or wrong or extra:
            raise InputError(
                f"{what}: the weights do not fit their own open_clip config: {len(missing)} tensors missing "
                f"({missing[:3]}), {len(wrong)} of another shape ({wrong[:3]}), {len(extra)} it has no place for "
                f"({extra[:3]})."
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
    overwrite: bool = False,
) -> tuple[CLIPModel, CLIPProcessor, Provenance]:
    r"""Convert a published checkpoint to a `CLIPModel` folder, after checking the conversion.

    Args:
        output_dir (`str`): the folder to write (weights, processor, `pmg_aft.json`, `README.md`): empty, or holding
            an import of the same file (else refused unless `overwrite`).
        entry ([`ZooEntry`], *optional*): the zoo record (its format, base model, normalisation, licence, credits).
        file (`str`, *optional*): the downloaded file (or open_clip folder); default: download a Hub release.
        layout (`str`, *optional*): the format, for a file without a zoo record (`formats.READERS` or `hf_clip`).
        base_model (`str`, *optional*): the CLIP an image tower is merged into (default: the record's).
        tokenizer_from (`str`, *optional*): where a whole open_clip CLIP takes its tokenizer (default: the base).
        normalization (`str`, *optional*): `clip` or `imagenet`, overriding the record.
        overwrite (`bool`): replace whatever `output_dir` holds.

    Returns:
        `(model, processor, provenance)`: the [`Provenance`] written beside the weights (`imported` with a zoo
        record, whose licence and authors it carries; `converted` without one, whose licence is not known).

    Raises:
        [`InputError`]: a file of another layout, tensors a CLIPModel has no place for, weights that do not cover
            the architecture, or converted embeddings that differ from the source architecture's; nothing is
            written then.
    """
    layout = layout or (entry.format if entry else None)
    if layout is None:
        raise InputError("Pass a zoo name or --format for a file without a zoo record (pmg-aft zoo list).")
    what = entry.name if entry else (file or "checkpoint")
    base_model = base_model or (entry.base_model if entry else None)
    check_output_dir(output_dir, [file, _local(base_model), _local(tokenizer_from)])
    path = file or fetch_source(entry)
    digest = sha256(path) if os.path.exists(path) else None
    claim_model_dir(output_dir, lambda record: record.source_sha256 == digest and record.source_format == layout,
                    overwrite, f"an import of {os.path.basename(os.path.normpath(path))}")  # fmt: skip
    source, check = None, None
    if layout == "hf_clip":
        model, processor = load_clip(path)
    else:
        source = read_checkpoint(path, layout)
        model, processor = build_model(source, base_model, entry.hidden_act if entry else None, what)
        check = check_image_tower(model, source.state, what)
        if processor is None:
            # open_clip's ViT CLIPs all tokenize with OpenAI's BPE (49408 tokens): a release without a base takes it
            processor = CLIPProcessor.from_pretrained(tokenizer_from or base_model or DEFAULT_TOKENIZER,
                                                      trust_remote_code=False)  # fmt: skip
    image_processor = processor.image_processor
    if layout == "hf_clip" and not (normalization or (entry and entry.normalization)):
        stats_from = "the release's own processor"
    elif normalization == "base":
        stats_from = "the base model's processor"
    else:
        (mean, std), stats_from = image_processor_stats(entry, source, normalization)
        size = model.config.vision_config.image_size
        image_processor.image_mean, image_processor.image_std = list(mean), list(std)
        image_processor.size, image_processor.crop_size = {"shortest_edge": size}, {"height": size, "width": size}
    check_finite(model, what)
    check_processor(processor, what, model)
    licence, credits = source_licence(entry, path)
    provenance = Provenance(
        kind="imported" if entry else "converted",
        weights_digest=weights_digest(model),
        licence=licence,
        credits=credits,
        base_model=None if source is not None and source.full else base_model,
        source_file=os.path.basename(os.path.normpath(path)) if os.path.exists(path) else path,
        source_sha256=digest,
        source_format=layout,
        normalization=stats_from,
        image_embedding_check=None if check is None else {
            "reference": "an independent forward of the OpenAI-layout image tower on a fixed batch",
            "max_relative_difference": check,
        },
        zoo_entry=entry.to_dict() if entry else None,
    )  # fmt: skip
    with staged_folder(output_dir) as staging:
        model.save_pretrained(staging)  # safetensors
        processor.save_pretrained(staging)
        write_text(os.path.join(staging, "README.md"), str(import_card(provenance, os.path.basename(
            os.path.normpath(output_dir)))))  # fmt: skip
        provenance.save(staging)
    return model, processor, provenance


def source_licence(entry: ZooEntry | None, path: str) -> tuple[Licence, tuple[str, ...]]:
    """The licence and credits of what is imported: the zoo record's, else those a folder pmg_aft wrote records (an
    export read back), else unknown."""
    if entry is not None:
        return Licence.stated(entry.licence, f"the zoo record of {entry.name}"), entry_credits(entry)
    record = Provenance.load(path) if os.path.isdir(path) else None
    if record is not None:
        return record.licence, record.credits
    return Licence(None, None, f"{os.path.basename(os.path.normpath(path))} was converted without a zoo record"), ()


def _local(path: str | None) -> str | None:
    return path if path and os.path.exists(os.path.expanduser(path)) else None


def entry_credits(entry: ZooEntry) -> tuple[str, ...]:
    """Whom an imported release is credited to: its method's authors, as its record names them."""
    paper = entry.paper or {}
    where = f", {paper['venue']}" if paper.get("venue") else ""
    return (f"{entry.method}: {paper.get('title') or 'the authors paper'}{where}; released by {entry.released_by}",)


def read_provenance(model_dir: str) -> Provenance | None:
    """What `import_checkpoint` (or any pmg_aft command) recorded beside a model (`None` for any other folder)."""
    return Provenance.load(model_dir)


def import_card(provenance: Provenance, repo_id: str) -> ModelCard:
    """The model card of an imported (or converted) checkpoint: the authors' work credited, their licence as they
    state it, and where the weights came from (file and sha256)."""
    entry = provenance.zoo_entry or {}
    card = build_model_card(repo_id, base_model=provenance.base_model or entry.get("base_model"),
                            licence=provenance.licence, credits=provenance.credits)  # fmt: skip
    paper = entry.get("paper") or {}
    title = paper.get("title") or "the authors' paper"
    arxiv = f" (arXiv:{paper['arxiv']})" if paper.get("arxiv") else ""
    authors = (
        f"These weights are the work of the authors of {entry.get('method', 'the release')}: *{title}*"
        f"{', ' + paper['venue'] if paper.get('venue') else ''}{arxiv}, released by {entry.get('released_by', '?')}. "
        if entry
        else "These weights come from a checkpoint file without a zoo record: their authors and licence are not "
        "recorded here. "
    )
    lines = [
        "## Credits and provenance",
        "",
        authors + "pmg_aft only converted them to the `transformers` layout; cite the authors, not pmg_aft.",
        "",
        f"- Licence as stated by the authors: **{entry.get('licence', 'not known')}**.",
        f"- Source: {entry.get('source', {}).get('url') or entry.get('source', {}).get('repo') or 'a local file'}"
        f", file `{provenance.source_file}`, sha256 `{provenance.source_sha256}`.",
        f"- Format read: `{provenance.source_format}` (with `weights_only=True` or safetensors); image-tower base: "
        f"`{provenance.base_model or 'the release itself'}`; normalisation: {provenance.normalization}.",
    ]
    if provenance.image_embedding_check:
        check = provenance.image_embedding_check
        lines.append(f"- Checked: image embeddings equal {check['reference']} (largest relative difference "
                     f"{check['max_relative_difference']:.1e}).")  # fmt: skip
    if entry.get("train_eps") or entry.get("training_data"):
        lines.append(f"- Trained on {entry.get('training_data') or '?'} at eps {entry.get('train_eps') or '?'} "
                     "(as its authors report).")  # fmt: skip
    if entry.get("verified", {}).get("unverified"):
        lines.append(f"- Not verified against the authors' code: {entry['verified']['unverified']}")
    return ModelCard(str(card).rstrip() + "\n\n" + "\n".join(lines) + "\n")
