"""Training and measuring the built-in backbone on the synthetic shards.

Dense supervision from what the generator knows: every step asks about a random frame of each video (so one video
gives T questions), at random per-frame scales, and besides the answer it supervises the frame pointer, the border
colour of every frame, the colour named by the question, and, on frames seen at full resolution, which cell holds
which glyph.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA, words
from resadapt.backbone.interface import Item, Query
from resadapt.data.shards import iter_split, sampled_labels
from resadapt.data.synth import PALETTE, STRIPES, make_question
from resadapt.rewards import Truth, accuracy

LEGIBLE = 0.95  # frames at or above this scale get the per-cell glyph labels
BLIND = 0.45  # frames below this scale cannot show the glyph: their glyph read is trained toward uniform
GROUNDING_SHARE = 0.25


@dataclass
class Video:
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    meta: dict


def load_videos(shard_dir: str, split: str) -> list[Video]:
    videos = [Video(torch.from_numpy(frames), meta) for _, frames, meta in iter_split(shard_dir, split)]
    if not videos:
        raise ValueError(f"{shard_dir}: split {split!r} is empty")
    if any("frames" not in (v.meta.get("meta") or {}) for v in videos):
        raise ValueError(f"{shard_dir}: the built-in backbone trains on the built-in data set (per-frame labels in "
                         "meta); for other videos use backbone.source: hf")
    return videos


def build_config(videos: list[Video], width: int, stem_channels: int) -> BuiltinConfig:
    kind = videos[0].meta["meta"]["glyph_kind"]
    classes = list(STRIPES) if kind == "stripes" else [str(d) for d in range(10)]
    vocab = sorted({w for v in videos for w in words(v.meta["question"])} | {w for c in PALETTE for w in words(c)})
    return BuiltinConfig(glyph_classes=classes, colours=list(PALETTE), vocab=vocab, width=width,
                         stem_channels=stem_channels)


def draw_scales(rng: np.random.Generator, n: int, target: int) -> list[float]:
    """Training scales: mostly low, some mid, some legible; sometimes one scale for all; the target often legible."""
    if rng.random() < 0.15:
        return [float(rng.choice([0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0]))] * n
    band = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    lo, hi = np.array([0.1, 0.45, LEGIBLE])[band], np.array([0.45, LEGIBLE, 1.15])[band]
    scales = rng.uniform(lo, hi)
    if rng.random() < 0.6:
        scales[target] = rng.uniform(LEGIBLE, 1.15)
    return scales.tolist()


def _token_labels(frames: list[dict], sizes: list[tuple[int, int]], base: tuple[int, int], factor: int, n_classes: int,
                  classes: dict[str, int], length: int, legible: list[bool]) -> torch.Tensor:
    """[T, L] glyph class of the cell holding each glyph's centre, ``n_classes`` (none) elsewhere, -100 if unused."""
    labels = torch.full((len(sizes), length), -100, dtype=torch.long)
    for t, ((h, w), ok) in enumerate(zip(sizes, legible, strict=True)):
        if not ok:
            continue
        cols = w // factor
        labels[t, : (h // factor) * cols] = n_classes
        x, y, bw, bh = frames[t]["box"]
        row, col = int((y + bh / 2) * h / base[0] // factor), int((x + bw / 2) * w / base[1] // factor)
        labels[t, row * cols + col] = classes[frames[t]["glyph"]]
    return labels


def train(videos: list[Video], steps: int, batch_size: int, lr: float, warmup: int, width: int, stem_channels: int,
          seed: int, progress: bool = True) -> tuple[BuiltinVideoQA, list[dict]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = BuiltinVideoQA(build_config(videos, width, stem_channels)).train()
    backbone = BuiltinBackbone(model)
    classes = {g: i for i, g in enumerate(model.config.glyph_classes)}
    colours = {c: i for i, c in enumerate(model.config.colours)}
    n_classes = len(classes)
    none_weight = torch.ones(n_classes + 1)
    none_weight[-1] = 0.1
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1, (i + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, i / steps)))))
    log = []
    for step in tqdm(range(steps), desc="backbone", unit="step", disable=not progress):
        batch = [videos[i] for i in rng.integers(len(videos), size=batch_size)]
        items, targets, answers = [], [], []
        for v in batch:
            n = len(v.frames)
            target = int(rng.integers(n))
            task = "grounding" if rng.random() < GROUNDING_SHARE else "mcq"
            question, options, answer, _ = make_question(rng, sampled_labels(v.meta)[0], target, task,
                                                         v.meta["meta"]["glyph_kind"], 1.0)
            items.append(Item(v.frames, draw_scales(rng, n, target), Query(question, tuple(options), task)))
            targets.append(target)
            answers.append(ord(answer) - 65 if task == "mcq" else None)
        out, plans = backbone.forward(items)
        log_opts = model.option_logprobs(out["log_class"], [it.query.options for it in items])
        # a grounding answer is the frame pointer itself, trained by loss_frame
        picked = [lp[a] for lp, a in zip(log_opts, answers, strict=True) if a is not None]
        loss_answer = -torch.stack(picked).mean() if picked else out["log_class"].new_zeros(())
        loss_frame = F.nll_loss(out["log_frame"], torch.tensor(targets))
        frame_colours = torch.tensor([[colours[f["colour"]] for f in sampled_labels(v.meta)[0]] for v in batch])
        loss_colour = F.cross_entropy(out["colour_logits"].flatten(0, 1), frame_colours.flatten())
        loss_query = F.cross_entropy(out["query_colour"], frame_colours[torch.arange(len(batch)), targets])
        length = out["token_mask"].shape[2]
        labels = torch.stack([
            _token_labels(sampled_labels(v.meta)[0], p.sizes, tuple(v.frames.shape[1:3]), model.config.factor,
                          n_classes,
                          classes, length, [s >= LEGIBLE for s in it.scales])
            for v, p, it in zip(batch, plans, items, strict=True)])
        # a batch with no frame at a legible scale has no cell labels (cross-entropy over nothing is NaN)
        loss_tokens = (F.cross_entropy(out["glyph_logits"], labels[out["token_mask"]], weight=none_weight,
                                       ignore_index=-100) if (labels >= 0).any() else loss_answer.new_zeros(()))
        # a frame too small to show a glyph must not claim one: when the pointer splits between two frames of the
        # asked colour (the same scene sampled twice), a biased guess from the small copy would outvote the sharp one
        blind = torch.tensor([[s < BLIND for s in it.scales] for it in items])  # [B, T]
        uniform = -out["log_class_t"].mean(-1) - math.log(n_classes)  # [B, T]: KL(uniform ‖ read)
        loss_blind = uniform[blind].mean() if blind.any() else loss_answer.new_zeros(())
        loss = loss_answer + loss_frame + loss_colour + loss_query + loss_tokens + loss_blind
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"backbone training: non-finite loss at step {step}")
        log.append({"step": step, "loss": loss.item(), "answer": loss_answer.item(), "tokens": loss_tokens.item(),
                    "frame": loss_frame.item(), "colour": loss_colour.item(), "query": loss_query.item(),
                    "blind": loss_blind.item()})
    return model.eval(), log


def evaluate(backbone: BuiltinBackbone, videos: list[Video], condition: str, batch_size: int = 32) -> dict:
    """Greedy answers to the split's own questions under one scale condition.

    full: every frame at 1; uniform: every frame at √0.1 (a ~10% budget); oracle: the queried frame at 1, the others
    at 0.2; inverse: the queried frame at 0.2, the others at 1.
    """
    acc, ious, retention = [], [], []
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        items = []
        for v in chunk:
            n, target = len(v.frames), sampled_labels(v.meta)[1]
            scales = {"full": [1.0] * n, "uniform": [math.sqrt(0.1)] * n,
                      "oracle": [1.0 if t == target else 0.2 for t in range(n)],
                      "inverse": [0.2 if t == target else 1.0 for t in range(n)]}[condition]
            items.append(Item(v.frames, scales, Query.from_meta(v.meta)))
        rollouts = backbone.generate(items, greedy=True)
        for v, answers, r in zip(chunk, rollouts.answers, rollouts.retention, strict=True):
            (acc if v.meta["task"] == "mcq" else ious).append(accuracy(answers[0], Truth.from_meta(v.meta)))
            retention.append(r)
    return {"accuracy": float(np.mean(acc)) if acc else None, "miou": float(np.mean(ious)) if ious else None,
            "retention": float(np.mean(retention)), "n_mcq": len(acc), "n_grounding": len(ious)}


def train_and_measure(shard_dir: str, train_split: str, eval_split: str, **hyper) -> tuple[BuiltinVideoQA, dict, list]:
    start = time.perf_counter()
    model, log = train(load_videos(shard_dir, train_split), **hyper)
    seconds = time.perf_counter() - start
    backbone = BuiltinBackbone(model)
    held_out = load_videos(shard_dir, eval_split)
    metrics = {"train_seconds": round(seconds, 1), "steps": hyper["steps"]}
    for condition in ("full", "uniform", "oracle", "inverse"):
        for key, value in evaluate(backbone, held_out, condition).items():
            metrics[f"{condition}/{key}"] = value
    return model, metrics, log
