"""The default features encoder: a small dual encoder pretrained CLIP-style on per-frame image–caption pairs, frozen.

Image tower (frames at ``features.side`` px): two strided convolutions and a 1×1 one, average-pooled to a g×g grid
of patch tokens (g = side // 28, one per 28-px cell as the backbone's patches) P ∈ R^{g²×D}; its embedding is
f = normalise(W_f · mean_l P_l) ∈ R^E. Text tower: word embeddings w_i ∈ R^D, pooled by learned word weights,
q = normalise(W_q · Σ_i softmax(ω)_i w_i) ∈ R^E, so the words that tell captions apart can outweigh the rest.

Training (symmetric InfoNCE, CLIP): per step ``videos_per_step`` train videos; within each video, frames t and
captions c (one phrasing each, drawn per step) give logits z_tc = exp(s) · f_t·q_c and

    L = ½ [CE_rows(z, Y) + CE_cols(z, Y)],   Y_tc ∝ [colour_t = colour_c]

(a video's frames have distinct colours on the built-in set, so Y is the identity). The captions name the border
colour only (resadapt.features.captions): the encoder never reads a question, an answer or which frame is asked
about. At feature time its text tower reads the question, and the query's views are each of its caption words alone: the
zero-shot frame–query match is then max_n f_t·q_n (late interaction, as FILIP's), so a question naming two or three
border colours matches each of those frames, where one pooled q would blend them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from resadapt.backbone.interface import Query
from resadapt.config import ContrastiveParams
from resadapt.features.captions import TEMPLATES, CaptionedFrames, Vocabulary, caption
from resadapt.features.encoders import Encoder
from resadapt.io import atomic_dir, write_json

CELL = 28  # px of a frame per patch token (the backbone's patch factor)


@dataclass(frozen=True)
class DualConfig:
    side: int
    dim: int  # D: patch-token and word width (the Allocator's patch_dim and text_dim)
    embed_dim: int  # E: the shared frame/query space
    vocab: tuple[str, ...]

    @property
    def grid(self) -> int:
        return max(1, self.side // CELL)


class DualEncoder(nn.Module):
    def __init__(self, config: DualConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.vocabulary = Vocabulary(config.vocab)
        self.image = nn.Sequential(nn.Conv2d(3, d // 4, 4, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(d // 4, d // 2, 3, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(d // 2, d, 1))
        self.image_proj = nn.Linear(d, config.embed_dim)
        self.word = nn.Embedding(len(self.vocabulary), d)
        self.word_weight = nn.Embedding(len(self.vocabulary), 1)  # ω: pooling logits, 0 at the start
        nn.init.zeros_(self.word_weight.weight)
        self.text_proj = nn.Linear(d, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # s (CLIP's start)

    def frames(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [n, side, side, 3] → patch tokens [n, g², D], embeddings [n, E] (unit norm)."""
        x = small.permute(0, 3, 1, 2).float() / 255 - 0.5
        g = self.config.grid
        tokens = F.adaptive_avg_pool2d(self.image(x), (g, g)).flatten(2).transpose(1, 2)  # [n, g², D]
        return tokens, F.normalize(self.image_proj(tokens.mean(1)), dim=-1)

    def texts(self, texts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """n texts → per text its word features [Nw_i, D], embeddings [n, E] (unit norm)."""
        ids = [torch.tensor(self.vocabulary.ids(t), dtype=torch.long, device=self.word.weight.device) for t in texts]
        width = max(1, max(len(i) for i in ids))
        padded = torch.zeros(len(ids), width, dtype=torch.long, device=self.word.weight.device)
        mask = torch.zeros(len(ids), width, dtype=torch.bool, device=padded.device)
        for k, i in enumerate(ids):
            padded[k, : len(i)], mask[k, : len(i)] = i, True
        w = self.word(padded)  # [n, Nw, D]
        known = mask & (padded < len(self.vocabulary.words))  # the words the tower learned; the others only pass
        weight = self.word_weight(padded)[..., 0].masked_fill(~known, float("-inf"))  # [n, Nw]
        weight = torch.where(known.any(-1, keepdim=True), weight, torch.zeros_like(weight))  # none known: zeros
        pooled = (weight.softmax(-1)[..., None] * w * known[..., None]).sum(1)  # [n, D]
        return [w[k, : len(i)] for k, i in enumerate(ids)], F.normalize(self.text_proj(pooled), dim=-1)

    def word_views(self, texts: list[str]) -> list[torch.Tensor]:
        """Per text its views [K_i, E]: each distinct word it shares with the captions, embedded alone as a one-word
        text, q_n = normalise(W_q w_n); a text without such a word: its pooled embedding (K_i = 1)."""
        views = []
        for text in texts:
            ids = [i for i in dict.fromkeys(self.vocabulary.ids(text)) if i < len(self.vocabulary.words)]
            if not ids:
                views.append(self.texts([text])[1])
                continue
            w = self.word(torch.tensor(ids, dtype=torch.long, device=self.word.weight.device))  # [K, D]
            views.append(F.normalize(self.text_proj(w), dim=-1))
        return views


def info_nce(image: torch.Tensor, text: torch.Tensor, same: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE per video: image, text [G, T, E] (unit norm), same [G, T, T] bool (frame t's colour is
    caption c's) → ½ (CE over captions + CE over frames), averaged over the G·T frames and captions."""
    logits = logit_scale.exp().clamp(max=100) * image @ text.transpose(1, 2)  # [G, T, T]
    target = same.float() / same.float().sum(-1, keepdim=True)
    rows = -(target * logits.log_softmax(-1)).sum(-1).mean()
    target_t = same.transpose(1, 2).float() / same.transpose(1, 2).float().sum(-1, keepdim=True)
    cols = -(target_t * logits.transpose(1, 2).log_softmax(-1)).sum(-1).mean()
    return (rows + cols) / 2


def train_dual_encoder(data: CaptionedFrames, side: int, p: ContrastiveParams,
                       log_every: int = 25) -> tuple[DualEncoder, list[dict]]:
    """Pretrain on ``data``'s frame–caption pairs (deterministic under ``p.seed`` for a fixed thread count); returns
    the frozen encoder and its log (step, loss, caption top-1 within the step's videos). The log holds no times:
    it is part of the features stage's output, which must not change when nothing else did."""
    torch.manual_seed(p.seed)
    colours = sorted({c for video in data.colours for c in video})
    model = DualEncoder(DualConfig(side, p.dim, p.embed_dim, tuple(Vocabulary.of_captions(colours).words)))
    optimiser = torch.optim.Adam(model.parameters(), lr=p.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: 0.5 * (1 + math.cos(math.pi * k / p.steps)))
    rng = torch.Generator().manual_seed(p.seed)
    length = min(len(f) for f in data.frames)  # every video contributes its first `length` frames per step
    log = []
    for step in range(p.steps):
        pick = torch.randperm(len(data.frames), generator=rng)[: p.videos_per_step].tolist()
        frames = torch.stack([data.frames[v][:length] for v in pick])  # [G, T, side, side, 3]
        names = [data.colours[v][:length] for v in pick]
        phrasing = torch.randint(len(TEMPLATES), (len(pick), length), generator=rng).tolist()
        texts = [caption(c, k) for video, ks in zip(names, phrasing, strict=True) for c, k in zip(video, ks,
                                                                                                   strict=True)]
        same = torch.tensor([[[a == b for b in video] for a in video] for video in names])  # [G, T, T]
        _, image = model.frames(frames.flatten(0, 1))
        _, text = model.texts(texts)
        shape = (len(pick), length, -1)
        loss = info_nce(image.view(shape), text.view(shape), same, model.logit_scale)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % log_every == 0 or step == p.steps - 1:
            with torch.no_grad():
                hit = (image.view(shape) @ text.view(shape).transpose(1, 2)).argmax(-1)  # [G, T]: best caption
                top1 = same.gather(-1, hit[..., None]).float().mean().item()
            log.append({"step": step, "loss": round(loss.item(), 5), "caption_top1": round(top1, 4)})
    return model.eval().requires_grad_(False), log


def save_dual_encoder(model: DualEncoder, out_dir: str | Path, meta: dict) -> None:
    """``out_dir``: model.safetensors + config.json (the architecture, its vocabulary and ``meta``), atomically."""
    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        c = model.config
        write_json(tmp / "config.json", {"side": c.side, "dim": c.dim, "embed_dim": c.embed_dim,
                                         "vocab": list(c.vocab), "templates": list(TEMPLATES), **meta})


def load_dual_encoder(path: str | Path) -> DualEncoder:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no contrastive encoder (config.json); run the features stage")
    c = json.loads((path / "config.json").read_text(encoding="utf-8"))
    model = DualEncoder(DualConfig(c["side"], c["dim"], c["embed_dim"], tuple(c["vocab"])))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval().requires_grad_(False)


class ContrastiveEncoder(Encoder):
    """The pretrained dual encoder, frozen: its image tower's patch tokens and its text tower's words of the question,
    the frames' embeddings and the question's word views (``DualEncoder.word_views``) in their shared space."""

    def __init__(self, model: DualEncoder, side: int, device: str = "cpu", batch_size: int = 64):
        if side != model.config.side:
            raise ValueError(f"features.side is {side} but the contrastive encoder was trained at "
                             f"{model.config.side} px (rerun the features stage)")
        super().__init__(side, device, batch_size)
        self.model = model.to(self.device)

    @staticmethod
    def query_text(query: Query) -> str:
        return query.question

    @torch.no_grad()
    def frames(self, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, embed = self.model.frames(small.to(self.device))
        return tokens.cpu(), embed.cpu()

    @torch.no_grad()
    def texts(self, texts: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        words, _ = self.model.texts(texts)
        return [w.cpu() for w in words], [v.cpu() for v in self.model.word_views(texts)]
