"""Coarse features per shard sample, from a frozen lightweight encoder over low-resolution frames.

For real runs any CLIP/SigLIP-style checkpoint serves (``HFEncoder``). On the default the encoder is the built-in
backbone's own frame stem at ``side``×``side`` pixels (one token per 28-px cell, so 4 tokens at 56 px) and its word
embeddings for the question; like a CLIP/SigLIP encoder it also embeds frames and query in one shared space (the
distribution over border colours a frame shows at that low resolution, and the one the question asks for). Frames
come from the same shards the backbone reads, so the Allocator sees exactly the frames the backbone sees (§10.1).

Stored per split as ``<split>.safetensors`` (patches [N, T, L, Dp], frame_mask [N, T], text [N, Nw, Dx],
text_mask [N, Nw], frame_embed [N, T, E], query_embed [N, E]) plus ``<split>.json`` (the shard keys, in order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from resadapt.backbone.builtin import BuiltinVideoQA
from resadapt.backbone.resize import resize_frames
from resadapt.data.shards import iter_split
from resadapt.io import atomic_path, write_json


@dataclass
class Features:
    keys: list[str]
    patches: torch.Tensor  # [N, T, L, Dp]
    frame_mask: torch.Tensor  # [N, T] bool
    text: torch.Tensor  # [N, Nw, Dx]
    text_mask: torch.Tensor  # [N, Nw] bool
    frame_embed: torch.Tensor  # [N, T, E] frames in the encoder's shared frame/query space
    query_embed: torch.Tensor  # [N, E]

    def select(self, index: torch.Tensor | list[int]) -> tuple[torch.Tensor, ...]:
        """The Allocator's inputs for these samples, in its argument order."""
        return (self.patches[index], self.frame_mask[index], self.text[index], self.text_mask[index],
                self.frame_embed[index], self.query_embed[index])


class BuiltinEncoder:
    """The built-in backbone's stem and word embeddings, frozen."""

    def __init__(self, model: BuiltinVideoQA, side: int):
        if side % model.config.factor:
            raise ValueError(f"features.side must be a multiple of {model.config.factor}, got {side}")
        self.model, self.side = model.eval(), side

    @torch.no_grad()
    def frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [T, H, W, 3] → patch tokens [T, L, Dp] and shared-space embeddings [T, E]."""
        out = self.model.frame_outputs(list(resize_frames(frames, (self.side, self.side))))
        return out["tokens"], out["colour_logits"].softmax(-1)

    @torch.no_grad()
    def text(self, question: str) -> tuple[torch.Tensor, torch.Tensor]:
        """→ word embeddings [Nw, Dx] and the shared-space embedding [E]."""
        words = self.model.word_embedding.weight[torch.tensor(self.model.word_ids(question))]
        return words, self.model.query_colour_logits([question])[0].softmax(-1)


class HFEncoder:
    """A CLIP/SigLIP-style checkpoint (local path or hub id), frozen: its vision tower's patch tokens over frames
    downscaled to ``side`` px, its text tower's token states, and both towers' embeddings in their shared space."""

    def __init__(self, checkpoint: str, side: int):
        from transformers import AutoModel, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(checkpoint)
        self.model = AutoModel.from_pretrained(checkpoint).eval()
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ValueError(f"{checkpoint}: not a dual-tower (CLIP/SigLIP-style) model")
        self.side = side

    @staticmethod
    def _pooled(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.no_grad()
    def frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = resize_frames(frames, (self.side, self.side))
        pixels = self.processor(images=list(small.numpy()), return_tensors="pt")["pixel_values"]
        tokens = self.model.vision_model(pixel_values=pixels).last_hidden_state
        return tokens, F.normalize(self._pooled(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    @torch.no_grad()
    def text(self, question: str) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.processor(text=[question], return_tensors="pt", padding=True, truncation=True)
        tokens = self.model.text_model(**inputs).last_hidden_state[0]
        return tokens, F.normalize(self._pooled(self.model.get_text_features(**inputs))[0], dim=-1)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(r.shape[0] for r in rows)
    out = torch.zeros(len(rows), width, *rows[0].shape[1:])
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]], mask[i, : r.shape[0]] = r, True
    return out, mask


def encode_sample(encoder: BuiltinEncoder | HFEncoder, frames: torch.Tensor, question: str) -> tuple[torch.Tensor, ...]:
    """One sample → (patch tokens [T, L, Dp], frame embeddings [T, E], word features [Nw, Dx], query embedding [E])."""
    tokens, frame_embed = encoder.frames(frames)
    words, query_embed = encoder.text(question)
    return tokens, frame_embed, words, query_embed


def assemble(keys: list[str], rows: list[tuple[torch.Tensor, ...]]) -> Features:
    """Per-sample ``encode_sample`` outputs → one padded, masked ``Features``."""
    patches, frame_embeds, texts, query_embeds = zip(*rows, strict=True)
    frame_feats, frame_mask = _pad(list(patches))
    text, text_mask = _pad(list(texts))
    return Features(keys, frame_feats, frame_mask, text, text_mask, _pad(list(frame_embeds))[0],
                    torch.stack(query_embeds))


def extract_split(encoder: BuiltinEncoder | HFEncoder, shard_dir: str, split: str, progress: bool = True) -> Features:
    keys, rows = [], []
    for key, frames, meta in tqdm(iter_split(shard_dir, split), desc=f"features {split}", unit="video",
                                  disable=not progress):
        keys.append(key)
        rows.append(encode_sample(encoder, torch.from_numpy(frames), meta["question"]))
    return assemble(keys, rows)


def save_features(features: Features, out_dir: str | Path, split: str) -> None:
    out_dir = Path(out_dir)
    with atomic_path(out_dir / f"{split}.safetensors") as tmp:
        save_file({"patches": features.patches.contiguous(), "frame_mask": features.frame_mask,
                   "text": features.text.contiguous(), "text_mask": features.text_mask,
                   "frame_embed": features.frame_embed.contiguous(), "query_embed": features.query_embed}, str(tmp))
    write_json(out_dir / f"{split}.json", {"keys": features.keys})


def load_features(out_dir: str | Path, split: str) -> Features:
    out_dir = Path(out_dir)
    path = out_dir / f"{split}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no features for split {split!r} (run the features stage)")
    tensors = load_file(str(path))
    keys = json.loads((out_dir / f"{split}.json").read_text(encoding="utf-8"))["keys"]
    return Features(keys, tensors["patches"], tensors["frame_mask"], tensors["text"], tensors["text_mask"],
                    tensors["frame_embed"], tensors["query_embed"])
