"""Stage ``evaluate``: every method at every retention budget on ``evaluate.split`` (the efficiency frontier).

Methods: Full, FixedScale, RandomDrop, TaskRes (fitted on ``evaluate.calibration_split``), relevance top-k (the
features' frame–query similarity keeps the top chunks at scale 1, flooring or dropping the rest), ResAdapt (the trained
Allocator rescaled to each budget), its unconstrained policy, ResAdapt with the budget met over the split rather
than per clip, ResAdapt without the similarity signal (the ablation Allocator of ``train_nosim``, rescaled the same
way), ResAdapt on 2x / 4x the frames at the same budget (the eval videos decoded again at that frame count, exactly
as the shard stage decodes), and two label oracles (ceilings read off the generator's labels, on videos that carry
them). Every method is measured again on each of ``evaluate.test_splits`` (other nuisance settings, never tuned on),
and ResAdapt at 1x and 2x/4x frames on each of ``evaluate.long_splits`` (long videos whose needed frames are brief).
The backbone comes from the one factory: the built-in model or the pinned Qwen checkpoint, updated by ResAdapt-RL
when ``train`` updated it. Writes, under ``evaluate.out_dir``: metrics.json (DVC metrics, the paired comparisons and MCQ accuracy per question kind),
per_sample.json (every row's per-sample scores), pareto.json (DVC plot data), pareto.png, heatmaps.png, report.md.
"""

import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from tqdm import tqdm

from resadapt.allocator.model import Allocator
from resadapt.backbone.factory import BackboneError, BackboneSpec, build_backbone
from resadapt.backbone.interface import Query
from resadapt.backbone.pin import PinError
from resadapt.data.clips import load_clips_counts
from resadapt.data.sample import Video
from resadapt.data.shards import iter_split
from resadapt.data.video import VideoError
from resadapt.evaluate import figures, report
from resadapt.evaluate.allocation import allocation_stats
from resadapt.evaluate.budget import full_tokens
from resadapt.evaluate.oracle import MARGINS, labelled
from resadapt.evaluate.sweep import EvalSet, frames_multiplier, resadapt_scales, sweep, topk_variant
from resadapt.evaluate.taskres import calibrate
from resadapt.features import ENCODER_DIR
from resadapt.features.coarse import load_features
from resadapt.features.online import encode, make_encoder
from resadapt.io import atomic_path, write_json
from resadapt.stage import StageError, run_stage


def split_videos(shard_dir: str, split: str) -> list[Video]:
    return [Video(key, torch.from_numpy(frames), meta) for key, frames, meta in iter_split(shard_dir, split)]


def more_frames(params, videos: list[Video], multipliers: Sequence[int], encoder, progress: bool) -> dict[int, EvalSet]:
    """The split's videos decoded at k times the shard's frame count, for each k in ``multipliers`` (one decode of
    each video serves every k), with their features."""
    counts = {k: k * params.shard.n_frames for k in multipliers}
    out: dict[int, list[Video]] = {k: [] for k in multipliers}
    short = []
    # a shard sample's video path is relative to the validated manifest's folder
    clips = load_clips_counts([Path(params.validate_.out_dir) / v.meta["video"] for v in videos], params.shard,
                              list(counts.values()), params.shard.n_workers)
    names = "/".join(f"{k}x" for k in multipliers)
    for v, clip in tqdm(zip(videos, clips, strict=True), total=len(videos), desc=f"decode {names} frames",
                        unit="video", disable=not progress):
        if isinstance(clip, VideoError):
            short.append(clip.reason if len(short) else str(clip))
            continue
        for k, n in counts.items():
            out[k].append(Video(v.key, clip[n].frames, v.meta | {"frame_indices": clip[n].indices}))
    if short:
        raise StageError(f"the _x{'/_x'.join(map(str, multipliers))} methods need {max(counts.values())} frames "
                         f"per video; {len(short)} video(s) cannot give them (first: {short[0]}): drop them from "
                         "evaluate.methods or use longer videos")
    sets = {}
    for k, vids in out.items():
        features = encode(encoder, [v.frames for v in vids], [Query.from_meta(v.meta) for v in vids],
                          [v.key for v in vids], texture=params.features.texture)
        sets[k] = EvalSet(vids, features)
    return sets


def eval_sets(params, split: str, multipliers: Sequence[int], encoder, progress: bool) -> dict[int, EvalSet]:
    """A split's videos and features at 1x, and decoded again at each multiple of the shard's frame count."""
    features = load_features(params.features.out_dir, split)
    videos = split_videos(params.shard.out_dir, split)
    if [v.key for v in videos] != features.keys:
        raise StageError(f"features of split {split!r} are not aligned with the shards: rerun the features stage")
    sets = {1: EvalSet(videos, features)}
    if multipliers:
        sets |= more_frames(params, videos, multipliers, encoder(), progress)
    widths = {k: s.features.patches.shape[-1] for k, s in sets.items()}
    if len(set(widths.values())) > 1:  # stored features of another features.texture than params.yaml's
        raise StageError(f"split {split!r}: stored patch width {widths[1]} but {widths} on the fly: the features "
                         "stage ran with other params (rerun it)")
    return sets


def main(params, args) -> None:
    p, target = params.evaluate, params.register_.target_budget
    missing = [s for s in (p.split, *p.test_splits, *p.long_splits) if s not in params.features.splits]
    if missing:  # before minutes of sweeping: the later splits are read after the first one's sweep
        raise StageError(f"evaluate: split(s) {missing} (evaluate.split, test_splits, long_splits) have no features: "
                         "add them to features.splits")
    torch.set_num_threads(p.threads)
    try:
        backbone = build_backbone(BackboneSpec.from_params(params, trained=True), cache=True)
    except (BackboneError, PinError, OSError) as exc:
        raise StageError(f"backbone: {exc}") from None
    allocator = Allocator.from_pretrained(params.train.out_dir).eval()
    nosim = Allocator.from_pretrained(params.train_nosim.out_dir).eval() if "resadapt_nosim" in p.methods else None
    f, progress = params.features, not args.no_progress
    encoder = cache(lambda: make_encoder(f.encoder, f.side, params.backbone.out_dir, f.checkpoint, f.device,
                                         f.batch_size, str(Path(f.out_dir) / ENCODER_DIR)))
    multipliers = sorted({frames_multiplier(m) for m in p.methods} - {1})
    taskres = None
    if "taskres" in p.methods:
        taskres = calibrate(backbone, split_videos(params.shard.out_dir, p.calibration_split),
                            n=p.taskres_samples, seed=p.seed, progress=progress, style=p.prompt,
                            batch_size=p.batch_size)

    unlabelled: list[str] = []  # splits without the generator's labels: no oracle rows there

    def measured(split: str, methods: Sequence[str]) -> tuple[dict[int, EvalSet], list[dict]]:
        sets = eval_sets(params, split, multipliers if any(frames_multiplier(m) > 1 for m in methods) else [],
                         encoder, progress)
        if any(m in MARGINS for m in methods) and not labelled(sets[1].videos):
            methods = [m for m in methods if m not in MARGINS]
            unlabelled.append(split)
        topk = [m for m in methods if topk_variant(m)]
        if topk and sets[1].features.frame_embed.shape[-1] == 0:
            raise StageError(f"evaluate.methods {topk} rank frames by the features' frame–query similarity, and "
                             f"features.encoder {f.encoder!r} has no shared frame/query space (frame_embed width 0): "
                             "drop them from evaluate.methods")
        return sets, sweep(backbone, allocator, sets, p.budgets, methods, taskres, seed=p.seed, progress=progress,
                           batch_size=p.batch_size, style=p.prompt, nosim=nosim)

    sets, rows = measured(p.split, p.methods)
    primary = sets[1]
    del sets  # the 2x/4x clips hold most of the memory; the other splits decode their own
    videos = primary.videos
    base_tokens = [full_tokens(tuple(v.frames.shape[1:3]), len(v.frames), backbone.grid) for v in videos]
    allocations = {(name, r): resadapt_scales(a, primary, backbone, r, base_tokens)
                   for name, a in (("resadapt", allocator), ("resadapt_nosim", nosim)) if a is not None
                   for r in (None, target)}
    spend = {f"{name}/{report.budget_key(r)}": allocation_stats(s, videos) for (name, r), s in allocations.items()}
    check = report.checks(rows, target, params.register_.min_margin)
    long_methods = [m for m in p.methods if m == "resadapt" or m.startswith("resadapt_x")]
    others = {s: measured(s, p.methods)[1] for s in p.test_splits}
    others |= {s: measured(s, long_methods)[1] for s in p.long_splits}
    comparisons = report.paired(rows, target, seed=p.seed)
    paired = {s: report.paired(r, target, seed=p.seed) for s, r in others.items()}

    out = Path(p.out_dir)
    notes = [f"split {p.split!r}: {len(videos)} videos ({sum(v.meta['task'] == 'mcq' for v in videos)} mcq), "
             f"{params.shard.n_frames} frames at 1x; retention is against the 1x clip at scale 1 for every method."]
    if unlabelled:
        notes.append(f"no oracle rows on {', '.join(unlabelled)}: its videos carry no generator labels (needed frames, "
                     "each glyph's need), which only the built-in data set has")
    if taskres:
        notes.append(f"TaskRes (fitted on {p.calibration_split!r}): {taskres.describe(target)}")
    metrics = report.metrics_json(rows, check, comparisons)
    kinds = report.by_kind(rows, {v.key: (v.meta.get("meta") or {}).get("question_kind") for v in videos})
    if kinds:
        metrics["kinds"] = kinds
    if any(spend.values()):
        metrics["allocation"] = spend
        notes += [f"{k}: needed frames' mean scale {v['needed_scale']:.3f}, others' {v['other_scale'] or math.nan:.3f} "
                  f"(ratio {v['ratio'] or math.nan:.2f}), corr(scale, need) on needed frames "
                  f"{v.get('corr_need') or math.nan:.2f}; multiple-choice questions only (they read the glyphs): "
                  f"ratio {v['mcq'].get('ratio') or math.nan:.2f}, corr {v['mcq'].get('corr_need') or math.nan:.2f}; "
                  "corr per question kind: " + ", ".join(f"{kind} {c.get('corr_need') or math.nan:.2f}"
                                                        for kind, c in v["kinds"].items())
                  for k, v in spend.items() if v]
    if others:
        metrics["splits"] = {s: report.metrics_json(r, report.checks(r, target, params.register_.min_margin),
                                                    paired[s]) for s, r in others.items()}
    write_json(out / "metrics.json", metrics)
    write_json(out / "per_sample.json", report.per_sample(rows) | {f"split:{s}": report.per_sample(r)
                                                                  for s, r in others.items()})
    write_json(out / "pareto.json", report.pareto_rows(rows))
    figures.pareto_png(rows, out / "pareto.png")
    shown = videos[: p.heatmaps]
    if shown:
        figures.heatmaps_png(shown, allocations["resadapt", target][: len(shown)], backbone.grid, out / "heatmaps.png",
                             f"ResAdapt at retention budget {target:g} ({p.split} split)")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report.markdown(rows, check, p.budgets, notes, comparisons, kinds)
                       + "".join(report.split_section(s, r, p.budgets, paired[s]) for s, r in others.items()),
                       encoding="utf-8")
    print("evaluate: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in check.items()}))


if __name__ == "__main__":
    run_stage("evaluate", __doc__, main)
