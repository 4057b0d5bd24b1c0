"""Coarse features computed on the fly (for clips that are not in a features split: inference, more frames)."""

from __future__ import annotations

from resadapt.backbone.builtin import BuiltinVideoQA
from resadapt.features.contrastive import ContrastiveEncoder, load_dual_encoder
from resadapt.features.encoders import BuiltinEncoder, Encoder, HFEncoder
from resadapt.features.extract import encode
from resadapt.features.vlm import VLMEncoder

__all__ = ["encode", "make_encoder"]


def make_encoder(encoder: str, side: int, backbone_dir: str | None = None, checkpoint: str = "",
                 device: str = "auto", batch_size: int = 64, encoder_dir: str | None = None) -> Encoder:
    """The features stage's encoder: ``contrastive`` (the dual encoder it pretrained, in ``encoder_dir``),
    ``builtin`` (the built-in backbone in ``backbone_dir``), ``hf`` (CLIP/SigLIP) or ``vlm`` (SmolVLM/Idefics3),
    the last two from ``checkpoint``."""
    if encoder == "contrastive":
        if encoder_dir is None:
            raise ValueError("the contrastive encoder needs its trained folder (features.out_dir/encoder)")
        return ContrastiveEncoder(load_dual_encoder(encoder_dir), side, device, batch_size)
    if encoder == "hf":
        return HFEncoder(checkpoint, side, device, batch_size)
    if encoder == "vlm":
        return VLMEncoder(checkpoint, side, device, batch_size)
    return BuiltinEncoder(BuiltinVideoQA.from_pretrained(backbone_dir), side, device, batch_size)
