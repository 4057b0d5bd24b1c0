"""Allocator network (method spec §2, "framewise_v3", scaled down for CPU): coarse frame features and query
features in, one Beta(α_t, β_t) per frame out, with the scale s_t = s_min + (s_max − s_min)·u_t, u_t ~ Beta.

    pooled_t = Σ_l softmax_l(MLP([LN P_tl; c_t]))·P_tl      query-gated patch pooling (c_t: text attended by seed_t)
    h_t      = TemporalMixer(pooled + PE) + σ(g)·CrossAttn(h, X)
    r_t      = max_n cos(W_f h_t, W_q x_n)                   its own frame–query match (``query_match``, L_credit)
    e_t      = LN(h_t + MLP(LN[(r_t + 1)/2, novelty_t, detail_t, match_t]))
    m_t      = σ(b + a_t − mean a),  κ_t = softplus(·) + 4 ≥ feasibility floor,  α = m·κ,  β = (1 − m)·κ

match_t = (max_k cos(f_t, q_k) + 1)/2 is the frozen encoder's own frame–query similarity when it embeds both in one
space (CLIP/SigLIP-style; the built-in encoder's border-colour and asked-colour distributions), over the query's K
views q_k (K = 1: one pooled embedding; the contrastive encoder: each word of the query alone, a late-interaction
match as FILIP's, so a question naming three frames matches each of them); 1/2 without one.
The budget b (clip level) and zero-sum allocation a_t start at 0 weight, so every frame starts at Beta with mean
scale ``init_scale`` and concentration ``init_concentration``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

EPS = 1e-4


class AllocatorConfig(PretrainedConfig):
    model_type = "resadapt_allocator"

    def __init__(self, patch_dim: int = 64, text_dim: int = 32, width: int = 64, heads: int = 4, depth: int = 1,
                 s_min: float = 0.2, s_max: float = 1.2, init_scale: float = 1.0, init_concentration: float = 5.0,
                 aligned_dim: int = 0, kappa_floor: str = "clamp", **kwargs):
        super().__init__(**kwargs)
        if kappa_floor not in ("clamp", "offset"):
            raise ValueError(f"kappa_floor must be 'clamp' or 'offset', got {kappa_floor!r}")
        self.patch_dim, self.text_dim, self.width, self.heads, self.depth = patch_dim, text_dim, width, heads, depth
        self.s_min, self.s_max = s_min, s_max
        self.init_scale, self.init_concentration = init_scale, init_concentration
        self.aligned_dim = aligned_dim  # width of the encoder's shared frame/query embedding (0: none)
        self.kappa_floor = kappa_floor  # clamp: κ = max(softplus + 4, floor) (spec); offset: softplus + max(4, floor)


def frame_query_match(frame_embed: torch.Tensor, query_embed: torch.Tensor) -> torch.Tensor:
    """match [..., T] = (max_k cos(f_t, q_k) + 1) / 2 for frame_embed [..., T, E] and the query's views query_embed
    [..., K, E] ([..., E]: one view). A view repeated changes nothing, which is how shorter queries are padded."""
    views = query_embed.float() if query_embed.dim() == frame_embed.dim() else query_embed.float()[..., None, :]
    cos = F.normalize(frame_embed.float(), dim=-1) @ F.normalize(views, dim=-1).transpose(-1, -2)  # [..., T, K]
    return (cos.amax(-1) + 1) / 2


def sinusoid(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1)


class Allocator(PreTrainedModel):
    config_class = AllocatorConfig

    def __init__(self, config: AllocatorConfig):
        super().__init__(config)
        d = config.width
        self.proj_patch = nn.Linear(config.patch_dim, d, bias=False)
        self.proj_text = nn.Linear(config.text_dim, d, bias=False)
        self.patch_norm = nn.LayerNorm(d)
        self.gate = nn.Sequential(nn.Linear(2 * d, d // 2), nn.GELU(), nn.Linear(d // 2, 1, bias=False))
        layer = nn.TransformerEncoderLayer(d, config.heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.cross = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.cross_gate = nn.Parameter(torch.tensor(0.25))
        self.rel_frame, self.rel_text = nn.Linear(d, d), nn.Linear(d, d)
        self.signals = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, d), nn.GELU(), nn.Linear(d, d))
        self.state_norm = nn.LayerNorm(d)
        self.budget = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
        self.allocation = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, 1))
        self.concentration = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def init_policy(self) -> None:
        """Zero last layers; biases so that every frame starts at E[s] = init_scale with κ = init_concentration."""
        c = self.config
        u0 = (c.init_scale - c.s_min) / (c.s_max - c.s_min)
        for head in (self.budget[-1], self.allocation[-1], self.concentration[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        nn.init.constant_(self.budget[-1].bias, math.log(u0 / (1 - u0)))
        nn.init.constant_(self.concentration[-1].bias, math.log(math.expm1(c.init_concentration - 4)))

    def forward(self, patches: torch.Tensor, frame_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                frame_embed: torch.Tensor | None = None, query_embed: torch.Tensor | None = None) -> dict:
        """patches [B, T, L, patch_dim], frame_mask [B, T], text [B, N, text_dim], text_mask [B, N] (bool);
        with ``aligned_dim``: frame_embed [B, T, E] and query_embed [B, K, E] (or [B, E]) in the encoder's shared
        space."""
        d = self.config.width
        p = self.proj_patch(patches)  # [B, T, L, D]
        x = self.proj_text(text)  # [B, N, D]
        has_text = text_mask.any(-1)  # [B]; a query without text attends to nothing (c_t = seed_t, no cross term)
        text_mask = text_mask | ~has_text[:, None]
        seed = p.mean(2)  # [B, T, D]
        attn = (seed @ x.transpose(1, 2) / math.sqrt(d)).masked_fill(~text_mask[:, None], float("-inf"))
        c = torch.where(has_text[:, None, None], attn.softmax(-1) @ x, seed)  # [B, T, D]
        gate = self.gate(torch.cat([self.patch_norm(p), c[:, :, None].expand_as(p)], -1)).softmax(2)  # [B, T, L, 1]
        pooled = (gate * p).sum(2)
        detail = torch.sigmoid(((p - pooled[:, :, None]) ** 2).mean((2, 3)))  # [B, T]

        h = pooled + sinusoid(pooled.shape[1], d).to(pooled)
        h = self.temporal(h, src_key_padding_mask=~frame_mask)
        cross = self.cross(h, x, x, key_padding_mask=~text_mask)[0]
        h = h + torch.sigmoid(self.cross_gate) * cross * has_text[:, None, None]

        sim = F.cosine_similarity(self.rel_frame(h)[:, :, None], self.rel_text(x)[:, None], dim=-1)  # [B, T, N]
        query_match = sim.masked_fill(~text_mask[:, None], -1).amax(-1)  # [B, T], in [-1, 1]
        relevance = (query_match + 1) / 2
        hn = F.normalize(h, dim=-1)
        pair = (hn @ hn.transpose(1, 2)) * frame_mask[:, None] * frame_mask[:, :, None]
        others = (frame_mask.sum(-1, keepdim=True) - 1).clamp_min(1)
        novelty = 1 - ((pair.sum(-1) - (hn * hn).sum(-1) * frame_mask) / others).clamp(0, 1)
        if self.config.aligned_dim:
            match = frame_query_match(frame_embed, query_embed)
        else:
            match = torch.full_like(relevance, 0.5)
        e = self.state_norm(h + self.signals(torch.stack([relevance, novelty, detail, match], -1)))

        b = self.budget(masked_mean(e, frame_mask, 1))  # [B, 1]
        a = self.allocation(e)[..., 0]  # [B, T]
        a = a - masked_mean(a[..., None], frame_mask, 1)
        m = torch.sigmoid(b + a).float().clamp(EPS, 1 - EPS)
        floor = torch.maximum((1 + EPS) / m, (1 + EPS) / (1 - m))  # α, β > 1
        raw = F.softplus(self.concentration(e)[..., 0].float())
        if self.config.kappa_floor == "clamp":
            kappa = torch.maximum(raw + 4, floor)  # pinned at the floor, the head gets no gradient
        else:
            kappa = raw + torch.maximum(floor, torch.full_like(floor, 4.0))
        alpha, beta = (m * kappa).clamp(0.1, 200), ((1 - m) * kappa).clamp(0.1, 200)
        relevance = match if self.config.aligned_dim else relevance  # the encoder's own similarity, where it has one
        return {"alpha": alpha, "beta": beta, "mean": m, "kappa": alpha + beta, "states": h,
                "relevance": relevance, "novelty": novelty, "detail": detail, "query_match": query_match}

    def scales(self, u: torch.Tensor) -> torch.Tensor:
        return self.config.s_min + (self.config.s_max - self.config.s_min) * u


def beta_log_prob(u: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """log Beta(u; α, β) in fp32, u clamped to [1e-6, 1 − 1e-6]."""
    u = u.float().clamp(1e-6, 1 - 1e-6)
    return torch.distributions.Beta(alpha.float(), beta.float()).log_prob(u)


def sample_u(alpha: torch.Tensor, beta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """u ~ Beta(α, β) as Γ(α)/(Γ(α) + Γ(β)), fp32, clamped away from 0 and 1."""
    ga = torch._standard_gamma(alpha.float().detach(), generator=generator)
    gb = torch._standard_gamma(beta.float().detach(), generator=generator)
    return (ga / (ga + gb)).clamp(1e-6, 1 - 1e-6)
