"""Coarse features per shard sample (the Allocator's inputs), and how a split of them is stored and read.

Stored per split as ``<split>.safetensors`` (patches [N, T, L, Dp], frame_mask [N, T], text [N, Nw, Dx],
text_mask [N, Nw], frame_embed [N, T, E], query_embed [N, E] or [N, K, E] (K views of each query); features in
``features.dtype``, masks bool) plus ``<split>.json`` (the shard keys, in order). E = 0 for an encoder without a
shared frame/query space. ``load_features`` reads lazily: ``select`` fetches only the requested rows from the file
(a real split at the reference's 64 tokens × 576 per frame is tens of GB, more than RAM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from resadapt.io import atomic_path, write_json

TENSORS = ("patches", "frame_mask", "text", "text_mask", "frame_embed", "query_embed")  # the Allocator's order
DTYPES = {"float16": torch.float16, "float32": torch.float32}


class StoredTensor:
    """One tensor of a features file, read by rows on demand: ``x[index]`` loads those rows only.

    ``index`` is an int, a slice or a 1-D list/tensor of row numbers (repeats allowed, any order).
    """

    def __init__(self, handle, name: str):
        self._slice = handle.get_slice(name)
        self.name = name
        self.shape = torch.Size(self._slice.get_shape())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            return self._slice[index]
        if isinstance(index, int):
            return self[[index]][0]
        rows = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        rows = torch.where(rows < 0, rows + len(self), rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"{self.name}: rows {rows.tolist()} out of range for {len(self)} samples")
        wanted, inverse = torch.unique(rows, return_inverse=True)  # sorted distinct rows
        # contiguous runs of wanted rows, one read each
        breaks = (torch.nonzero(wanted.diff() != 1).flatten() + 1).tolist()
        runs = zip([0, *breaks], [*breaks, len(wanted)], strict=True)
        parts = [self._slice[int(wanted[a]) : int(wanted[b - 1]) + 1] for a, b in runs]
        if not parts:
            return self._slice[0:0]
        return torch.cat(parts)[inverse]


def _as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x


@dataclass
class Features:
    """A split's features, in memory (tensors) or stored (``StoredTensor``s, read per ``select``)."""

    keys: list[str]
    patches: torch.Tensor | StoredTensor  # [N, T, L, Dp]
    frame_mask: torch.Tensor | StoredTensor  # [N, T] bool
    text: torch.Tensor | StoredTensor  # [N, Nw, Dx]
    text_mask: torch.Tensor | StoredTensor  # [N, Nw] bool
    frame_embed: torch.Tensor | StoredTensor  # [N, T, E] frames in the encoder's shared frame/query space
    query_embed: torch.Tensor | StoredTensor  # [N, E], or [N, K, E]: K views of each query

    def select(self, index: torch.Tensor | list[int]) -> tuple[torch.Tensor, ...]:
        """The Allocator's inputs for these samples, in its argument order: float32 features, bool masks."""
        return tuple(_as_input(getattr(self, name)[index]) for name in TENSORS)


def save_features(features: Features, out_dir: str | Path, split: str, dtype: str = "float16") -> None:
    """Write ``features`` with its float tensors in ``dtype`` (masks stay bool)."""
    out_dir = Path(out_dir)
    tensors = {}
    for name in TENSORS:
        x = getattr(features, name)
        tensors[name] = (x.to(DTYPES[dtype]) if x.is_floating_point() else x).contiguous()
    with atomic_path(out_dir / f"{split}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(out_dir / f"{split}.json", {"keys": features.keys})


def load_features(out_dir: str | Path, split: str) -> Features:
    """The stored split, read lazily (the file stays memory-mapped; rows are read by ``select``)."""
    out_dir = Path(out_dir)
    path = out_dir / f"{split}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no features for split {split!r} (run the features stage)")
    handle = safe_open(str(path), framework="pt")
    missing = [name for name in TENSORS if name not in handle.keys()]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing} (rerun the features stage)")
    keys = json.loads((out_dir / f"{split}.json").read_text(encoding="utf-8"))["keys"]
    stored = [StoredTensor(handle, name) for name in TENSORS]
    if any(len(t) != len(keys) for t in stored):
        raise ValueError(f"{path}: {[len(t) for t in stored]} rows for {len(keys)} keys (rerun the features stage)")
    return Features(keys, *stored)
