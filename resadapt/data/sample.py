"""One shard sample as training and evaluation hold it: its frames, its JSON, and how an answer to it scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resadapt.backbone.answers import accuracy
from resadapt.data.shards import sampled_labels


@dataclass
class Video:
    key: str
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    meta: dict

    @property
    def letters(self) -> list[str]:
        return [chr(65 + i) for i in range(len(self.meta.get("options", [])))]

    def score(self, answer: str) -> float:
        span = tuple(self.meta["span"]) if self.meta.get("span") else None
        return accuracy(answer, self.meta["task"], self.meta["answer"], span, self.letters)

    def target(self) -> int | None:
        """The queried frame's position among the sampled frames, where the generator recorded it."""
        return sampled_labels(self.meta)[1]
