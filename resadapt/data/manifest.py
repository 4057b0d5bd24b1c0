"""The manifest: JSONL, one row per sample, ``video`` relative to the manifest's folder.

Rows that do not parse (bad UTF-8, bad JSON) or do not fit the schema become rejects (row number + reasons); the rest
go on. A UTF-8 byte-order mark before the first row is dropped. Ids and split names are restricted to a safe
character set (``ID_PATTERN``, ``SPLIT_PATTERN``): split names become file names, and neither may carry a path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from resadapt.config import SPLIT_PATTERN
from resadapt.rewards.score import SPAN_TASKS, Task

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # ASCII letters, digits, _ . : -; no path, no spaces


def option_letter(index: int) -> str:
    return LETTERS[index]


class Sample(BaseModel):
    """One manifest row."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    video: str = Field(min_length=1, description="path relative to the manifest's folder")
    question: str
    options: list[str] = Field(default_factory=list, description="option texts; option i has letter A, B, …")
    answer: str = Field(description="mcq: a letter (multi-select: letters, 'A, C'); grounding: '[start, end]' in "
                        "seconds; gqa: the answer (its span in span/spans); numerical, regression, math: a number; "
                        "open, ocr, free_form: text")
    task: Task = Field(description="the problem type, which picks the reward rule (README \"Problem types\")")
    span: tuple[float, float] | None = Field(None, description="[start, end] in seconds (grounding, gqa)")
    spans: list[tuple[float, float]] | None = Field(None, min_length=1, description=(
        "every ground-truth [start, end] when there are several (grounding, gqa; instead of span): acc is the IoU "
        "with the nearest"))
    multi_select: bool | None = Field(None, description="mcq: several options may be right (acc: Dice over letter "
                                      "sets); a ground truth with several letters is multi-select anyway")
    split: str = Field(min_length=1)
    meta: dict[str, Any] | None = Field(None, description="what a generator knows (per-frame labels, …)")

    @model_validator(mode="after")
    def _task_fields(self) -> Sample:
        if self.task == "mcq" and len(self.options) < 2:
            raise ValueError("an mcq row needs at least 2 options")
        if self.task in SPAN_TASKS and (self.span is None) == (self.spans is None):
            raise ValueError(f"a {self.task} row needs span [start, end] or spans [[start, end], …] (one of them)")
        if self.task not in SPAN_TASKS and (self.span is not None or self.spans is not None):
            raise ValueError(f"span/spans belong to grounding and gqa rows, not {self.task}")
        if self.multi_select is not None and self.task != "mcq":
            raise ValueError(f"multi_select belongs to mcq rows, not {self.task}")
        return self

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not re.match(ID_PATTERN, value):
            raise ValueError(f"id {value!r} must be 1-128 ASCII letters, digits, '_', '.', ':' or '-', starting with "
                             "a letter or digit")
        return value

    @field_validator("split")
    @classmethod
    def _safe_split(cls, value: str) -> str:
        if not re.match(SPLIT_PATTERN, value):
            raise ValueError(f"split {value!r} must be 1-64 ASCII letters, digits, '_' or '-', starting with a letter "
                             "or digit")
        return value

    @field_validator("video")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"video path {value!r} contains a control character")
        return value

    @field_validator("options")
    @classmethod
    def _options_fit_letters(cls, value: list[str]) -> list[str]:
        if len(value) > len(LETTERS):
            raise ValueError(f"{len(value)} options, more than the {len(LETTERS)} letters A-Z")
        return value

    @property
    def all_spans(self) -> list[tuple[float, float]]:
        """Every ground-truth span (``spans``, or ``span`` alone)."""
        return list(self.spans or ([self.span] if self.span else []))

    @property
    def letters(self) -> list[str]:
        return [option_letter(i) for i in range(len(self.options))]


def read_manifest(path: str | Path) -> tuple[list[tuple[int, Sample]], list[dict]]:
    """Parse a manifest into ``(row_number, Sample)`` pairs and rejects ``{row, id, source, reasons}``."""
    rows: list[tuple[int, Sample]] = []
    rejects: list[dict] = []
    with open(path, "rb") as f:
        for row, data in enumerate(f, start=1):
            if row == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                rejects.append({"row": row, "id": None, "source": data.decode("utf-8", "replace").rstrip("\n"),
                                "reasons": [f"not UTF-8: byte 0x{data[exc.start]:02x} at column {exc.start + 1}"]})
                continue
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                rejects.append({"row": row, "id": None, "source": line.rstrip("\n"), "reasons": [f"not JSON: {exc}"]})
                continue
            if not isinstance(raw, dict):
                rejects.append({"row": row, "id": None, "source": raw, "reasons": ["a row must be a JSON object"]})
                continue
            try:
                rows.append((row, Sample.model_validate(raw)))
            except ValidationError as err:
                reasons = [f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in err.errors()]
                rejects.append({"row": row, "id": raw.get("id"), "source": raw, "reasons": reasons})
    return rows, rejects


def sample_row(sample: Sample) -> dict:
    """A sample as a manifest row (no nulls for optional fields)."""
    return sample.model_dump(mode="json", exclude_none=True)


def resolve_video(root: Path, video: str, data_dir: Path, allow_outside: bool) -> Path:
    """``root / video`` with symlinks resolved; a ValueError when it lies outside ``data_dir`` (unless allowed)."""
    try:
        path = (root / video).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ValueError(f"video {video!r} cannot be resolved ({exc})") from None
    if not allow_outside and not path.is_relative_to(data_dir.resolve()):
        raise ValueError(f"video {video!r} resolves to {path}, outside data.dir {data_dir} "
                         "(set data.allow_outside: true to allow it)")
    return path
