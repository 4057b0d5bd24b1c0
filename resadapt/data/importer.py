"""``resadapt import``: the reference implementation's data (verl-style parquet, Video-R1-style JSON/JSONL) → our
manifest (README "Importing data").

verl parquet rows hold ``prompt``, ``videos``, ``reward_model.ground_truth`` and ``extra_info`` (``question``,
``problem_type``, ``options``, ``doc_id``, ``split``…); Video-R1 rows hold ``problem``, ``solution``,
``problem_type``, ``options`` and ``path`` (or ``video``/``video_path``). Every original field is kept under
``meta.original``. A row that cannot be converted is reported with its line (row number in the file) and the reason;
the others are written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from resadapt.data.manifest import Sample, sample_row
from resadapt.io import write_jsonl
from resadapt.rewards.choice import LETTERS, chosen_letter, chosen_letters, option_letters
from resadapt.rewards.extract import extract_answer
from resadapt.rewards.score import TASKS, extract_span_answer
from resadapt.rewards.spans import json_spans, parse_spans

# the reference's problem_type names (lower case, "-"/"_" as spaces) → our task
PROBLEM_TYPES = {
    "multiple choice": "mcq", "numerical": "numerical", "ocr": "ocr", "free form": "free_form",
    "open end": "free_form", "openend": "free_form", "open ended": "free_form", "regression": "regression",
    "math": "math", "exact match": "open", "iou": "grounding", "grounding": "grounding",
    "temporal grounding": "grounding", "gqa": "gqa", **{t: t for t in TASKS},
}
_PLACEHOLDER = re.compile(r"<(?:video|image)>\s*")
_OPTION_LABEL = re.compile(r"^\s*\(?([A-Z])[.):]\s*")


class RowError(ValueError):
    """A row that cannot become a manifest row; the message is the reason."""


def read_records(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """``(line, record, error)`` per row: a JSONL line number, or the 1-based row of a parquet file or JSON array;
    ``record`` is None (with ``error``) for a line that is no JSON object."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row, ""
        return
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield i, None, f"not JSON: {exc}"
                    continue
                yield (i, row, "") if isinstance(row, dict) else (i, None, "a row must be a JSON object")
        return
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("data", data.get("annotations", [data]))
        for i, row in enumerate(data if isinstance(data, list) else [data], start=1):
            yield (i, row, "") if isinstance(row, dict) else (i, None, "a row must be a JSON object")
        return
    raise ValueError(f"{path}: unknown input format {suffix!r} (expected .parquet, .jsonl or .json)")


def _first(mapping: dict, *keys: str):
    return next((mapping[k] for k in keys if mapping.get(k) not in (None, "")), None)


def task_of(problem_type, has_options: bool) -> str:
    """Our task for a reference problem type; without one: mcq when there are options, else open (the general
    matcher, as the reference falls back on)."""
    if isinstance(problem_type, list | tuple):
        problem_type = problem_type[0] if problem_type else None
    if problem_type in (None, ""):
        return "mcq" if has_options else "open"
    key = " ".join(str(problem_type).lower().replace("-", " ").replace("_", " ").split())
    if key not in PROBLEM_TYPES and key.replace(" ", "_") not in PROBLEM_TYPES:
        raise RowError(f"unknown problem_type {problem_type!r} (known: {', '.join(sorted(PROBLEM_TYPES))})")
    return PROBLEM_TYPES.get(key) or PROBLEM_TYPES[key.replace(" ", "_")]


def option_texts(options) -> list[str]:
    """Option texts without their labels ("A. cooking" → "cooking") when every option carries its own letter."""
    options = [str(o) for o in options or []]
    labels = [_OPTION_LABEL.match(o) for o in options]
    if options and all(m and m.group(1) == LETTERS[i] for i, m in enumerate(labels)):
        return [o[m.end():].strip() for o, m in zip(options, labels, strict=True)]
    return options


def _spans_of(truth) -> list[tuple[float, float]]:
    spans = json_spans(truth) if not isinstance(truth, str) else parse_spans(extract_span_answer(truth))
    if not spans:
        raise RowError(f"no [start, end] span in the ground truth {truth!r}")
    return spans


def _fields(raw: dict) -> dict:
    """The fields we need, from either format."""
    extra = raw.get("extra_info") if isinstance(raw.get("extra_info"), dict) else {}
    if "reward_model" in raw or isinstance(raw.get("prompt"), list):  # verl parquet
        reward = raw.get("reward_model") if isinstance(raw.get("reward_model"), dict) else {}
        videos = raw.get("videos") or []
        video = videos[0].get("video") if videos and isinstance(videos[0], dict) else (videos[0] if videos else None)
        question = _first(extra, "question", "problem")
        if question is None and raw.get("prompt"):
            question = raw["prompt"][-1].get("content") if isinstance(raw["prompt"][-1], dict) else None
        return {"id": _first(extra, "doc_id", "id", "problem_id"), "video": video or _first(extra, "video_path"),
                "question": question, "truth": reward.get("ground_truth", extra.get("answer")),
                "problem_type": _first(extra, "problem_type", "question_type", "type"),
                "options": extra.get("options"), "split": extra.get("split")}
    solution = _first(raw, "solution", "answer", "original_answer")
    return {"id": _first(raw, "id", "problem_id", "doc_id"), "video": _first(raw, "path", "video", "video_path"),
            "question": _first(raw, "problem", "question", "original_question"), "truth": solution,
            "problem_type": _first(raw, "problem_type", "question_type", "type"), "options": raw.get("options"),
            "split": raw.get("split")}


def convert(raw: dict, line: int, stem: str, manifest_dir: Path, video_root: Path, split: str | None) -> Sample:
    """One record → a manifest Sample; raises RowError (or pydantic's ValidationError) with the reason."""
    f = _fields(raw)
    if not f["video"]:
        raise RowError("no video path (videos[0].video, path, video or video_path)")
    if not f["question"]:
        raise RowError("no question (extra_info.question, problem or prompt)")
    if f["truth"] in (None, ""):
        raise RowError("no ground truth (reward_model.ground_truth or solution)")
    options = option_texts(f["options"])
    task = task_of(f["problem_type"], bool(options))
    row = {"id": str(f["id"] if f["id"] is not None else f"{stem}-{line}"), "task": task, "options": options,
           "question": _PLACEHOLDER.sub("", str(f["question"])).strip(), "split": split or f["split"] or "train",
           "video": video_path(str(f["video"]), manifest_dir, video_root)}
    truth = f["truth"]
    if task == "gqa":
        answer = str(truth.get("answer", "")) if isinstance(truth, dict) else extract_answer(str(truth))
        seg = truth.get("segment", truth.get("timestamps")) if isinstance(truth, dict) else answer.rsplit("<>", 1)[-1]
        spans = _spans_of(seg)
        answer = answer.split("<>")[0].strip()
        if options:
            answer = chosen_letter(answer, option_letters(len(options)), tuple(options)) or answer
        row.update(answer=answer, **({"span": spans[0]} if len(spans) == 1 else {"spans": spans}))
    elif task == "grounding":
        spans = _spans_of(truth)
        row.update(answer=json.dumps([list(s) for s in spans] if len(spans) > 1 else list(spans[0])),
                   **({"span": spans[0]} if len(spans) == 1 else {"spans": spans}))
    else:
        answer = extract_answer(truth if isinstance(truth, str) else json.dumps(truth))
        if task == "mcq":
            letters = option_letters(len(options))
            picked = chosen_letters(answer, letters)
            if len(picked) > 1:
                answer, row["multi_select"] = ", ".join(sorted(picked)), True
            else:
                answer = chosen_letter(answer, letters, tuple(options)) or answer
        row["answer"] = answer
    row["meta"] = {"source": {"file": stem, "line": line}, "original": json.loads(json.dumps(raw, default=str))}
    return Sample.model_validate(row)


def video_path(path: str, manifest_dir: Path, video_root: Path) -> str:
    """Relative to the manifest's folder when the video lies under it; else the absolute path."""
    full = Path(path) if os.path.isabs(path) else video_root / path
    full = Path(os.path.normpath(full.absolute()))
    base = Path(os.path.normpath(manifest_dir.absolute()))
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)


def import_manifest(source: str | Path, manifest: str | Path, video_root: str | Path | None = None,
                    split: str | None = None) -> dict:
    """Convert ``source`` into the manifest ``manifest`` (written atomically) and ``<manifest>.rejects.jsonl``;
    returns a summary: rows, converted, rejects [{line, id, reasons}], videos outside the manifest's folder."""
    source, manifest = Path(source), Path(manifest)
    root = Path(video_root) if video_root is not None else source.parent
    samples, rejects, seen = [], [], {}
    for line, raw, error in read_records(source):
        if raw is None:
            rejects.append({"line": line, "id": None, "reasons": [error]})
            continue
        try:
            sample = convert(raw, line, source.stem, manifest.parent, root, split)
        except RowError as exc:
            rejects.append({"line": line, "id": _fields(raw)["id"], "reasons": [str(exc)]})
            continue
        except ValidationError as err:
            reasons = [f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in err.errors()]
            rejects.append({"line": line, "id": _fields(raw)["id"], "reasons": reasons})
            continue
        if sample.id in seen:
            reason = f"duplicate id (first at line {seen[sample.id]})"
            rejects.append({"line": line, "id": sample.id, "reasons": [reason]})
            continue
        seen[sample.id] = line
        samples.append(sample)
    outside = sorted({s.video for s in samples if os.path.isabs(s.video)})
    write_jsonl(manifest, (sample_row(s) for s in samples))
    write_jsonl(rejects_path(manifest), rejects)
    return {"source": str(source), "manifest": str(manifest), "rows": len(samples) + len(rejects),
            "converted": len(samples), "rejects": rejects, "outside": outside}


def rejects_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.stem + ".rejects.jsonl")
