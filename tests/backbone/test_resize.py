import random

import numpy as np
import pytest
import qwen_vl_utils
import torch

from resadapt.backbone.resize import (
    QWEN2_5_VL,
    QWEN3_VL,
    GridSpec,
    apply_plan,
    chunk_means,
    chunk_scales,
    chunk_tokens,
    plan_resize,
    resize_frames,
    target_size,
    tokens_of,
    total_tokens,
)


def test_chunk_scales_are_pair_means_with_a_short_last_chunk():
    assert chunk_scales([1.0, 0.2, 0.5, 0.5, 2.0], 2) == pytest.approx([0.6, 0.5, 2.0])
    assert chunk_scales([1.0, 0.2], 1) == [1.0, 0.2]


@pytest.mark.parametrize("grid", [QWEN2_5_VL, QWEN3_VL, GridSpec(factor=28, temporal_patch=1)])
def test_target_size_agrees_with_qwen_vl_utils(grid):
    rng = random.Random(1)
    half = grid.factor // 2
    for _ in range(3000):
        h, w, s = rng.randint(56, 1500), rng.randint(56, 1500), rng.uniform(0.05, 2.5)
        h0, w0 = max(half, int(h * s)), max(half, int(w * s))
        expected = qwen_vl_utils.smart_resize(h0, w0, grid.factor, grid.min_pixels, grid.max_pixels)
        assert target_size(h, w, s, grid) == expected, (h, w, s)


@pytest.mark.parametrize("grid", [QWEN2_5_VL, QWEN3_VL, GridSpec(factor=28, temporal_patch=1, min_pixels=784)])
def test_vectorised_tokens_equal_the_plan(grid):
    """chunk_tokens / total_tokens (what budget searches call thousands of times) price exactly as plan_resize."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        size = tuple(int(x) for x in rng.integers(30, 1500, 2))
        scales = rng.uniform(0.01, 2.0, int(rng.integers(1, 40))).astype(np.float32).astype(np.float64)
        plan = plan_resize(size, scales.tolist(), grid)
        assert total_tokens(size, scales, grid) == plan.total_tokens
        means = np.array(chunk_scales(scales.tolist(), grid.temporal_patch))
        assert chunk_tokens(size, means.reshape(-1, 1), grid).ravel().tolist() == plan.tokens
        assert chunk_tokens(size, means, grid).tolist() == [tokens_of(target_size(*size, m, grid), grid) for m in means]
        assert chunk_means(scales[None], grid.temporal_patch).tolist() == [means.tolist()]
    batch = rng.uniform(0.01, 2.0, (50, 9)).astype(np.float32)  # clips of one size priced at once
    assert total_tokens((360, 640), batch, grid).tolist() == [plan_resize((360, 640), row.tolist(), grid).total_tokens
                                                              for row in batch]


def test_tokens_and_retention_follow_the_grid():
    plan = plan_resize((224, 224), [1.0, 1.0, 0.2, 0.2, 0.5], QWEN2_5_VL)
    assert plan.sizes == [(224, 224), (56, 56), (112, 112)]
    assert plan.tokens == [64, 4, 16] and plan.total_tokens == 84
    assert plan.full_tokens == 3 * 64 and plan.retention == pytest.approx(84 / 192)
    uniform = plan_resize((224, 224), [0.5] * 16, GridSpec(temporal_patch=1))
    assert uniform.retention == pytest.approx(0.25)
    capped = plan_resize((812, 812), [2.0, 2.0], QWEN2_5_VL)  # above the pixel cap already: no upscaling
    assert capped.sizes == plan_resize((812, 812), [1.0, 1.0], QWEN2_5_VL).sizes == [(756, 756)]
    assert capped.tokens == [27 * 27] and capped.retention == 1.0


def test_bad_scales_are_errors():
    with pytest.raises(ValueError, match="finite and positive"):
        plan_resize((224, 224), [1.0, float("nan")], QWEN2_5_VL)


def test_apply_plan_resizes_each_chunk_with_antialiasing():
    checker = (torch.arange(224)[:, None] + torch.arange(224)[None, :]) % 2 * 255
    frames = checker.to(torch.uint8)[None, :, :, None].expand(4, -1, -1, 3).contiguous()
    plan = plan_resize((224, 224), [1.0, 1.0, 0.25, 0.25], QWEN2_5_VL)
    full, small = apply_plan(frames, plan)
    assert full.shape == (2, 224, 224, 3) and torch.equal(full, frames[:2])
    assert small.shape == (2, 56, 56, 3)
    assert (small.float() - 127.5).abs().max() < 8  # the 1-px checker averages to grey, no aliasing
    assert resize_frames(frames[:1], (28, 56)).shape == (1, 28, 56, 3)
