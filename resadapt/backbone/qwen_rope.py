"""Anchored M-RoPE for chunked videos on Qwen2-VL / Qwen2.5-VL (method spec §3.4, §10.4).

The budget operator gives every 2-frame chunk its own size, so a clip reaches the model as K video items. Placed in
one vision block (``<|vision_start|>`` + K pads + ``<|vision_end|>``), the stock position ids would treat the
block's tokens as one grid. Here every chunk of a block shares the anchor p₀ (the block's first position):

    temporal id of chunk k, temporal row i:  p₀ + ⌊(g_k + i) · tokens_per_second · second_per_grid_k⌋
    height / width ids:                       p₀ + row / p₀ + column of the chunk's own merged grid
    g_k = Σ_{j<k} t_j                         (temporal rows before chunk k in its block)

which is exactly what the native, unchunked video of those frames gets when all chunks share one size. Text after
the block continues at max + 1 (as in the original Qwen2.5-VL and vLLM). Images keep their stock positions.
"""

from __future__ import annotations

import itertools
import types

import torch


def _grid_positions(p0: int, t_rows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[3, t·h·w] ids for one merged grid: temporal ids ``t_rows`` (already offset), h/w from ``p0``."""
    tt, hh, ww = torch.meshgrid(t_rows, torch.arange(h) + p0, torch.arange(w) + p0, indexing="ij")
    return torch.stack([tt, hh, ww]).reshape(3, -1)


def anchored_rope_index(model, input_ids: torch.LongTensor, mm_token_type_ids: torch.Tensor,
                        image_grid_thw: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
                        second_per_grid_ts: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                        **_) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for ``Qwen2_5_VLModel.get_rope_index``: position ids [3, B, L] and rope deltas [B, 1]."""
    merge = model.config.vision_config.spatial_merge_size
    per_second = getattr(model.config.vision_config, "tokens_per_second", None)
    images = iter(image_grid_thw.tolist()) if image_grid_thw is not None else iter(())
    videos = list(video_grid_thw.tolist()) if video_grid_thw is not None else []
    seconds = (second_per_grid_ts.tolist() if second_per_grid_ts is not None else [1.0] * len(videos))
    next_video = 0
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    deltas = []
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(input_ids[b], dtype=bool)
        types_b = mm_token_type_ids[b][keep].tolist()
        pos, rows = 0, []
        for kind, group in itertools.groupby(types_b):
            length = len(list(group))
            if kind == 0:  # text
                rows.append(torch.arange(length).expand(3, -1) + pos)
                pos += length
                continue
            if kind == 1:  # an image: stock layout
                t, h, w = next(images)
                rows.append(_grid_positions(pos, torch.arange(t) + pos, h // merge, w // merge))
                pos = int(rows[-1].max()) + 1
                continue
            block, g, used = [], 0, 0  # a video block: as many chunks as its pads hold
            while used < length:
                t, h, w = videos[next_video]
                interval = per_second * seconds[next_video] if per_second is not None else 1.0
                t_rows = ((g + torch.arange(t)) * interval).long() + pos
                block.append(_grid_positions(pos, t_rows, h // merge, w // merge))
                used += t * (h // merge) * (w // merge)
                g, next_video = g + t, next_video + 1
            if used != length:
                raise ValueError(f"a video block of {length} tokens does not match its chunks' grids ({used})")
            rows.append(torch.cat(block, 1))
            pos = int(rows[-1].max()) + 1
        ids = torch.cat(rows, 1).to(position_ids)
        position_ids[:, b, keep] = ids
        deltas.append(int(ids.max()) + 1 - len(types_b))
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def install_anchored_rope(model) -> bool:
    """Use ``anchored_rope_index`` on this model instance (Qwen2-VL / Qwen2.5-VL); False for other families."""
    inner = getattr(model, "model", None)
    if getattr(model.config, "model_type", "") not in ("qwen2_5_vl", "qwen2_vl") or inner is None:
        return False
    inner.get_rope_index = types.MethodType(anchored_rope_index, inner)
    return True
