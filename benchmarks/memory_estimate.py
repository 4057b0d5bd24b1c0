"""Analytic GPU memory estimate for a Qwen2.5-VL-7B run at params.yaml's settings (an estimate, not a measurement).

    weights      = P · bytes(dtype)
    KV cache     = sequences · L_seq · 2 · layers · kv_heads · head_dim · bytes        (generate, one call: at most
                   min(rollout_batch, allocations) items × answers, since a call never mixes prompts)
    full update  = weights + grads (same dtype) + AdamW moments (2 × same dtype)
    LoRA update  = weights + r · Σ_adapted (in + out) · layers · (1 + 1 + 2) · 4 bytes (fp32 adapter, grads, moments)
    activations  = tokens · layers · hidden · bytes · k,   k ≈ 1 with gradient checkpointing, ≈ 18 without
    sequence     = visual tokens at scale 1 (n_frames / 2 chunks × max_pixels / 28²) + prompt text + answer

Visual tokens are the worst case (every frame at scale 1, as at the start of training); a trained Allocator at 10%
retention cuts the KV cache and activations about tenfold. Run: ``python benchmarks/memory_estimate.py``
(``--params FILE``; ``--quick`` is the same, it only reads and prints).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resadapt.config import load_params

QWEN2_5_VL_7B = {"params": 8.29e9, "layers": 28, "hidden": 3584, "kv_heads": 4, "head_dim": 128,
                 "attn_in_out": {"q_proj": (3584, 3584), "k_proj": (3584, 512), "v_proj": (3584, 512),
                                 "o_proj": (3584, 3584)}}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 2**30


def estimate(params, model: dict = QWEN2_5_VL_7B, prompt_tokens: int = 120) -> dict[str, float]:
    b, t, s = BYTES[params.backbone.dtype], params.train, params.shard
    visual = (s.n_frames + 1) // 2 * (s.max_pixels // 28**2)
    seq = visual + prompt_tokens + params.backbone.max_new_tokens
    kv_per_token = 2 * model["layers"] * model["kv_heads"] * model["head_dim"] * b
    weights = model["params"] * b
    out = {"visual tokens per clip at scale 1": visual, "sequence tokens": seq,
           "weights GiB": weights / GIB,
           "rollout KV cache GiB (rollout_batch x answers sequences)": min(t.rollout_batch, t.allocations)
           * t.answers * seq * kv_per_token / GIB,
           "evaluate KV cache GiB (batch_size sequences)": params.evaluate.batch_size * seq * kv_per_token / GIB}
    if t.update_backbone:
        tokens = t.update_batch * t.answers * seq
        k = 1 if t.gradient_checkpointing else 18
        out["update activations GiB (update_batch x answers sequences)"] = (
            tokens * model["layers"] * model["hidden"] * b * k / GIB)
        if t.lora.enabled:
            adapter = sum(t.lora.r * (i + o) for name, (i, o) in model["attn_in_out"].items()
                          if name in t.lora.target_modules) * model["layers"]
            out["LoRA adapter + grads + AdamW GiB"] = adapter * 4 * 4 / GIB
        else:
            out["grads + AdamW moments GiB (full update)"] = 3 * weights / GIB
    out["total GiB (weights + largest phase)"] = out["weights GiB"] + max(
        out["rollout KV cache GiB (rollout_batch x answers sequences)"],
        sum(v for k, v in out.items() if k.startswith(("update", "LoRA", "grads"))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    parser.add_argument("--quick", action="store_true", help="same output (the estimate is instant)")
    params = load_params(parser.parse_args().params)
    for key, value in estimate(params).items():
        print(f"{key:>62}: {value:,.1f}" if isinstance(value, float) else f"{key:>62}: {value:,}")


if __name__ == "__main__":
    main()
