"""benchmarks/data_path.py runs and prints both data paths' images/s per core (no timing is asserted)."""

import os
import re
import sys

import pytest

from .utils import run

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.slow
def test_data_path_prints_both_paths_through_the_trainers_loader():
    out = run([sys.executable, os.path.join(ROOT, "benchmarks", "data_path.py"), "--images", "64", "--rounds", "1",
               "--batch", "16"], cwd=ROOT).stdout  # fmt: skip
    assert re.search(r"\d+ JPEGs, mean \d+ KB", out), out
    for path in ("host", "bytes"):
        assert re.search(rf"^\| {path} \| \d+ \| \d+ \|$", out, re.M), (path, out)
    assert re.search(r"bytes / host: [\d.]+x \(same run\)", out), out
