"""Training and measuring the built-in backbone on the synthetic shards.

Dense supervision from what the generator knows: every step asks a fresh question of every kind about each video
(so one video gives many questions), at random per-frame scales, and besides the answer it supervises the colours
the question names, its kind (and the class a count counts), the border colour of every frame and, per frame,
whether its glyph is legible at the size it was given: a frame at an effective scale (side / source side) of at least
its glyph's need gets its glyph class and the cell holding it; one clearly below (under BLIND_FRACTION of its need) is
trained to read nothing (a uniform read), so the answer's combination of frames sees "cannot tell" rather than a
biased guess. Frames without a recorded need (digits) use the fixed LEGIBLE / BLIND scales.
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
from resadapt.backbone.resize import GridSpec
from resadapt.data.shards import iter_split, sampled_labels, sampled_needed
from resadapt.data.synth import MCQ_KINDS, PALETTE, STRIPES, ask
from resadapt.rewards import Truth, accuracy

LEGIBLE = 0.95  # frames without a recorded need: at or above this scale they get glyph labels
BLIND = 0.45  # frames without a recorded need: below this scale their read is trained toward uniform
BLIND_FRACTION = 0.8  # a frame below this share of its need is trained to read nothing (between: answer loss only)
# the question kinds trained (each step draws fresh questions about the split's videos)
TRAIN_KINDS = {"which": 0.3, "same": 0.2, "count": 0.25, "when": 0.1, "between": 0.15}
FLOOR = 0.1  # the Allocator's s_min: what frames a question does not need get in the oracle condition
CURVE = (0.3, 0.5, 0.7, 1.0)  # uniform scales of the graded curve


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


def draw_scales(rng: np.random.Generator, needs: list[float | None], needed: list[int]) -> list[float]:
    """Training scales: sometimes one scale for all; else per frame low or mid-to-legible, and each needed frame
    often at or above its need (a frame without a need: at or above LEGIBLE)."""
    n = len(needs)
    if rng.random() < 0.15:
        return [float(rng.uniform(FLOOR, 1.1))] * n
    low = rng.random(n) < 0.35
    scales = np.where(low, rng.uniform(FLOOR, 0.35, n), rng.uniform(0.3, 1.1, n))
    for t in needed:
        if rng.random() < 0.7:
            scales[t] = rng.uniform(LEGIBLE if needs[t] is None else needs[t], 1.1)
    return scales.tolist()


def legibility(frames: list[dict], sizes: list[tuple[int, int]],
               base: tuple[int, int]) -> tuple[list[bool], list[bool]]:
    """(legible, blind) per frame at its planned size: by its need where recorded, else by LEGIBLE / BLIND."""
    legible, blind = [], []
    for f, (h, w) in zip(frames, sizes, strict=True):
        eff = min(h / base[0], w / base[1])
        need = f.get("need")
        legible.append(eff >= (LEGIBLE if need is None else need - 1e-6))
        blind.append(eff < (BLIND if need is None else BLIND_FRACTION * need))
    return legible, blind


def oracle_scales(frames: list[dict], needed: list[int], base: tuple[int, int], grid: GridSpec) -> list[float]:
    """Each needed frame at the smallest grid scale that reaches its need (1 where none is recorded), the rest at
    FLOOR: what an allocator that knew the needs would spend."""
    cells = base[0] / grid.factor
    scales = [FLOOR] * len(frames)
    for t in needed:
        need = frames[t].get("need") or 1.0
        scales[t] = max(FLOOR, math.ceil(need * cells - 1e-6) / cells)
    return scales


def _token_labels(frames: list[dict], sizes: list[tuple[int, int]], base: tuple[int, int], factor: int, n_classes: int,
                  classes: dict[str, int], length: int, legible: list[bool]) -> torch.Tensor:
    """[T, L] per cell of each legible frame: the glyph class where the glyph's box covers at least a quarter of the
    cell or its centre lies, ignored (-100) where it covers less, ``n_classes`` (none) elsewhere; -100 for frames
    that are not legible and padding."""
    labels = torch.full((len(sizes), length), -100, dtype=torch.long)
    for t, ((h, w), ok) in enumerate(zip(sizes, legible, strict=True)):
        if not ok:
            continue
        rows, cols = h // factor, w // factor
        x, y, bw, bh = frames[t]["box"]
        x0, x1, y0, y1 = x * w / base[1], (x + bw) * w / base[1], y * h / base[0], (y + bh) * h / base[0]
        edges_x, edges_y = torch.arange(cols + 1) * factor, torch.arange(rows + 1) * factor
        over_x = (torch.minimum(edges_x[1:], torch.tensor(x1)) - torch.maximum(edges_x[:-1], torch.tensor(x0)))
        over_y = (torch.minimum(edges_y[1:], torch.tensor(y1)) - torch.maximum(edges_y[:-1], torch.tensor(y0)))
        cover = (over_y.clamp_min(0)[:, None] * over_x.clamp_min(0)[None]) / factor**2  # [rows, cols]
        cell = torch.where(cover >= 0.25, classes[frames[t]["glyph"]], torch.where(cover > 0, -100, n_classes))
        centre = int((y0 + y1) / 2 // factor), int((x0 + x1) / 2 // factor)
        cell[centre] = classes[frames[t]["glyph"]]
        labels[t, : rows * cols] = cell.flatten()
    return labels


def _question(rng: np.random.Generator, labels: list[dict], glyph_kind: str):
    kinds = list(TRAIN_KINDS)
    kind = kinds[int(rng.choice(len(kinds), p=list(TRAIN_KINDS.values())))]
    return ask(rng, labels, kind, glyph_kind, 1.0)


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
    zero = torch.zeros(())
    log = []
    for step in tqdm(range(steps), desc="backbone", unit="step", disable=not progress):
        batch = [videos[i] for i in rng.integers(len(videos), size=batch_size)]
        items, questions, spans = [], [], []
        for v in batch:
            labels = sampled_labels(v.meta)[0]
            q = _question(rng, labels, v.meta["meta"]["glyph_kind"])
            task = "mcq" if q.kind in MCQ_KINDS else "grounding"
            named = {labels[t]["colour"] for t in q.needed}
            shown = [t for t, f in enumerate(labels) if f["colour"] in named]
            items.append(Item(v.frames, draw_scales(rng, [f.get("need") for f in labels], q.needed),
                              Query(q.question, tuple(q.options), task)))
            questions.append(q)
            spans.append((min(shown), max(shown)))
        out, plans = backbone.forward(items)
        mcq = [b for b, q in enumerate(questions) if q.kind in MCQ_KINDS]
        log_opts = model.option_logprobs({k: v[mcq] for k, v in out.items() if k in (
            "log_class", "log_same", "log_count", "log_kind")}, [items[b].query.options for b in mcq])
        picked = [lp[ord(questions[b].answer) - 65] for lp, b in zip(log_opts, mcq, strict=True)]
        picked += [out["log_span"][b, spans[b][0], spans[b][1]] for b, q in enumerate(questions) if b not in mcq]
        loss_answer = -torch.stack(picked).mean()
        loss_kind = (F.nll_loss(out["log_kind"][mcq], torch.tensor([MCQ_KINDS.index(questions[b].kind) for b in mcq]))
                     if mcq else zero)
        counts = [b for b, q in enumerate(questions) if q.counted is not None]
        loss_counted = (F.nll_loss(out["log_counted"][counts], torch.tensor([classes[questions[b].counted]
                                                                               for b in counts])) if counts else zero)
        all_labels = [sampled_labels(v.meta)[0] for v in batch]
        frame_colours = torch.tensor([[colours[f["colour"]] for f in labels] for labels in all_labels])
        loss_colour = F.cross_entropy(out["colour_logits"].flatten(0, 1), frame_colours.flatten())
        named = torch.zeros_like(out["query_colour"])
        for b, (q, labels) in enumerate(zip(questions, all_labels, strict=True)):
            named[b, [colours[labels[t]["colour"]] for t in q.needed]] = 1
        # summed over colours: a mean over mostly unnamed colours would barely teach the 1–3 named ones
        loss_query = F.binary_cross_entropy_with_logits(out["query_colour"], named, reduction="sum") / len(batch)
        base = tuple(batch[0].frames.shape[1:3])
        legible, blind = zip(*[legibility(labels, p.sizes, base) for labels, p in zip(all_labels, plans, strict=True)],
                             strict=True)
        legible, blind = torch.tensor(legible), torch.tensor(blind)  # [B, T]
        glyphs = torch.tensor([[classes[f["glyph"]] for f in labels] for labels in all_labels])
        read = out["log_class_t"].gather(-1, glyphs[..., None])[..., 0]  # [B, T]
        loss_read = -read[legible].mean() if legible.any() else zero
        length = out["token_mask"].shape[2]
        cell_labels = torch.stack([
            _token_labels(labels, p.sizes, base, model.config.factor, n_classes, classes, length, ok)
            for labels, p, ok in zip(all_labels, plans, legible.tolist(), strict=True)])
        # a batch with no legible frame has no cell labels (cross-entropy over nothing is NaN)
        # glyph_logits are packed [N tokens, K + 1]; token_mask [B, T, L] puts them back in place
        loss_tokens = (F.cross_entropy(out["glyph_logits"], cell_labels[out["token_mask"]], weight=none_weight,
                                       ignore_index=-100) if (cell_labels >= 0).any() else zero)
        # a frame too small to show its glyph must say so: the combination of frames then reads "cannot tell"
        uniform = -out["log_class_t"].mean(-1) - math.log(n_classes)  # [B, T]: KL(uniform ‖ read)
        loss_blind = uniform[blind].mean() if blind.any() else zero
        parts = {"answer": loss_answer, "kind": loss_kind, "counted": loss_counted, "colour": loss_colour,
                 "query": loss_query, "read": loss_read, "tokens": loss_tokens, "blind": loss_blind}
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"backbone training: non-finite loss at step {step}")
        log.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}})
    return model.eval(), log


def condition_scales(v: Video, condition: str, grid: GridSpec) -> list[float]:
    """full: every frame at 1; scale_<s>: every frame at s; uniform: every frame at √0.1 (a ~10% budget); oracle:
    the needed frames at their need on the grid, the others at FLOOR; inverse: the needed frames at FLOOR, the others
    at 1."""
    labels, n = sampled_labels(v.meta)[0], len(v.frames)
    needed = sampled_needed(v.meta)
    if condition.startswith("scale_"):
        return [float(condition.removeprefix("scale_"))] * n
    if condition == "oracle":
        return oracle_scales(labels, needed, tuple(v.frames.shape[1:3]), grid)
    if condition == "inverse":
        return [FLOOR if t in needed else 1.0 for t in range(n)]
    return {"full": [1.0] * n, "uniform": [math.sqrt(0.1)] * n}[condition]


def evaluate(backbone: BuiltinBackbone, videos: list[Video], condition: str, batch_size: int = 32) -> dict:
    """Greedy answers to the split's own questions under one scale condition (``condition_scales``): MCQ accuracy
    overall and per question kind, grounding mIoU, chance (the mean of 1 / options), realised retention."""
    acc, ious, retention, kinds, chance = [], [], [], [], []
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        items = [Item(v.frames, condition_scales(v, condition, backbone.grid), Query.from_meta(v.meta)) for v in chunk]
        rollouts = backbone.generate(items, greedy=True)
        for v, answers, r in zip(chunk, rollouts.answers, rollouts.retention, strict=True):
            score = accuracy(answers[0], Truth.from_meta(v.meta))
            kinds.append((v.meta["meta"].get("question_kind", "which" if v.meta["task"] == "mcq" else "when"), score))
            if v.meta["task"] == "mcq":
                acc.append(score)
                chance.append(1 / len(v.meta["options"]))
            else:
                ious.append(score)
            retention.append(r)
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    by_kind = {f"{kind}/score": mean([x for k, x in kinds if k == kind]) for kind in sorted({k for k, _ in kinds})}
    return {"accuracy": mean(acc), "miou": mean(ious), "chance": mean(chance), "retention": mean(retention),
            "n_mcq": len(acc), "n_grounding": len(ious), **by_kind}


def train_and_measure(shard_dir: str, train_split: str, eval_split: str, **hyper) -> tuple[BuiltinVideoQA, dict, list]:
    start = time.perf_counter()
    model, log = train(load_videos(shard_dir, train_split), **hyper)
    seconds = time.perf_counter() - start
    backbone = BuiltinBackbone(model)
    held_out = load_videos(shard_dir, eval_split)
    metrics = {"train_seconds": round(seconds, 1), "steps": hyper["steps"]}
    for condition in ("full", "uniform", "oracle", "inverse", *(f"scale_{s}" for s in CURVE)):
        for key, value in evaluate(backbone, held_out, condition).items():
            metrics[f"{condition}/{key}"] = value
    return model, metrics, log
