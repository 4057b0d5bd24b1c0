"""A small VLM's towers as the coarse encoder (method spec §2.1–2.2; the reference uses SmolVLM2-256M-Video-Instruct).

Frames: each frame, downscaled to ``side``×``side``, is one tile through the SigLIP vision tower and the
pixel-shuffle connector: (side/p)² patches of the tower (p its patch size) merged r×r (r the connector's
``scale_factor``) → L = (side/(p·r))² tokens of the LM's width (SmolVLM2-256M at 512 px: 64 tokens × 576).
Query: the question with its lettered options and the answer instruction (what the backbone reads), tokenized
without special tokens, through the text tower; its last hidden state [Nw, 576] is kept (spec §2.2).
The towers share no frame/query space: the embeddings have width 0.
"""

from __future__ import annotations

import torch

from resadapt.backbone.interface import Query
from resadapt.features.encoders import Encoder

FAMILY = "a SmolVLM/Idefics3-style VLM (vision tower + connector + text tower)"


class VLMEncoder(Encoder):
    """SmolVLM / Idefics3 checkpoint (local path or hub id), frozen, in float32 on ``device``."""

    def __init__(self, checkpoint: str, side: int, device: str = "cpu", batch_size: int = 64):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        super().__init__(side, device, batch_size)
        try:
            model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{checkpoint}: cannot be loaded as {FAMILY}: {exc}") from None
        base = getattr(model, "model", model)
        if not all(hasattr(base, part) for part in ("vision_model", "connector", "text_model")):
            raise ValueError(f"{checkpoint}: a {type(model).__name__}, not {FAMILY}")
        self.model = base.eval().to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        if self.tokenizer.pad_token is None:  # padded positions are masked out: any token will do
            self.tokenizer.pad_token = self.tokenizer.eos_token
        images = AutoImageProcessor.from_pretrained(checkpoint)
        self.mean = torch.tensor(images.image_mean, device=self.device)[:, None, None]  # [3, 1, 1]
        self.std = torch.tensor(images.image_std, device=self.device)[:, None, None]
        self.rescale = images.rescale_factor  # 1/255
        cell = base.config.vision_config.patch_size * base.config.scale_factor
        if side % cell:
            raise ValueError(f"features.side must be a multiple of {cell} for {checkpoint} "
                             f"(patch size × connector scale factor), got {side}")

    @staticmethod
    def query_text(query: Query) -> str:
        return query.prompt()

    @torch.no_grad()
    def frames(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = small.to(self.device).permute(0, 3, 1, 2).float() * self.rescale  # [n, 3, s, s]
        pixels = (pixels - self.mean) / self.std
        patches = self.model.vision_model(pixel_values=pixels).last_hidden_state  # [n, (s/p)², Dv]
        tokens = self.model.connector(patches)  # [n, L, Dx]
        return tokens.cpu(), tokens.new_zeros(len(small), 0).cpu()

    @torch.no_grad()
    def texts(self, texts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        # right padding: under the causal mask a text's states do not depend on its batch
        inputs = self.tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right",
                                return_tensors="pt").to(self.device)
        states = self.model.text_model(**inputs).last_hidden_state.cpu()  # [n, Nw_max, Dx]
        valid = inputs["attention_mask"].bool().cpu()
        return [s[m] for s, m in zip(states, valid, strict=True)], torch.zeros(len(texts), 0)
