import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from .utils import METHODS, VISION, free_port, run

SCRIPT = os.path.join(os.path.dirname(__file__), "dist_step.py")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_at_the_same_global_batch_for_every_method(tmp_path):
    """Same update and same evaluation (7 samples, counted once each) on 1 and on 2 processes, for each method."""
    (tmp_path / "single").mkdir()
    (tmp_path / "ddp").mkdir()
    run([sys.executable, SCRIPT, str(tmp_path / "single"), "8"], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         SCRIPT, str(tmp_path / "ddp"), "4"], tmp_path)  # fmt: skip
    for method in METHODS:
        one = load_file(str(tmp_path / "single" / f"{method}.safetensors"))
        two = load_file(str(tmp_path / "ddp" / f"{method}.safetensors"))
        assert one.pop("world_size").item() == 1 and two.pop("world_size").item() == 2
        assert two["eval_samples"].item() == 7
        for key in ("eval_clean_accuracy", "eval_robust_accuracy", "eval_samples"):  # evaluated after the step
            assert one.pop(key).item() == two.pop(key).item(), (method, key)
        norm = sum(v.norm() ** 2 for v in one.values()) ** 0.5
        assert norm > 0, method
        changed = [n for n, v in one.items() if v.abs().max() > 0]
        assert all(n.startswith(VISION) for n in changed), method
        for name in one:  # same update up to float32 summation order: within 1e-5 of the update's norm
            assert torch.allclose(one[name], two[name], atol=1e-5 * norm, rtol=1e-4), (method, name)
