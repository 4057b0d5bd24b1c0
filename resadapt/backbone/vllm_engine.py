"""Rollouts through vLLM's offline ``LLM`` API with the same per-chunk video items as the transformers adapter.

Needs the ``[vllm]`` extra and a CUDA GPU; CI cannot run it (no GPU, and vLLM pins its own torch), so the tests
cover request building and the hybrid's wiring only. Choose it with ``backbone.engine: vllm``.

``HybridBackbone`` is what the factory builds for that engine: vLLM samples, the transformers model scores answers
(token log-probs for PPO) and is the one a ResAdapt-RL step updates; after each update the new weights go to the
engine (a LoRA adapter as a new ``LoRARequest``, full weights through ``collective_rpc``). vLLM lays out M-RoPE
positions its own way for chunked Qwen2.5-VL clips (the reference patches vLLM for the anchored layout, spec
§3.4); the scorer uses the anchored layout, so updates from vLLM rollouts on Qwen2.5-VL are slightly off-policy.
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
    def __init__(self, checkpoint: str, revision: str | None = "", dtype: str = "bfloat16", max_new_tokens: int = 32,
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

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False, temperature: float = 1.0,
                 lora_request=None) -> Rollouts:
        requests, plans = build_requests(items, self.processor)
        params = self._vllm.SamplingParams(n=n, temperature=0.0 if greedy else temperature, top_p=1.0, top_k=-1,
                                           max_tokens=self.max_new_tokens, logprobs=0)
        outputs = self.llm.generate(requests, params, lora_request=lora_request)
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


def _load_weights_from_file(worker, path: str) -> None:
    """Runs inside each vLLM worker: load a safetensors state dict into its model (HF names)."""
    from safetensors.torch import load_file

    worker.model_runner.model.load_weights(weights=load_file(path).items())


class HybridBackbone:
    """vLLM for rollouts; the transformers model (built only when the backbone trains) for scores and updates."""

    def __init__(self, spec, checkpoint: str, revision: str | None, *, trainable: bool, lora, gradient_checkpointing):
        from pathlib import Path

        from resadapt.backbone.factory import ADAPTER_CONFIG, load_qwen

        trained = Path(spec.trained) if spec.trained else None
        adapter = trained is not None and (trained / ADAPTER_CONFIG).is_file()
        weights = str(trained) if trained is not None and not adapter else checkpoint
        use_lora = adapter or (trainable and lora is not None)
        kwargs = dict(spec.engine_kwargs) | ({"enable_lora": True, "max_lora_rank": lora.r if lora else 64}
                                             if use_lora else {})
        self.engine = VLLMBackbone(weights, None if weights != checkpoint else revision, spec.dtype,
                                   spec.max_new_tokens, **kwargs)
        self.grid = self.engine.grid
        self.scorer = load_qwen(spec, checkpoint, revision, trainable=True, lora=lora,
                                gradient_checkpointing=gradient_checkpointing) if trainable else None
        self.model = self.scorer.model if self.scorer else None
        self._version = 0
        self._lora = self._lora_request(str(trained)) if adapter else None
        self._sync_dir = None

    def _lora_request(self, path: str):
        from vllm.lora.request import LoRARequest

        self._version += 1
        return LoRARequest(f"resadapt-{self._version}", self._version, path)

    def generate(self, items: Sequence[Item], n: int = 1, greedy: bool = False, temperature: float = 1.0) -> Rollouts:
        return self.engine.generate(items, n, greedy, temperature, lora_request=self._lora)

    def answer_logprobs(self, items: Sequence[Item], answers) -> torch.Tensor:
        return (self.scorer.answer_logprobs(items, answers) if self.scorer
                else self.engine.answer_logprobs(items, answers))

    def answer_token_logprobs(self, items: Sequence[Item], answers):
        if self.scorer is None:
            raise RuntimeError("token log-probs need the transformers scorer: build the backbone trainable")
        return self.scorer.answer_token_logprobs(items, answers)

    def sync_weights(self) -> None:
        """Give the engine the weights the last update produced."""
        import tempfile

        from safetensors.torch import save_file

        if self._sync_dir is None:
            self._sync_dir = tempfile.TemporaryDirectory(prefix="resadapt-vllm-sync-")
        if hasattr(self.model, "peft_config"):
            path = f"{self._sync_dir.name}/adapter-{self._version + 1}"
            self.model.save_pretrained(path)
            self._lora = self._lora_request(path)
            return
        path = f"{self._sync_dir.name}/weights.safetensors"
        save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()}, path)
        self.engine.llm.collective_rpc(_load_weights_from_file, args=(path,))
