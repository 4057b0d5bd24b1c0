"""The lmms-eval chat model ``resadapt``: a packaged Allocator in front of its Qwen-VL backbone, or a baseline through
the same budget operator.

    lmms-eval --model resadapt --model_args allocator=allocator@prod,budget=0.1,frames=32 --tasks videomme

Model args (``--model_args k=v,...``):

- ``allocator``: a package folder or a registry ref (name@stage, name@vX.Y.Z); default: the workspace's package.
- ``backbone``: another checkpoint (local folder or hub id, at ``revision``) instead of the pinned one the package
  was trained with; the package's ResAdapt-RL update is then left out (it was trained on the pinned one).
- ``budget``: retention against the same frames at scale 1, in (0, 1]; ``none``: the policy as trained.
- ``method``: ``resadapt`` | ``fixed_scale`` (√budget on every frame) | ``full`` (scale 1).
- ``frames`` (default: the package's shard.n_frames), ``engine`` (transformers | vllm), ``device``, ``dtype``.

Each request's video (a file path in lmms-eval's messages) is decoded as the shard stage decodes it; the task's own
prompt reaches the backbone verbatim. Each response carries its scales, visual tokens and realised retention in
lmms-eval's samples log (``token_counts[].resadapt``); the run's mean retention is logged and written beside
lmms-eval's metrics (results ``throughput.avg_retention``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace

import torch
from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from lmms_eval.protocol import ChatMessages
from loguru import logger

from resadapt.backbone.interface import VERBATIM, Item, Query
from resadapt.inference import Allocation, Package, PackageError, check_method, open_package

ENGINES = ("transformers", "vllm")


@dataclass
class AllocatedCounts(TokenCounts):
    """lmms-eval's per-response token counts plus the allocation, written with the response to its samples log."""

    allocation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return super().to_dict() | {"resadapt": self.allocation}


def _given(value):
    """lmms-eval hands model args over as parsed strings: ``none`` or an empty value means not given."""
    return None if value is None or str(value).strip().lower() in ("", "none") else value


def _budget(value) -> float | None:
    value = _given(value)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"budget={value!r}: give a retention in (0, 1], e.g. 0.1, or none") from None


def build_backbone_for(package: Package, checkpoint: str | None, revision: str | None, engine: str | None,
                       device: str | None, dtype: str | None):
    """The package's pinned backbone, or ``checkpoint`` in its place (same engine, device and dtype rules)."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if checkpoint is None:
        return package.backbone(device, engine, dtype)
    from resadapt.backbone.factory import load_qwen

    spec = package.backbone_spec(device, engine, dtype)
    if spec.trained:
        logger.warning(f"backbone={checkpoint}: the package's ResAdapt-RL update ({spec.trained}) belongs to its "
                       "pinned checkpoint and is not applied")
    spec = replace(spec, trained=None)
    if spec.engine == "vllm":
        from resadapt.backbone.vllm_engine import HybridBackbone

        return HybridBackbone(spec, checkpoint, revision, trainable=False, lora=None, gradient_checkpointing=False)
    return load_qwen(spec, checkpoint, revision, trainable=False, lora=None, gradient_checkpointing=False)


def read_messages(messages: ChatMessages, where: str) -> tuple[str, str]:
    """(video path, prompt text) of one request; ``where`` names it in errors."""
    images, videos, audios = messages.extract_media()
    if len(videos) != 1 or images or audios:
        raise ValueError(f"{where}: the resadapt model answers about one video per question; this request holds "
                         f"{len(videos)} video(s), {len(images)} image(s) and {len(audios)} audio clip(s)")
    if not isinstance(videos[0], str):
        raise ValueError(f"{where}: the video is a {type(videos[0]).__name__} ({videos[0]!r:.80}), not a file path "
                         "(video segments are not supported)")
    text = "\n".join(c.text for m in messages.messages for c in m.content if c.type == "text")
    return videos[0], text


def _cut(text: str, until) -> str:
    """The answer up to the task's first stop string (lmms-eval's ``until``)."""
    for stop in [until] if isinstance(until, str) else until or []:
        if stop:
            text = text.split(stop, 1)[0]
    return text


class ResAdapt(lmms):
    is_simple = False

    def __init__(self, allocator=None, backbone=None, revision=None, budget=None, method="resadapt", frames=None,
                 engine=None, device=None, dtype=None, params="params.yaml", batch_size=1, max_batch_size=None):
        super().__init__()
        self.package = open_package(_given(allocator), params)
        if self.package.builtin:
            raise PackageError(f"{self.package.path}: its backbone is the built-in model, which answers the synthetic "
                               "task only; lmms-eval benchmarks need a Qwen-VL package (backbone.source: hf)")
        self.frames = int(frames) if _given(frames) is not None else None
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames={frames}: at least 1")
        self.batch_size = int(batch_size)
        self.configure(method, budget)
        self.backbone = build_backbone_for(self.package, _given(backbone), _given(revision), _given(engine),
                                           _given(device), _given(dtype))
        if self.backbone.grid != self.package.grid():
            raise PackageError(f"backbone {backbone}: its grid {self.backbone.grid} is not the one the Allocator "
                               f"was trained on ({self.package.grid()}); use a checkpoint of the same family")
        generator = getattr(self.backbone, "engine", self.backbone)  # vLLM's hybrid generates through its engine
        self._generator, self._default_new_tokens = generator, generator.max_new_tokens

    def configure(self, method: str, budget) -> None:
        """The operating point of the next requests (``resadapt benchmark`` moves one loaded model through them)."""
        budget = _budget(budget)
        check_method(method, budget)
        self.method, self.budget, self.records = method, budget, []

    def _prepare(self, request) -> tuple[dict, Item, dict]:
        _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
        where = f"task {task} doc {doc_id}"
        video, prompt = read_messages(ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id])),
                                      where)
        allocation: Allocation = self.package.allocate(video, prompt, self.budget, (), "open", self.frames,
                                                       self.method)
        clip = allocation.clip
        item = Item(clip.frames, allocation.scales.tolist(), Query(prompt, (), "open", clip.duration, VERBATIM),
                    segments=clip.segments())
        record = {"task": task, "doc_id": doc_id, "video": video, "method": self.method, "budget": self.budget,
                  "frames": len(clip.frames), "scales": [round(float(s), 4) for s in allocation.scales]}
        return dict(gen_kwargs), item, record

    def _answer(self, batch: list, results: list) -> tuple[float, int]:
        gen = batch[0][1]
        temperature = float(gen.get("temperature") or 0.0)
        self._generator.max_new_tokens = int(gen.get("max_new_tokens") or self._default_new_tokens)
        t0 = time.perf_counter()
        rollouts = self.backbone.generate([item for _, _, item, _ in batch], greedy=temperature <= 0,
                                          temperature=temperature or 1.0)
        seconds = time.perf_counter() - t0
        new_tokens = 0
        for b, (i, _, _, record) in enumerate(batch):
            record |= {"tokens": rollouts.tokens[b], "retention": round(rollouts.retention[b], 5)}
            n_out = len(rollouts.token_ids[b][0]) if rollouts.token_ids else None
            new_tokens += n_out or 0
            self.records.append(record)
            results[i] = GenerationResult(_cut(rollouts.answers[b][0], gen.get("until")),
                                          AllocatedCounts(output_tokens=n_out, allocation=record))
        return seconds, new_tokens

    def generate_until(self, requests) -> list[GenerationResult]:
        results: list = [None] * len(requests)
        batch: list = []
        seconds, new_tokens = 0.0, 0
        for i, request in enumerate(requests):
            gen, item, record = self._prepare(request)
            key = json.dumps(gen, sort_keys=True, default=str)  # one backbone call holds one generation setting
            if batch and (len(batch) == self.batch_size or batch[0][0] != key):
                s, n = self._answer([b[1:] for b in batch], results)
                seconds, new_tokens, batch = seconds + s, new_tokens + n, []
            batch.append((key, i, gen, item, record))
        if batch:
            s, n = self._answer([b[1:] for b in batch], results)
            seconds, new_tokens = seconds + s, new_tokens + n
        if self.records:
            n = len(self.records)
            mean = sum(r["retention"] for r in self.records) / n
            logger.info(f"resadapt: method {self.method}, budget {self.budget}: mean retention {mean:.4f} over {n} "
                        "responses")
            log_metrics(total_elapsed_time=seconds, total_gen_tokens=new_tokens,
                        avg_speed=new_tokens / seconds if seconds > 0 else 0.0,
                        additional_metrics={"total_requests": len(requests), "retention": mean,
                                            "visual_tokens": sum(r["tokens"] for r in self.records) / n})
        return results

    def clean(self) -> None:
        """lmms-eval calls this after every evaluation; the backbone stays loaded for the next operating point
        (``resadapt benchmark``), so only the CUDA cache is released (its full clean-up, a gc pass and accelerate's
        memory release, costs seconds per point and frees nothing the next point does not need again)."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loglikelihood(self, requests):
        raise NotImplementedError("the resadapt model generates answers; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the resadapt model answers one round per question")
