"""Rollouts through vLLM's offline ``LLM`` API with the same per-chunk video items as the transformers adapter.

Needs the ``[vllm]`` extra and a CUDA GPU; CI cannot run it (no GPU, and vLLM pins its own torch), so the tests
cover request building only. Choose it with ``backbone.engine: vllm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from resadapt.backbone.interface import Item, Rollouts
from resadapt.backbone.qwen import chat_prompt, chunk_videos, grid_of


class EngineUnavailable(RuntimeError):
    pass


def build_requests(items: Sequence[Item], processor) -> tuple[list[dict], list]:
    """vLLM prompts: the chat text with one video placeholder per chunk, and each chunk's frames at its own size."""
    grid = grid_of(processor)
    requests, plans = [], []
    for it in items:
        plan, chunks = chunk_videos(it, grid)
        videos = [(frames.numpy(), {**meta, "duration": it.query.duration, "video_backend": "resadapt"})
                  for frames, meta in chunks]
        requests.append({"prompt": chat_prompt(processor, it, len(chunks)), "multi_modal_data": {"video": videos},
                         "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False}})
        plans.append(plan)
    return requests, plans


class VLLMBackbone:
    def __init__(self, checkpoint: str, revision: str = "", dtype: str = "bfloat16", max_new_tokens: int = 32,
                 max_chunks: int = 64, **engine_kwargs):
        try:
            import vllm
        except ImportError:
            raise EngineUnavailable("backbone.engine is vllm but vllm is not installed: pip install 'resadapt[vllm]' "
                                    "(CUDA only)") from None
        if not torch.cuda.is_available():
            raise EngineUnavailable("backbone.engine is vllm but torch sees no CUDA GPU; use engine: transformers")
        from transformers import AutoProcessor

        self._vllm = vllm
        self.processor = AutoProcessor.from_pretrained(checkpoint, revision=revision or None)
        self.grid = grid_of(self.processor)
        self.max_new_tokens = max_new_tokens
        self.llm = vllm.LLM(model=checkpoint, revision=revision or None, dtype=dtype,
                            limit_mm_per_prompt={"video": max_chunks}, **engine_kwargs)

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False, temperature: float = 1.0) -> Rollouts:
        requests, plans = build_requests(items, self.processor)
        params = self._vllm.SamplingParams(n=n, temperature=0.0 if greedy else temperature, top_p=1.0, top_k=-1,
                                           max_tokens=self.max_new_tokens, logprobs=0)
        outputs = self.llm.generate(requests, params)
        answers = [[c.text.strip() for c in o.outputs] for o in outputs]
        token_ids = [[list(c.token_ids) for c in o.outputs] for o in outputs]
        logprobs = torch.tensor([[c.cumulative_logprob or 0.0 for c in o.outputs] for o in outputs])
        return Rollouts(answers, logprobs, [p.total_tokens for p in plans], [p.retention for p in plans], token_ids)

    def answer_logprobs(self, items: Sequence[Item], answers) -> torch.Tensor:
        """Scores of given answers from vLLM's prompt log-probs (no gradient: a backbone update runs on the
        transformers model)."""
        requests, _ = build_requests(items, self.processor)
        tok = self.processor.tokenizer
        flat, lengths = [], []
        for request, given in zip(requests, answers, strict=True):
            for a in given:
                text = a if isinstance(a, str) else tok.decode(a, skip_special_tokens=True)
                lengths.append(len(tok(text + tok.eos_token, add_special_tokens=False)["input_ids"]))
                flat.append({**request, "prompt": request["prompt"] + text + tok.eos_token})
        outputs = self.llm.generate(flat, self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0))
        scores = [sum(lp[t].logprob for t, lp in zip(o.prompt_token_ids[-k:], o.prompt_logprobs[-k:], strict=True))
                  for o, k in zip(outputs, lengths, strict=True)]
        return torch.tensor(scores).view(len(items), -1)
