import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from pmg_aft import CLIP_MEAN, CLIP_STD, ZeroShotClassifier, build_class_embeddings, clean_class_name


def test_clean_class_name_follows_the_official_rules():
    assert clean_class_name("Yorkshire_terrier") == "yorkshire terrier"
    assert clean_class_name("jack-o'-lantern") == "jack o' lantern"
    assert clean_class_name("Hand/held  computer") == "hand held computer"


def test_class_embeddings_average_templates_and_are_unit_norm(model, tokenizer):
    names = ["red", "blue"]
    templates = ["a photo of a {}", "a {} square"]
    emb = build_class_embeddings(model, tokenizer, names, templates)
    assert emb.shape == (2, model.config.projection_dim)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-6)
    by_hand = []
    for name in names:
        tokens = tokenizer([t.format(name) for t in templates], padding=True, return_tensors="pt")
        with torch.no_grad():
            feats = F.normalize(model.text_projection(model.text_model(**tokens).pooler_output), dim=-1)
        by_hand.append(F.normalize(feats.mean(0), dim=-1))
    assert torch.allclose(emb, torch.stack(by_hand), atol=1e-5)


def test_logits_equal_clip_forward_with_the_models_own_scale(model, tokenizer, batch):
    """With CLIP's own normalisation and logit scale, the classifier is exactly CLIPModel.forward's logits."""
    names = ["red", "green", "blue"]
    clf = ZeroShotClassifier(
        model, tokenizer, names, ["{}"], image_mean=CLIP_MEAN, image_std=CLIP_STD, logit_scale=None
    )
    x = batch["pixel_values"][:4]
    tokens = tokenizer(names, padding=True, return_tensors="pt")
    pixels = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(**tokens, pixel_values=pixels).logits_per_image
        assert torch.allclose(clf(x), expected, atol=1e-4)
        # The paper's head: s = 1, plain cosine similarity.
        cosine = ZeroShotClassifier(model, tokenizer, names, ["{}"], CLIP_MEAN, CLIP_STD, logit_scale=1.0)(x)
        assert torch.allclose(cosine * model.logit_scale.exp(), expected, atol=1e-4)
        assert cosine.abs().max() <= 1.0 + 1e-6


def test_any_input_size_is_resized_inside_and_gradients_reach_pixels(model, tokenizer):
    clf = ZeroShotClassifier(model, tokenizer, ["red", "blue"])
    x = torch.rand(2, 3, 57, 45, requires_grad=True)
    logits = clf(x)
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_shared_class_embeddings_and_errors(model, tokenizer):
    clf = ZeroShotClassifier(model, tokenizer, ["red", "blue"])
    shared = ZeroShotClassifier(model, class_embeddings=clf.class_embeddings)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clf(x), shared(x))
    with pytest.raises(ValueError, match="class_names"):
        ZeroShotClassifier(model)
    with pytest.raises(ValueError, match="exactly one"):
        ZeroShotClassifier(model, tokenizer, ["red"], ["no placeholder"])
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        clf(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="CLIPModel"):
        ZeroShotClassifier(torch.nn.Linear(2, 2), tokenizer, ["red"])
    assert isinstance(model, CLIPModel)


def test_the_heads_defaults_are_the_shared_configs(model, tokenizer, tmp_path):
    """A classifier built with no options has RobustCLIPConfig's head: CLIP's mean/std and logit scale 100."""
    from pmg_aft import RobustCLIPConfig

    config = RobustCLIPConfig(output_dir=str(tmp_path))
    clf = ZeroShotClassifier(model, tokenizer, ["red", "blue"])
    assert clf.image_mean.flatten().tolist() == pytest.approx(config.image_mean)
    assert clf.image_std.flatten().tolist() == pytest.approx(config.image_std)
    assert clf.logit_scale == config.logit_scale.value == 100.0
