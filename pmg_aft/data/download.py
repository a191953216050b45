"""`pmg-aft datasets download`: fetch benchmarks' split files into the Hugging Face cache (for offline compute nodes)
and record the commit each resolved to, which later loads and reports use."""

from __future__ import annotations

import json
import os

from huggingface_hub import HfApi, get_token

from ..errors import DownloadError
from ..outputs import write_json
from .loading import hub_split_files, unavailable_message
from .registry import BENCHMARKS, get_benchmark, revisions_file


def download_benchmarks(names: list[str], revision: str | None = None, lock: str | None = None) -> dict[str, str]:
    """Download benchmarks (`["all"]`: every registered one) at their pinned (or the given) revision: only the files
    of the splits a run reads ([`Benchmark.hub_splits`]). Return `{name: resolved commit sha}`, also written to `lock`
    (default: `$PMG_AFT_REVISIONS` or `~/.cache/pmg_aft/revisions.json`)."""
    benches = list(BENCHMARKS.values()) if names == ["all"] else [get_benchmark(n) for n in names]
    resolved = {}
    for bench in benches:
        if bench.hub_id is None:
            continue  # generated, nothing to download
        if bench.gated and not get_token():  # say so before anything is downloaded
            raise DownloadError(unavailable_message(bench, gated=True))
        try:
            sha = HfApi().dataset_info(bench.hub_id, revision=revision or bench.revision).sha
            for split in bench.hub_splits:  # only these splits' files
                print(f"{bench.name}: downloading {bench.hub_id} ({bench.config or 'default'}, {split}) at {sha}")
                hub_split_files(bench, split, sha)  # the split's files into the cache; loads read them offline
        except Exception as error:  # network, gating, missing revision: say which and how to fix
            hint = " It is gated: accept its terms on the Hub and set HF_TOKEN." if bench.gated else ""
            raise DownloadError(f"could not download {bench.name} ({bench.hub_id}): {error}.{hint}") from error
        resolved[bench.name] = sha
    lock = lock or revisions_file()
    recorded = {}
    if os.path.exists(lock):
        with open(lock, encoding="utf-8") as f:
            recorded = json.load(f)
    write_json(lock, {**recorded, **resolved})
    print(f"resolved revisions written to {lock}; load_benchmark and reports use them from now on")
    return resolved
