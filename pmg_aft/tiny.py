"""The embedded tiny default: a small CLIP, a character-level CLIP tokenizer and a generated image set.

They let the end-to-end demo and the tests run offline, through exactly the code paths that real checkpoints
(`CLIPModel.from_pretrained`) and Hub datasets (`image` + `ClassLabel` columns) take.
"""

from __future__ import annotations

import functools

import torch
from datasets import Dataset
from tokenizers import pre_tokenizers
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from .constants import DEFAULT_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD
from .data.generated import COLORS, GENERATED, colour_patches
from .data.images import image_to_tensor

__all__ = ["COLORS", "GENERATED", "colour_patches", "pretrain_tiny_clip", "pretrained_tiny_clip", "tiny_clip",
           "tiny_clip_config", "tiny_tokenizer"]  # fmt: skip


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level `CLIPTokenizer` (byte-level alphabet, no merges) that needs no download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in alphabet + [a + "</w>" for a in alphabet]:
        vocab[symbol] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=64)


def tiny_clip_config(image_size: int = 32, patch_size: int = 8, hidden_size: int = 32, layers: int = 2) -> CLIPConfig:
    """A CLIP configuration small enough to train for hundreds of steps on a CPU in seconds."""
    vocab_size = len(tiny_tokenizer())
    common = {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
    }
    return CLIPConfig(
        text_config={
            **common,
            "vocab_size": vocab_size,
            "max_position_embeddings": 64,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**common, "image_size": image_size, "patch_size": patch_size},
        projection_dim=hidden_size,
    )


def tiny_clip(seed: int = 0, **config_kwargs) -> CLIPModel:
    """A randomly initialised tiny `CLIPModel` (deterministic for a given seed)."""
    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config(**config_kwargs)).eval()


def pretrain_tiny_clip(
    model: CLIPModel,
    tokenizer: CLIPTokenizer,
    dataset: Dataset,
    template: str = DEFAULT_TEMPLATE,
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
) -> CLIPModel:
    """Contrastive (CLIP) pre-training of a tiny model on a captioned image set, so it has zero-shot ability to lose.

    Images are normalised with ImageNet's mean and std (PMG-AFT's, and the demo config's for every method), captions
    are the template filled with the class name. The loss is each image's cross-entropy over the class captions (the
    image-to-text half of CLIP's loss; captions repeat within a batch, so the other half is ill-posed). Returns the
    model in eval mode.
    """
    generator = torch.Generator().manual_seed(seed)
    names = dataset.features["label"].names
    pixels = torch.stack([image_to_tensor(im.convert("RGB")) for im in dataset["image"]])
    pixels = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    labels = torch.tensor(dataset["label"])
    tokens = tokenizer([template.format(n) for n in names], padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        index = torch.randperm(len(labels), generator=generator)[:batch_size]
        out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels[index])
        loss = torch.nn.functional.cross_entropy(out.logits_per_image, labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def pretrained_tiny_clip(seed: int = 0, steps: int = 300) -> CLIPModel:
    """The job's tiny default (`--model_name_or_path tiny`): [`tiny_clip`] pre-trained for `steps` on the generated
    training patches (drawn with `seed + 100`). Pre-trained once per process, seed and step count; each call returns
    a fresh copy, so a second run (a resumed job, a test) neither waits for it nor shares its weights."""
    model = tiny_clip(seed=seed)
    model.load_state_dict(_pretrained_weights(seed, steps))
    model.config._name_or_path = "tiny"  # what provenance names it by (pmg_aft.provenance.TINY)
    return model.eval()


@functools.lru_cache(maxsize=4)
def _pretrained_weights(seed: int, steps: int) -> dict[str, torch.Tensor]:
    pretraining_set = colour_patches(num_per_class=96, seed=seed + 100)  # the generated set's `train` split
    model = pretrain_tiny_clip(tiny_clip(seed=seed), tiny_tokenizer(), pretraining_set, steps=steps)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
