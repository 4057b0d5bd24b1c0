"""Prefill time and visual tokens at scales 1, 0.5 and 0.3, as ratios to scale 1, measured side by side in one run.

    python benchmarks/backbone_prefill.py [--checkpoint models/backbone] [--frames 16] [--repeats 5]
    python benchmarks/backbone_prefill.py --quick     # 2 frames, batch 1, 1 repeat: checks it still runs (CI)

Runs the built-in backbone (the trained one when --checkpoint exists, else random weights: timing does not depend
on them) and a tiny random-weight Qwen2.5-VL built on the spot. Prefill is the model's forward on frames the budget
operator has already resized (the resize itself is not timed, for either). The aim: time ratio close to token ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA, resize_batch
from resadapt.backbone.interface import Item, Query, plan_item
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.tiny_qwen import build
from resadapt.data.synth import PALETTE, STRIPES

SCALES = (1.0, 0.5, 0.3)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: the first call at a new size pays one-off kernel setup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def builtin_prefill(checkpoint: str, frames: torch.Tensor, batch: int, repeats: int) -> dict:
    if Path(checkpoint, "config.json").is_file():
        backbone = BuiltinBackbone.from_pretrained(checkpoint)
    else:
        config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which"])
        backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    out = {}
    for s in SCALES:
        item = Item(frames, [s] * len(frames), Query("which", tuple(STRIPES), "mcq", 8.0))
        plan = plan_item(item, backbone.grid)
        resized = resize_batch(list(frames), plan.sizes)  # the budget operator runs before prefill, as for Qwen
        with torch.no_grad():
            seconds = timed(lambda resized=resized: backbone.model([resized] * batch, ["which"] * batch), repeats)
        out[s] = (seconds, plan.total_tokens)
    return out


def qwen_prefill(frames: torch.Tensor, batch: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        backbone = QwenBackbone.load(str(build("qwen2_5_vl", Path(tmp))), device="cpu")
    out = {}
    for s in SCALES:
        items = [Item(frames, [s] * len(frames), Query("Which stripe?", tuple(STRIPES), "mcq", 8.0))] * batch
        inputs, plans = backbone.encode(items)
        with torch.no_grad():
            seconds = timed(lambda inputs=inputs: backbone.model(**inputs), repeats)
        out[s] = (seconds, plans[0].total_tokens)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/backbone")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 frames, batch 1, 1 repeat: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.batch, args.repeats = 2, 1, 1
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (args.frames, 224, 224, 3), dtype=torch.uint8)
    print(f"{args.frames} frames at 224x224, batch {args.batch}, median of {args.repeats} (s = scale of every frame)")
    print(f"{'backbone':<12}{'s':>5}{'tokens':>8}{'prefill ms':>12}{'token ratio':>13}{'time ratio':>12}")
    for name, result in (("built-in", builtin_prefill(args.checkpoint, frames, args.batch, args.repeats)),
                         ("qwen2.5-vl", qwen_prefill(frames, args.batch, args.repeats))):
        base_time, base_tokens = result[1.0]
        for s, (seconds, tokens) in result.items():
            print(f"{name:<12}{s:>5}{tokens:>8}{seconds * 1000:>12.1f}{tokens / base_tokens:>13.3f}"
                  f"{seconds / base_time:>12.3f}")


if __name__ == "__main__":
    main()
