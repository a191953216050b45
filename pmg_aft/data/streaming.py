"""Training data that does not fit: a `datasets.IterableDataset` read as a stream, split by process and loader
worker, shuffled, and resumable exactly; and the JPEG-bytes path that decodes batches on the accelerator.

ImageNet-1k's 1.28 million training images would take ~190 GB decoded at 224 px (the decode-once path holds
Tiny-ImageNet in 1.2 GB), so a stream is read as it goes: no full-dataset prepare, nothing decoded in advance.
"""

from __future__ import annotations

import hashlib
from itertools import islice

import torch
from datasets import IterableDataset, concatenate_datasets
from datasets.distributed import split_dataset_by_node

from ..errors import InputError
from .decoded import preprocess_on_device
from .images import image_to_tensor, to_rgb


def _permutation(size: int, *key: int) -> list[int]:
    seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()


class StreamingImages(torch.utils.data.IterableDataset):
    r"""Rows of a `datasets.IterableDataset`, endlessly, for one training process and its loader workers.

    Each pass over the data reads its shards (parquet files, or the shards of `to_iterable_dataset`) in a new seeded
    order; `datasets` deals them to the processes (`split_dataset_by_node`) and to each process's loader workers.
    Rows are shuffled within consecutive windows of `buffer_size` rows. The stream never ends (passes follow one
    another), so every process always has a batch and `max_steps` ends training.

    Resumption is exact: `state_dict()` is the stream's position at the start of the current window and the offset
    within it, so a resumed run re-reads at most one window (not the epoch) and continues at the same sample. (A
    sliding shuffle buffer, as `IterableDataset.shuffle` has, loses the buffered rows on resumption.) With a
    `StatefulDataLoader` each worker's state is saved and restored.

    Args:
        dataset (`datasets.IterableDataset`): the rows; its images are best left encoded (`Image(decode=False)`), so
            decoding happens in the collator (or on the accelerator).
        seed (`int`): seeds the shard order of each pass and each window's permutation.
        buffer_size (`int`): rows per shuffle window (0 or 1: the stream's own order).
        rank, world_size (`int`): this process and the number of processes.
    """

    def __init__(self, dataset: IterableDataset, seed: int = 0, buffer_size: int = 10_000, rank: int = 0,
                 world_size: int = 1) -> None:  # fmt: skip
        if not isinstance(dataset, IterableDataset):
            raise InputError(f"StreamingImages reads a datasets.IterableDataset, got {type(dataset).__name__}.")
        if dataset.features is None and hasattr(dataset, "_resolve_features"):
            # Known once here; else each pass's concatenation of the shards would peek at rows of every shard.
            dataset = dataset._resolve_features()
        self.dataset, self.seed, self.buffer_size = dataset, seed, max(1, int(buffer_size))
        self.rank, self.world_size = rank, world_size
        self._state = {"pass": 0, "window": None, "index": 0, "offset": 0}

    def _pass(self, number: int, stream_index: int, streams: int) -> IterableDataset:
        """Pass `number` of the data for stream `stream_index` of `streams` (one per process and loader worker)."""
        shards = self.dataset.num_shards
        data = self.dataset
        if shards > 1:
            order = _permutation(shards, self.seed, number)
            data = concatenate_datasets([self.dataset.shard(num_shards=shards, index=i) for i in order])
        # Whole shards per stream when they divide evenly, else every streams-th row of each.
        return split_dataset_by_node(data, rank=stream_index, world_size=streams) if streams > 1 else data

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        index, streams = self.rank * workers + worker, self.world_size * workers
        while True:
            state = self._state
            stream = self._pass(state["pass"], index, streams)
            if state["window"] is not None:
                stream.load_state_dict(state["window"])
            # `iter` rather than `for row in stream`: inside a loader worker, datasets would split the stream across
            # workers again (and cannot restore a state saved so); here the split above is the only one.
            rows = (dict(zip(batch, values)) for batch in stream.iter(batch_size=1) for values in zip(*batch.values()))
            read_any = state["window"] is not None
            while True:
                window = list(islice(rows, self.buffer_size))
                if not window:
                    break
                read_any = True
                order = _permutation(len(window), self.seed, state["pass"], index, state["index"])
                for position in range(state["offset"], len(window)):
                    state["offset"] = position + 1
                    yield window[order[position]]
                state.update(window=stream.state_dict(), index=state["index"] + 1, offset=0)
            if not read_any:
                raise InputError(
                    f"The training stream of process {self.rank} (loader worker {worker}) has no rows: "
                    f"{self.dataset.num_shards} shard(s) are dealt to {self.world_size} process(es) x {workers} "
                    "worker(s). Use fewer dataloader_num_workers, or more data."
                )
            self._state = {"pass": state["pass"] + 1, "window": None, "index": 0, "offset": 0}

    def state_dict(self) -> dict:
        """Where the stream is: the pass, the stream's state at the current window's start, the window's number and
        how many of its rows were yielded."""
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        self._state = dict(state)


def _image_bytes(cell) -> bytes:
    """The encoded bytes of an undecoded image cell (`{"bytes", "path"}`)."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return cell["bytes"]
        with open(cell["path"], "rb") as f:
            return f.read()
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    raise InputError(
        f"decode_on_device needs encoded images (bytes); got a {type(cell).__name__}. Load the data with "
        "Image(decode=False), as the streaming path does."
    )


class EncodedImages:
    """A batch's images as their encoded bytes, opaque to `Trainer`'s device placement (they are decoded on the
    accelerator, from host memory, by [`decode_on_device`])."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    def __len__(self) -> int:
        return len(self.blobs)


class EncodedImagesCollator:
    """Rows -> `{"encoded_images": EncodedImages, "labels"}`: the host only reads bytes."""

    def __init__(self, image_column: str = "image", label_column: str | None = "label") -> None:
        self.image_column, self.label_column = image_column, label_column

    def __call__(self, rows) -> dict:
        batch = {"encoded_images": EncodedImages([_image_bytes(row[self.image_column]) for row in rows])}
        if self.label_column is not None and self.label_column in rows[0]:
            batch["labels"] = torch.tensor([int(row[self.label_column]) for row in rows], dtype=torch.long)
        return batch


def _is_jpeg(blob: bytes) -> bool:
    return blob[:3] == b"\xff\xd8\xff"


def decode_on_device(
    images: EncodedImages,
    device: torch.device,
    image_size: int,
    resize_size: int | None,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Decode a batch of encoded images where training runs, then resize and centre-crop each as the host path
    does ([`preprocess_on_device`]): float32 `(batch, 3, image_size, image_size)` in [0, 1].

    JPEGs go through `torchvision.io.decode_jpeg` (on CUDA in one batched call: nvJPEG); anything else (PNG, ...)
    is decoded on the host with PIL.
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as error:
        raise InputError(
            "decode_on_device needs torchvision: pip install torchvision (matching your torch)."
        ) from error
    blobs = images.blobs
    jpeg = [i for i, blob in enumerate(blobs) if _is_jpeg(blob)]
    decoded: list[torch.Tensor | None] = [None] * len(blobs)
    if jpeg:
        data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg]
        for i, image in zip(jpeg, decode_jpeg(data, mode=ImageReadMode.RGB, device=device)):
            decoded[i] = image
    for i, blob in enumerate(blobs):
        if decoded[i] is None:
            decoded[i] = (image_to_tensor(to_rgb({"bytes": blob})) * 255).round().to(torch.uint8).to(device)
    out = [preprocess_on_device(image[None], image_size, resize_size, interpolation)[0] for image in decoded]
    return torch.stack(out)
