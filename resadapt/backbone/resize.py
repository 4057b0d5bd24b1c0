"""The visual budget operator R_s: per-frame scales → per-chunk sizes on the backbone's grid → resized frames.

Qwen's temporal patch joins 2 frames into one chunk that must share a size, so a chunk is resized once by the mean
scale of its frames, s̄_k = mean(s_2k, s_2k+1) (method spec §3.2). For a chunk with base size H×W:

    h₀ = max(p, ⌊H·s̄⌋),  w₀ = max(p, ⌊W·s̄⌋),  (h, w) = smart_resize(h₀, w₀; F, min_pixels, max_pixels)

with p = F/2. A chunk costs (h/F)·(w/F) visual tokens; retention r = N(s)/N(1) on the realised sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from resadapt.grid import smart_resize


@dataclass(frozen=True)
class GridSpec:
    """A backbone's visual grid: F (the token cell side), frames per temporal chunk, and pixel limits per chunk."""

    factor: int = 28
    temporal_patch: int = 2
    min_pixels: int = 3136  # 56², for Qwen2.5-VL and Qwen3-VL alike (spec §3.3)
    max_tokens: int = 768

    @property
    def max_pixels(self) -> int:
        return self.max_tokens * self.factor**2


QWEN2_5_VL = GridSpec(factor=28, temporal_patch=2)
QWEN3_VL = GridSpec(factor=32, temporal_patch=2)


@dataclass(frozen=True)
class ResizePlan:
    """Where each chunk of frames goes and what it costs."""

    chunks: list[range]  # frame indices of each chunk
    sizes: list[tuple[int, int]]  # (h, w) per chunk
    tokens: list[int]  # visual tokens per chunk
    full_tokens: int  # tokens with every frame at scale 1 (same chunking)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    @property
    def retention(self) -> float:
        return self.total_tokens / self.full_tokens


def chunk_ranges(n_frames: int, temporal_patch: int) -> list[range]:
    return [range(k, min(k + temporal_patch, n_frames)) for k in range(0, n_frames, temporal_patch)]


def chunk_scales(scales: Sequence[float], temporal_patch: int) -> list[float]:
    """s̄_k: the mean scale of each chunk's frames (the last chunk may hold fewer frames)."""
    return [sum(scales[i] for i in r) / len(r) for r in chunk_ranges(len(scales), temporal_patch)]


@lru_cache(maxsize=1 << 16)
def _grid_size(h0: int, w0: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    # budget searches ask for the same few hundred floored sizes millions of times
    return smart_resize(h0, w0, factor, min_pixels, max_pixels)


def target_size(height: int, width: int, scale: float, grid: GridSpec) -> tuple[int, int]:
    half = grid.factor // 2
    return _grid_size(max(half, math.floor(height * scale)), max(half, math.floor(width * scale)),
                      grid.factor, grid.min_pixels, grid.max_pixels)


def tokens_of(size: tuple[int, int], grid: GridSpec) -> int:
    return (size[0] // grid.factor) * (size[1] // grid.factor)


def chunk_tokens(frame_size: tuple[int, int], chunk_scales: np.ndarray, grid: GridSpec) -> np.ndarray:
    """tokens_of(target_size(H, W, s̄)) for every chunk scale of an array (any shape), in one pass: the same
    float64 products and rule as ``target_size``, for searches that price thousands of candidate scales."""
    half, f = grid.factor // 2, grid.factor
    s = np.asarray(chunk_scales, dtype=np.float64)
    h0 = np.maximum(half, np.floor(frame_size[0] * s)).astype(np.int64)
    w0 = np.maximum(half, np.floor(frame_size[1] * s)).astype(np.int64)
    # a search prices few distinct floored sizes: the grid rule runs once per distinct (h0, w0)
    width = int(w0.max(initial=0)) + 1
    keys, where = np.unique(h0 * width + w0, return_inverse=True)
    tokens = [(h // f) * (w // f) for h, w in (_grid_size(k // width, k % width, f, grid.min_pixels, grid.max_pixels)
                                                for k in keys.tolist())]
    return np.asarray(tokens, dtype=np.int64)[where].reshape(s.shape)


def chunk_means(scales: np.ndarray, temporal_patch: int) -> np.ndarray:
    """``chunk_scales`` of every row of ``scales`` [..., T] at once → [..., K], with the same float64 sums (left to
    right, from 0) and divisions."""
    s = np.asarray(scales, dtype=np.float64)
    if temporal_patch == 1:
        return s
    ranges = chunk_ranges(s.shape[-1], temporal_patch)
    total = np.zeros((*s.shape[:-1], len(ranges)))
    for j in range(temporal_patch):  # the j-th frame of every chunk that has one (only the last can be short)
        idx = [r.start + j for r in ranges if r.start + j < r.stop]
        total[..., : len(idx)] += s[..., idx]
    return total / np.array([len(r) for r in ranges], dtype=np.float64)


def total_tokens(frame_size: tuple[int, int], scales: np.ndarray, grid: GridSpec) -> np.ndarray | int:
    """``plan_resize(frame_size, scales, grid).total_tokens`` for per-frame scales [..., T], without the plan: an
    int for one clip [T], an array [...] for clips of one frame size."""
    tokens = chunk_tokens(frame_size, chunk_means(scales, grid.temporal_patch), grid).sum(-1)
    return int(tokens) if np.ndim(tokens) == 0 else tokens


def plan_resize(frame_size: tuple[int, int], scales: Sequence[float], grid: GridSpec) -> ResizePlan:
    """Chunk sizes and token counts for frames of base size (H, W) at per-frame ``scales``."""
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be finite and positive, got {list(scales)}")
    chunks = chunk_ranges(len(scales), grid.temporal_patch)
    sizes = [target_size(*frame_size, s, grid) for s in chunk_scales(scales, grid.temporal_patch)]
    full = tokens_of(target_size(*frame_size, 1.0, grid), grid) * len(chunks)
    return ResizePlan(chunks=chunks, sizes=sizes, tokens=[tokens_of(s, grid) for s in sizes], full_tokens=full)


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of uint8 frames [n, H, W, 3] to ``size`` = (h, w) → uint8 [n, h, w, 3]."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def apply_plan(frames: torch.Tensor, plan: ResizePlan) -> list[torch.Tensor]:
    """Resize each chunk of ``frames`` (uint8 [T, H, W, 3]) to its planned size."""
    return [resize_frames(frames[r.start : r.stop], size) for r, size in zip(plan.chunks, plan.sizes, strict=True)]
