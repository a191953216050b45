"""Evaluation protocols as data: each one a frozen record of every choice that decides its numbers.

Published robust-accuracy tables follow different protocols, and their figures cannot be compared across protocols.
A [`Protocol`] names them all (the class texts, logit scale, normalisation, image preprocessing and the attack
defaults) with the evidence each rests on; `evaluate_robustness(protocol=...)` and `pmg-aft eval --protocol` run one,
a flag may override any field, and the report records the effective protocol and what was overridden.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace

from ..attack_settings import AttackGrid, AttackSetting
from ..constants import (
    ATTACK_NUMERICS,
    CUSTOM_PROTOCOL,
    IMAGE_STATS,
    INTERPOLATIONS,
    MIXED_PRECISIONS,
    NAME_READINGS,
    NORMALIZATIONS,
)
from ..data import get_benchmark
from ..data.registry import TEXT_SOURCES
from ..domains import BATCH, COUNT, LOGIT_SCALE, SEED, UNIT_OPEN_LEFT, field
from ..errors import InputError
from ..parsing import check_fields

PMG_AFT_CODE = "PMG_AFT.py of the official PMG-AFT code (commit a53fdd8)"
# TGA-ZSR's later HEAD (663fe57) cannot run: train() uses an undefined logit_scale (TGA-ZSR.py:312-316) and
# validation calls multiGPU_CLIP(..., args, None) against its 6-parameter signature (:443, models/model.py:36).
TGA_ZSR_CODE = "TGA-ZSR.py, utils.py, models/model.py and attacks.py of the official TGA-ZSR code (commit 5f2b31c)"
FARE_CODE = (
    "chs20/RobustVLM's CLIP_benchmark/clip_benchmark/cli.py, CLIP_eval/clip_robustbench.py and autoattack copy "
    "(FARE's evaluation, commit 7de10ee) with CLIP_benchmark (commit 48de38c)"
)


# The fields of a protocol that a caller may override (`pmg-aft eval` takes each as a flag), besides the attack grid's.
OVERRIDABLE = (
    "max_eval_samples",
    "logit_scale",
    "normalization",
    "mixed_precision",
    "attack_numerics",
    "caltech256_names",
    "imagenet_samples",
)
IMAGENET_SAMPLES = ("all", "robustbench")
# The normalisation of a fine-tuning run's own evaluation: the run's mean/std, which its report records.
RUN_NORMALIZATION = "run"
SCALE_SOURCES = ("protocol", "model")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    r"""An evaluation protocol: every choice that decides its numbers.

    Args:
        name (`str`): `pmg_aft`, `tga_zsr` or `clip_benchmark`.
        description (`str`): what it reproduces.
        comparable_with (`str`): which published figures its numbers compare with (model cards quote it).
        texts (`str`): the class texts: `"pmg_aft"` (the official PMG-AFT evaluation's strings, one prompt per
            class), `"tga_zsr"` (the official TGA-ZSR evaluation's: PMG-AFT's, but where its dataset files differ) or
            `"clip_benchmark"` (CLIP_benchmark's names and template ensembles); `"custom"`: each eval set's own
            (a fine-tuning run's evaluation).
        caltech256_names (`str`): `"cleaned"` (the folder names as the official loader evidently means to clean
            them) or `"literal"` (its code read literally, with `.clone()` as a copy: `.replace('-256', '')` matches
            nothing and 30 names keep " 101"). The official loader crashes as written, so neither is certain.
        logit_scale (`float`, *optional*): the scale s of the cosine logits; `None` is the checkpoint's own
            exp(logit_scale).
        normalization (`str`): `"imagenet"` or `"clip"` mean/std for every model, `"model"` (its processor's), or
            `"run"` (a fine-tuning run's own, which its reports record).
        native_resolution (`bool`): attack small images (CIFAR, STL-10) at their own size and resize them inside the
            classifier (bicubic); otherwise they are resized to the model's size first.
        crop_pct (`float`), interpolation (`str`): the other images' Resize(size / crop_pct) + CenterCrop(size).
        attack ([`AttackGrid`]): the attacks, budgets, steps, step size, threat model, start, success rule
            (`first_success=False` counts the final iterate, as the official codes do) and AutoAttack variant.
        max_eval_samples (`int`, *optional*): evaluate N samples of each dataset.
        sample_seed (`int`, *optional*): with a cap, the seed of the random sample of N rows (kept in dataset
            order); `None` takes the first N, which on a label-sorted split covers few classes.
        whole_sets (`bool`): evaluate the whole dataset where the official evaluation does and the Hub copy splits
            it (Caltech-256: train + validation + test).
        mixed_precision (`str`): `"no"`, `"tf32"`, `"fp16"` or `"bf16"`: the precision of the attacks and
            predictions. `fp16` is CUDA autocast, as `torch.cuda.amp.autocast` in the official codes, and `tf32` CUDA's
            TensorFloat-32 matmuls (opt-in): on a CPU both run in float32 (unless `attack_numerics="official"`).
        attack_numerics (`str`): `"exact"`: a sound attack whatever the precision (each sample's loss summed, so its
            gradient does not depend on the batch; loss scaling under fp16; logits in float32; AutoAttack in
            float32). `"official"`: the numerics the published tables were computed with (the batch-mean
            cross-entropy and an unscaled backward under fp16 autocast, fp16 logits and text embeddings, the official
            test batch size, AutoAttack under autocast); fp16 autocast runs on a CPU too, so the effect can be
            measured without CUDA.
        official_batch_size (`int`, *optional*): the official evaluation's test batch size, used with
            `attack_numerics="official"` (a batch-mean loss makes each sample's gradient depend on it).
        imagenet_samples (`str`): `"all"` (the protocol's sample of ImageNet, as of every dataset) or
            `"robustbench"` (RobustBench's 5,000 validation images, as FARE's ImageNet figures).
        imagenet_logit_scale (`str`): `"protocol"` (ImageNet's logits scaled as every dataset's) or `"model"` (the
            checkpoint's own exp(logit_scale), as FARE's RobustBench ImageNet evaluation).
        evidence (`str`): where each choice comes from.
        overridden (`tuple[str, ...]`): the fields a caller changed from the named protocol.
    """

    name: str
    description: str
    comparable_with: str
    texts: str = field(metadata={"choices": list(TEXT_SOURCES), "internal_choices": [CUSTOM_PROTOCOL]})
    logit_scale: float | None = field(domain=LOGIT_SCALE, metadata={"help": "The cosine logits' scale (1 or 100)."})
    normalization: str = field(
        metadata={"help": "Image mean/std.", "choices": list(NORMALIZATIONS), "internal_choices": [RUN_NORMALIZATION]}
    )
    native_resolution: bool
    crop_pct: float = field(domain=UNIT_OPEN_LEFT)
    interpolation: str = field(metadata={"choices": list(INTERPOLATIONS)})
    attack: AttackGrid
    max_eval_samples: int | None = field(
        domain=COUNT,
        metadata={
            "help": "Evaluate N samples of each dataset: a random sample (the protocol's sample_seed).",
        },
    )
    sample_seed: int | None = field(domain=SEED)
    whole_sets: bool
    mixed_precision: str = field(
        metadata={"help": "Precision of attacks and predictions.", "choices": list(MIXED_PRECISIONS)}
    )
    attack_numerics: str = field(
        default="exact",
        metadata={"help": "exact (a sound attack) or official (the published tables' fp16 numerics, batch-mean loss, "
                  "no loss scaling, the official test batch).", "choices": list(ATTACK_NUMERICS)},
    )  # fmt: skip
    official_batch_size: int | None = field(default=None, domain=BATCH)
    caltech256_names: str = field(
        default="cleaned",
        metadata={"help": "Caltech-256's official names: cleaned, or literal (the crashing loader read as a copy: "
                  "30 names keep ' 101').", "choices": list(NAME_READINGS)},
    )  # fmt: skip
    imagenet_samples: str = field(
        default="all",
        metadata={"help": "ImageNet's samples: all (the protocol's sample) or robustbench (RobustBench's 5,000).",
                  "choices": list(IMAGENET_SAMPLES)},
    )  # fmt: skip
    imagenet_logit_scale: str = field(default="protocol", metadata={"choices": list(SCALE_SOURCES)})
    evidence: str
    overridden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self)
        if self.texts != "pmg_aft" and self.caltech256_names != "cleaned":
            raise InputError(
                f"{self.name} protocol: caltech256_names={self.caltech256_names!r} reads the official PMG-AFT loader; "
                f"the {self.texts} texts have no such reading (TGA-ZSR's loader strips ' 101' and runs). Leave "
                "caltech256_names at 'cleaned'."
            )

    def override(self, **changes) -> Protocol:
        """This protocol with some fields changed, the attack grid's by their own names (`eps=(4/255,)`); `None`
        values are ignored. The changed fields are recorded in `overridden`, so a report never passes an altered
        protocol off as the named one."""
        grid = {f.name for f in fields(AttackGrid)}
        names = grid | {f.name for f in fields(self)} - {"name", "description", "comparable_with", "evidence",
                                                         "overridden", "attack"}  # fmt: skip
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"Unknown protocol field(s) {unknown}; the fields are {sorted(names)}.")
        changes = {k: v for k, v in changes.items() if v is not None}
        attack = self.attack.override(**{k: v for k, v in changes.items() if k in grid})
        mine = {k: v for k, v in changes.items() if k not in grid}
        different = [k for k, v in mine.items() if getattr(self, k) != v]
        different += [k for k in changes if k in grid and getattr(attack, k) != getattr(self.attack, k)]
        return replace(self, **mine, attack=attack, overridden=tuple(sorted(set(self.overridden) | set(different))))

    def settings(self) -> list[AttackSetting]:
        """The attack settings this protocol runs (every attack x eps x steps; AutoAttack once per eps)."""
        return self.attack.settings()

    def image_stats(self, processor=None) -> tuple[list[float], list[float]]:
        """The normalisation mean and std for a checkpoint with this `processor`."""
        if self.normalization == RUN_NORMALIZATION:
            raise InputError(f"The {self.name} protocol normalises with a fine-tuning run's own mean/std.")
        if self.normalization in IMAGE_STATS:
            mean, std = IMAGE_STATS[self.normalization]
            return list(mean), list(std)
        if processor is None:
            raise InputError(f"The {self.name} protocol normalises with the model's own processor: pass it.")
        image_processor = getattr(processor, "image_processor", processor)
        return [float(v) for v in image_processor.image_mean], [float(v) for v in image_processor.image_std]

    def to_dict(self) -> dict:
        """Every field, the attack grid's in its place (the flat form reports record)."""
        values = {}
        for f in fields(self):
            values.update(self.attack.to_dict() if f.name == "attack" else {f.name: getattr(self, f.name)})
        return values

    @classmethod
    def from_dict(cls, values: dict) -> Protocol:
        """The protocol of its flat form ([`to_dict`]), every field checked as when it was made.

        Raises:
            `TypeError` or [`InputError`]: for a field it does not have, or lacks, or a value out of its domain.
        """
        grid = {f.name for f in fields(AttackGrid)}
        own = {k: v for k, v in values.items() if k not in grid}
        own["overridden"] = tuple(own.get("overridden", ()))
        return cls(**own, attack=AttackGrid(**{k: v for k, v in values.items() if k in grid}))


PMG_AFT = Protocol(
    name="pmg_aft",
    description="The official PMG-AFT evaluation (Wang et al., CVPR 2024): reproduces the paper's tables.",
    comparable_with=(
        "Its figures compare with the PMG-AFT paper's tables, not with `tga_zsr` or `clip_benchmark` "
        "(RobustBench/FARE) ones."
    ),
    texts="pmg_aft",
    logit_scale=1.0,
    normalization="imagenet",
    native_resolution=True,
    crop_pct=224 / 256,
    interpolation="bilinear",
    attack=AttackGrid(
        attacks=("pgd",),
        eps=(1 / 255,),
        steps=(10,),
        step_size=1 / 255,
        norm="linf",
        random_start=True,
        first_success=False,
        autoattack="standard",
    ),  # fmt: skip
    max_eval_samples=None,
    sample_seed=0,
    whole_sets=True,
    mixed_precision="fp16",
    official_batch_size=256,
    evidence=(
        f"{PMG_AFT_CODE}: one text per class, the code's renaming rules (official_pmg_aft_eval.json); logits are "
        "plain cosines (multiGPU_CLIP re-normalises the scaled text embedding); ImageNet mean/std inside "
        "clip_img_preprocessing for every model; CIFAR-10/100 and STL-10 as ToTensor() only (attacked at 32/96 px, "
        "bicubic upsample inside), the rest Resize(256) + CenterCrop(224); attack_pgd: --test_eps 1, "
        "--test_stepsize 1, --test_numsteps 10, uniform random start, the final iterate counts; CW: the same loop "
        "with a margin loss (kappa 50 never binds on cosines); AutoAttack version='standard'; validate() runs under "
        "torch.cuda.amp.autocast (fp16) with a batch-mean CE and an unscaled backward (:599-601), fp16 logits cast to "
        "float32 (:824-876), AutoAttack under autocast (:853-861), test batch --batch_size 256 (:40, :365-368). "
        "Caltech-256: the loader's .clone()[4:] crashes as written (caltech.py:212-215); caltech256_names says which "
        "reading runs."
    ),
)

TGA_ZSR = Protocol(
    name="tga_zsr",
    description=(
        "The TGA-ZSR re-run of all methods (Yu et al., NeurIPS 2024), the anchor table of 16-dataset averages: as "
        "pmg_aft but every image resized to 224 before the attack, CLIP mean/std, the model's logit scale, PGD-100."
    ),
    comparable_with="Its figures compare with the TGA-ZSR paper's tables only.",
    texts="tga_zsr",
    logit_scale=None,
    normalization="clip",
    native_resolution=False,
    crop_pct=224 / 256,
    interpolation="bilinear",
    attack=AttackGrid(
        attacks=("pgd",),
        eps=(1 / 255,),
        steps=(100,),
        step_size=1 / 255,
        norm="linf",
        random_start=True,
        first_success=False,
        autoattack="apgd-ce+apgd-dlr",
    ),  # fmt: skip
    max_eval_samples=None,
    sample_seed=0,
    whole_sets=True,
    mixed_precision="fp16",
    official_batch_size=256,
    evidence=(
        f"{TGA_ZSR_CODE}: CIFAR-10/100 and STL-10 through Resize((224, 224)) before the attack, the rest "
        "Resize(256) + CenterCrop(224); CLIP's mean/std (named IMAGENET_* in models/model.py); logits scaled by the "
        "model's logit_scale.exp(); --test_numsteps 100, --test_eps 1, --test_stepsize 1, uniform random start, "
        "final iterate; AutoAttack attacks_to_run ['apgd-ce', 'apgd-dlr'] (PCAM: ['apgd-ce']); autocast (fp16) with a "
        "batch-mean CE and an unscaled backward (attacks.py:37-39), fp16 logits and ImageNet text features cached in "
        "float16 (TGA-ZSR.py:409,426, models/model.py:29-34,74), test batch args.batch_size*2 = 256 "
        "(TGA-ZSR.py:34,219-220). The class texts are the PMG-AFT evaluation's on 14 datasets; TGA's own dataset "
        "files differ for Caltech and Stanford Cars: its Caltech101 sets no prompt template, so the generic "
        "'This is a photo of a {}' is used (replace/datasets/caltech.py:35-78, TGA-ZSR.py:196,224, utils.py:249), "
        "with the same 101 names (BACKGROUND_Google dropped, refine_classname); its Caltech-256 strips '-101' "
        "(caltech.py:200-209) and runs, so it has no literal reading; Stanford Cars' names from cars_annos.mat equal "
        "PMG-AFT's rule output (stanford_cars.py:51-80). Pinned to 5f2b31c: at its HEAD 663fe57 train() uses an "
        "undefined logit_scale and validation calls multiGPU_CLIP wrongly. Left as found: its Caltech101 opens "
        "images through lowercased folder names (caltech.py:95), which fails on a case-sensitive file system for "
        "Faces, Leopards and Motorbikes; and a run without --resume reads best_acc1 before assigning it "
        "(TGA-ZSR.py:361)."
    ),
)

CLIP_BENCHMARK = Protocol(
    name="clip_benchmark",
    description=(
        "The FARE / RobustBench evaluation through CLIP_benchmark: template ensembles, logit scale 100, the model's "
        "own preprocessing, AutoAttack (APGD-CE + APGD-T) at several budgets on 1,000 samples."
    ),
    comparable_with=(
        "Its figures are RobustBench/FARE ones: they cannot be compared with `pmg_aft` or `tga_zsr` ones."
    ),
    texts="clip_benchmark",
    logit_scale=100.0,
    normalization="model",
    native_resolution=True,
    crop_pct=1.0,
    interpolation="bicubic",
    attack=AttackGrid(
        attacks=("autoattack",),
        eps=(1 / 255, 2 / 255, 4 / 255),
        steps=(100,),
        step_size=1 / 255,
        norm="linf",
        random_start=True,
        first_success=False,
        autoattack="apgd-ce+apgd-t",
    ),  # fmt: skip
    max_eval_samples=1000,
    sample_seed=0,
    whole_sets=False,
    mixed_precision="no",
    imagenet_samples="robustbench",
    imagenet_logit_scale="model",
    evidence=(
        f"{FARE_CODE}: CIFAR-10/100 and STL-10 attacked at native size and resized (bicubic) to 224 inside the "
        "model, the rest open_clip's Resize(224, bicubic) + CenterCrop(224); the model's normalisation; logits = "
        "100 * cosine; CLIP_benchmark's class names and templates, embeddings averaged; AutoAttack version='custom' "
        "with APGD-CE (5 restarts) and APGD-T (9 target classes), 100 iterations (2 classes: APGD-CE only); "
        "--n_samples 1000, the first 1,000 after shuffle(10000, initial=10000, Random(0)) of the webdataset stream, "
        "which a Hub copy cannot reproduce: here a seeded sample of the Hub copy; ImageNet: RobustBench's 5,000 "
        "validation images (robustbench helper_files/imagenet_test_image_ids.txt) with the model's own logit_scale "
        "(clip_robustbench.py:34,67-68; FARE README:290); --no_amp (float32). Class names: CLIP_benchmark's "
        "(CIFAR-100 with torchvision's underscores, builder.py:95-100; Flowers, Pets, ImageNet with 'missile' and "
        "'sunglasses' twice, and 102-way Caltech101 with 'background' from en_classnames.json). The FARE README "
        "reports eps 2/255 and 4/255; RobustBench-style tables add 1/255."
    ),
)

# The registry behind `--protocol`, `--protocols`, cards and the docs' protocol table.
PROTOCOL_RECORDS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add an evaluation protocol to [`PROTOCOL_RECORDS`]; every command, card and docs table takes it from there.

    Raises:
        `TypeError`: for what is not a [`Protocol`], or a name another protocol already has.
    """
    if not isinstance(protocol, Protocol):
        raise TypeError(f"{protocol!r} is not a Protocol.")
    if PROTOCOL_RECORDS.get(protocol.name, protocol) is not protocol:
        raise TypeError(f"The protocol {protocol.name!r} is already registered; pick another name.")
    PROTOCOL_RECORDS[protocol.name] = protocol
    return protocol


for _protocol in (PMG_AFT, TGA_ZSR, CLIP_BENCHMARK):
    register_protocol(_protocol)


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by name (or the record itself).

    Raises:
        [`InputError`]: naming the registered protocols.
    """
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOL_RECORDS:
        raise InputError(f"Unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOL_RECORDS)}.")
    return PROTOCOL_RECORDS[protocol]


def protocol_prompts(protocol: str | Protocol, benchmark: str) -> list[list[str]]:
    """The texts fed to the tokenizer for each class of `benchmark`'s zero-shot head under `protocol`, in label order.

    Args:
        protocol (`str` or [`Protocol`]): e.g. `"pmg_aft"`.
        benchmark (`str`): a registry name.

    Returns:
        `list[list[str]]`: per class of the head, its prompts (one for the `pmg_aft` and `tga_zsr` texts; a template
        ensemble for `clip_benchmark`). The head is the protocol's evaluation's: a class it does not have is left
        out (Caltech101's background under `pmg_aft`), one it has is kept even where the data lacks it (the same
        background under `clip_benchmark`, 102-way as FARE's).
    """
    record = get_protocol(protocol)
    head = get_benchmark(benchmark).head(record.texts, record.caltech256_names)
    return [[template.format(text) for template in head.templates] for text in head.texts]


def protocol_digest(protocol: str | Protocol | dict) -> str:
    """A short digest of a protocol's fields that decide its numbers (what a card records to say which ran)."""
    record = protocol if isinstance(protocol, dict) else get_protocol(protocol).to_dict()
    kept = {k: v for k, v in record.items() if k not in ("description", "comparable_with", "evidence", "overridden")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
