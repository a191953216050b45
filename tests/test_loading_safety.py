"""Loading never runs code and never trusts what it cannot check: a config asking for custom code, pickle-only
weights, non-finite weights or processor statistics, a folder whose weights are not the ones its provenance
records, and converters that would drop what they do not know, are each refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from pmg_aft import cli
from pmg_aft.checkpoints import CheckpointError, load_clip
from pmg_aft.convert import openai_to_hf
from pmg_aft.errors import InputError
from pmg_aft.provenance import Provenance, ProvenanceError
from pmg_aft.zoo import import_checkpoint

from .utils import random_openai_state, tiny_base


@pytest.mark.slow
def test_a_folder_asking_for_custom_code_is_refused_and_its_code_never_runs(checkpoint, tmp_path):
    # Was: with a custom model_type and auto_map, transformers asked [y/N] in a terminal and ran the folder's code.
    marker = tmp_path / "ran"
    (tmp_path / "evil").mkdir()
    for name in os.listdir(checkpoint):
        (tmp_path / "evil" / name).write_bytes(open(os.path.join(checkpoint, name), "rb").read())
    config = json.load(open(tmp_path / "evil" / "config.json"))
    config.update(model_type="evil_clip", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (tmp_path / "evil" / "config.json").write_text(json.dumps(config))
    (tmp_path / "evil" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(
        CheckpointError, match=r"asks for custom code \(auto_map: .*never runs code from a model folder"
    ):
        load_clip(str(tmp_path / "evil"))
    # As a user would, in a terminal (stdin a tty would make transformers ask): the answer is never needed.
    done = subprocess.run([sys.executable, "-m", "pmg_aft.cli", "eval", "--model_name_or_path", str(tmp_path / "evil"),
                           "--output_dir", str(tmp_path / "e")], input="y\n", capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)  # fmt: skip
    assert done.returncode == 2 and "custom code" in done.stderr and "[y/N]" not in done.stdout + done.stderr
    assert not marker.exists()


def test_pickle_only_weights_are_refused_without_suggesting_weights_only_false(checkpoint, capsys):
    weights = load_file(os.path.join(checkpoint, "model.safetensors"))
    torch.save(weights, os.path.join(checkpoint, "pytorch_model.bin"))
    os.remove(os.path.join(checkpoint, "model.safetensors"))
    assert cli.main(["eval", "--model_name_or_path", checkpoint, "--output_dir", checkpoint + "-eval"]) == 2
    err = capsys.readouterr().err
    assert "pickle files only (pytorch_model.bin)" in err and "weights_only=False" not in err


def test_non_finite_weights_and_processor_statistics_are_refused(checkpoint):
    path = os.path.join(checkpoint, "model.safetensors")
    weights = load_file(path)
    weights["text_projection.weight"][0, 0] = float("inf")
    save_file(weights, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"non-finite values \(NaN or inf\) in text_projection.weight"):
        load_clip(checkpoint)
    weights["text_projection.weight"][0, 0] = 0.0
    save_file(weights, path, metadata={"format": "pt"})
    processor = os.path.join(checkpoint, "processor_config.json")
    config = json.load(open(processor))
    config["image_processor"]["image_std"] = [0.2, 0.0, 0.2]
    json.dump(config, open(processor, "w"))
    with pytest.raises(CheckpointError, match=r"image_std is \[0.2, 0.0, 0.2\]; it must be 3 finite numbers > 0"):
        load_clip(checkpoint)


def test_weights_changed_after_pmg_aft_wrote_them_or_a_corrupt_record_are_refused(model, make_trainer, tmp_path):
    out = str(tmp_path / "out")
    make_trainer("pmg_aft", model).save_model(out)
    assert load_clip(out)[0] is not None and Provenance.load(out).kind == "trained"
    weights = load_file(os.path.join(out, "model.safetensors"))
    weights["visual_projection.weight"].mul_(1.01)
    save_file(weights, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ProvenanceError, match="are not the ones its pmg_aft.json records"):
        load_clip(out)
    (tmp_path / "out" / "pmg_aft.json").write_text('{"kind": "trained", "weights_dig')
    with pytest.raises(ProvenanceError, match=r"pmg_aft.json cannot be read as pmg_aft provenance"):
        load_clip(out)


def test_converters_refuse_tensors_they_have_no_place_for_and_layerscale(tmp_path):
    state = random_openai_state(2)
    extra = dict(state, **{"visual.transformer.resblocks.0.ls_1.gamma": torch.ones(32)})
    with pytest.raises(InputError, match=r"LayerScale \(ls_1 / ls_2 gammas\), which a CLIPModel does not model"):
        openai_to_hf(extra)
    with pytest.raises(InputError, match=r"1 tensor\(s\) an OpenAI-layout CLIP does not have \(\['visual.extra'\]\)"):
        openai_to_hf(dict(state, **{"visual.extra": torch.ones(3)}))
    assert openai_to_hf(dict(state, input_resolution=torch.tensor(32)))  # OpenAI's files carry numbers: no weights
    base = tmp_path / "base"
    tiny_base().save_pretrained(str(base))
    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    clip_processor(tiny_tokenizer(), tiny_base(), [0.5] * 3, [0.5] * 3).save_pretrained(str(base))
    visual = {k[7:]: v for k, v in extra.items() if k.startswith("visual.")}
    torch.save(visual, tmp_path / "ls.pt")
    with pytest.raises(InputError, match="LayerScale"):
        import_checkpoint(str(tmp_path / "out"), file=str(tmp_path / "ls.pt"), layout="openai_visual",
                          base_model=str(base))  # fmt: skip
    plain = {k: v for k, v in state.items() if k.startswith("visual.")}
    torch.save({**plain, "token_embedding.weight": state["token_embedding.weight"]}, tmp_path / "text.pt")
    with pytest.raises(InputError, match="besides the image tower it holds 1 other tensor"):
        import_checkpoint(str(tmp_path / "out"), file=str(tmp_path / "text.pt"), layout="openai_visual",
                          base_model=str(base))  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_token_never_shows_even_in_a_training_push_traceback(tmp_path, checkpoint):
    # Was: a training push to an endpoint that echoes the request printed the token in a traceback.
    server = textwrap.dedent("""
        import http.server, sys
        class Echo(http.server.BaseHTTPRequestHandler):
            def reply(self):
                body = ("denied for " + str(self.headers.get("authorization"))).encode()
                self.send_response(500); self.send_header("Content-Length", str(len(body))); self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_PUT = do_HEAD = reply
            def log_message(self, *args): pass
        httpd = http.server.HTTPServer(("127.0.0.1", 0), Echo)
        print(httpd.server_address[1], flush=True)
        httpd.serve_forever()
    """)
    echo = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    try:
        port = echo.stdout.readline().strip()
        env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_verysecrettoken123",
               "HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}  # fmt: skip
        config = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "tiny_offline.yaml")
        done = subprocess.run([sys.executable, "examples/finetune.py", "--config", config, "--model_name_or_path",
                               checkpoint, "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--do_eval",
                               "false", "--eval_on_start", "false", "--push_to_hub", "true", "--hub_model_id",
                               "org/x", "--license", "mit", "--save_strategy", "no"],
                              capture_output=True, text=True, env=env, timeout=600,
                              cwd=os.path.join(os.path.dirname(__file__), ".."))  # fmt: skip
    finally:
        echo.kill()
        echo.wait()
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "hf_verysecrettoken123" not in output
    assert "***" in output or "pmg-aft:" in output


def test_a_tokenizer_larger_than_the_text_tower_is_refused(tmp_path):
    # Its prompts would index past the token embeddings: an IndexError traceback at the first evaluation.
    from transformers import CLIPModel

    from pmg_aft.tiny import tiny_tokenizer
    from pmg_aft.zeroshot import clip_processor

    config = tiny_base().config
    config.text_config.vocab_size = 64
    model = CLIPModel(config)
    model.save_pretrained(str(tmp_path / "m"))
    clip_processor(tiny_tokenizer(), model, [0.5] * 3, [0.5] * 3).save_pretrained(str(tmp_path / "m"))
    with pytest.raises(CheckpointError, match="its tokenizer has 514 tokens but the text tower embeds 64"):
        load_clip(str(tmp_path / "m"))
