"""The CUDA path on a GPU machine, checked and timed in one run.

1. The Qwen adapter on tiny random-weight Qwen2.5-VL and Qwen3-VL checkpoints built here, on CUDA: realised visual
   tokens against the formula, sampled vs re-scored answer log-probs, gradients, greedy determinism, bfloat16, and
   prefill time at scales 1 / 0.5 / 0.3 as ratios to scale 1 (next to the token ratios).
2. CAPO on CUDA: ``train_allocator(device=DEVICE)`` with the tiny Qwen2.5-VL as the rollout backbone on the GPU,
   the Allocator only, then ResAdapt-RL (``update_backbone``: the Qwen weights move too).
3. The ``train`` and ``evaluate`` code paths as the stages run them: the backbone pinned and built by the factory
   (bfloat16), CAPO with micro-batched rollouts and a LoRA ResAdapt-RL update, then the budget sweep (every method
   but the 2x/4x-frame ones) on a handful of clips through the updated backbone; each phase's time and peak GPU
   memory. vLLM is not exercised (not installed there; ``backbone.engine: vllm`` needs it).

    python benchmarks/cuda_check.py            # prints one line per check and a JSON summary; exit 1 on a failure
    python benchmarks/cuda_check.py --device cpu   # the same checks on the CPU (a smoke run)
    python benchmarks/cuda_check.py --quick        # Qwen2.5-VL only, short timing and training (CI: on the CPU
                                                   # when there is no CUDA device)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from resadapt.allocator.model import AllocatorConfig
from resadapt.backbone.factory import BackboneSpec, LoraSpec, build_backbone, save_trained
from resadapt.backbone.interface import Item, Query
from resadapt.backbone.pin import checkpoint_identity
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.tiny_qwen import build
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.train import LoopConfig, train_allocator
from resadapt.data.sample import Video
from resadapt.data.synth import PALETTE, STRIPES, render_frame
from resadapt.features.coarse import Features

RESULTS: dict = {}
QUICK = "--quick" in sys.argv
DEVICE = (sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv  # cpu: a smoke run
          else "cpu" if QUICK and not torch.cuda.is_available() else "cuda")
REPEATS = 1 if QUICK else 10


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS[name] = {"ok": bool(ok), "detail": detail}
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


def sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def items(grid, n_frames: int, side_cells: int = 8, scales=None) -> list[Item]:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (n_frames, grid.factor * side_cells, grid.factor * side_cells, 3), dtype=torch.uint8)
    scales = scales or [1.0, 0.3, 0.5, 1.0, 0.2, 0.7][:n_frames]
    return [Item(frames, scales, Query("Which stripe?", ("vertical", "horizontal"), "mcq", 2.5)),
            Item(frames, [0.2] * n_frames, Query("When is the red frame?", (), "grounding", 2.5))]


def qwen_checks(kind: str, root: Path) -> None:
    path = build(kind, root / kind)
    bb = QwenBackbone.load(str(path), device=DEVICE, max_new_tokens=5)
    check(f"{kind}/device", next(bb.model.parameters()).device.type == DEVICE, str(next(bb.model.parameters()).device))
    batch = items(bb.grid, 6)
    inputs, plans = bb.encode(batch)
    f = bb.grid.factor
    formula = sum((h // f) * (w // f) for p in plans for h, w in p.sizes)
    video_tokens = int((inputs["input_ids"] == bb.model.config.video_token_id).sum())
    check(f"{kind}/tokens", video_tokens == formula == bb.realised_tokens(inputs), f"{video_tokens} == {formula}")
    rollouts = bb.generate(batch, n=3)
    scored = bb.answer_logprobs(batch, rollouts.token_ids)
    gap = (scored.detach().cpu() - rollouts.logprobs.cpu()).abs().max().item()
    check(f"{kind}/logprobs", gap < 1e-3, f"max |sampled - scored| = {gap:.2e}")
    scored.sum().backward()
    grads = sum(int(p.grad is not None and p.grad.abs().sum() > 0) for p in bb.model.parameters())
    check(f"{kind}/gradients", grads > 0, f"{grads} tensors with gradient")
    bb.model.zero_grad(set_to_none=True)
    a, b = bb.generate(batch, greedy=True), bb.generate(batch, greedy=True)
    check(f"{kind}/greedy", a.answers == b.answers, str(a.answers))
    half = QwenBackbone.load(str(path), device=DEVICE, dtype="bfloat16", max_new_tokens=5)
    out = half.generate(batch, n=2)
    check(f"{kind}/bfloat16", bool(torch.isfinite(out.logprobs).all()), f"logprobs {out.logprobs.tolist()}")
    times, tokens = {}, {}
    for s in (1.0, 0.5, 0.3):
        timed = items(bb.grid, 16, side_cells=8, scales=[s] * 16)[:1] * 4
        inputs, plans = bb.encode(timed)
        with torch.no_grad():
            for _ in range(min(3, REPEATS)):
                bb.model(**inputs)
            sync()
            start = time.perf_counter()
            for _ in range(REPEATS):
                bb.model(**inputs)
            sync()
        times[s], tokens[s] = (time.perf_counter() - start) / REPEATS, sum(p.total_tokens for p in plans)
    ratios = {s: (round(times[s] / times[1.0], 3), round(tokens[s] / tokens[1.0], 3)) for s in times}
    RESULTS[f"{kind}/prefill"] = {"ms": {s: round(1000 * t, 2) for s, t in times.items()},
                                  "time_vs_token_ratio": ratios}
    print(f"INFO {kind}/prefill batch 4 x 16 frames: ms {RESULTS[f'{kind}/prefill']['ms']} "
          f"(time ratio, token ratio) {ratios}", flush=True)


class ParityVideo(Video):
    """A random-weight model is never right, so every group's advantage would be 0 and nothing would move: the
    reward here is the parity of the answer's length, which varies between rollouts."""

    def score(self, answer: str) -> float:
        return float(len(answer) % 2)


def capo_inputs() -> tuple[list[Video], Features, AllocatorConfig]:
    rng = np.random.default_rng(0)
    t = 4
    videos = []
    for i in range(6):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=t, replace=False)]
        rendered = [render_frame(rng, 112, c, "stripes", 12) for c in colours]
        labels = [{"colour": lab.colour, "glyph": lab.glyph, "box": list(lab.box)} for _, lab in rendered]
        meta = {"question": f"Which stripe orientation is shown in the frame with the {colours[1]} border?",
                "options": list(STRIPES), "answer": chr(65 + STRIPES.index(labels[1]["glyph"])), "task": "mcq",
                "duration": 2.0, "frame_indices": list(range(t)),
                "meta": {"glyph_kind": "stripes", "frames": labels, "target_frame": 1}}
        videos.append(ParityVideo(f"v{i}", torch.from_numpy(np.stack([f for f, _ in rendered])), meta))
    g = torch.Generator().manual_seed(0)
    features = Features([v.key for v in videos], torch.randn(6, t, 4, 16, generator=g), torch.ones(6, t, dtype=bool),
                        torch.randn(6, 5, 8, generator=g), torch.ones(6, 5, dtype=bool),
                        torch.randn(6, t, 3, generator=g), torch.randn(6, 3, generator=g))
    config = AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, depth=1, aligned_dim=3, s_min=0.1)
    return videos, features, config


def capo_checks(root: Path) -> None:
    videos, features, config = capo_inputs()
    path = build("qwen2_5_vl", root / "capo-qwen")
    for update in (False,) if QUICK else (False, True):
        bb = QwenBackbone.load(str(path), device=DEVICE, max_new_tokens=4)
        before = [p.detach().clone() for p in bb.model.parameters()]
        loop = LoopConfig(steps=2 if QUICK else 6, prompts=2, allocations=4, answers=2, warmup=2, checkpoint_every=3,
                          update_backbone=update)
        start = time.perf_counter()
        allocator, history = train_allocator(loop, config, CapoCoefficients(), features, videos, bb,
                                             root / f"ckpt-{update}", progress=False, device=DEVICE)
        seconds = time.perf_counter() - start
        finite = all(np.isfinite(h["loss/total"]) for h in history)
        moved = any(not torch.equal(a, b.detach()) for a, b in zip(before, bb.model.parameters(), strict=True))
        name = "capo/resadapt_rl" if update else "capo/allocator"
        check(name, finite and next(allocator.parameters()).device.type == DEVICE and moved == update,
              f"{len(history)} steps in {seconds:.1f} s, loss finite {finite}, backbone moved {moved}, "
              f"retention {history[-1]['retention']:.3f}")


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if DEVICE.startswith("cuda") else None


def phase(name: str, start: float, **extra) -> None:
    RESULTS[f"pipeline/{name}"] = {"seconds": round(time.perf_counter() - start, 2), "peak_gib": peak_gib(), **extra}
    print(f"INFO pipeline/{name}: {RESULTS[f'pipeline/{name}']}", flush=True)
    if DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def pipeline_checks(root: Path) -> None:
    from resadapt.evaluate.sweep import EvalSet, sweep
    from resadapt.evaluate.taskres import calibrate

    videos, features, config = capo_inputs()
    path = build("qwen2_5_vl", root / "pipe-qwen")
    pinned = root / "pinned"
    pinned.mkdir()
    (pinned / "identity.json").write_text(json.dumps({"source": "hf", **checkpoint_identity(str(path))}))
    spec = BackboneSpec("hf", str(pinned), device=DEVICE, dtype="bfloat16", max_new_tokens=4)
    start = time.perf_counter()
    bb = build_backbone(spec, trainable=True, lora=LoraSpec(r=4, alpha=8, dropout=0.0))
    phase("load", start, dtype=str(next(bb.model.parameters()).dtype))
    loop = LoopConfig(steps=2 if QUICK else 4, prompts=3, allocations=4, answers=2, warmup=2, checkpoint_every=2,
                      update_backbone=True, rollout_batch=5, update_batch=3)
    start = time.perf_counter()
    allocator, history = train_allocator(loop, config, CapoCoefficients(), features, videos, bb, root / "ckpt-pipe",
                                         progress=False, device=DEVICE)
    phase("train", start, steps=len(history), retention=round(history[-1]["retention"], 3))
    lora_moved = all("lora_" in n for n, p in bb.model.named_parameters() if p.requires_grad)
    save_trained(bb, root / "trained")
    start = time.perf_counter()
    evaluated = build_backbone(BackboneSpec("hf", str(pinned), device=DEVICE, dtype="bfloat16", max_new_tokens=4,
                                            trained=str(root / "trained")))
    taskres = calibrate(evaluated, videos, n=2)
    rows = sweep(evaluated, allocator, {1: EvalSet(videos, features)}, [0.25, 0.5, 1.0],
                 ["full", "fixed_scale", "random_drop", "taskres", "resadapt", "resadapt_policy"], taskres,
                 progress=False, batch_size=4)
    phase("evaluate", start, points=len(rows))
    within = all(r["retention"] <= r["budget"] + 1e-9 for r in rows if r["method"] == "resadapt")
    check("pipeline/train+evaluate", lora_moved and within and len(rows) == 1 + 3 * 4 + 1,
          f"{len(history)} CAPO steps, LoRA-only update {lora_moved}, {len(rows)} sweep points, ResAdapt within "
          f"budget {within}")


def main() -> None:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("cuda_check: no CUDA device here (--device cpu for a smoke run)")
    name = torch.cuda.get_device_name() if DEVICE.startswith("cuda") else "cpu"
    print(f"INFO torch {torch.__version__}, {name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("qwen2_5_vl",) if QUICK else ("qwen2_5_vl", "qwen3_vl"):
            try:
                qwen_checks(kind, Path(tmp))
            except Exception as exc:  # noqa: BLE001 (report every check, then fail)
                check(f"{kind}/error", False, repr(exc))
        for name, checks in (("capo", capo_checks), ("pipeline", pipeline_checks)):
            try:
                checks(Path(tmp))
            except Exception as exc:  # noqa: BLE001
                check(f"{name}/error", False, repr(exc))
    print(json.dumps(RESULTS, indent=1, default=str))
    sys.exit(0 if all(r.get("ok", True) for r in RESULTS.values()) else 1)


if __name__ == "__main__":
    main()
