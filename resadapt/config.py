"""Typed view of ``params.yaml``: one pydantic model per stage section, the only source of defaults.

Unknown keys and bad values fail with the file name and the dotted key path, so a mistyped
``dvc exp run -S shard.n_frame=8`` stops the stage instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """A ``params.yaml`` problem, already phrased for the user (file, key path, what is wrong)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    """Where the input videos live. Point ``dir`` at your own folder to use your videos."""

    dir: str = Field("data/synth", description="folder holding the manifest and the videos (DVC hashes it)")
    manifest: str = Field("manifest.jsonl", description="JSONL manifest, relative to data.dir")

    @property
    def manifest_path(self) -> Path:
        return Path(self.dir) / self.manifest


class SynthParams(Section):
    """The built-in "needle frame" video-QA set."""

    out_dir: str = "data/synth"
    n_frames: int = Field(16, ge=2, le=16, description="frames per video (each gets its own border colour)")
    frame_side: int = Field(224, ge=56, le=1024, description="frame width and height in pixels")
    fps: float = Field(2.0, gt=0, le=60)
    glyph: Literal["digits", "stripes"] = "digits"
    glyph_size: int = Field(20, ge=4, le=64, description="digit font size (a digit is ~0.7x as tall) or stripe patch side, px")
    grounding_fraction: float = Field(0.25, ge=0, le=1, description="share of videos asked a grounding question")
    splits: dict[str, int] = Field(default_factory=lambda: {"train": 1000, "val": 200, "eval": 300})
    seed: int = 0
    crf: int = Field(12, ge=0, le=51, description="x264 quality; low keeps the small glyph legible")
    n_workers: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SynthParams:
        if self.frame_side % 2:
            raise ValueError(f"frame_side must be even (H.264 with 4:2:0 chroma), got {self.frame_side}")
        bad = {k: v for k, v in self.splits.items() if v < 0}
        if bad or not self.splits:
            raise ValueError(f"splits must map split names to non-negative counts, got {self.splits}")
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


class ShardParams(Section):
    out_dir: str = "data/shards"
    n_frames: int = Field(16, ge=1, description="frames sampled uniformly per video")
    patch_factor: int = Field(28, ge=1, description="base sides are multiples of this (28 Qwen2.5-VL, 32 Qwen3-VL)")
    max_pixels: int = Field(768 * 28 * 28, ge=1, description="pixel cap of the base resolution per frame")
    maxcount: int = Field(200, ge=1, description="samples per tar")
    frame_codec: Literal["jpg", "png"] = Field("jpg", description="jpg: small and fast; png: lossless")
    jpeg_quality: int = Field(95, ge=50, le=100)
    n_workers: int = Field(2, ge=1)


class Params(Section):
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    shard: ShardParams = ShardParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _describe(err: ValidationError, source: Path) -> str:
    lines = [f"{source}: {err.error_count()} invalid parameter(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = "unknown key (not a parameter of this section)" if e["type"] == "extra_forbidden" else e["msg"]
        got = "" if e["type"] == "extra_forbidden" else f" (got {e.get('input')!r})"
        lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; a missing file means all defaults."""
    path = Path(path)
    raw = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_describe(err, path)) from None
