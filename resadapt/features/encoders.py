"""Frozen lightweight encoders of the coarse features, all with one batched interface.

Each runs on its ``device`` and returns CPU float32:

- ``frames(small)``: uint8 [n, side, side, 3] (frames already downscaled to ``features.side``) → patch tokens
  [n, L, Dp] and shared-space embeddings [n, E];
- ``texts(texts)``: n query texts → per text its token features [Nw_i, Dx], and shared-space embeddings [n, E]
  (one per query), or per query its K_i views [K_i, E] (the match takes the best view:
  ``resadapt.allocator.model.frame_query_match``);
- ``query_text(query)``: the text an encoder reads for a shard sample's query.

E = 0 where the encoder has no shared frame/query space (the Allocator then has no similarity signal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resadapt.backbone import device as backbone_device
from resadapt.backbone.builtin import BuiltinVideoQA
from resadapt.backbone.interface import Query


def pick_device(device: str) -> torch.device:
    """``features.device``: auto (CUDA when torch sees one), cpu, cuda or cuda:N."""
    try:
        return backbone_device.pick_device(device)
    except RuntimeError as exc:
        raise ValueError(f"features.{exc}") from None


class Encoder:
    """What every encoder holds: frames are encoded at ``side`` px, ``batch_size`` frames (or texts) per forward
    pass, on ``device``."""

    def __init__(self, side: int, device: str = "cpu", batch_size: int = 64):
        self.side, self.device, self.batch_size = side, pick_device(device), batch_size


class BuiltinEncoder(Encoder):
    """The built-in backbone's stem tokens at ``side`` px (one per 28-px cell) and its word embeddings of the
    question; the shared space is the distribution over border colours a frame shows, and the one the question
    asks for."""

    def __init__(self, model: BuiltinVideoQA, side: int, device: str = "cpu", batch_size: int = 64):
        if side % model.config.factor:
            raise ValueError(f"features.side must be a multiple of {model.config.factor}, got {side}")
        super().__init__(side, device, batch_size)
        self.model = model.eval().to(self.device)

    @staticmethod
    def query_text(query: Query) -> str:
        return query.question

    @torch.no_grad()
    def frames(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.frame_outputs(list(small.to(self.device)))
        tokens = out["tokens"].view(len(small), -1, out["tokens"].shape[-1])  # every frame has side² / F² tokens
        return tokens.cpu(), out["colour_logits"].softmax(-1).cpu()

    @torch.no_grad()
    def texts(self, texts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        weight = self.model.word_embedding.weight
        words = [weight[torch.tensor(self.model.word_ids(t), device=weight.device)].cpu() for t in texts]
        return words, self.model.query_colour_logits(texts).softmax(-1).cpu()


class HFEncoder(Encoder):
    """A CLIP/SigLIP-style checkpoint (local path or hub id), frozen: its vision tower's patch tokens, its text
    tower's token states, and both towers' embeddings in their shared space (L2-normalised)."""

    def __init__(self, checkpoint: str, side: int, device: str = "cpu", batch_size: int = 64):
        from transformers import AutoModel, AutoProcessor

        super().__init__(side, device, batch_size)
        self.processor = AutoProcessor.from_pretrained(checkpoint)
        self.model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval().to(self.device)
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ValueError(f"{checkpoint}: not a dual-tower (CLIP/SigLIP-style) model")
        # every text padded to the tower's full length: a text's features do not depend on its batch, and SigLIP
        # (which pools the last position) reads text as it was trained
        self.text_length = self.model.config.text_config.max_position_embeddings

    @staticmethod
    def query_text(query: Query) -> str:
        return query.question

    @staticmethod
    def _pooled(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.no_grad()
    def frames(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.processor(images=list(small.numpy()), return_tensors="pt")["pixel_values"].to(self.device)
        tokens = self.model.vision_model(pixel_values=pixels).last_hidden_state
        embed = F.normalize(self._pooled(self.model.get_image_features(pixel_values=pixels)), dim=-1)
        return tokens.cpu(), embed.cpu()

    @torch.no_grad()
    def texts(self, texts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        inputs = self.processor(text=texts, return_tensors="pt", padding="max_length", truncation=True,
                                max_length=self.text_length).to(self.device)
        states = self.model.text_model(**inputs).last_hidden_state.cpu()  # [n, length, Dx]
        valid = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"])).bool().cpu()
        embed = F.normalize(self._pooled(self.model.get_text_features(**inputs)), dim=-1)
        return [s[m] for s, m in zip(states, valid, strict=True)], embed.cpu()
