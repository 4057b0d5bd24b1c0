"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL behind the ``Backbone`` interface, through transformers.

Each 2-frame chunk of the budget operator's plan becomes its own video item at its own size (one video cannot hold
mixed sizes). The processor's own resizing is neutralised: our sizes are already on its grid and its pixel range is
opened wide, so what it encodes is exactly what the plan says, and the visual tokens are the plan's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from resadapt.backbone.interface import Item, Rollouts, plan_item
from resadapt.backbone.resize import GridSpec, ResizePlan, apply_plan

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"backbone.device is {device!r} but torch sees no CUDA device")
    return torch.device(device)


def chat_prompt(processor, item: Item, n_chunks: int) -> str:
    """The chat text: one video placeholder per chunk, then the question with its options and answer format."""
    content = [{"type": "video"}] * n_chunks + [{"type": "text", "text": item.query.prompt()}]
    return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


def chunk_videos(item: Item, grid: GridSpec) -> tuple[ResizePlan, list[tuple[torch.Tensor, dict]]]:
    """The item's plan and, per chunk, its frames at the planned size (uint8 [temporal_patch, h, w, 3]; a short last
    chunk repeats its frame, like Qwen's loader) with the chunk's metadata (frame positions, fps)."""
    plan = plan_item(item, grid)
    fps = len(item.frames) / item.query.duration if item.query.duration > 0 else 2.0
    chunks = []
    for chunk, frames in zip(plan.chunks, apply_plan(item.frames, plan), strict=True):
        if len(frames) < grid.temporal_patch:
            frames = frames[[*range(len(frames))] + [-1] * (grid.temporal_patch - len(frames))]
        chunks.append((frames, {"total_num_frames": len(item.frames), "fps": fps, "frames_indices": list(chunk)}))
    return plan, chunks


def grid_of(processor) -> GridSpec:
    vp = processor.video_processor
    return GridSpec(factor=vp.patch_size * vp.merge_size, temporal_patch=vp.temporal_patch_size)


class QwenBackbone:
    def __init__(self, model, processor, device: str = "auto", max_new_tokens: int = 32):
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.grid = grid_of(processor)
        self.max_new_tokens = max_new_tokens
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
        """Any Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint, by local path or hub id."""
        processor = AutoProcessor.from_pretrained(checkpoint, revision=revision or None)
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, revision=revision or None,
                                                            dtype=DTYPES[dtype])
        return cls(model, processor, device, max_new_tokens)

    def encode(self, items: Sequence[Item]) -> tuple[dict, list[ResizePlan]]:
        """Processor inputs for a batch: every chunk a video item at its planned size."""
        plans, texts, videos, metadata = [], [], [], []
        for it in items:
            plan, chunks = chunk_videos(it, self.grid)
            plans.append(plan)
            texts.append(chat_prompt(self.processor, it, len(chunks)))
            videos += [frames.permute(0, 3, 1, 2) for frames, _ in chunks]  # [n, 3, h, w]
            metadata += [meta for _, meta in chunks]
        kwargs = {"do_sample_frames": False, "do_resize": True}
        if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
            kwargs["cap_pixels_per_frame"] = False  # the plan's sizes are the budget; no second cap
        if "Qwen3" in type(self.processor).__name__:
            kwargs["video_metadata"] = metadata  # timestamps of each chunk's original frames
        inputs = self.processor(text=texts, videos=videos, padding=True, return_tensors="pt", **kwargs)
        return inputs.to(self.device), plans

    def realised_tokens(self, inputs) -> int:
        merge = self.processor.video_processor.merge_size
        return int(inputs["video_grid_thw"].prod(-1).sum()) // merge**2

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False, temperature: float = 1.0) -> Rollouts:
        inputs, plans = self.encode(items)
        with torch.no_grad():
            out = self.model.generate(**inputs, do_sample=not greedy, temperature=temperature if not greedy else None,
                                      top_p=None, top_k=None, num_return_sequences=n,
                                      max_new_tokens=self.max_new_tokens, output_logits=True,
                                      suppress_tokens=self.media_tokens, return_dict_in_generate=True)
            scores = self.model.compute_transition_scores(out.sequences, out.logits, normalize_logits=True)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        alive = self._until_eos(new)
        logp = (scores.float().masked_fill(~alive, 0)).sum(-1).view(len(items), n).cpu()
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
        return torch.stack([(logp * mask).sum(-1) for logp, mask in self.answer_token_logprobs(items, answers)])

    def answer_token_logprobs(self, items: Sequence[Item], answers: Sequence[Sequence[str | list[int]]]
                              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per item: log π of every answer token [N, W] and its mask [N, W] (for token-level PPO).

        An answer is text (tokenised, plus the end-of-turn token) or the exact token ids a rollout produced. One
        forward per item, its N answers batched.
        """
        rows = []
        eos = self.tokenizer.eos_token
        for item, given in zip(items, answers, strict=True):
            inputs, _ = self.encode([item])
            prompt = inputs["input_ids"][0]
            ids = [a if isinstance(a, list) else self.tokenizer(a + eos, add_special_tokens=False)["input_ids"]
                   for a in given]
            width = max(map(len, ids))
            answer = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
            answer_mask = torch.zeros(len(ids), width, dtype=torch.bool)
            for i, a in enumerate(ids):
                answer[i, : len(a)], answer_mask[i, : len(a)] = torch.tensor(a), True
            answer, answer_mask = answer.to(self.device), answer_mask.to(self.device)
            input_ids = torch.cat([prompt.expand(len(ids), -1), answer], 1)
            attention = torch.cat([inputs["attention_mask"][0].expand(len(ids), -1), answer_mask.long()], 1)
            video = {k: inputs[k] for k in ("pixel_values_videos", "video_grid_thw")}
            if "mm_token_type_ids" in inputs:  # answer tokens are text
                types = inputs["mm_token_type_ids"][0].expand(len(ids), -1)
                video["mm_token_type_ids"] = torch.cat([types, torch.zeros_like(answer)], 1)
            video["pixel_values_videos"] = video["pixel_values_videos"].repeat(len(ids), 1)
            video["video_grid_thw"] = video["video_grid_thw"].repeat(len(ids), 1)
            logits = self.model(input_ids=input_ids, attention_mask=attention, **video).logits
            logits = logits[:, prompt.shape[0] - 1 : -1].float().log_softmax(-1)  # [N, width, V]
            token_logp = logits.gather(-1, answer[..., None])[..., 0] * answer_mask
            rows.append((token_logp.cpu(), answer_mask.cpu()))
        return rows
