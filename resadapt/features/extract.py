"""Encoding samples in batches on the encoder's device: a split from its shards, or clips given on the fly.

Frames are downscaled to ``side`` px per clip, then every clip's frames run through the encoder together,
``batch_size`` frames per forward pass (texts likewise); the results are split back per sample, padded and masked.
With ``texture``, each frame's label-free texture statistics (``resadapt.features.texture``) are appended to every one
of its patch tokens (Dp grows by ``texture.DIM``), whatever the encoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tqdm import tqdm

from resadapt.backbone.interface import Query
from resadapt.backbone.resize import resize_frames
from resadapt.data.shards import iter_split
from resadapt.features.coarse import Features
from resadapt.features.encoders import Encoder
from resadapt.features.texture import texture_stats

Row = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def encode_rows(encoder: Encoder, clips: Sequence[torch.Tensor], texts: Sequence[str], *,
                texture: bool) -> list[Row]:
    """uint8 clips [T_i, H_i, W_i, 3] and their query texts → per sample (patch tokens [T_i, L, Dp],
    frame embeddings [T_i, E], text features [Nw_i, Dx], query embedding [E] or views [K_i, E]); with ``texture``,
    Dp is the encoder's width + ``resadapt.features.texture.DIM``."""
    side, size = encoder.side, encoder.batch_size
    small = torch.cat([resize_frames(c, (side, side)) for c in clips])  # [ΣT, side, side, 3]
    batches = range(0, len(small), size)
    tokens, frame_embed = (torch.cat(x) for x in zip(*(encoder.frames(small[i : i + size]) for i in batches),
                                                       strict=True))
    if texture:  # per frame, so computed batch by batch: a 4x eval split at once would take gigabytes
        stats = torch.cat([texture_stats(small[i : i + size]) for i in batches])  # [ΣT, texture DIM]
        tokens = torch.cat([tokens, stats[:, None].expand(-1, tokens.shape[1], -1).to(tokens.dtype)], -1)
    words, query_embed = [], []
    for i in range(0, len(texts), size):
        w, q = encoder.texts(list(texts[i : i + size]))
        words += w
        query_embed += list(q)
    lengths = [len(c) for c in clips]
    return list(zip(tokens.split(lengths), frame_embed.split(lengths), words, query_embed, strict=True))


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(r.shape[0] for r in rows)
    out = rows[0].new_zeros(len(rows), width, *rows[0].shape[1:])
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]], mask[i, : r.shape[0]] = r, True
    return out, mask


def _views(rows: list[torch.Tensor]) -> torch.Tensor:
    """Per-sample query embeddings [E] → [N, E]; views [K_i, E] → [N, K, E], a shorter query padded with copies of
    its first view (the match is a max over views, which a copy leaves unchanged)."""
    if rows[0].dim() == 1:
        return torch.stack(rows)
    k = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, r[:1].expand(k - len(r), -1)]) for r in rows])


def assemble(keys: list[str], rows: list[Row]) -> Features:
    """Per-sample rows → one padded, masked in-memory ``Features``."""
    patches, frame_embeds, texts, query_embeds = zip(*rows, strict=True)
    frame_feats, frame_mask = _pad(list(patches))
    text, text_mask = _pad(list(texts))
    return Features(keys, frame_feats, frame_mask, text, text_mask, _pad(list(frame_embeds))[0],
                    _views(list(query_embeds)))


def encode(encoder: Encoder, clips: Sequence[torch.Tensor], queries: Sequence[str | Query],
           keys: Sequence[str] | None = None, *, texture: bool) -> Features:
    """Features of uint8 clips [T, H, W, 3] (T may differ between clips: padded and masked). A ``Query`` is read
    as the encoder reads a shard sample's; a plain string as it is. ``texture``: as the features stage was run
    (``features.texture``), so that the Allocator gets the width it was trained on."""
    texts = [q if isinstance(q, str) else encoder.query_text(q) for q in queries]
    rows = encode_rows(encoder, clips, texts, texture=texture)
    return assemble(list(keys) if keys is not None else [str(i) for i in range(len(clips))], rows)


def _groups(samples: Iterable[tuple[str, object, dict]], n_frames: int):
    """Consecutive samples, grouped until they hold at least ``n_frames`` frames (one batch's worth)."""
    group, frames = [], 0
    for sample in samples:
        group.append(sample)
        frames += len(sample[1])
        if frames >= n_frames:
            yield group
            group, frames = [], 0
    if group:
        yield group


def extract_split(encoder: Encoder, shard_dir: str, split: str, progress: bool = True,
                  samples: Iterable[tuple[str, torch.Tensor, dict]] | None = None, *, texture: bool) -> Features:
    """Every sample of ``split``, in shard order (the order of the keys the backbone's stages read); ``samples``:
    that split already read (key, frames, meta), e.g. at the coarse side."""
    keys, rows = [], []
    bar = tqdm(desc=f"features {split}", unit="video", disable=not progress)
    for group in _groups(iter_split(shard_dir, split) if samples is None else samples, encoder.batch_size):
        keys += [key for key, _, _ in group]
        rows += encode_rows(encoder, [torch.as_tensor(f) for _, f, _ in group],
                            [encoder.query_text(Query.from_meta(meta)) for _, _, meta in group], texture=texture)
        bar.update(len(group))
    bar.close()
    return assemble(keys, rows)
