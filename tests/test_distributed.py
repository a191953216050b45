import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = os.path.join(os.path.dirname(__file__), "dist_step.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_at_the_same_global_batch(tmp_path):
    """Same update and same evaluation report (7 samples, counted once each) on 1 and on 2 processes."""
    single, double = str(tmp_path / "single.safetensors"), str(tmp_path / "ddp.safetensors")
    run([sys.executable, SCRIPT, single, "8"], tmp_path)
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            SCRIPT,
            double,
            "4",
        ],
        tmp_path,
    )
    one, two = load_file(single), load_file(double)
    assert one.pop("world_size").item() == 1 and two.pop("world_size").item() == 2
    assert two["eval_samples"].item() == 7
    for key in ("eval_clean_accuracy", "eval_robust_accuracy", "eval_samples"):  # evaluated after the step
        assert one.pop(key).item() == two.pop(key).item(), key
    norm = sum(v.norm() ** 2 for v in one.values()) ** 0.5
    assert norm > 0
    changed = [n for n, v in one.items() if v.abs().max() > 0]
    assert all(n.startswith(("vision_model.", "visual_projection.")) for n in changed)
    for name in one:  # same update up to float32 summation order: within 1e-5 of the update's norm
        assert torch.allclose(one[name], two[name], atol=1e-5 * norm, rtol=1e-4), name
