"""Zero-shot CLIP classifier: pixels in [0, 1] in, class logits out.

One module serves training, our attacks, AutoAttack and any third-party attack library: resizing and normalisation
happen inside the differentiable graph, and the class text embeddings are computed once and cached.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPImageProcessorPil, CLIPProcessor

from .constants import CLIP_MEAN, CLIP_STD, DEFAULT_TEMPLATE
from .errors import InputError
from .prompts import check_template


def check_clip_model(model: nn.Module) -> None:
    """Raise a clear error unless `model` looks like a `transformers.CLIPModel` (both towers and projections)."""
    missing = [
        n for n in ("vision_model", "visual_projection", "text_model", "text_projection") if not hasattr(model, n)
    ]
    if missing:
        raise TypeError(
            f"Expected a transformers CLIPModel, got {type(model).__name__} without {', '.join(missing)}. "
            "Load one with CLIPModel.from_pretrained('openai/clip-vit-base-patch32')."
        )


def clip_processor(processing_class, model: nn.Module, image_mean: Sequence[float], image_std: Sequence[float]):
    """A `CLIPProcessor` whose image normalisation is the one the model is trained and attacked with.

    Args:
        processing_class (`CLIPProcessor` or `CLIPTokenizer`): provides the tokenizer (and, for a processor, the
            image processor whose resize and crop settings are kept).
        model (`CLIPModel`): its vision config gives the image size when only a tokenizer is passed.
        image_mean, image_std (`Sequence[float]`): the normalisation written into the processor.
    """
    if processing_class is None:
        raise InputError(
            "A CLIPProcessor or CLIPTokenizer is needed to embed the class prompts (processing_class=...), e.g. "
            "CLIPProcessor.from_pretrained('openai/clip-vit-base-patch32')."
        )
    image_processor = getattr(processing_class, "image_processor", None)
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if image_processor is not None:
        image_processor = copy.deepcopy(image_processor)
    else:
        # The PIL backend saves the same preprocessor_config.json and needs no torchvision.
        size = model.config.vision_config.image_size
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
    image_processor.image_mean = [float(v) for v in image_mean]
    image_processor.image_std = [float(v) for v in image_std]
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


@torch.no_grad()
def build_class_embeddings(
    model: nn.Module,
    tokenizer,
    class_names: Sequence[str],
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    batch_size: int = 256,
) -> torch.Tensor:
    """Compute L2-normalised class text embeddings, averaging over prompt templates.

    Args:
        model (`CLIPModel`): provides `text_model` and `text_projection`.
        tokenizer (`CLIPTokenizer` or a processor with a `tokenizer`): tokenises the prompts.
        class_names (`Sequence[str]`): class names in label order; they are used as given (clean them first with
            [`clean_class_name`] if needed).
        templates (`Sequence[str]`): prompt templates with one `{}`; embeddings are averaged over them.
        batch_size (`int`): prompts encoded per forward pass.

    Returns:
        `torch.FloatTensor` of shape `(num_classes, projection_dim)`, float32, unit norm, on the model's device.
    """
    check_clip_model(model)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if tokenizer is None:
        raise InputError("A tokenizer is needed to embed class names; pass CLIPProcessor or CLIPTokenizer.")
    if len(class_names) == 0:
        raise InputError("class_names is empty; a zero-shot classifier needs at least one class.")
    if isinstance(templates, str):
        templates = [templates]
    for template in templates:
        check_template(template)
    prompts = [template.format(name) for name in class_names for template in templates]
    device = model.text_projection.weight.device
    max_length = getattr(model.config.text_config, "max_position_embeddings", 77)
    chunks = []
    # Full precision even inside a mixed-precision step: the embeddings are cached for the whole run.
    with torch.autocast(device.type, enabled=False):
        for start in range(0, len(prompts), batch_size):
            tokens = tokenizer(
                prompts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            ids, mask = tokens["input_ids"], tokens["attention_mask"]
            pooled = model.text_model(input_ids=ids, attention_mask=mask).pooler_output
            chunks.append(F.normalize(model.text_projection(pooled).float(), dim=-1))
    embeddings = torch.cat(chunks).view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(embeddings, dim=-1)


class ImageEncoder(nn.Module):
    r"""The image side of a `CLIPModel` on pixels in [0, 1]: resize (bicubic) and normalise inside the graph, then
    the vision tower and projection. Used alone by embedding-space methods (FARE), which need no text.

    Args:
        model (`CLIPModel`): the CLIP model; only its image side runs.
        image_mean (`Sequence[float]`, defaults to CLIP's): normalisation mean (the official PMG-AFT code uses
            ImageNet's, `IMAGENET_MEAN`).
        image_std (`Sequence[float]`, defaults to CLIP's): normalisation std.
        image_size (`int`, *optional*): the resolution the model sees; defaults to the vision config's.
        vision_model (`nn.Module`, *optional*): what runs `model.vision_model`'s forward, e.g. a `torch.compile`d
            version of it; defaults to the module itself.
    """

    def __init__(
        self,
        model: nn.Module,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        image_size: int | None = None,
        vision_model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_clip_model(model)
        self.model = model
        self.vision_model = vision_model if vision_model is not None else model.vision_model
        device = model.visual_projection.weight.device
        mean = torch.tensor(image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.register_buffer("image_mean", mean)
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1))
        self.image_size = int(image_size or model.config.vision_config.image_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (bicubic) to the model's size and normalise; differentiable, so attacks live in pixel space."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"Expected images of shape (batch, 3, height, width), got {tuple(images.shape)}.")
        if images.shape[-2:] != (self.image_size, self.image_size):
            downsampling = min(images.shape[-2:]) > self.image_size
            images = F.interpolate(
                images,
                size=(self.image_size, self.image_size),
                mode="bicubic",
                align_corners=False,
                antialias=downsampling,
            )
        return (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)

    def encode_images(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Projected image embeddings of images in [0, 1] (unit norm when `normalize`)."""
        pooled = self.vision_model(pixel_values=self.preprocess(images)).pooler_output
        embeddings = self.model.visual_projection(pooled)
        return F.normalize(embeddings, dim=-1) if normalize else embeddings

    def project_tokens(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Every output token of the vision tower through its final layer norm and the projection: `(batch, 1 +
        patches, dim)`. Token 0 is the pooled image embedding; the patch tokens feed TGA-ZSR's text-guided
        attention."""
        return self.model.visual_projection(self.model.vision_model.post_layernorm(hidden_states))

    def token_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """[`project_tokens`] of images in [0, 1]."""
        return self.project_tokens(self.vision_model(pixel_values=self.preprocess(images)).last_hidden_state)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_images(images, normalize=False)


class ZeroShotClassifier(ImageEncoder):
    r"""A `CLIPModel` turned into a plain image classifier over a fixed list of classes.

    `forward(images)` takes images in [0, 1] of shape `(batch, 3, height, width)`, any height and width, resizes them
    (bicubic) to the model's input size and normalises them inside the graph, and returns logits
    `s * cos(image_embedding, class_embedding)` of shape `(batch, num_classes)` in float32.

    Args:
        model (`CLIPModel`): the CLIP model; only its image side runs in `forward`.
        tokenizer (`CLIPTokenizer` or `CLIPProcessor`, *optional*): needed unless `class_embeddings` is given.
        class_names (`Sequence[str]`, *optional*): class names in label order, used as given.
        templates (`Sequence[str]`, defaults to `("This is a photo of a {}",)`): prompt templates, averaged.
        image_mean (`Sequence[float]`, defaults to CLIP's): normalisation mean (the official PMG-AFT code uses
            ImageNet's, `IMAGENET_MEAN`).
        image_std (`Sequence[float]`, defaults to CLIP's): normalisation std.
        logit_scale (`float` or `None`, defaults to 100): the scale s (the official PMG-AFT code's is 1); `None` uses
            the model's `exp(logit_scale)`. The defaults are those of [`RobustCLIPConfig`].
        class_embeddings (`torch.Tensor`, *optional*): precomputed `(num_classes, dim)` unit-norm text embeddings,
            e.g. to share them between a target and a frozen model.
        image_size (`int`, *optional*): the resolution the model sees; defaults to the vision config's.
        vision_model (`nn.Module`, *optional*): what runs the vision tower, e.g. a `torch.compile`d version of it.
        float32_logits (`bool`): compute the logits in float32 even under autocast (default); `False` leaves them to
            autocast, as the official PMG-AFT and TGA-ZSR evaluations do (`attack_numerics="official"`).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] = (DEFAULT_TEMPLATE,),
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        logit_scale: float | None = 100.0,
        class_embeddings: torch.Tensor | None = None,
        image_size: int | None = None,
        vision_model: nn.Module | None = None,
        float32_logits: bool = True,
    ) -> None:
        super().__init__(model, image_mean, image_std, image_size, vision_model)
        self.float32_logits = float32_logits
        if class_embeddings is None:
            if class_names is None:
                raise InputError("Pass class_names (with a tokenizer) or precomputed class_embeddings.")
            class_embeddings = build_class_embeddings(model, tokenizer, class_names, templates)
        if class_embeddings.dim() != 2 or class_embeddings.shape[1] != model.config.projection_dim:
            raise InputError(
                f"class_embeddings must have shape (num_classes, {model.config.projection_dim}), "
                f"got {tuple(class_embeddings.shape)}."
            )
        device = model.visual_projection.weight.device
        self.register_buffer("class_embeddings", class_embeddings.detach().float().to(device), persistent=False)
        self.logit_scale = logit_scale
        self.class_names = list(class_names) if class_names is not None else None

    @property
    def num_classes(self) -> int:
        return self.class_embeddings.shape[0]

    def class_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        """The (unit-norm) text embedding of each label's class: `(batch, dim)`."""
        return self.class_embeddings[labels]

    def scale(self) -> torch.Tensor | float:
        """The logit scale s actually applied."""
        if self.logit_scale is None:
            return self.model.logit_scale.exp().float()
        return self.logit_scale

    def logits_from_embeddings(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """Logits from unit-norm image embeddings, computed in float32 so softmax and KL are accurate (unless
        `float32_logits` is off: then under autocast, as the official evaluations compute them)."""
        if not self.float32_logits:  # fp16 image and text embeddings and an fp16 matmul under fp16 autocast
            return self.scale() * image_embeddings @ self.class_embeddings.t()
        # Autocast would run this matmul in bf16/fp16 whatever the inputs' dtype: cosines of ~0.3 would then be
        # resolved to ~0.002, against class gaps of ~0.01.
        with torch.autocast(image_embeddings.device.type, enabled=False):
            return self.scale() * image_embeddings.float() @ self.class_embeddings.t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embeddings(self.encode_images(images))
