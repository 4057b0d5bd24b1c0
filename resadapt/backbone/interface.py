"""The one interface training and evaluation use: (frames, per-frame scales, question) → answers, log-probs, tokens.

The built-in model, the Qwen adapter and the vLLM engine each implement ``Backbone``; nothing else about them leaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from resadapt.backbone.resize import GridSpec, ResizePlan, plan_resize


@dataclass(frozen=True)
class Query:
    question: str
    options: tuple[str, ...] = ()
    task: str = "mcq"  # mcq | grounding | open
    duration: float = 0.0  # seconds the sampled frames cover (grounding answers are spans inside it)

    @classmethod
    def from_meta(cls, meta: dict) -> Query:
        """From a shard sample's JSON."""
        return cls(meta["question"], tuple(meta.get("options", ())), meta["task"], float(meta.get("duration", 0.0)))

    def prompt(self) -> str:
        """The text a chat backbone reads: question, lettered options, and the answer format."""
        lines = [self.question]
        lines += [f"{chr(65 + i)}. {o}" for i, o in enumerate(self.options)]
        if self.task == "mcq":
            lines.append("Answer with the option's letter.")
        elif self.task == "grounding":
            lines.append("Answer with [start, end] in seconds.")
        return "\n".join(lines)


@dataclass
class Item:
    """One prompt: base-resolution frames, one scale per frame, the query."""

    frames: torch.Tensor  # uint8 [T, H, W, 3]
    scales: Sequence[float]  # [T]
    query: Query
    key: str | None = None  # the sample's shard key: lets a frozen backbone reuse per-frame work
    segments: Sequence[tuple[float, float]] | None = None  # each frame's [start, end) in s; None: T equal parts

    def frame_segments(self) -> list[tuple[float, float]]:
        """The time segment each frame stands for (frames dropped from a clip keep their own times)."""
        if self.segments is not None:
            return [(float(a), float(b)) for a, b in self.segments]
        seg = self.query.duration / len(self.frames)
        return [(t * seg, (t + 1) * seg) for t in range(len(self.frames))]


@dataclass
class Rollouts:
    answers: list[list[str]]  # [B][N] answer texts
    logprobs: torch.Tensor  # [B, N] log-prob of each whole answer (sum over its tokens)
    tokens: list[int]  # [B] visual tokens actually encoded
    retention: list[float]  # [B] tokens / tokens at scale 1
    token_ids: list[list[list[int]]] | None = None  # [B][N] the answer's tokens, for backbones that have tokens


class Backbone(Protocol):
    grid: GridSpec

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False,
                 temperature: float = 1.0) -> Rollouts: ...

    def answer_logprobs(self, items: Sequence[Item], answers: Sequence[Sequence[str | list[int]]]) -> torch.Tensor:
        """[B, N] log-probs of given answers (texts, or token ids where the backbone has tokens),
        differentiable w.r.t. the backbone's parameters."""
        ...


def plan_item(item: Item, grid: GridSpec) -> ResizePlan:
    return plan_resize(tuple(item.frames.shape[1:3]), [float(s) for s in item.scales], grid)
