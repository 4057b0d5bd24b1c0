"""The one interface training and evaluation use: (frames, per-frame scales, question) → answers, log-probs, tokens.

The built-in model, the Qwen adapter and the vLLM engine each implement ``Backbone``; nothing else about them leaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from resadapt.backbone.resize import GridSpec, ResizePlan, plan_resize
from resadapt.rewards.choice import is_multi_select, option_letters
from resadapt.rewards.score import SPAN_TASKS

# the final answer's form per task; multi-select and option-less variants below
ANSWER_FORMS = {
    "mcq": "the option's letter",
    "grounding": "[start, end] in seconds",
    "gqa": "the option's letter, then \" <> \", then [start, end] in seconds of the moment that shows it",
    "numerical": "a number",
    "regression": "a number",
    "math": "the final value",
    "ocr": "the text exactly as it is written",
    "free_form": "one or two sentences",
    "open": "a word or a short phrase",
}
MULTI_SELECT_FORM = "the letters of all correct options, separated by commas"
GQA_OPEN_FORM = "a short answer, then \" <> \", then [start, end] in seconds of the moment that shows it"
REASONING = ("First think about the reasoning process as an internal monologue, then give the final answer. Put the "
             "reasoning inside <think> </think> tags and the answer inside <answer> </answer> tags, with the final "
             "answer in \\boxed{} inside the answer tags. Write nothing outside these tags.")
VERBATIM = "verbatim"  # Query.style of a prompt written whole by someone else (an lmms-eval task)


@dataclass(frozen=True)
class Query:
    question: str
    options: tuple[str, ...] = ()
    task: str = "mcq"  # resadapt.rewards.TASKS: mcq | grounding | open | numerical | math | ocr | free_form | …
    duration: float = 0.0  # seconds the sampled frames cover (grounding answers are spans inside it)
    style: str = "plain"  # plain | reasoning (config.PromptStyle) | verbatim
    multi_select: bool = False
    times: tuple[float, ...] = ()  # each sampled frame's time in the original video (s), where known

    @classmethod
    def from_meta(cls, meta: dict, style: str = "plain") -> Query:
        """From a shard sample's JSON; ``style``: the ``train.prompt`` / ``evaluate.prompt`` param."""
        options = tuple(meta.get("options", ()))
        multi = meta["task"] == "mcq" and is_multi_select(bool(meta.get("multi_select", False)), str(meta["answer"]),
                                                           option_letters(len(options)))
        return cls(meta["question"], options, meta["task"], float(meta.get("duration", 0.0)), style, multi,
                   tuple(float(t) for t in meta.get("timestamps", ())))

    def answer_form(self) -> str:
        if self.multi_select:
            return MULTI_SELECT_FORM
        if self.task == "gqa" and not self.options:
            return GQA_OPEN_FORM
        return ANSWER_FORMS[self.task]

    def prompt(self) -> str:
        """The text a chat backbone reads: question, lettered options, the clip's length for a span answer, and the
        instruction (plain: "Answer with …"; reasoning: think, then answer in a box inside <answer>); verbatim: the
        question alone, for a benchmark whose prompt already holds its options and instruction."""
        if self.style == VERBATIM:
            return self.question
        lines = [self.question]
        lines += [f"{chr(65 + i)}. {o}" for i, o in enumerate(self.options)]
        if self.task in SPAN_TASKS and self.duration > 0:
            lines.append(f"The video is {self.duration:.1f} seconds long.")
        if self.style == "reasoning":
            lines.append(f"{REASONING} The final answer is {self.answer_form()}.")
        else:
            lines.append(f"Answer with {self.answer_form()}.")
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

    def frame_times(self) -> list[float]:
        """Each frame's time in the original video: the decoded timestamps where the query holds one per frame,
        else the centre of the frame's segment (frames sampled at segment centres, or a subset of them)."""
        if len(self.query.times) == len(self.frames):
            return list(self.query.times)
        return [(a + b) / 2 for a, b in self.frame_segments()]


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


def generate_batched(backbone: Backbone, items: Sequence[Item], n: int, batch_size: int, **kwargs) -> Rollouts:
    """``backbone.generate`` over consecutive slices of at most ``batch_size`` items (one call's memory is bounded
    by batch_size·n sequences, whatever the step's B·M), joined back into one ``Rollouts``."""
    return join_rollouts([backbone.generate(items[i : i + batch_size], n=n, **kwargs)
                          for i in range(0, len(items), batch_size)])


def join_rollouts(parts: Sequence[Rollouts]) -> Rollouts:
    """Consecutive items' rollouts as one."""
    if len(parts) == 1:
        return parts[0]
    token_ids = None if any(p.token_ids is None for p in parts) else [t for p in parts for t in p.token_ids]
    return Rollouts([a for p in parts for a in p.answers], torch.cat([p.logprobs for p in parts]),
                    [t for p in parts for t in p.tokens], [r for p in parts for r in p.retention], token_ids)
