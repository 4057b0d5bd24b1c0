"""Label-free texture statistics of a frame's coarse view: how much fine detail it holds, at three scales.

TaskRes (EMNLP 2025) reads an image's complexity as its mean absolute grey-level gradient; here the same kind of
measurement is taken per frame, richer, and handed to the Allocator beside the encoder's tokens (``features.texture``).
For the grey view g ∈ [0, 1]^{side×side} and its 2× and 4× area-downscaled copies g_k:

    x_k = [mean, q90, q99 of D_k;  mean, q90, q99 of |Δg_k|]
    texture = log(x + 10⁻³) + 3

with D_k the pooled absolute differences {|g(i, j+1) − g(i, j)|} ∪ {|g(i+1, j) − g(i, j)|} and Δ the
4-neighbour Laplacian on the interior pixels. 18 numbers a frame. 10⁻³ is what a flat frame reads (no log 0),
and the +3 centres natural grey levels near 0. Nothing is fitted: no question, answer, label or queried frame is
read; the statistics only describe the pixels the encoder sees. ``resadapt.evaluate.taskres.complexity`` is the
TaskRes measure these extend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALES = (1, 2, 4)  # the coarse view, and its 2× and 4× area-downscaled copies
QUANTILES = (0.9, 0.99)  # a glyph covers little of a frame: its detail is in the tail, the mean is mostly background
DIM = len(SCALES) * 2 * (1 + len(QUANTILES))


def _summary(x: torch.Tensor) -> torch.Tensor:
    """[n, m] magnitudes → [n, 1 + len(QUANTILES)]: their mean and quantiles."""
    q = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype, device=x.device), dim=1).T
    return torch.cat([x.mean(1, keepdim=True), q], 1)


def texture_stats(small: torch.Tensor) -> torch.Tensor:
    """uint8 frames [n, side, side, 3] → float32 [n, DIM] (module docstring)."""
    grey = small.float().mean(-1)[:, None] / 255  # [n, 1, side, side]
    out = []
    for k in SCALES:
        g = F.avg_pool2d(grey, k)[:, 0]  # [n, side/k, side/k]
        grad = torch.cat([(g[:, :, 1:] - g[:, :, :-1]).abs().flatten(1), (g[:, 1:] - g[:, :-1]).abs().flatten(1)], 1)
        lap = (4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]).abs()
        out += [_summary(grad), _summary(lap.flatten(1))]
    return torch.log(torch.cat(out, 1) + 1e-3) + 3
