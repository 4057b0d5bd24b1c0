"""One video's frames, decoded exactly as the shard stage decodes them, at any frame count.

Inference (``resadapt allocate``) and evaluation at 2×/4× the frames need the frames a shard would hold without
writing a shard: same sampling (segment centres), same base size, same ffmpeg decode, same frame codec round trip.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resadapt.config import ShardParams
from resadapt.data.shards import _encode_frame, base_size
from resadapt.data.video import VideoError, decode_frames, probe, sample_indices


@dataclass
class Clip:
    frames: torch.Tensor  # uint8 [T, H, W, 3] at the base size
    indices: list[int]  # sampled frame numbers in the video
    fps: float
    duration: float  # seconds

    def segments(self) -> list[tuple[float, float]]:
        """The time segment each sampled frame stands for (T equal parts of the video)."""
        seg = self.duration / len(self.indices)
        return [(t * seg, (t + 1) * seg) for t in range(len(self.indices))]


def load_clip(path: str | Path, params: ShardParams, n_frames: int | None = None) -> Clip:
    """``n_frames`` (default ``params.n_frames``) frames of ``path`` as the shard stage would store them."""
    n = n_frames or params.n_frames
    return load_clip_counts(path, params, [n])[n]


def load_clip_counts(path: str | Path, params: ShardParams, counts: Sequence[int]) -> dict[int, Clip]:
    """``load_clip`` of ``path`` at each frame count, from one decode: ffmpeg streams the video once for the union
    of the sampled frames, and each distinct frame goes through the codec round trip once (a frame comes out the
    same whichever other frames are selected with it)."""
    path = Path(path)
    info = probe(path, decode=False)
    try:
        indices = {n: sample_indices(info, n) for n in counts}
    except ValueError as exc:
        raise VideoError(path, str(exc)) from None
    size = base_size(info.height, info.width, params.patch_factor, params.max_pixels)
    unique = sorted({i for idx in indices.values() for i in idx})
    decoded = decode_frames(path, unique, size)
    stored = np.stack([np.asarray(Image.open(io.BytesIO(_encode_frame(f, params))).convert("RGB")) for f in decoded])
    position = {idx: k for k, idx in enumerate(unique)}
    return {n: Clip(torch.from_numpy(stored[[position[i] for i in idx]]), idx, info.fps, info.duration)
            for n, idx in indices.items()}


def load_clips(paths: Sequence[str | Path], params: ShardParams, n_frames: int | None = None,
               n_workers: int = 1) -> Iterator[Clip | VideoError]:
    """``load_clip`` of each path in order, on ``n_workers`` threads (ffmpeg decodes in its own process); a video
    that cannot give the frames yields its ``VideoError`` instead of stopping the others."""
    n = n_frames or params.n_frames
    for clips in load_clips_counts(paths, params, [n], n_workers):
        yield clips if isinstance(clips, VideoError) else clips[n]


def load_clips_counts(paths: Sequence[str | Path], params: ShardParams, counts: Sequence[int],
                      n_workers: int = 1) -> Iterator[dict[int, Clip] | VideoError]:
    """``load_clip_counts`` of each path in order, on ``n_workers`` threads, a failing video yielding its
    ``VideoError``."""

    def one(path: str | Path) -> dict[int, Clip] | VideoError:
        try:
            return load_clip_counts(path, params, counts)
        except VideoError as exc:
            return exc

    with ThreadPoolExecutor(max(1, n_workers)) as pool:
        yield from pool.map(one, paths)
