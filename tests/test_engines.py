import os
import sys
import types

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType
from safetensors.torch import load_file
from transformers import CLIPModel

from pmg_aft import TRAINERS
from pmg_aft.tiny import tiny_clip
from pmg_aft.trainers.engines import place_reference, reference_deepspeed_config, sharding_problem

from .utils import METHODS, VISION, free_port, run

SCRIPT = os.path.join(os.path.dirname(__file__), "fsdp_step.py")
ACCELERATE = os.path.join(os.path.dirname(__file__), "..", "examples", "accelerate")


def launch_fsdp(*args: str) -> list[str]:
    """`accelerate launch` with the shipped FSDP config, on 2 CPU processes (gloo)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.path.join(ACCELERATE, "fsdp.yaml"),
            "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()), SCRIPT,
            *args]  # fmt: skip


@pytest.mark.slow
def test_fsdp2_with_checkpointed_layers_gives_the_one_process_update_for_every_method(tmp_path):
    """One step of each method on 2 FSDP2 processes (vision layers sharded and checkpointed, the reference sharded)
    against 1 plain process at the same global batch."""
    (tmp_path / "one").mkdir()
    (tmp_path / "fsdp").mkdir()
    run([sys.executable, SCRIPT, "update", str(tmp_path / "one"), "8"], tmp_path)
    run(launch_fsdp("update", str(tmp_path / "fsdp"), "4"), tmp_path)
    for method in METHODS:
        one = load_file(str(tmp_path / "one" / f"{method}.safetensors"))
        two = load_file(str(tmp_path / "fsdp" / f"{method}.safetensors"))
        assert one.pop("world_size").item() == 1 and two.pop("world_size").item() == 2
        assert one.pop("sharded_reference").item() == 0
        uses_reference = TRAINERS[method].config_class(output_dir=str(tmp_path), use_cpu=True).uses_reference
        assert two.pop("sharded_reference").item() == int(uses_reference), method
        norm = sum(v.norm() ** 2 for v in one.values()) ** 0.5
        assert norm > 0, method
        changed = [n for n, v in one.items() if v.abs().max() > 0]
        assert changed and all(n.startswith(VISION) for n in changed), method
        for name in one:  # the same update up to float32 summation order
            assert torch.allclose(one[name], two[name], atol=1e-5 * norm, rtol=1e-4), (method, name)


@pytest.mark.slow
def test_fsdp2_checkpoint_loads_as_a_plain_clip_model_and_resumes_bit_identically(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    whole.mkdir()
    resumed.mkdir()
    run(launch_fsdp("run", str(whole), "4", "2"), tmp_path)
    run(launch_fsdp("run", str(resumed), "4", "2", str(whole / "checkpoint-1")), tmp_path)
    final, again = load_file(str(whole / "final.safetensors")), load_file(str(resumed / "final.safetensors"))
    assert final.keys() == again.keys()
    assert all(torch.equal(final[k], again[k]) for k in final)
    # The checkpoint is one consolidated safetensors file: transformers alone loads it, and it holds the target only.
    checkpoint = CLIPModel.from_pretrained(str(whole / "checkpoint-2"))
    state = checkpoint.state_dict()
    assert all(torch.equal(state[k], final[k]) for k in final)
    assert set(load_file(str(whole / "checkpoint-2" / "model.safetensors"))) == set(tiny_clip(seed=0).state_dict())
    start = tiny_clip(seed=0).state_dict()
    assert any(not torch.equal(state[k], start[k]) for k in state if k.startswith(VISION))


def test_shipped_engine_configs_parse_as_accelerate_configs():
    fsdp = load_config_from_file(os.path.join(ACCELERATE, "fsdp.yaml"))
    assert fsdp.distributed_type == DistributedType.FSDP
    assert fsdp.fsdp_config["fsdp_version"] == 2 and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    for stage in (2, 3):
        config = load_config_from_file(os.path.join(ACCELERATE, f"deepspeed_zero{stage}.yaml"))
        assert config.distributed_type == DistributedType.DEEPSPEED
        assert config.deepspeed_config["zero_stage"] == stage


def deepspeed_plugin_config(stage: int) -> dict:
    """The DeepSpeed config accelerate builds from a shipped YAML (as `accelerate launch` does)."""
    values = load_config_from_file(os.path.join(ACCELERATE, f"deepspeed_zero{stage}.yaml")).deepspeed_config
    return DeepSpeedPlugin(**values).deepspeed_config


def test_reference_deepspeed_config_shards_under_zero3_and_replicates_under_zero2():
    zero3 = reference_deepspeed_config(deepspeed_plugin_config(3), micro_batch=32, mixed_precision="bf16")
    assert zero3["zero_optimization"]["stage"] == 3
    assert "stage3_gather_16bit_weights_on_model_save" not in zero3["zero_optimization"]  # never saved
    assert "optimizer" not in zero3 and "scheduler" not in zero3
    assert zero3["train_micro_batch_size_per_gpu"] == 32 and zero3["bf16"] == {"enabled": True}
    assert "auto" not in repr(zero3)  # resolved for the trained engine only: the reference gets real values
    zero2 = reference_deepspeed_config(deepspeed_plugin_config(2), micro_batch=32)
    assert zero2["zero_optimization"] == {"stage": 0}  # no optimizer state or gradients to shard: a replica
    assert zero2["fp16"] == {"enabled": False}


class FakeAccelerator:
    """What `place_reference` reads of an accelerator running DeepSpeed at `stage`."""

    def __init__(self, stage: int):
        self.distributed_type = DistributedType.DEEPSPEED
        self.mixed_precision = "bf16"
        self.device = torch.device("cpu")
        self.state = types.SimpleNamespace(deepspeed_plugin=types.SimpleNamespace(
            deepspeed_config=deepspeed_plugin_config(stage)))  # fmt: skip
        self.prepared = []

    def prepare_model(self, model, evaluation_mode=False):
        self.prepared.append(evaluation_mode)
        return model


def test_reference_placement_under_deepspeed(monkeypatch):
    calls = []

    class Engine:
        def __init__(self, model):
            self.module = model

        def eval(self):
            calls.append("eval")

    def initialize(model, config):
        calls.append(config)
        return Engine(model), None, None, None

    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(initialize=initialize))
    model = tiny_clip(seed=0)
    placed, how = place_reference(FakeAccelerator(3), model, micro_batch=8)
    assert how == "sharded (DeepSpeed ZeRO-3)" and placed is model
    assert calls[0]["zero_optimization"]["stage"] == 3 and "optimizer" not in calls[0] and calls[1] == "eval"
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    accelerator = FakeAccelerator(2)
    placed, how = place_reference(accelerator, tiny_clip(seed=0), micro_batch=8)
    assert how == "replicated" and accelerator.prepared == [True] and len(calls) == 2  # no engine under ZeRO-2


def test_lora_under_fsdp_is_refused_with_the_way_out():
    accelerator = types.SimpleNamespace(distributed_type=DistributedType.FSDP)
    problem = sharding_problem(accelerator, types.SimpleNamespace(use_peft=True))
    assert "use_peft under FSDP" in problem and "multi_gpu.yaml" in problem
    assert sharding_problem(accelerator, types.SimpleNamespace(use_peft=False)) is None
    ddp = types.SimpleNamespace(distributed_type=DistributedType.MULTI_GPU)
    assert sharding_problem(ddp, types.SimpleNamespace(use_peft=True)) is None
