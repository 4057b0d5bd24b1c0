"""Inference with a packaged Allocator: a video and a question in, per-frame scales, sizes and tokens out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from resadapt.allocator.model import Allocator
from resadapt.backbone.factory import BackboneError, BackboneSpec, build_backbone
from resadapt.backbone.interface import Item, Query
from resadapt.backbone.pin import PinError
from resadapt.backbone.resize import QWEN2_5_VL, QWEN3_VL, GridSpec, ResizePlan, apply_plan, plan_resize
from resadapt.capo.train import deterministic_scales
from resadapt.config import ShardParams
from resadapt.data.clips import Clip, load_clip
from resadapt.evaluate.budget import fixed_scales, match_budget
from resadapt.features import ENCODER_DIR
from resadapt.features.online import encode, make_encoder

METHODS = ("resadapt", "fixed_scale", "full")  # the budget operator's methods a package can serve
CLIPS_KEPT = 4  # decoded clips a package keeps: benchmarks ask several questions about one video in a row


def check_method(method: str, budget: float | None) -> None:
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "fixed_scale" and budget is None:
        raise ValueError("method fixed_scale needs a budget (its one scale is √budget)")
    if method == "full" and budget is not None:
        raise ValueError("method full spends every token at scale 1: it takes no budget")
    if budget is not None and not 0 < budget <= 1:  # also false for nan
        raise ValueError(f"budget {budget}: a retention in (0, 1] (a share of the clip's visual tokens at scale 1)")


class PackageError(Exception):
    """A folder that is not a usable model package."""


@dataclass
class Allocation:
    clip: Clip
    scales: torch.Tensor  # [T]
    plan: ResizePlan

    def as_dict(self) -> dict:
        frames = []
        for chunk, size, tokens in zip(self.plan.chunks, self.plan.sizes, self.plan.tokens, strict=True):
            for t in chunk:
                frames.append({"frame": t, "video_frame": self.clip.indices[t],
                               "time_s": round(self.clip.segments()[t][0], 3), "scale": round(float(self.scales[t]), 4),
                               "size": list(size), "chunk_tokens": tokens})
        return {"frames": frames, "tokens": self.plan.total_tokens, "full_tokens": self.plan.full_tokens,
                "retention": round(self.plan.retention, 5)}


class Package:
    """A model package folder (written by the register stage)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "pipeline.json").is_file():
            raise PackageError(f"{self.path}: not a model package (no pipeline.json)")
        if not (self.path / "model.safetensors").is_file():
            reason = json.loads((self.path / "decision.json").read_text()).get("reason", "")
            raise PackageError(f"{self.path}: the package holds no weights (its gate was closed: {reason})")
        self.pipeline = json.loads((self.path / "pipeline.json").read_text(encoding="utf-8"))
        self.shard = ShardParams(**self.pipeline["shard"])
        self.allocator = Allocator.from_pretrained(str(self.path)).eval()
        self._encoder = None
        self._grid: GridSpec | None = None
        self._clips: dict[tuple, Clip] = {}

    @property
    def builtin(self) -> bool:
        return self.pipeline["backbone"]["source"] == "builtin"

    def grid(self) -> GridSpec:
        if self._grid is None:
            if self.builtin:  # the backbone's own grid (its token floor included)
                self._grid = self.backbone().grid
            else:
                self._grid = QWEN3_VL if self.shard.patch_factor == 32 else QWEN2_5_VL
        return self._grid

    def clip(self, video: str | Path, n_frames: int | None = None) -> Clip:
        """``video`` decoded as the shard stage would (one of the last ``CLIPS_KEPT`` decodes when it is the same
        file, unchanged, at the same frame count: a long video's decode costs far more than answering)."""
        path = Path(video)
        if not path.is_file():
            return load_clip(path, self.shard, n_frames)  # its error names the file
        stat = path.stat()
        key = (str(path.resolve()), n_frames or self.shard.n_frames, stat.st_size, stat.st_mtime_ns)
        if key not in self._clips:
            clip = load_clip(video, self.shard, n_frames)
            if len(self._clips) >= CLIPS_KEPT:
                self._clips.pop(next(iter(self._clips)))  # the oldest
            self._clips[key] = clip
        return self._clips[key]

    def allocate(self, video: str | Path, question: str, budget: float | None = None, options: tuple[str, ...] = (),
                 task: str = "mcq", n_frames: int | None = None, method: str = "resadapt") -> Allocation:
        """``n_frames`` frames (default: the package's) at the scales ``method`` gives them: ``resadapt`` the
        Allocator's (within ``budget`` when given), ``fixed_scale`` √budget each (the sweep's FixedScale), ``full``
        scale 1."""
        check_method(method, budget)
        clip = self.clip(video, n_frames)
        grid, size, n = self.grid(), tuple(clip.frames.shape[1:3]), len(clip.frames)
        if method == "full":
            scales = torch.ones(n)
        elif method == "fixed_scale":
            scales = torch.tensor(fixed_scales(n, budget))
        else:
            f = self.pipeline["features"]
            if self._encoder is None:
                self._encoder = make_encoder(f["encoder"], f["side"], str(self.path / "backbone"), f["checkpoint"],
                                             encoder_dir=str(self.path / ENCODER_DIR))
            # the query as the features stage read it (a VLM encoder reads the options and instruction too)
            # packages registered before features.texture existed hold no key and were trained without it
            features = encode(self._encoder, [clip.frames], [Query(question, options, task, clip.duration)],
                              texture=f.get("texture", False))
            if features.patches.shape[-1] != self.allocator.config.patch_dim:
                raise PackageError(f"{self.path}: its features are {features.patches.shape[-1]} wide but the "
                                   f"Allocator reads {self.allocator.config.patch_dim} (pipeline.json features)")
            scales = deterministic_scales(self.allocator, features, [0])[0]
            if budget is not None:
                full = plan_resize(size, [1.0] * n, grid).full_tokens
                scales = match_budget(scales, size, grid, budget * full, self.allocator.config.s_min)
        return Allocation(clip, scales, plan_resize(size, scales.tolist(), grid))

    def backbone_spec(self, device: str | None = None, engine: str | None = None,
                      dtype: str | None = None) -> BackboneSpec:
        """How to rebuild the package's backbone: the one it was evaluated with (ResAdapt-RL update included), on
        ``device`` / ``engine`` / ``dtype`` where given."""
        b = self.pipeline["backbone"]
        trained = self.path / "backbone" / "trained"
        return BackboneSpec(b["source"], str(self.path / "backbone"), engine or b.get("engine", "transformers"),
                            device or b.get("device", "auto"), dtype or b.get("dtype", "float32"),
                            b.get("max_new_tokens", 64), str(trained) if trained.is_dir() else None)

    def backbone(self, device: str | None = None, engine: str | None = None, dtype: str | None = None):
        try:
            return build_backbone(self.backbone_spec(device, engine, dtype))
        except (BackboneError, PinError) as exc:
            raise PackageError(f"{self.path}: {exc}") from None


def open_package(model: str | None, params_file: str = "params.yaml") -> Package:
    """``model``: a package folder or a registry ref (name@stage, name@vX.Y.Z, name#stage) of the workspace;
    None: the workspace's own package (register.out_dir)."""
    from resadapt.config import load_params
    from resadapt.registry import fetch

    if model is None:
        model = load_params(params_file).register_.out_dir
    path = Path(model)
    if not path.is_dir():
        if "@" not in model and "#" not in model:
            raise PackageError(f"{model!r}: no such folder, and not a registry ref (name@stage, name@vX.Y.Z or "
                               "name#stage)")
        path = fetch(".", model, load_params(params_file).register_.out_dir)
    return Package(path)


def answer(backbone, allocation: Allocation, question: str, options: tuple[str, ...], task: str,
           style: str = "plain") -> str:
    query = Query(question, options, task, allocation.clip.duration, style)
    item = Item(allocation.clip.frames, allocation.scales.tolist(), query, segments=allocation.clip.segments())
    return backbone.generate([item], greedy=True).answers[0][0]


def save_frames(allocation: Allocation, out_dir: str | Path) -> list[Path]:
    """The frames as the backbone receives them, one PNG each (name: frame, scale, size)."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for chunk, frames in zip(allocation.plan.chunks, apply_plan(allocation.clip.frames, allocation.plan), strict=True):
        for t, frame in zip(chunk, frames, strict=True):
            h, w = frame.shape[:2]
            path = out_dir / f"frame_{t:03d}_s{float(allocation.scales[t]):.2f}_{w}x{h}.png"
            Image.fromarray(frame.numpy()).save(path)
            paths.append(path)
    return paths
