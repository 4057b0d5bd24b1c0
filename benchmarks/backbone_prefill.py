"""Prefill time against visual tokens, as ratios to every frame at scale 1, measured side by side in one run.

    python benchmarks/backbone_prefill.py [--checkpoint models/backbone] [--frames 16] [--batch 32] [--repeats 7]
    python benchmarks/backbone_prefill.py --quick     # 2 frames, batch 1, 1 repeat: checks it still runs (CI)

Allocations at each retention budget r (tokens / tokens at scale 1):

    uniform   every frame at the largest one scale whose tokens fit r (what FixedScale / TaskRes send)
    mixed     k frames at scale 1, spread over the clip, the rest at the floor s_min = 0.1, k the most that fit r
              (what ResAdapt sends when a few frames matter: a few sizes, most frames at one token)

Runs the built-in backbone (the trained one when --checkpoint exists, else random weights: timing does not depend
on them) and a tiny random-weight Qwen2.5-VL built on the spot. Prefill is the model's forward on frames the budget
operator has already resized (the resize itself is not timed, for either). Each allocation is warmed up once, then
the allocations run in turn, ``--repeats`` rounds (so a change of machine load hits all of them alike); each
reports its median. The aim: time ratio within 0.1 of the token ratio on the built-in backbone at r = 0.25 and 0.1.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA, resize_batch
from resadapt.backbone.interface import Item, Query, plan_item
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.resize import GridSpec, plan_resize
from resadapt.backbone.tiny_qwen import build
from resadapt.data.synth import PALETTE, STRIPES
from resadapt.evaluate.budget import uniform_scale

UNIFORM = (1.0, 0.5, 0.25, 0.1)
MIXED = (0.25, 0.1)
S_MIN = 0.1
TOLERANCE = 0.1


def mixed_scales(frame_size: tuple[int, int], n_frames: int, grid: GridSpec, r: float) -> list[float]:
    """k chunks at scale 1 spread evenly over the clip, the rest at S_MIN; k the most within r · tokens(1×)."""
    n_chunks = -(-n_frames // grid.temporal_patch)
    full = plan_resize(frame_size, [1.0] * n_frames, grid).full_tokens
    for k in range(n_chunks, -1, -1):
        sharp = {round((j + 0.5) * n_chunks / k - 0.5) for j in range(k)} if k else set()
        scales = [1.0 if t // grid.temporal_patch in sharp else S_MIN for t in range(n_frames)]
        if plan_resize(frame_size, scales, grid).total_tokens <= r * full:
            return scales
    return scales


def allocations(frame_size: tuple[int, int], n_frames: int, grid: GridSpec) -> list[tuple[str, float, list[float]]]:
    out = [("uniform", r, [uniform_scale(frame_size, n_frames, grid, r)] * n_frames) for r in UNIFORM]
    return out + [("mixed", r, mixed_scales(frame_size, n_frames, grid, r)) for r in MIXED]


def describe(scales: list[float]) -> str:
    counts: dict[float, int] = {}
    for s in scales:
        counts[round(s, 3)] = counts.get(round(s, 3), 0) + 1
    return " + ".join(f"{n}x{s:g}" for s, n in sorted(counts.items(), reverse=True))


def side_by_side(calls: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds per call: each warmed up once (one-off kernel setup at a new size), then ``repeats`` rounds
    of every call in turn."""
    for fn in calls:
        fn()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for fn, out in zip(calls, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def builtin_prefill(checkpoint: str, frames: torch.Tensor, batch: int, repeats: int) -> list[tuple]:
    if Path(checkpoint, "config.json").is_file():
        backbone = BuiltinBackbone.from_pretrained(checkpoint)
    else:
        config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which"])
        backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    rows, calls = [], []
    for kind, r, scales in allocations(tuple(frames.shape[1:3]), len(frames), backbone.grid):
        plan = plan_item(Item(frames, scales, Query("which", tuple(STRIPES), "mcq", 8.0)), backbone.grid)
        resized = resize_batch(list(frames), plan.sizes)  # the budget operator runs before prefill, as for Qwen
        rows.append((kind, r, describe(scales), plan.total_tokens))
        calls.append(lambda resized=resized: backbone.model([resized] * batch, ["which"] * batch))
    with torch.no_grad():
        seconds = side_by_side(calls, repeats)
    return [row + (s,) for row, s in zip(rows, seconds, strict=True)]


def qwen_prefill(frames: torch.Tensor, batch: int, repeats: int) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        backbone = QwenBackbone.load(str(build("qwen2_5_vl", Path(tmp))), device="cpu")
    rows, calls = [], []
    for kind, r, scales in allocations(tuple(frames.shape[1:3]), len(frames), backbone.grid):
        items = [Item(frames, scales, Query("Which stripe?", tuple(STRIPES), "mcq", 8.0))] * batch
        inputs, plans = backbone.encode(items)
        rows.append((kind, r, describe(scales), plans[0].total_tokens))
        calls.append(lambda inputs=inputs: backbone.model(**inputs))
    with torch.no_grad():
        seconds = side_by_side(calls, repeats)
    return [row + (s,) for row, s in zip(rows, seconds, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/backbone")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32, help="clips per built-in forward")
    parser.add_argument("--qwen_batch", type=int, default=4, help="clips per Qwen forward")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="2 frames, batch 1, 1 repeat: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.batch, args.qwen_batch, args.repeats = 2, 1, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (args.frames, 224, 224, 3), dtype=torch.uint8)
    print(f"{args.frames} frames at 224x224, median of {args.repeats} side-by-side rounds, "
          f"{torch.get_num_threads()} threads; token ratio: tokens / tokens at scale 1")
    print(f"{'backbone':<22}{'allocation':<10}{'r':>5}  {'scales':<18}{'tokens':>7}{'prefill ms':>12}"
          f"{'token ratio':>13}{'time ratio':>12}{'|diff|':>8}")
    checked = []  # the built-in backbone at r <= 0.25: |time ratio - token ratio| <= TOLERANCE
    for name, result in ((f"built-in (batch {args.batch})", builtin_prefill(args.checkpoint, frames, args.batch,
                                                                            args.repeats)),
                         (f"qwen2.5-vl (batch {args.qwen_batch})", qwen_prefill(frames, args.qwen_batch,
                                                                                args.repeats))):
        _, _, _, base_tokens, base_time = result[0]
        for kind, r, scales, tokens, seconds in result:
            token_ratio, time_ratio = tokens / base_tokens, seconds / base_time
            if name.startswith("built-in") and r <= 0.25:
                checked.append(abs(time_ratio - token_ratio) <= TOLERANCE)
            print(f"{name:<22}{kind:<10}{r:>5}  {scales:<18}{tokens:>7}{seconds * 1000:>12.1f}{token_ratio:>13.3f}"
                  f"{time_ratio:>12.3f}{abs(time_ratio - token_ratio):>8.3f}")
    print(f"built-in, r <= 0.25: {sum(checked)} of {len(checked)} allocations with the time ratio within {TOLERANCE} "
          "of the token ratio")

if __name__ == "__main__":
    main()
