"""Typed view of ``params.yaml``: one pydantic model per stage section, the only source of defaults.

Unknown keys and bad values fail with the file name and the dotted key path, so a mistyped
``dvc exp run -S shard.n_frame=8`` stops the stage instead of being ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS = Path("params.yaml")
SPLIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # split names become file-name prefixes: no path, no dot


class ParamsError(ValueError):
    """A ``params.yaml`` problem, already phrased for the user (file, key path, what is wrong)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    """Where the input videos live. Point ``dir`` at your own folder to use your videos."""

    dir: str = Field("data/synth", description="folder holding the manifest and the videos (DVC hashes it)")
    manifest: str = Field("manifest.jsonl", description="JSONL manifest, relative to data.dir")
    allow_outside: bool = Field(False, description="let manifest videos resolve outside data.dir (symlinks included); "
                                "the digest stage then hashes them so a change reruns validate and shard")

    @property
    def manifest_path(self) -> Path:
        return Path(self.dir) / self.manifest


class LookParams(Section):
    """How a split's videos look: nuisance settings that change nothing a question asks about (the ``test`` split
    renders with other ones, to measure generalisation)."""

    background: tuple[int, int] = Field((90, 170), description="grey range of the background gradient (0-255)")
    border_fraction: float = Field(12 / 224, gt=0, le=0.15, description="border width / frame side")
    shade: int = Field(0, ge=0, le=60, description="every border colour of a video is shifted by up to ± this per "
                       "RGB channel (one shift per video and colour)")
    frame_side: int | None = Field(None, ge=56, le=1024, description="frame side in px; empty: synth.frame_side")
    phrasing: Literal["plain", "alt"] = Field("plain", description="alt: the questions are reworded")

    @model_validator(mode="after")
    def _check(self) -> LookParams:
        lo, hi = self.background
        if not 0 <= lo <= hi <= 255:
            raise ValueError(f"background must be a grey range 0 <= lo <= hi <= 255, got {self.background}")
        if self.frame_side is not None and self.frame_side % 2:
            raise ValueError(f"frame_side must be even (H.264 with 4:2:0 chroma), got {self.frame_side}")
        return self


class LongParams(Section):
    """A long-video split: the frames a question needs last only ``brief`` frames of ``frames``, so a uniform sample
    of shard.n_frames often misses them and 4x the frames catches them (temporal reinvestment can gain)."""

    frames: int = Field(64, ge=8, le=512, description="video frames (at fps x frames / n_frames: same duration)")
    brief: tuple[int, int] = Field((1, 2), description="the needed colour is shown for lo..hi frames")

    @model_validator(mode="after")
    def _check(self) -> LongParams:
        lo, hi = self.brief
        if not 1 <= lo <= hi <= self.frames // 4:
            raise ValueError(f"brief must be 1 <= lo <= hi <= frames/4, got {self.brief} for {self.frames} frames")
        return self


class SynthParams(Section):
    """The built-in "needle frame" video-QA set."""

    out_dir: str = "data/synth"
    n_frames: int = Field(16, ge=2, le=16, description="frames per video (each gets its own border colour)")
    frame_side: int = Field(224, ge=56, le=1024, description="frame width and height in pixels")
    fps: float = Field(2.0, gt=0, le=60)
    glyph: Literal["digits", "stripes"] = "stripes"
    glyph_size: int = Field(16, ge=4, le=64, description="stripe patch side at need 1, or digit font size (~0.7x as "
                            "tall), px")
    need_range: tuple[float, float] = Field((0.3, 1.0), description=(
        "stripes: the scale each frame's glyph needs to be read, drawn in this range (period 3/need px on a patch of "
        "glyph_size/need px); [1, 1]: every glyph is period 3 on glyph_size px (needs full resolution)"))
    need_spread: float = Field(0.25, ge=0, le=1, description=(
        "each video draws a centre need in need_range; its frames' needs lie within +-need_spread of it"))
    grounding_fraction: float = Field(0.25, ge=0, le=1, description="share of videos asked a grounding question")
    multi_frame_fraction: float = Field(0.5, ge=0, le=1, description=(
        "share of questions about 2-3 frames: MCQ 'same' (2 frames, yes/no) or 'count' (3 frames, 0-3) equally "
        "often; grounding 'between' (the span from one named frame to another)"))
    splits: dict[str, int] = Field(default_factory=lambda: {"train": 1000, "val": 200, "eval": 300})
    hold: dict[str, int] = Field(default_factory=lambda: {"eval": 4}, description=(
        "per split: every colour is held for this many frames at this many times the fps (same content and "
        "timing, more real frames: evaluate's 2x/4x-frame variants sample them)"))
    looks: dict[str, LookParams] = Field(default_factory=dict, description=(
        "per split: nuisance settings (background, border width, colour shades, frame size, phrasing); splits not "
        "named look like the defaults"))
    long: dict[str, LongParams] = Field(default_factory=dict, description=(
        "per split: render long videos whose needed frames are brief (multiple-choice questions only)"))
    seed: int = 0
    crf: int = Field(12, ge=0, le=51, description="x264 quality; low keeps the small glyph legible")
    n_workers: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SynthParams:
        if self.frame_side % 2:
            raise ValueError(f"frame_side must be even (H.264 with 4:2:0 chroma), got {self.frame_side}")
        lo, hi = self.need_range
        if not 0.1 <= lo <= hi <= 1:
            raise ValueError(f"need_range must be [lo, hi] with 0.1 <= lo <= hi <= 1, got {list(self.need_range)}")
        if lo < 1 and self.glyph != "stripes":
            raise ValueError(f"need_range {list(self.need_range)} grades stripes only; glyph {self.glyph!r} needs "
                             "[1, 1]")
        largest = round(self.glyph_size / lo)
        if largest > self.frame_side // 3:
            raise ValueError(f"glyph_size {self.glyph_size} does not fit inside the border of a {self.frame_side}-px "
                             f"frame: its patch at need {lo} is {largest} px (at most {self.frame_side // 3})")
        if any(h < 1 for h in self.hold.values()) or set(self.hold) - set(self.splits):
            raise ValueError(f"hold must map split names (of splits) to a frame count >= 1, got {self.hold}")
        for key in ("looks", "long"):
            if set(getattr(self, key)) - set(self.splits):
                raise ValueError(f"{key} names splits that synth.splits does not render: "
                                 f"{sorted(set(getattr(self, key)) - set(self.splits))}")
        for split, long in self.long.items():  # up to 3 named colours are brief; each other one must last longer
            others = max(1, self.n_frames - 3)
            if (long.frames - 3 * long.brief[1]) // others <= long.brief[1]:
                raise ValueError(f"long.{split}: {long.frames} frames cannot show {others} other colours each for "
                                 f"longer than the brief {long.brief[1]}: use more frames or a shorter brief")
        if set(self.long) & set(self.hold):
            raise ValueError(f"splits {sorted(set(self.long) & set(self.hold))} are both long and held: choose one")
        for split, look in self.looks.items():
            side = look.frame_side or self.frame_side
            if largest > side // 3:
                raise ValueError(f"looks.{split}: glyph_size {self.glyph_size} does not fit a {side}-px frame: its "
                                 f"patch at need {lo} is {largest} px (at most {side // 3})")
        bad = {k: v for k, v in self.splits.items() if v < 0}
        if bad or not self.splits:
            raise ValueError(f"splits must map split names to non-negative counts, got {self.splits}")
        unsafe = [k for k in self.splits if not re.match(SPLIT_PATTERN, k)]
        if unsafe:
            raise ValueError(f"split names {unsafe} must be 1-64 ASCII letters, digits, '_' or '-' (they name files)")
        return self


class ValidateParams(Section):
    out_dir: str = "data/validated"
    max_reject_fraction: float = Field(0.05, ge=0, le=1, description="the stage fails above this share of rejects")
    min_fps: float = Field(1.0, gt=0)
    max_fps: float = Field(240.0, gt=0)
    max_duration_s: float = Field(4 * 3600.0, gt=0)
    min_side: int = Field(16, ge=1)
    max_side: int = Field(8192, ge=1)
    n_workers: int = Field(2, ge=1, description="videos probed in parallel")

    @model_validator(mode="after")
    def _check(self) -> ValidateParams:
        if self.min_fps > self.max_fps:
            raise ValueError(f"min_fps ({self.min_fps:g}) must be at most max_fps ({self.max_fps:g})")
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be at most max_side ({self.max_side})")
        return self


class ShardParams(Section):
    out_dir: str = "data/shards"
    n_frames: int = Field(16, ge=1, description="frames sampled uniformly per video")
    patch_factor: int = Field(28, ge=1, description="base sides are multiples of this (28 Qwen2.5-VL, 32 Qwen3-VL)")
    max_pixels: int = Field(768 * 28 * 28, ge=1, description="pixel cap of the base resolution per frame")
    maxcount: int = Field(200, ge=1, description="samples per tar")
    frame_codec: Literal["jpg", "png"] = Field("jpg", description="jpg: small and fast; png: lossless")
    jpeg_quality: int = Field(95, ge=50, le=100)
    max_reject_fraction: float = Field(0.05, ge=0, le=1, description="the stage fails (previous shards kept) above "
                                       "this share of rows whose video does not decode")
    n_workers: int = Field(2, ge=1, description="decoding threads per partition (and evaluate's 2x/4x clips)")
    partitions: int = Field(1, ge=1, description="1: this process; more: that many partitions of the manifest as "
                            "Prefect tasks on a Dask cluster (same bytes)")
    cluster_address: str = Field("", description="a running Dask scheduler (tcp://host:8786) for the partitions; "
                                 "empty: a local cluster of `partitions` worker processes")

    @model_validator(mode="after")
    def _check(self) -> ShardParams:
        if self.cluster_address and self.partitions == 1:
            raise ValueError("cluster_address is set but partitions is 1 (one partition runs in this process): "
                             "set partitions > 1 or clear cluster_address")
        return self


class BackboneParams(Section):
    """The backbone: the built-in model trained here, or a pinned Qwen-family checkpoint."""

    source: Literal["builtin", "hf"] = "builtin"
    out_dir: str = "models/backbone"
    checkpoint: str = Field("", description="hf: local path or hub id, e.g. Qwen/Qwen2.5-VL-7B-Instruct")
    revision: str = Field("", description="hf: a hub revision to pin (branch, tag or commit)")
    engine: Literal["transformers", "vllm"] = "transformers"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_new_tokens: int = Field(64, ge=1, description="longest generated answer, in train rollouts and evaluate "
                                "(the reference trains reasoning answers with 8192; the built-in model answers in one)")
    train_split: str = "train"
    eval_split: str = "val"
    steps: int = Field(600, ge=1, description="built-in: optimiser steps")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(30, ge=1)
    width: int = Field(64, ge=8)
    stem_channels: int = Field(32, ge=4)
    seed: int = 0
    threads: int = Field(2, ge=1, description="torch CPU threads")

    @model_validator(mode="after")
    def _check(self) -> BackboneParams:
        if self.source == "hf" and not self.checkpoint:
            raise ValueError("source: hf needs checkpoint (a local path or hub id)")
        if self.engine == "vllm" and self.source != "hf":
            raise ValueError("engine: vllm serves a hf checkpoint; the built-in backbone runs on transformers")
        return self


class ContrastiveParams(Section):
    """The ``contrastive`` encoder's pretraining (resadapt/features/contrastive.py): symmetric InfoNCE on per-frame
    image–caption pairs of ``split`` (captions name the border colour only; no question, answer or target)."""

    split: str = Field("train", pattern=SPLIT_PATTERN, description="the split whose frames and captions train it")
    steps: int = Field(150, ge=1)
    videos_per_step: int = Field(4, ge=1, description="videos per step; InfoNCE contrasts a video's frames")
    lr: float = Field(1e-2, gt=0, description="Adam, cosine decay to 0")
    dim: int = Field(64, ge=8, description="patch-token and word width (the Allocator's patch_dim and text_dim)")
    embed_dim: int = Field(32, ge=2, description="width of the shared frame/query space")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ContrastiveParams:
        if self.dim % 4:
            raise ValueError(f"dim must be a multiple of 4 (the image tower's widths are dim/4, dim/2, dim), "
                             f"got {self.dim}")
        return self


class FeaturesParams(Section):
    """Coarse features for the Allocator, from a frozen lightweight encoder over low-resolution frames."""

    out_dir: str = "data/features"
    encoder: Literal["contrastive", "builtin", "hf", "vlm"] = Field(
        "contrastive", description="contrastive: a small dual encoder pretrained here on frame–caption pairs (never "
        "a question); builtin: the built-in backbone's stem and words (its similarity is its label-trained colour "
        "heads); hf: a CLIP/SigLIP-style checkpoint; vlm: a SmolVLM/Idefics3-style VLM's vision and text towers")
    contrastive: ContrastiveParams = ContrastiveParams()
    checkpoint: str = Field("", description="hf/vlm: local path or hub id, e.g. google/siglip-base-patch16-224, "
                            "HuggingFaceTB/SmolVLM2-256M-Video-Instruct")
    side: int = Field(56, ge=28, description="frames are encoded at side×side pixels")
    texture: bool = Field(True, description="append each frame's label-free texture statistics (grey-level gradient "
                          "and Laplacian magnitudes at 3 scales, resadapt.features.texture) to its patch tokens")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="where the encoder runs")
    batch_size: int = Field(64, ge=1, description="frames (and query texts) per encoder forward pass")
    dtype: Literal["float16", "float32"] = Field("float16", description="stored dtype of the features")
    splits: list[str] = Field(default_factory=lambda: ["train", "val", "eval"])

    @model_validator(mode="after")
    def _check(self) -> FeaturesParams:
        if self.encoder in ("hf", "vlm") and not self.checkpoint:
            raise ValueError(f"encoder: {self.encoder} needs checkpoint (a local path or hub id)")
        return self


class CapoParams(Section):
    """CAPO coefficients (method spec §4). All are the reference implementation's except ``shaping`` and ``gas``
    (reference: 0.25 and 0.05): on the built-in data those left the non-queried frames drifting at ~0.7 scale
    (retention 55%); 1.0 and 0.5 bring them to the floor (measured in the train stage's metrics)."""

    lam: float = Field(0.5, ge=0, le=1, description="λ: weight of the group's mean cost in the pivot")
    tau: float = Field(0.4, ge=0, le=1, description="τ_target in normalised-cost units")
    temperature: float = Field(0.15, gt=0)
    shaping: float = Field(1.0, ge=0, description="coefficient of the shaping term S (reference: 0.25)")
    gas: float = Field(0.5, ge=0, description="residual global cost pressure (reference: 0.05)")
    incorrect_shaping: Literal["more_pixels", "fewer_pixels"] = Field(
        "fewer_pixels", description="fewer_pixels: wrong-and-expensive is penalised (paper prose; the better on the "
        "built-in data, see README); more_pixels: wrong-and-cheap is penalised (reference code)")
    credit: Literal["allocation", "capo_frame", "frame_cost"] = Field(
        "frame_cost", description="how the advantage reaches the frames: allocation (spec §4, one A per "
        "allocation), capo_frame (spec's per-frame variant, frame priority), frame_cost (each frame's own cost, "
        "z-scored in its group; README \"CAPO on a known-answer bandit\")")
    frame_coef: float = Field(0.25, ge=0, description="weight η of the per-frame term (capo_frame, frame_cost)")
    frame_gate: bool = Field(True, description="frame_cost: sign the per-frame push by correctness (ungated it "
                             "collapses to s_min on the bandit's two_frames)")
    frame_blame: float = Field(1.0, ge=0, le=1, description="frame_cost with frame_gate: weight β of the blame a "
                               "wrong allocation puts on the frames it spent less on (README bandit table)")


PromptStyle = Literal["plain", "reasoning"]
PROMPT_STYLES: tuple[str, ...] = get_args(PromptStyle)


class RewardParams(Section):
    """The backbone's score in ResAdapt-RL (method spec §7): accuracy · acc + format · fmt + the DAPO overlong
    penalty. The Allocator's reward is acc alone."""

    accuracy: float = Field(1.0, ge=0, description="weight of acc")
    format: float = Field(0.2, ge=0, description="weight of fmt (1 <think>…</think><answer>…</answer>, 0, or -1 "
                          "for unbalanced tags)")
    max_response_tokens: int = Field(8192, ge=1, description="L_max: the penalty reaches -overlong_factor here")
    overlong_buffer: int = Field(4096, ge=1, description="the penalty ramps over the last this many tokens")
    overlong_factor: float = Field(1.0, ge=0, description="0 turns the overlong penalty off")

    @model_validator(mode="after")
    def _check(self) -> RewardParams:
        if self.overlong_buffer > self.max_response_tokens:
            raise ValueError(f"overlong_buffer ({self.overlong_buffer}) must not exceed max_response_tokens "
                             f"({self.max_response_tokens})")
        return self


class LoraParams(Section):
    """A LoRA adapter (peft) on the backbone's language model instead of a full ResAdapt-RL update."""

    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                      description="module name suffixes (Qwen's attention projections)")


class TrainParams(Section):
    """CAPO training of the Allocator (and, with update_backbone, of the backbone: ResAdapt-RL)."""

    out_dir: str = "models/allocator"
    split: str = "train"
    eval_split: str = "val"
    steps: int = Field(600, ge=1)
    prompts: int = Field(16, ge=1, description="B prompts per step")
    allocations: int = Field(8, ge=1, description="M allocations per prompt")
    answers: int = Field(4, ge=1, description="N answers per allocation")
    lr: float = Field(2e-3, gt=0)
    warmup: int = Field(20, ge=1)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ppo_epochs: int = Field(1, ge=1)
    clip_low: float = Field(0.2, gt=0)
    clip_high: float = Field(0.28, gt=0)
    dual_clip: float = Field(10.0, gt=1)
    conc_coef: float = Field(5e-4, ge=0)
    sim_coef: float = Field(1e-3, ge=0)
    credit_coef: float = Field(0.3, ge=0, description=(
        "weight of L_credit: the Allocator's own frame-query match is trained to point at the frames whose spend "
        "went with right answers (0: the spec's loss; README 'CAPO on a known-answer bandit')"))
    s_min: float = Field(0.1, gt=0)
    s_max: float = Field(1.2, gt=0, description="1.2, not the paper's 2.0: upscaling 224-px frames adds no detail")
    init_scale: float = Field(1.0, gt=0, description="every frame starts at this mean scale (spec: 1.0)")
    init_concentration: float = Field(5.0, gt=4)
    kappa_floor: Literal["clamp", "offset"] = Field("clamp", description=(
        "clamp: κ = max(softplus + 4, feasibility floor) (spec; pinned at the floor, its head gets no gradient); "
        "offset: κ = softplus + max(4, floor)"))
    width: int = Field(64, ge=8)
    heads: int = Field(4, ge=1)
    depth: int = Field(1, ge=1)
    capo: CapoParams = CapoParams()
    checkpoint_every: int = Field(50, ge=1)
    update_backbone: bool = Field(False, description="ResAdapt-RL: also update the backbone (token-level PPO)")
    prompt: PromptStyle = Field("plain", description="plain: answer directly; reasoning: <think>, then <answer> "
                                "with a \\boxed{} final answer (the reference's instruction)")
    reward: RewardParams = RewardParams()
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="where the Allocator trains")
    backbone_lr: float = Field(1e-4, gt=0)
    rollout_batch: int = Field(8, ge=1, description="(prompt, allocation) items per generate call: one call holds "
                               "at most rollout_batch × answers sequences; calls never mix prompts (each prompt's "
                               "answers are seeded on their own, wherever it runs), so a call holds at most "
                               "allocations items")
    update_batch: int = Field(2, ge=1, description="items per backbone forward/backward in the ResAdapt-RL step "
                              "(gradients accumulated over the step)")
    gradient_checkpointing: bool = Field(False, description="recompute the backbone's activations in its update")
    lora: LoraParams = LoraParams()
    similarity: bool = Field(True, description="feed the Allocator the encoder's frame–query similarity "
                             "(frame_embed · query_embed); false: aligned_dim 0, it learns the match from the reward")
    seed: int = 0
    threads: int = Field(2, ge=1, description="torch CPU threads of the stage, shared by the ranks of a machine")
    nproc: int = Field(1, ge=1, description="ranks on this machine: > 1 runs the stage under torchrun "
                       "(data-parallel, DDP; nccl on CUDA, gloo on CPU); a launcher's own world (torchrun "
                       "--nproc-per-node/--nnodes) overrides it")

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if (self.lora.enabled or self.gradient_checkpointing) and not self.update_backbone:
            raise ValueError("lora.enabled and gradient_checkpointing act on the backbone update: they need "
                             "update_backbone: true")
        if not self.s_min < self.init_scale < self.s_max:
            raise ValueError(f"need s_min < init_scale < s_max, got {self.s_min}, {self.init_scale}, {self.s_max}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.nproc > self.prompts:
            raise ValueError(f"nproc ({self.nproc}) ranks share prompts ({self.prompts}) per step: each needs one")
        return self


class TrainNosimParams(Section):
    """The ablation Allocator (stage ``train_nosim``): ``train`` with ``similarity: false``, own output and steps."""

    out_dir: str = "models/allocator_nosim"
    steps: int = Field(300, ge=1, description="the ablation's own step count (fewer than train.steps: the default "
                       "run's time budget)")


METHODS = ("full", "fixed_scale", "random_drop", "taskres", "relevance_topk", "relevance_topk_drop", "resadapt",
           "resadapt_uniform", "resadapt_policy", "resadapt_split", "resadapt_x2", "resadapt_x4", "resadapt_nosim",
           "oracle", "oracle_where")  # the oracles read the generator's labels: built-in data set only
TOPK_MORE_FRAMES = ("relevance_topk_x2", "relevance_topk_x4", "relevance_topk_drop_x2", "relevance_topk_drop_x4")


class EvaluateParams(Section):
    """The budget sweep: every method at every retention budget on one split (README "Evaluation")."""

    out_dir: str = "reports/evaluate"
    split: str = Field("eval", description="the split measured (its videos are decoded again for 2x/4x frames)")
    test_splits: list[str] = Field(default_factory=list, description=(
        "splits rendered with other nuisance settings: every method is measured there too, reported as its own "
        "column, never tuned on"))
    long_splits: list[str] = Field(default_factory=list, description=(
        "long-video splits: ResAdapt at 1x and at the 2x/4x frame counts of evaluate.methods, same budgets"))
    calibration_split: str = Field("val", description="TaskRes fits its per-task resolutions here")
    budgets: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.15, 0.25, 0.5, 1.0],
                                 description="retention targets r: tokens / tokens of the 1x clip at scale 1")
    methods: list[str] = Field(default_factory=lambda: list(METHODS), description=f"any of {', '.join(METHODS)}; "
                               f"also {', '.join(TOPK_MORE_FRAMES)} (top-k on the 2x/4x clips, not by default)")
    heatmaps: int = Field(4, ge=0, description="eval videos drawn in the allocation heatmaps")
    taskres_samples: int = Field(8, ge=2, description="TaskRes: answers sampled per calibration sample")
    batch_size: int = Field(32, ge=1, description="items per backbone generate call")
    prompt: PromptStyle = Field("plain", description="the instruction: plain or reasoning (as train.prompt)")
    seed: int = 0
    threads: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        unknown = [m for m in self.methods if m not in METHODS + TOPK_MORE_FRAMES]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS + TOPK_MORE_FRAMES)}")
        if not self.budgets or any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"budgets must be retention targets in (0, 1], got {self.budgets}")
        twice = {self.split, self.calibration_split} & set(self.test_splits + self.long_splits)
        if twice or len(set(self.test_splits + self.long_splits)) < len(self.test_splits + self.long_splits):
            raise ValueError(f"split(s) {sorted(twice) or 'listed twice'}: test_splits and long_splits must be other "
                             f"splits than evaluate.split and evaluate.calibration_split, each named once")
        return self


class RegisterParams(Section):
    """The gate before a trained Allocator becomes a registered model (README "Model registry")."""

    out_dir: str = "models/package"
    name: str = Field("allocator", pattern=r"^[a-z][a-z0-9-]*$", description="artifact name in dvc.yaml and GTO")
    target_budget: float = Field(0.15, gt=0, le=1, description="ResAdapt is compared with FixedScale at this budget")
    min_margin: float = Field(0.02, description="accuracy (0-1) ResAdapt must beat FixedScale by; the paper's gains on "
                              "real benchmarks are a few points, the built-in default sets its own 0.3 in params.yaml")


class Params(Section):
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    shard: ShardParams = ShardParams()
    backbone: BackboneParams = BackboneParams()
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    train_nosim: TrainNosimParams = TrainNosimParams()
    evaluate: EvaluateParams = EvaluateParams()
    register_: RegisterParams = Field(RegisterParams(), alias="register")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> Params:
        if self.backbone.source == "builtin" and (self.train.lora.enabled or self.train.gradient_checkpointing):
            raise ValueError("train.lora and train.gradient_checkpointing need backbone.source: hf (the built-in "
                             "model is small and has no attention projections)")
        reasoning = [f"{k}.prompt" for k, p in (("train", self.train), ("evaluate", self.evaluate))
                     if p.prompt == "reasoning"]
        if reasoning and self.backbone.source == "builtin":
            raise ValueError(f"{', '.join(reasoning)}: reasoning needs a chat backbone (backbone.source: hf); the "
                             "built-in backbone reads only the question's words and answers in one token")
        if self.register_.target_budget not in self.evaluate.budgets:
            raise ValueError(f"register.target_budget {self.register_.target_budget} must be one of evaluate.budgets "
                             f"{self.evaluate.budgets} (the gate reads that sweep point)")
        return self


def _describe(err: ValidationError, source: Path) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = "unknown key (not a parameter of this section)" if e["type"] == "extra_forbidden" else e["msg"]
        got = "" if e["type"] == "extra_forbidden" else f" (got {e.get('input')!r})"
        lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; a missing file is an error (never a silent run on all defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameters file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_describe(err, path)) from None
