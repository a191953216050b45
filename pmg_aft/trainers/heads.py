"""The zero-shot heads and image encoders a trainer's methods attack and train through, built once per run."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput

from ..zeroshot import ImageEncoder, ZeroShotClassifier, build_class_embeddings
from .lora import WithoutAdapters


class Heads:
    r"""The cached heads of one run: [`ZeroShotClassifier`]s and [`ImageEncoder`]s of the target and the frozen
    reference model, with the run's normalisation and logit scale, running the vision tower compiled under
    `torch_compile`.

    The text tower is frozen, so class text embeddings are computed once per (text model, class names, templates)
    and stay valid for the whole run. A head is rebuilt only if its model object or device changed (FSDP and
    DeepSpeed place the model in `train()`); so no step copies tensors to the device or embeds a prompt again. Every
    cache entry keeps the models of its key alive, so an id in a key is never another model's.

    Args:
        tokenizer (`CLIPTokenizer`): tokenises the prompts.
        args ([`RobustCLIPConfig`]): the run's arguments, read when a head is built: the normalisation, the logit
            scale (`None`: each model's own) and the `torch_compile` options of the vision towers.
    """

    def __init__(self, tokenizer, args) -> None:
        self.tokenizer, self.args = tokenizer, args
        self._embeddings: dict[tuple, tuple[nn.Module, torch.Tensor]] = {}
        self._heads: dict[tuple, nn.Module] = {}
        self._towers: dict[tuple, tuple[nn.Module, nn.Module]] = {}

    def vision_tower(self, model: nn.Module, without_adapters: bool = False) -> nn.Module:
        """`model.vision_model`, compiled with static shapes under `torch_compile` (the attack's and the frozen
        model's forwards run through it; `Trainer` compiles the target's own forward); with `without_adapters`, run
        with the model's LoRA adapters off (the base model: the reference of a `use_peft` run)."""
        args = self.args
        key = (id(model), without_adapters)
        if key not in self._towers:
            tower = model.vision_model
            if args.torch_compile:
                tower = torch.compile(tower, backend=args.torch_compile_backend, mode=args.torch_compile_mode,
                                      dynamic=False)  # fmt: skip
            self._towers[key] = (model, WithoutAdapters(tower, model) if without_adapters else tower)
        return self._towers[key][1]

    def encoder(self, model: nn.Module, without_adapters: bool = False) -> ImageEncoder:
        """The image side of `model` on pixels in [0, 1] (FARE's embeddings, TGA-ZSR's reference tokens)."""
        key = ("encoder", id(model), model.visual_projection.weight.device, without_adapters)
        if key not in self._heads:
            self._heads[key] = ImageEncoder(model, self.args.image_mean, self.args.image_std,
                                            vision_model=self.vision_tower(model, without_adapters))  # fmt: skip
        return self._heads[key]

    def classifier(
        self,
        model: nn.Module,
        names: Sequence[str],
        templates: Sequence[str],
        text_model: nn.Module | None = None,
        without_adapters: bool = False,
    ) -> ZeroShotClassifier:
        """The zero-shot head of `model` over `names` (already cleaned), its class embeddings from `text_model`'s text
        tower (default: `model`'s; a reference copied from the target has none) averaged over `templates`; with
        `without_adapters`, the image side runs with the LoRA adapters off ([`vision_tower`])."""
        text_model = model if text_model is None else text_model
        names, templates = tuple(names), tuple(templates)
        embeddings = (id(text_model), names, templates)
        if embeddings not in self._embeddings:
            computed = build_class_embeddings(text_model, self.tokenizer, names, templates)
            self._embeddings[embeddings] = (text_model, computed)
        key = ("classifier", id(model), model.visual_projection.weight.device, without_adapters, *embeddings)
        if key not in self._heads:
            self._heads[key] = ZeroShotClassifier(
                model,
                class_embeddings=self._embeddings[embeddings][1],
                image_mean=self.args.image_mean,
                image_std=self.args.image_std,
                logit_scale=self.args.logit_scale.value,
                vision_model=self.vision_tower(model, without_adapters),
            )
        return self._heads[key]

    def vision_forward(self, model: nn.Module, pixel_values: torch.Tensor) -> CLIPOutput:
        """`CLIPModel.forward`'s image outputs for normalised pixels, from the vision tower alone (compiled under
        `torch_compile`): `image_embeds` (unit norm, float32) and `vision_model_output` (`last_hidden_state`, and
        `pooler_output`: the projected embedding, as transformers 5 returns it)."""
        vision = self.vision_tower(model)(pixel_values=pixel_values)
        projected = model.visual_projection(vision.pooler_output).float()  # float32, as accelerate returns it
        return CLIPOutput(
            image_embeds=F.normalize(projected, dim=-1),
            vision_model_output=BaseModelOutputWithPooling(
                last_hidden_state=vision.last_hidden_state, pooler_output=projected
            ),
        )
