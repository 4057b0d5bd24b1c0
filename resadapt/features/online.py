"""Coarse features computed on the fly (for clips that are not in a features split: inference, more frames)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from resadapt.backbone.builtin import BuiltinVideoQA
from resadapt.features.coarse import BuiltinEncoder, Features, HFEncoder, assemble, encode_sample


def make_encoder(encoder: str, side: int, backbone_dir: str | None = None, checkpoint: str = ""):
    """The features stage's encoder: ``builtin`` (the built-in backbone in ``backbone_dir``) or ``hf``."""
    if encoder == "hf":
        return HFEncoder(checkpoint, side)
    return BuiltinEncoder(BuiltinVideoQA.from_pretrained(backbone_dir), side)


def encode(encoder: BuiltinEncoder | HFEncoder, clips: Sequence[torch.Tensor], questions: Sequence[str],
           keys: Sequence[str] | None = None) -> Features:
    """Features of uint8 clips [T, H, W, 3] (T may differ between clips: padded and masked)."""
    rows = [encode_sample(encoder, frames, q) for frames, q in zip(clips, questions, strict=True)]
    return assemble(list(keys) if keys is not None else [str(i) for i in range(len(clips))], rows)
