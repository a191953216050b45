"""Provenance bound to the weights: one typed record beside every model folder pmg_aft writes (`pmg_aft.json`), for
weights it trained, imported, converted or exported: which method and recipe made them, from which base, the
weights' digest, whose they are (licence and credits) and the source file's digest. Evaluation, model cards, push and
the leaderboard read it, and a folder whose weights are not the ones it records is refused.

The record is a dataclass; dicts exist only at the JSON edge ([`Provenance.to_dict`], [`Provenance.load`]).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields

from .constants import __version__
from .errors import InputError
from .methods import MethodInfo
from .outputs import refuse_foreign, write_json

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "pmg_aft.json"
KINDS = ("trained", "imported", "converted", "exported")
# The Hub's licence ids for the licences releases state (the zoo's words); any other statement is `other`.
HUB_LICENCES = {"MIT": "mit", "Apache-2.0": "apache-2.0", "CC-BY-4.0": "cc-by-4.0", "BSD-3-Clause": "bsd-3-clause"}
OPENAI_CLIP = "openai/clip-vit-"
TINY = "tiny"  # the embedded tiny default's name (pmg_aft.tiny)
OPENAI_CREDIT = (
    "OpenAI's CLIP (Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021)"
)


class ProvenanceError(InputError):
    """A provenance record that cannot be read, or weights that are not the ones it records."""


def state_digest(state_dict: dict) -> str:
    """A short hash of a state dict's tensors (names and float32 values), whatever their dtype or device."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def weights_digest(model) -> str:
    """The digest of a model's weights ([`state_digest`] of its state dict): results, cards and provenance name the
    weights by it."""
    return state_digest(model.state_dict())


@dataclass(frozen=True)
class Licence:
    """The licence of a set of weights, as its owner states it.

    Args:
        id (`str`, *optional*): the Hub's licence id (`mit`, `apache-2.0`, `cc-by-4.0`, or `other`); `None` where no
            licence is stated or could be read.
        name (`str`, *optional*): the owner's own words, for `other`.
        source (`str`): where it was read (a model card, the zoo record, the release), or why it is unknown.
    """

    id: str | None
    name: str | None = None
    source: str = ""

    @classmethod
    def stated(cls, words: str | None, source: str) -> Licence:
        """The licence a release states in words (`MIT`, `CC-BY-4.0`, `none stated`)."""
        if not words or words.strip().lower() in ("none stated", "none", "unknown"):
            return cls(None, None, f"{source} states no licence")
        hub = HUB_LICENCES.get(words.strip()) or (words.strip().lower() if words.strip().islower() else None)
        return cls(hub or "other", None if hub else words.strip(), source)

    def describe(self) -> str:
        if self.id is None:
            return f"not stated ({self.source})"
        return f"{self.name or self.id} ({self.source})"


@dataclass(frozen=True)
class Provenance:
    r"""Where a model folder's weights come from; `pmg_aft.json` beside them.

    Args:
        kind (`str`): `trained` (a pmg_aft fine-tune), `imported` (a published checkpoint), `converted` (a checkpoint
            file without a zoo record) or `exported` (an open_clip copy of a CLIPModel).
        weights_digest (`str`): [`weights_digest`] of the folder's `CLIPModel` weights.
        licence ([`Licence`]): the weights' licence: their base's, or the release's.
        credits (`tuple[str, ...]`): whom to credit for the weights (the base's authors, a release's authors).
        base_model (`str`, *optional*): the model they were fine-tuned or merged from (a Hub id or a folder).
        base_digest (`str`, *optional*): the base's weights digest.
        method ([`MethodInfo`], *optional*): the training method (`trained` only).
        recipe (`dict`): the settings a model card shows (`trained` only).
        run (`dict`): what decides a training run's numbers (the method, every config field that changes the maths,
            the data, the base and the process count), compared when a run is resumed.
        train_dataset (`str`, *optional*): the training data's Hub id.
        class_names (`list[str]`, *optional*): the training class texts.
        source_file (`str`, *optional*): the file a checkpoint was read from.
        source_sha256 (`str`, *optional*): that file's SHA-256.
        source_format (`str`, *optional*): its layout (a zoo format).
        normalization (`str`, *optional*): where the processor's mean/std come from (imports).
        image_embedding_check (`dict`, *optional*): how the conversion was checked.
        zoo_entry (`dict`, *optional*): the zoo record of an imported release.
        step (`int`, *optional*): the training step the weights were saved at (`trained` only).
        pmg_aft_version (`str`): the version that wrote it.
    """

    kind: str
    weights_digest: str
    licence: Licence
    credits: tuple[str, ...] = ()
    base_model: str | None = None
    base_digest: str | None = None
    method: MethodInfo | None = None
    recipe: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    train_dataset: str | None = None
    class_names: list[str] | None = None
    source_file: str | None = None
    source_sha256: str | None = None
    source_format: str | None = None
    normalization: str | None = None
    image_embedding_check: dict | None = None
    zoo_entry: dict | None = None
    step: int | None = None
    pmg_aft_version: str = __version__

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProvenanceError(f"provenance kind {self.kind!r} is not one of {KINDS}.")

    def to_dict(self) -> dict:
        return asdict(self) | {"credits": list(self.credits)}

    @classmethod
    def from_dict(cls, values: dict) -> Provenance:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ProvenanceError(f"unknown provenance fields {unknown}")
        method = values.get("method")
        return cls(**{**values, "licence": Licence(**values["licence"]), "credits": tuple(values.get("credits", ())),
                      "method": MethodInfo.from_dict(method) if method else None})  # fmt: skip

    def save(self, folder: str) -> str:
        """Write `pmg_aft.json` into `folder` (whole or not at all); return its path. Written last, after the
        weights, so a folder with a record is a finished one."""
        path = os.path.join(folder, PROVENANCE_FILE)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: str) -> Provenance | None:
        """The record beside the weights in `folder`, or `None` for a folder without one (not written by pmg_aft).

        Raises:
            [`ProvenanceError`]: naming the file, when it cannot be read (truncated, edited, of an earlier release).
        """
        path = os.path.join(folder, PROVENANCE_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise ProvenanceError(
                f"{path} cannot be read as pmg_aft provenance ({type(error).__name__}: {str(error)[:160]}): it may be "
                "truncated or edited; re-create the folder with the command that made it."
            ) from error

    def check_weights(self, digest: str, folder: str) -> None:
        """Raise unless `digest` (of the weights found in `folder`) is the one this record was written for."""
        if digest != self.weights_digest:
            raise ProvenanceError(
                f"{folder}: its weights (digest {digest}) are not the ones its {PROVENANCE_FILE} records "
                f"({self.weights_digest}): the folder was changed after pmg_aft wrote it. Re-create it, or remove "
                f"{PROVENANCE_FILE} to treat the weights as of unknown origin."
            )


class LicenceError(InputError):
    """A licence that cannot be stated for these weights: none recorded and none given, or one that contradicts
    the owner's."""


def publish_licence(recorded: Licence, requested: str | None, upload: bool = True) -> Licence:
    """The licence to state for weights whose provenance records `recorded`, when the user asks for `requested`
    (`--license`, `None` when not given).

    The owner's licence is kept: a `requested` one may fill a licence nobody stated (said in the card as stated by
    the uploader), never replace another. For an `upload`, a licence must be known.

    Raises:
        [`LicenceError`]: a `requested` licence that contradicts the recorded one, or (for an upload) no licence at
            all.
    """
    if requested is None or requested == recorded.id:
        if recorded.id is None and upload:
            raise LicenceError(
                f"the licence of these weights is not known ({recorded.source}): pass --license with the licence "
                "their owner grants (check the base model's terms) to publish them."
            )
        return recorded
    if recorded.id is None:
        return Licence(requested, None, "stated by the uploader (--license); the base states none")
    raise LicenceError(
        f"these weights are licensed {recorded.describe()}: pmg_aft does not relicense someone else's weights as "
        f"{requested!r}. Leave --license out to publish them under their own licence."
    )


def claim_model_dir(output_dir: str, same_source, overwrite: bool, what: str) -> None:
    """Refuse a model folder (an import, a conversion, an export) that holds anything but a model pmg_aft wrote from
    the same source (`same_source(provenance)` says; a rerun rewrites it), unless `overwrite`."""
    names = [n for n in os.listdir(output_dir) if not n.startswith(".")] if os.path.isdir(output_dir) else []
    if not names:
        return
    record = Provenance.load(output_dir)
    if record is not None and same_source(record):
        return
    why = "another model" if record is not None else "files pmg_aft did not write"
    refuse_foreign(output_dir, names, f"{why}, not {what}", overwrite)


def base_provenance(name_or_path: str) -> tuple[Licence, tuple[str, ...]]:
    """The licence and credits of a base model: its own `pmg_aft.json` (a folder pmg_aft wrote), else its model
    card's `license` (a local folder's README.md, or the Hub card), else OpenAI's statement for its CLIP checkpoints.
    A licence that cannot be found is `Licence(None)`: never assumed."""
    if name_or_path == TINY:
        return Licence("apache-2.0", None, "pmg_aft's generated tiny demo model, under pmg_aft's licence"), ()
    if not name_or_path:
        return Licence(None, None, "a model built in memory, of unknown origin"), ()
    folder = os.path.expanduser(name_or_path)
    if os.path.isdir(folder):
        record = Provenance.load(folder)
        if record is not None:
            return record.licence, record.credits
        card = os.path.join(folder, "README.md")
        licence = _card_licence(card, f"{name_or_path}'s model card") if os.path.isfile(card) else None
        return licence or Licence(None, None, f"{name_or_path} has no pmg_aft.json or model card stating one"), ()
    if name_or_path.startswith(OPENAI_CLIP):
        return Licence("mit", None, "OpenAI's CLIP release (github.com/openai/CLIP, MIT)"), (OPENAI_CREDIT,)
    try:
        from huggingface_hub import hf_hub_download

        licence = _card_licence(hf_hub_download(name_or_path, "README.md"), f"{name_or_path}'s model card")
    except Exception as error:  # offline, no card, a private repo: the licence is then not known, and said so
        logger.info("No model card of %s could be read (%s): its licence is not known.", name_or_path, error)
        licence = None
    return licence or Licence(None, None, f"{name_or_path}'s model card states none that could be read"), (
        f"the authors of {name_or_path}",
    )


def _card_licence(path: str, source: str) -> Licence | None:
    from huggingface_hub import ModelCard

    try:
        data = ModelCard.load(path).data
    except Exception:  # a card that does not parse states nothing we can rely on
        return None
    if not data.license:
        return None
    return Licence(str(data.license), getattr(data, "license_name", None), source)
