"""Constants shared across the package. A leaf module: it imports nothing from `pmg_aft`."""

__version__ = "0.3.0"

# Normalisation statistics. The official PMG-AFT code normalises with ImageNet's; CLIP was trained with its own,
# which the TeCoA, TGA-ZSR and FARE code keep.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The PMG-AFT / TeCoA training prompt.
DEFAULT_TEMPLATE = "This is a photo of a {}"

# Threat models and losses of the attack module (the attacks are a registry: pmg_aft.attack_specs.ATTACKS).
NORMS = ("linf", "l2")
ATTACK_LOSSES = ("ce", "cw")
# AutoAttack's attack sets: published standard; TGA-ZSR's evaluation; FARE's / RobustBench-style CLIP evaluation.
AUTOATTACK_VARIANTS = ("standard", "apgd-ce+apgd-dlr", "apgd-ce+apgd-t")

# The protocols are a registry (pmg_aft.evaluation.PROTOCOL_RECORDS), and so are their text sources
# (pmg_aft.data.registry.TEXT_SOURCES).
# Readings of an official loader that crashes as written (Caltech-256's): its evident intent, or the code literally.
NAME_READINGS = ("cleaned", "literal")
# How attacks compute: sound (per-sample loss sums, fp16 loss scaling, AutoAttack in float32) or as the official codes.
ATTACK_NUMERICS = ("exact", "official")
NORMALIZATIONS = ("imagenet", "clip", "model")
# The mean/std of the named normalisations (`model`: the checkpoint's own processor).
IMAGE_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}
# Precisions of evaluation: float32, TF32 matmuls (CUDA), bf16 or fp16 autocast (CUDA; float32 elsewhere).
MIXED_PRECISIONS = ("no", "tf32", "bf16", "fp16")
# The protocol name of an eval set that brings its own class names and the trainer's prompt template.
CUSTOM_PROTOCOL = "custom"
# A trainer's evaluate(): each eval set's prompts on the training head (its logit scale and normalisation).
TRAINER_PROTOCOL = "trainer"

# Image preprocessing before the attack: Resize(shorter side = size / crop_pct) + CenterCrop(size).
DEFAULT_CROP_PCT = 224 / 256
INTERPOLATIONS = ("bilinear", "bicubic")
BAD_IMAGE_POLICIES = ("raise", "skip")

# The parts of a CLIPModel that adversarial fine-tuning trains; the text tower and logit_scale stay frozen.
TRAINABLE_PREFIXES = ("vision_model.", "visual_projection.")

# Written beside a saved checkpoint: what the model card needs that the checkpoint cannot say.
RUN_INFO_FILE = "pmg_aft.json"
