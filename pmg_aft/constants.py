"""Constants shared across the package. A leaf module: it imports nothing from `pmg_aft`."""

__version__ = "0.2.0"

# Normalisation statistics. The official PMG-AFT and TeCoA code normalise with ImageNet's; CLIP was trained with its
# own, which TGA-ZSR and FARE keep.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The PMG-AFT / TeCoA training prompt.
DEFAULT_TEMPLATE = "This is a photo of a {}"

# Threat models, attacks and losses of the attack module.
NORMS = ("linf", "l2")
ATTACKS = ("pgd", "cw", "autoattack")
ATTACK_LOSSES = ("ce", "cw")

# Evaluation protocols: which prompts a registered benchmark is evaluated with.
PROTOCOLS = ("paper", "clip_benchmark")
PROTOCOL_LOGIT_SCALE = {"paper": 1.0, "clip_benchmark": 100.0}
# The protocol name of an eval set that brings its own class names and the trainer's prompt template.
CUSTOM_PROTOCOL = "custom"

# Image preprocessing before the attack: Resize(shorter side = size / crop_pct) + CenterCrop(size).
DEFAULT_CROP_PCT = 224 / 256
INTERPOLATIONS = ("bilinear", "bicubic")
BAD_IMAGE_POLICIES = ("raise", "skip")

# The parts of a CLIPModel that adversarial fine-tuning trains; the text tower and logit_scale stay frozen.
TRAINABLE_PREFIXES = ("vision_model.", "visual_projection.")

# Written beside a saved checkpoint: what the model card needs that the checkpoint cannot say.
RUN_INFO_FILE = "pmg_aft.json"
