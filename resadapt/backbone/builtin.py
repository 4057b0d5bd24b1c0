"""The built-in backbone: a small, genuinely resolution-sensitive video-QA model that trains on a CPU in minutes.

A conv stem turns each frame (resized by the budget operator) into one token per 28×28 cell, so its visual tokens
grow with pixel area exactly as Qwen's grid does. Heads read, per token, which glyph class sits in that cell (or
none) and, per frame, the border colour. The question's words give the colour it asks about. Answering is a pointer:

    a_t = softmax_t( logsumexp_c [log q(c) + log p_t(c)] )            which frame the question points to
    b_tl = softmax_l( log-odds that token l holds a glyph )           where in frame t the glyph is
    P(k) = Σ_t a_t Σ_l b_tl · softmax(g_tl)_k                         the glyph class, hence the option

A grounding answer is the time segment of a frame drawn from a_t; the greedy answer spans the run of neighbouring
frames the pointer rates within a factor 2 of the best (the same scene sampled twice is one segment).
A downscaled frame loses the glyph's fine structure, so P(k) flattens toward chance: the model needs resolution
exactly where the question points.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from resadapt.backbone.interface import Item, Rollouts, plan_item
from resadapt.backbone.resize import GridSpec, resize_frames
from resadapt.rewards.choice import chosen_letter
from resadapt.rewards.spans import format_span, iou, parse_span

_WORD = re.compile(r"[a-z]+")
# cells per pass through the stem: a pass's activations (~10 MB) stay near the cache, its overhead stays small
CELLS_PER_PASS = 1024


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BuiltinConfig(PretrainedConfig):
    model_type = "resadapt_builtin"

    def __init__(self, glyph_classes: Sequence[str] = (), colours: Sequence[str] = (), vocab: Sequence[str] = (),
                 factor: int = 28, width: int = 64, stem_channels: int = 32, word_dim: int = 32,
                 **kwargs):
        super().__init__(**kwargs)
        self.glyph_classes = list(glyph_classes)
        self.colours = list(colours)
        self.vocab = list(vocab)
        self.factor = factor
        self.width = width
        self.stem_channels = stem_channels
        self.word_dim = word_dim


class BuiltinVideoQA(PreTrainedModel):
    config_class = BuiltinConfig
    main_input_name = "frames"

    def __init__(self, config: BuiltinConfig):
        super().__init__(config)
        c, d, k = config.stem_channels, config.width, len(config.glyph_classes)
        if config.factor % 4:
            raise ValueError(f"factor must be a multiple of 4, got {config.factor}")
        self.stem = nn.Sequential(  # stride factor: one token per factor×factor cell
            nn.Conv2d(3, c, 4, stride=4), nn.GELU(),
            nn.Conv2d(c, d, config.factor // 4, stride=config.factor // 4), nn.GELU(),
        )
        self.token_norm = nn.LayerNorm(d)
        self.glyph_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, k + 1))  # last class: no glyph
        self.colour_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, len(config.colours)))
        self.word_embedding = nn.EmbeddingBag(len(config.vocab) + 1, config.word_dim, mode="sum")
        self.query_colour = nn.Linear(config.word_dim, len(config.colours))
        self._word_index = {w: i + 1 for i, w in enumerate(config.vocab)}  # 0: unknown word
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def encode_frames(self, frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [h, w, 3] of any grid sizes → packed tokens [N, width] and tokens per frame [n].

        Frame i has L_i = (h/F)·(w/F) tokens and N = Σ_i L_i; frame 0's tokens come first, each frame's in row-major
        cell order. Both stem convolutions have stride = kernel, so a token depends on its own F×F cell only:

            x_l = LayerNorm(GELU(W₂ · GELU(W₁ · (p_l / 255 − ½) + b₁) + b₂))     p_l: the 4×4 patches of cell l

        two matmuls over all cells of one frame size (frames of every size in one batch): cost ∝ N, no padding.
        """
        f, q = self.config.factor, self.config.factor // 4
        conv1, conv2 = self.stem[0], self.stem[2]
        # W₁ over (row, col, channel) of a 4×4 patch, with the pixel normalisation folded in; W₂ over (row, col,
        # channel) of a cell's q×q patches: the orders in which the cells are laid out below
        w1 = conv1.weight.permute(0, 2, 3, 1).flatten(1)  # [C, 48]
        w1_pixels, b1 = w1 / 255, conv1.bias - 0.5 * w1.sum(1)  # W₁ · (p / 255 − ½) + b₁ on raw pixels p
        w2 = conv2.weight.permute(0, 2, 3, 1).flatten(1)  # [width, q·q·C]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, frame in enumerate(frames):
            if frame.shape[0] < f or frame.shape[1] < f:
                raise ValueError(f"frame {i}: {tuple(frame.shape[:2])} is smaller than one {f}×{f} token cell")
            groups[(frame.shape[0] // f, frame.shape[1] // f)].append(i)
        parts, order = [], []
        for (rows, cols), idx in groups.items():  # frames of one size, a few at a time: [g, rows, q, 4, cols, q, 4, 3]
            step = max(1, CELLS_PER_PASS // (rows * cols))
            for start in range(0, len(idx), step):
                x = torch.stack([frames[i][: rows * f, : cols * f] for i in idx[start : start + step]])
                x = x.to(self.device).view(-1, rows, q, 4, cols, q, 4, 3).permute(0, 1, 4, 2, 5, 3, 6, 7)
                patches = x.to(self.dtype, memory_format=torch.contiguous_format).view(-1, 48)  # [g·L·q², 48]
                hidden = F.gelu(F.linear(patches, w1_pixels, b1)).view(-1, q * q * conv1.out_channels)  # [g·L, q²·C]
                parts.append(F.gelu(F.linear(hidden, w2, conv2.bias)))  # [g·L, width]
            order += idx
        tokens = self.token_norm(torch.cat(parts))  # [N, width], frames in group order
        lengths = torch.tensor([(frames[i].shape[0] // f) * (frames[i].shape[1] // f) for i in order],
                               device=self.device)
        if order == sorted(order):
            return tokens, lengths
        rank = torch.empty_like(lengths)
        rank[torch.tensor(order, device=self.device)] = torch.arange(len(order), device=self.device)
        starts = lengths.cumsum(0) - lengths  # where each frame's tokens start, in group order
        lengths = lengths[rank]  # frame order from here
        within = torch.arange(len(tokens), device=self.device) - (lengths.cumsum(0) - lengths).repeat_interleave(
            lengths)
        return tokens[starts[rank].repeat_interleave(lengths) + within], lengths

    def word_ids(self, text: str) -> list[int]:
        return [self._word_index.get(w, 0) for w in words(text)] or [0]

    def frame_outputs(self, frames: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """What each frame says on its own, whatever the question: border colour and the glyph class it reads.

        frames: n uint8 [h, w, 3] → per token (packed, see ``encode_frames``): tokens [N, width], glyph_logits
        [N, K+1]; per frame: token_mask [n, L_max] (``padded[token_mask] = packed``), colour_logits [n, C],
        log_class_t [n, K] (the class read where the glyph most likely is: log Σ_l b_l softmax(g_l)).
        Every reduction over a frame's tokens is a segment reduction over its L_i tokens.
        """
        feats, lengths = self.encode_frames(frames)
        frame = torch.arange(len(lengths), device=self.device).repeat_interleave(lengths)  # [N]: token → its frame
        glyph_logits = self.glyph_head(feats)  # [N, K+1]
        pooled = feats.new_zeros(len(lengths), feats.shape[1]).index_add_(0, frame, feats) / lengths[:, None]
        log_g = glyph_logits.log_softmax(-1)
        presence = torch.logsumexp(log_g[:, :-1], -1) - log_g[:, -1]  # [N]
        log_b = presence - segment_logsumexp(presence, frame, len(lengths))[frame]  # [N]: log softmax_l per frame
        log_class_t = segment_logsumexp(log_b[:, None] + glyph_logits[:, :-1].log_softmax(-1), frame, len(lengths))
        mask = torch.arange(int(lengths.max()), device=self.device) < lengths[:, None]
        return {"tokens": feats, "glyph_logits": glyph_logits, "token_mask": mask,
                "colour_logits": self.colour_head(pooled), "log_class_t": log_class_t}

    def query_colour_logits(self, questions: Sequence[str]) -> torch.Tensor:
        """[B, C]: which border colour each question asks about."""
        ids = [torch.tensor(self.word_ids(q)) for q in questions]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.query_colour(self.word_embedding(torch.cat(ids).to(self.device), offsets.to(self.device)))

    def answer(self, colour_logits: torch.Tensor, log_class_t: torch.Tensor,
               questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """colour_logits [B, T, C], log_class_t [B, T, K] → the frame pointer log a [B, T] and log P(k) [B, K]."""
        query_colour = self.query_colour_logits(questions)  # [B, C]
        frame_logits = torch.logsumexp(query_colour.log_softmax(-1)[:, None] + colour_logits.log_softmax(-1), -1)
        log_a = frame_logits.log_softmax(-1)
        log_class = torch.logsumexp(log_a[..., None] + log_class_t, 1)
        return {"query_colour": query_colour, "log_frame": log_a, "log_class": log_class}

    def forward(self, frames: Sequence[Sequence[torch.Tensor]], questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """``frames[b][t]``: uint8 [h, w, 3] at the size the budget operator chose; every item has T frames."""
        n_items, n_frames = len(frames), len(frames[0])
        out = self.frame_outputs([f for item in frames for f in item])
        per_frame = ("token_mask", "colour_logits", "log_class_t")  # the others stay packed: [N, ...]
        out |= {k: out[k].view(n_items, n_frames, *out[k].shape[1:]) for k in per_frame}  # [B, T, ...]
        return out | self.answer(out["colour_logits"], out["log_class_t"], questions)

    def option_logprobs(self, log_class: torch.Tensor, options: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """log P(option) renormalised over each item's options; an option that is no glyph class gets ~0."""
        index = {g: i for i, g in enumerate(self.config.glyph_classes)}
        out = []
        for b, opts in enumerate(options):
            if not opts:
                out.append(log_class.new_zeros(0))
                continue
            scores = torch.stack([log_class[b, index[o]] if o in index else log_class.new_tensor(-30.0) for o in opts])
            out.append(scores.log_softmax(-1))
        return out


def segment_logsumexp(x: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    """x [N, ...], segment [N] (each row's segment in 0..n-1, none empty) → [n, ...]: log Σ_{l ∈ s} exp(x_l).

    Shifted by each segment's max m_s (a constant for the gradient): m_s + log Σ exp(x_l − m_s).
    """
    index = segment.view(-1, *[1] * (x.dim() - 1)).expand_as(x)
    m = x.new_full((n, *x.shape[1:]), float("-inf")).scatter_reduce_(0, index, x.detach(), "amax")
    return m + x.new_zeros(m.shape).index_add_(0, segment, (x - m[segment]).exp()).log()


def resize_batch(frames: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Resize frames [H, W, 3] (uint8) to their own sizes, one interpolate call per (source, target) size pair."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (f, size) in enumerate(zip(frames, sizes, strict=True)):
        groups[(tuple(f.shape[:2]), tuple(size))].append(i)
    out: list[torch.Tensor | None] = [None] * len(frames)
    for (_, size), idx in groups.items():
        resized = resize_frames(torch.stack([frames[i] for i in idx]), size)
        for j, i in enumerate(idx):
            out[i] = resized[j]
    return out


def greedy_span(log_frame: torch.Tensor, segments: Sequence[tuple[float, float]]) -> str:
    """The best frame's segment, widened over contiguous neighbours with a_t ≥ a_best / 2."""
    best = int(log_frame.argmax())
    near = (log_frame >= log_frame[best] - math.log(2)).tolist()
    lo, hi = best, best
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(near) - 1 and near[hi + 1]:
        hi += 1
    return format_span(segments[lo][0], segments[hi][1])


class BuiltinBackbone:
    """``Backbone`` over ``BuiltinVideoQA``: one frame per chunk, one token per 28×28 cell.

    With ``cache`` (a frozen model only), what a frame says at a given size is computed once per (sample key, frame,
    size) and reused across allocations and steps: rollouts then cost little more than the new sizes they touch.
    """

    def __init__(self, model: BuiltinVideoQA, cache: bool = False):
        self.model = model
        # one token is the floor (a 28×28 frame), not Qwen's four: the budget can then reach many frames
        self.grid = GridSpec(factor=model.config.factor, temporal_patch=1, min_pixels=model.config.factor ** 2)
        self.cache = cache
        self._frames: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(cls, path: str, cache: bool = False) -> BuiltinBackbone:
        return cls(BuiltinVideoQA.from_pretrained(path).eval(), cache=cache)

    def forward(self, items: Sequence[Item]):
        """Resize every item by its plan and run the model; returns (outputs, plans)."""
        plans = [plan_item(it, self.grid) for it in items]
        flat = [f for it in items for f in it.frames]
        sizes = [s for p in plans for s in p.sizes]
        resized = resize_batch(flat, sizes)
        n = len(items[0].frames)
        frames = [resized[b * n : (b + 1) * n] for b in range(len(items))]
        return self.model(frames, [it.query.question for it in items]), plans

    def _answer_cached(self, items: Sequence[Item]):
        """Like ``forward`` for answering, with per-frame outputs from the cache (computed for misses only)."""
        plans = [plan_item(it, self.grid) for it in items]
        slots = [(it.key, t, size) for it, p in zip(items, plans, strict=True) for t, size in enumerate(p.sizes)]
        missing = list(dict.fromkeys(s for s in slots if s not in self._frames))
        if missing:
            frames = {(it.key, t): it.frames[t] for it in items for t in range(len(it.frames))}
            fresh = self.model.frame_outputs(resize_batch([frames[k, t] for k, t, _ in missing],
                                                          [size for _, _, size in missing]))
            for i, slot in enumerate(missing):
                self._frames[slot] = (fresh["colour_logits"][i], fresh["log_class_t"][i])
        n = len(items[0].frames)
        colour = torch.stack([self._frames[s][0] for s in slots]).view(len(items), n, -1)
        log_class_t = torch.stack([self._frames[s][1] for s in slots]).view(len(items), n, -1)
        return self.model.answer(colour, log_class_t, [it.query.question for it in items]), plans

    def _choices(self, out, items) -> list[tuple[torch.Tensor, list[str]]]:
        """Per item: log-probs over its possible answers and their texts (letters, or one span per frame)."""
        options = self.model.option_logprobs(out["log_class"], [it.query.options for it in items])
        result = []
        for b, it in enumerate(items):
            if it.query.task == "grounding":
                result.append((out["log_frame"][b], [format_span(a, e) for a, e in it.frame_segments()]))
            else:
                result.append((options[b], [chr(65 + i) for i in range(len(it.query.options))]))
        return result

    def generate(self, items, n: int = 1, greedy: bool = False, temperature: float = 1.0):
        with torch.no_grad():
            cached = self.cache and all(it.key is not None for it in items)
            out, plans = self._answer_cached(items) if cached else self.forward(items)
            answers, logps = [], []
            for (logp, texts), it in zip(self._choices(out, items), items, strict=True):
                if greedy:
                    pick = logp.argmax().repeat(n)
                else:
                    pick = torch.multinomial((logp / temperature).softmax(-1), n, replacement=True)
                if greedy and it.query.task == "grounding":
                    answers.append([greedy_span(logp, it.frame_segments())] * n)
                else:
                    answers.append([texts[i] for i in pick.tolist()])
                logps.append(logp[pick])
        return Rollouts(answers, torch.stack(logps).cpu(), [p.total_tokens for p in plans],
                        [p.retention for p in plans])

    def answer_logprobs(self, items, answers) -> torch.Tensor:
        out, _ = self.forward(items)
        rows = []
        for (logp, texts), it, given in zip(self._choices(out, items), items, answers, strict=True):
            if it.query.task == "grounding":
                spans = [parse_span(t) for t in texts]
                pick = [max(range(len(spans)), key=lambda k: iou(spans[k], parse_span(a) or (0, 0))) for a in given]
            else:
                letters = "".join(texts)
                chosen = [chosen_letter(a, letters, it.query.options) for a in given]
                pick = [letters.index(c) if c else -1 for c in chosen]
            rows.append(torch.stack([logp[k] if k >= 0 else logp.new_tensor(-30.0) for k in pick]))
        return torch.stack(rows)
