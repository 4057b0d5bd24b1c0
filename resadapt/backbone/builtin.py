"""The built-in backbone: a small, genuinely resolution-sensitive video-QA model that trains on a CPU in minutes.

A conv stem turns each frame (resized by the budget operator) into one token per 28×28 cell, so its visual tokens
grow with pixel area exactly as Qwen's grid does. Heads read, per token, which glyph class sits in that cell (or
none) and, per frame, the border colour p_t(c). The question's words give the colours it names, q_c = σ(·) (one to
three), its kind κ ∈ {which, same, count}, and for a count the glyph class o it counts. Per frame and per colour:

    b_tl = softmax_l( log-odds that token l holds a glyph )           where in frame t the glyph is
    r_t(k) = Σ_l b_tl · softmax(g_tl)_k                               the class frame t reads (uniform when illegible)
    R_c(k) ∝ Π_t r_t(k)^{p_t(c)}                                      colour c's read: its frames' evidence combined
    π_c = q_c · (1 − Π_t (1 − p_t(c)))                                colour c is named and shown
    which:  P(k) = Σ_c π_c R_c(k) / Σ_c π_c
    same:   P(yes) = Σ_{c≠c'} π_c π_c' ⟨R_c, R_c'⟩ / Σ_{c≠c'} π_c π_c'
    count:  P(n) = Poisson-binomial over colours with success π_c · Σ_o P(o) R_c(o)
    option: P(x) = Σ_κ P(κ) P_κ(x), renormalised over the item's options

A grounding answer is the span from the first to the last frame of the named colours: with n_t = Σ_c q_c p_t(c),

    P([i, j]) ∝ n_i n_j Π_{t<i} (1 − n_t) Π_{t>j} (1 − n_t)   (i < j),   P([i, i]) ∝ n_i Π_{t≠i} (1 − n_t)

so one colour sampled in several neighbouring frames is one segment, and "from red to blue" is the hull of both.
A downscaled frame loses the glyph's fine structure, so r_t flattens toward chance: the model needs resolution
exactly on the frames the question names, as much as each frame's glyph needs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from resadapt.backbone.interface import Item, Rollouts, plan_item
from resadapt.backbone.resize import GridSpec, resize_frames
from resadapt.data.synth import MCQ_KINDS
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
        self.query_colour = nn.Linear(config.word_dim, len(config.colours))  # multi-label: σ per named colour
        self.query_kind = nn.Linear(config.word_dim, len(MCQ_KINDS))
        self.query_class = nn.Linear(config.word_dim, k)  # the class a count question counts
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

    def query_words(self, questions: Sequence[str]) -> torch.Tensor:
        """[B, word_dim]: the bag of the question's words."""
        ids = [torch.tensor(self.word_ids(q)) for q in questions]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.word_embedding(torch.cat(ids).to(self.device), offsets.to(self.device))

    def query_colour_logits(self, questions: Sequence[str]) -> torch.Tensor:
        """[B, C]: logits of each border colour being named by the question (independent, σ): per word w a colour
        logit ℓ_wc, and ℓ_c = logsumexp_w ℓ_wc, a soft max (a colour is named when some word names it, however many
        others do; unlike a hard max, every word gets gradient, so a colour word not yet on top still learns)."""
        ids = [self.word_ids(q) for q in questions]
        padded = torch.tensor([i + [0] * (max(map(len, ids)) - len(i)) for i in ids], device=self.device)  # [B, Lw]
        mask = torch.tensor([[k < len(i) for k in range(padded.shape[1])] for i in ids], device=self.device)
        per_word = self.query_colour(self.word_embedding.weight[padded])  # [B, Lw, C]
        return per_word.masked_fill(~mask[..., None], float("-inf")).logsumexp(1)

    def answer(self, colour_logits: torch.Tensor, log_class_t: torch.Tensor,
               questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """colour_logits [B, T, C], log_class_t [B, T, K] → what every kind of question would answer (module
        docstring): log P(k) [B, K] for which, log P(same) [B, 2] (yes, no), log P(n) [B, C+1] for count, the kind
        log P(κ) [B, 3], the grounding spans log P([i, j]) [B, T, T] (−inf below the diagonal), and the query heads."""
        bag = self.query_words(questions)
        query_colour = self.query_colour_logits(questions)  # [B, C]
        log_kind, log_o = self.query_kind(bag).log_softmax(-1), self.query_class(bag).log_softmax(-1)  # [B, 3], [B, K]
        p_tc = colour_logits.softmax(-1)  # [B, T, C]
        q = query_colour.sigmoid()
        log_R = torch.einsum("btc,btk->bck", p_tc, log_class_t).log_softmax(-1)  # [B, C, K]
        shown = -torch.expm1(torch.log1p(-p_tc.clamp(max=1 - 1e-6)).sum(1))  # [B, C]: 1 − Π_t (1 − p_t(c))
        pi = (q * shown).clamp_min(1e-6)  # [B, C]
        log_which = torch.logsumexp(pi.log()[..., None] + log_R, 1) - pi.sum(-1, keepdim=True).log()  # [B, K]
        R = log_R.exp()
        pair = pi[:, :, None] * pi[:, None, :] * (1 - torch.eye(pi.shape[1], device=pi.device))  # [B, C, C]
        p_same = ((pair * (R @ R.transpose(1, 2))).sum((1, 2)) / pair.sum((1, 2))).clamp(1e-6, 1 - 1e-6)
        log_same = torch.stack([p_same.log(), torch.log1p(-p_same)], -1)  # [B, 2]
        success = pi.clamp(max=1) * (R * log_o.exp()[:, None]).sum(-1)  # [B, C]
        count = success.new_zeros(success.shape[0], success.shape[1] + 1)
        count[:, 0] = 1
        for c in range(success.shape[1]):  # Poisson-binomial: add one colour at a time
            p = success[:, c : c + 1]
            count = torch.cat([count[:, :1] * (1 - p), count[:, 1:] * (1 - p) + count[:, :-1] * p], 1)
        n_t = torch.einsum("bc,btc->bt", q, p_tc).clamp(1e-6, 1 - 1e-6)  # [B, T]
        return {"query_colour": query_colour, "log_kind": log_kind, "log_counted": log_o, "log_class": log_which,
                "log_same": log_same, "log_count": count.clamp_min(1e-12).log(), "log_span": span_logprobs(n_t)}

    def forward(self, frames: Sequence[Sequence[torch.Tensor]], questions: Sequence[str]) -> dict[str, torch.Tensor]:
        """``frames[b][t]``: uint8 [h, w, 3] at the size the budget operator chose; every item has T frames."""
        n_items, n_frames = len(frames), len(frames[0])
        out = self.frame_outputs([f for item in frames for f in item])
        per_frame = ("token_mask", "colour_logits", "log_class_t")  # the others stay packed: [N, ...]
        out |= {k: out[k].view(n_items, n_frames, *out[k].shape[1:]) for k in per_frame}  # [B, T, ...]
        return out | self.answer(out["colour_logits"], out["log_class_t"], questions)

    def option_logprobs(self, out: dict[str, torch.Tensor], options: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """log P(option) = log Σ_κ P(κ) P_κ(option), renormalised over each item's options; an option a kind cannot
        give (not a glyph class, not yes/no, not a count) gets ~0 from that kind."""
        index = {g: i for i, g in enumerate(self.config.glyph_classes)}
        never = out["log_class"].new_tensor(-30.0)
        result = []
        for b, opts in enumerate(options):
            if not opts:
                result.append(out["log_class"].new_zeros(0))
                continue
            per_kind = []
            for o in opts:
                which = out["log_class"][b, index[o]] if o in index else never
                same = out["log_same"][b, ("yes", "no").index(o)] if o in ("yes", "no") else never
                n = int(o) if o.isdigit() else -1
                count = out["log_count"][b, n] if 0 <= n < out["log_count"].shape[1] else never
                per_kind.append(torch.stack([which, same, count]))
            scores = torch.logsumexp(out["log_kind"][b] + torch.stack(per_kind), -1)  # [n_options]
            result.append(scores.log_softmax(-1))
        return result


def span_logprobs(n_t: torch.Tensor) -> torch.Tensor:
    """n_t [B, T] (each frame's chance of showing a named colour) → log P(hull of those frames = [i, j]) [B, T, T],
    normalised over the non-empty sets, −inf for j < i (module docstring)."""
    log_n, log_not = n_t.log(), torch.log1p(-n_t)  # [B, T]
    zero = log_not.new_zeros(log_not.shape[0], 1)
    before = torch.cat([zero, log_not.cumsum(-1)[:, :-1]], -1)  # Σ_{t<i} log(1 − n_t)
    after = torch.cat([log_not.flip(-1).cumsum(-1).flip(-1)[:, 1:], zero], -1)  # Σ_{t>j} log(1 − n_t)
    score = before[:, :, None] + after[:, None, :] + log_n[:, :, None] + log_n[:, None, :]  # [B, i, j]
    diagonal = torch.eye(n_t.shape[1], dtype=torch.bool, device=n_t.device)
    score = torch.where(diagonal, (before + after + log_n).diag_embed(), score)
    upper = torch.ones_like(diagonal).triu()
    score = score.masked_fill(~upper, float("-inf"))
    return score - torch.logsumexp(score.flatten(1), -1)[:, None, None]


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

    def _choices(self, out, items) -> list[tuple[torch.Tensor, list[str], list[tuple[float, float]]]]:
        """Per item: log-probs over its possible answers, their texts (letters, or one span per frame pair i ≤ j)
        and, for grounding, the spans."""
        options = self.model.option_logprobs(out, [it.query.options for it in items])
        result = []
        for b, it in enumerate(items):
            if it.query.task == "grounding":
                segments = it.frame_segments()
                i, j = torch.triu_indices(len(segments), len(segments)).tolist()
                spans = [(segments[a][0], segments[e][1]) for a, e in zip(i, j, strict=True)]
                result.append((out["log_span"][b, i, j], [format_span(*sp) for sp in spans], spans))
            else:
                result.append((options[b], [chr(65 + k) for k in range(len(it.query.options))], []))
        return result

    def generate(self, items, n: int = 1, greedy: bool = False, temperature: float = 1.0):
        with torch.no_grad():
            cached = self.cache and all(it.key is not None for it in items)
            out, plans = self._answer_cached(items) if cached else self.forward(items)
            answers, logps = [], []
            for logp, texts, _ in self._choices(out, items):
                if greedy:
                    pick = logp.argmax().repeat(n)
                else:
                    pick = torch.multinomial((logp / temperature).softmax(-1), n, replacement=True)
                answers.append([texts[i] for i in pick.tolist()])
                logps.append(logp[pick])
        return Rollouts(answers, torch.stack(logps).cpu(), [p.total_tokens for p in plans],
                        [p.retention for p in plans])

    def answer_logprobs(self, items, answers) -> torch.Tensor:
        out, _ = self.forward(items)
        rows = []
        for (logp, texts, spans), it, given in zip(self._choices(out, items), items, answers, strict=True):
            if it.query.task == "grounding":
                pick = [max(range(len(spans)), key=lambda k: iou(spans[k], parse_span(a) or (0, 0))) for a in given]
            else:
                letters = "".join(texts)
                chosen = [chosen_letter(a, letters, it.query.options) for a in given]
                pick = [letters.index(c) if c else -1 for c in chosen]
            rows.append(torch.stack([logp[k] if k >= 0 else logp.new_tensor(-30.0) for k in pick]))
        return torch.stack(rows)
