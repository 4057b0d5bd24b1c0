"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL behind the ``Backbone`` interface, through transformers.

Each 2-frame chunk of the budget operator's plan becomes its own video item at its own size (one video cannot hold
mixed sizes). The processor's own resizing is neutralised: our sizes are already on its grid and its pixel range is
opened wide, so what it encodes is exactly what the plan says, and the visual tokens are the plan's.

Time positions (spec §3.4): on Qwen2/2.5-VL every chunk's pads sit in one vision block and the anchored M-RoPE
(``qwen_rope``) gives chunk k the temporal ids the native video would give its frames; on Qwen3-VL every chunk is
its own block and the processor writes each chunk's ``<t seconds>`` from the frames' original times.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessor, LogitsProcessorList

from resadapt.backbone.device import DTYPES, pick_device
from resadapt.backbone.interface import Item, Rollouts, plan_item
from resadapt.backbone.qwen_rope import install_anchored_rope
from resadapt.backbone.resize import GridSpec, ResizePlan, apply_plan

MS = 1000.0  # Qwen3-VL timestamps are frame index / fps: indices in milliseconds at fps 1000 give exact times


def is_qwen3(processor) -> bool:
    return "Qwen3" in type(processor).__name__


def chat_prompt(processor, item: Item, n_chunks: int) -> str:
    """The chat text: the clip's chunks, then the question with its options and answer format.

    Qwen3-VL: one video entry per chunk (the processor prefixes each with its timestamp). Qwen2/2.5-VL: one vision
    block whose single pad becomes one pad per chunk (spec §3.4), so the anchored M-RoPE sees one video.
    """
    n_entries = n_chunks if is_qwen3(processor) else 1
    content = [{"type": "video"}] * n_entries + [{"type": "text", "text": item.query.prompt()}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)
    if not is_qwen3(processor):
        pad = processor.video_token
        if text.count(pad) != 1:
            raise ValueError(f"the chat template should write one {pad} per video entry, found {text.count(pad)}")
        text = text.replace(pad, pad * n_chunks)
    return text


def chunk_videos(item: Item, grid: GridSpec) -> tuple[ResizePlan, list[tuple[torch.Tensor, dict]]]:
    """The item's plan and, per chunk, its frames at the planned size (uint8 [temporal_patch, h, w, 3]; a short last
    chunk repeats its frame, like Qwen's loader) with metadata whose timestamps are the frames' original times."""
    plan = plan_item(item, grid)
    times = item.frame_times()
    chunks = []
    for chunk, frames in zip(plan.chunks, apply_plan(item.frames, plan), strict=True):
        stamps = [round(times[t] * MS) for t in chunk]
        if len(frames) < grid.temporal_patch:
            pad = grid.temporal_patch - len(frames)
            frames = frames[[*range(len(frames))] + [-1] * pad]
            stamps += stamps[-1:] * pad
        chunks.append((frames, {"total_num_frames": len(item.frames), "fps": MS, "frames_indices": stamps}))
    return plan, chunks


def grid_of(processor) -> GridSpec:
    vp = processor.video_processor
    return GridSpec(factor=vp.patch_size * vp.merge_size, temporal_patch=vp.temporal_patch_size)


class _SampledLogProbs(LogitsProcessor):
    """Records the model's log π(token) of each sampled token one step later, so no step's logits are kept (long
    answers), then bars the media placeholders from being sampled."""

    def __init__(self, prompt_length: int, barred: list[int]):
        self.prompt_length, self.barred, self.previous, self.rows = prompt_length, barred, None, []

    def __call__(self, input_ids, scores):
        if self.previous is not None:
            self.rows.append(self.previous.gather(-1, input_ids[:, -1:])[:, 0])
        self.previous = scores.float().log_softmax(-1)
        return scores.index_fill(-1, torch.tensor(self.barred, device=scores.device), float("-inf"))

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B·N, new tokens] log-probs, the last step's included."""
        if self.previous is not None and sequences.shape[1] > self.prompt_length + len(self.rows):
            self.rows.append(self.previous.gather(-1, sequences[:, -1:])[:, 0])
        return torch.stack(self.rows, 1) if self.rows else sequences.new_zeros(sequences.shape[0], 0).float()


class QwenBackbone:
    def __init__(self, model, processor, device: str = "auto", max_new_tokens: int = 32):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.grid = grid_of(processor)
        self.max_new_tokens = max_new_tokens
        self.anchored = install_anchored_rope(model)  # survives a peft wrapper: it patches the inner model
        wide = {"shortest_edge": self.grid.factor**2, "longest_edge": 1 << 30}
        processor.video_processor.size = wide  # our sizes are on the grid already: resizing becomes a no-op
        self.tokenizer = processor.tokenizer
        # an answer never holds a media placeholder: sampled, it would be read back as a video token
        config = model.config
        self.media_tokens = sorted({getattr(config, k) for k in ("video_token_id", "image_token_id",
                                    "vision_start_token_id", "vision_end_token_id") if getattr(config, k, None)})

    @classmethod
    def load(cls, checkpoint: str, revision: str | None = None, device: str = "auto", dtype: str = "float32",
             max_new_tokens: int = 32) -> QwenBackbone:
        """Any Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint, by local path or hub id (at ``revision``)."""
        processor = AutoProcessor.from_pretrained(checkpoint, revision=revision or None)
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, revision=revision or None,
                                                            dtype=DTYPES[dtype])
        return cls(model, processor, device, max_new_tokens)

    def encode(self, items: Sequence[Item]) -> tuple[dict, list[ResizePlan]]:
        """Processor inputs for a batch: every chunk a video item at its planned size."""
        plans, texts, videos, metadata, seconds = [], [], [], [], []
        for it in items:
            plan, chunks = chunk_videos(it, self.grid)
            plans.append(plan)
            texts.append(chat_prompt(self.processor, it, len(chunks)))
            videos += [frames.permute(0, 3, 1, 2) for frames, _ in chunks]  # [n, 3, h, w]
            metadata += [meta for _, meta in chunks]
            fps = len(it.frames) / it.query.duration if it.query.duration > 0 else 2.0  # the clip's sampling rate
            seconds += [self.grid.temporal_patch / fps] * len(chunks)
        kwargs = {"do_sample_frames": False, "do_resize": True}
        if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
            kwargs["cap_pixels_per_frame"] = False  # the plan's sizes are the budget; no second cap
        if is_qwen3(self.processor):
            kwargs["video_metadata"] = metadata  # timestamps of each chunk's original frames
        inputs = self.processor(text=texts, videos=videos, padding=True, return_tensors="pt", **kwargs)
        if self.anchored:  # seconds per temporal row of the clip, not of a 2-frame "video"
            inputs["second_per_grid_ts"] = torch.tensor(seconds)
        return inputs.to(self.device), plans

    def realised_tokens(self, inputs) -> int:
        merge = self.processor.video_processor.merge_size
        return int(inputs["video_grid_thw"].prod(-1).sum()) // merge**2

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False, temperature: float = 1.0) -> Rollouts:
        inputs, plans = self.encode(items)
        recorder = _SampledLogProbs(inputs["input_ids"].shape[1], self.media_tokens)
        with torch.no_grad():
            out = self.model.generate(**inputs, do_sample=not greedy, temperature=temperature if not greedy else None,
                                      top_p=None, top_k=None, num_return_sequences=n,
                                      max_new_tokens=self.max_new_tokens,
                                      logits_processor=LogitsProcessorList([recorder]), return_dict_in_generate=True)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        scores = recorder.finish(out.sequences)[:, : new.shape[1]]
        alive = self._until_eos(new)
        logp = (scores.masked_fill(~alive, 0)).sum(-1).view(len(items), n).cpu()
        texts = self.tokenizer.batch_decode(new.masked_fill(~alive, self.tokenizer.pad_token_id),
                                            skip_special_tokens=True)
        ids = [row[mask].tolist() for row, mask in zip(new.cpu(), alive.cpu(), strict=True)]
        answers = [[t.strip() for t in texts[b * n : (b + 1) * n]] for b in range(len(items))]
        token_ids = [ids[b * n : (b + 1) * n] for b in range(len(items))]
        return Rollouts(answers, logp, [p.total_tokens for p in plans], [p.retention for p in plans], token_ids)

    def _until_eos(self, new: torch.Tensor) -> torch.Tensor:
        """Mask of generated tokens up to and including the first end-of-turn (later ones are padding)."""
        eos = torch.zeros_like(new, dtype=torch.bool)
        for token in {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}:
            eos |= new == token
        before = eos.cumsum(-1) - eos.long()
        return before == 0

    def answer_logprobs(self, items: Sequence[Item], answers: Sequence[Sequence[str | list[int]]]) -> torch.Tensor:
        """Σ log π(answer tokens | frames, prompt) for each given answer → [B, N]."""
        logp, mask = self.answer_token_logprobs(items, answers)
        return (logp * mask).sum(-1)

    def _answer_ids(self, given: Sequence[str | list[int]]) -> list[list[int]]:
        eos = self.tokenizer.eos_token
        return [a if isinstance(a, list) else self.tokenizer(a + eos, add_special_tokens=False)["input_ids"]
                for a in given]

    def answer_token_logprobs(self, items: Sequence[Item], answers: Sequence[Sequence[str | list[int]]]
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π of every answer token [B, N, W] and its mask [B, N, W] (token-level PPO), in one forward, on the
        model's device.

        An answer is text (tokenised, plus the end-of-turn token) or the exact token ids a rollout produced. Row
        (b, i) is item b's (left-padded) prompt followed by its answer i; only the answers' logits are computed.
        """
        inputs, _ = self.encode(items)
        ids = [self._answer_ids(given) for given in answers]
        n = len(ids[0])
        if any(len(row) != n for row in ids):
            raise ValueError("every item needs the same number of answers")
        width = max(1, max(len(a) for row in ids for a in row))
        answer = torch.full((len(items), n, width), self.tokenizer.pad_token_id, dtype=torch.long)
        answer_mask = torch.zeros(len(items), n, width, dtype=torch.bool)
        for b, row in enumerate(ids):
            for i, a in enumerate(row):
                answer[b, i, : len(a)], answer_mask[b, i, : len(a)] = torch.tensor(a, dtype=torch.long), True
        answer, answer_mask = answer.to(self.device).flatten(0, 1), answer_mask.to(self.device).flatten(0, 1)
        rows = torch.arange(len(items), device=self.device).repeat_interleave(n)  # item of each (b, i) row
        forward = {"input_ids": torch.cat([inputs["input_ids"][rows], answer], 1),
                   "attention_mask": torch.cat([inputs["attention_mask"][rows], answer_mask.long()], 1)}
        if "mm_token_type_ids" in inputs:  # answer tokens are text
            forward["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"][rows], torch.zeros_like(answer)], 1)
        forward |= self._repeat_videos(inputs, n)
        logits = self.model(**forward, logits_to_keep=width + 1, use_cache=False).logits[:, :-1]  # [B·N, W, V]
        token_logp = logits.float().log_softmax(-1).gather(-1, answer[..., None])[..., 0] * answer_mask
        return token_logp.view(len(items), n, width), answer_mask.view(len(items), n, width)

    def _repeat_videos(self, inputs, n: int) -> dict:
        """Each item's video inputs repeated for its n answer rows, in row order."""
        grids = inputs["video_grid_thw"]
        per_chunk = grids.prod(-1).tolist()  # pixel rows of each chunk
        counts = self._chunks_per_item(inputs)
        starts = [0]
        for size in per_chunk:
            starts.append(starts[-1] + size)
        pixels, grid_rows, seconds, c = [], [], [], 0
        has_seconds = "second_per_grid_ts" in inputs
        for k in counts:
            lo, hi = starts[c], starts[c + k]
            for _ in range(n):
                pixels.append(inputs["pixel_values_videos"][lo:hi])
                grid_rows.append(grids[c : c + k])
                if has_seconds:
                    seconds.append(inputs["second_per_grid_ts"][c : c + k])
            c += k
        out = {"pixel_values_videos": torch.cat(pixels), "video_grid_thw": torch.cat(grid_rows)}
        if has_seconds:
            out["second_per_grid_ts"] = torch.cat(seconds)
        return out

    def _chunks_per_item(self, inputs) -> list[int]:
        """How many chunk grids each batch row holds, from its count of video pads."""
        merge = self.processor.video_processor.merge_size ** 2
        pads = (inputs["input_ids"] == self.model.config.video_token_id).sum(-1).tolist()
        tokens = (inputs["video_grid_thw"].prod(-1) // merge).tolist()
        counts, c = [], 0
        for total in pads:
            k, seen = 0, 0
            while seen < total:
                seen, k = seen + tokens[c + k], k + 1
            counts.append(k)
            c += k
        return counts
