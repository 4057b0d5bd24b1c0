"""Sizes on the backbone's patch grid (Qwen's ``smart_resize`` rule), shared by the data and backbone layers."""

from __future__ import annotations

import math


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Round (height, width) to multiples of ``factor`` with the area kept inside [min_pixels, max_pixels].

    Each side is rounded to the nearest multiple (at least one ``factor``); an area above ``max_pixels`` is shrunk by
    β = √(h·w / max_pixels) and floored to the grid, an area below ``min_pixels`` grown by the same rule and ceiled.
    Same algorithm as qwen-vl-utils, which the tests compare against.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
