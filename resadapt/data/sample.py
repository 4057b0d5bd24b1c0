"""One shard sample as training and evaluation hold it: its frames, its JSON, and how an answer to it scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resadapt.data.shards import sampled_labels
from resadapt.rewards import Truth, accuracy, backbone_score


@dataclass
class Video:
    key: str
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    meta: dict

    @property
    def letters(self) -> list[str]:
        return [chr(65 + i) for i in range(len(self.meta.get("options", [])))]

    def score(self, answer: str) -> float:
        """acc of a whole response (resadapt.rewards): the Allocator's reward (spec §7: accuracy only)."""
        return accuracy(answer, Truth.from_meta(self.meta))

    def backbone_score(self, answer: str, n_tokens: int, reward) -> float:
        """The backbone's reward for a response of ``n_tokens`` tokens: ``reward.accuracy`` · acc + ``reward.format``
        · fmt + the overlong penalty (``reward``: the ``train.reward`` params, config.RewardParams)."""
        return backbone_score(answer, self.score(answer), n_tokens, reward.accuracy, reward.format,
                              reward.max_response_tokens, reward.overlong_buffer, reward.overlong_factor)

    def target(self) -> int | None:
        """The queried frame's position among the sampled frames, where the generator recorded it."""
        return sampled_labels(self.meta)[1]
