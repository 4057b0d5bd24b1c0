"""Manifest validation: a great-expectations suite over the manifest joined with a probe of every video.

Rows that fail the schema (pydantic) or any expectation become rejects with their row number and reasons; the rest
are written to a clean manifest. The run fails only when the rejected share exceeds ``max_reject_fraction``; its
outputs then go to ``<out_dir>/failed/`` and the previous outputs stay as they were (they are replaced only on
success). Videos must resolve inside ``data.dir`` (symlinks followed) unless ``data.allow_outside``; rows outside
are rejected without reading the file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from resadapt.config import ValidateParams
from resadapt.data.manifest import Sample, read_manifest, resolve_video, sample_row
from resadapt.data.video import VideoError, probe
from resadapt.io import write_json, write_jsonl, write_text
from resadapt.rewards.numbers import parse_number


class TooManyRejects(RuntimeError):
    """More rows were rejected than ``validate.max_reject_fraction`` allows."""


class SuiteError(RuntimeError):
    """An expectation could not be evaluated (great-expectations raised): its verdict would be silently empty."""

OUTPUTS = ("manifest.jsonl", "rejects.jsonl", "summary.json", "report.md")
FAILED = "failed"


@dataclass(frozen=True)
class Check:
    """One expectation of the suite and how to phrase its failure for a given row."""

    name: str
    build: Callable[[], object]
    reason: Callable[[pd.Series], str]


def _probe_all(paths: list[Path], n_workers: int, progress: bool) -> dict[Path, dict]:
    def one(path: Path) -> dict:
        try:
            return {"video_ok": True, "video_error": "", **probe(path).as_dict()}
        except VideoError as exc:
            return {"video_ok": False, "video_error": exc.reason}

    unique = sorted(set(paths))
    with ThreadPoolExecutor(n_workers) as pool:
        results = list(tqdm(pool.map(one, unique), total=len(unique), desc="probe", unit="video", disable=not progress))
    return dict(zip(unique, results, strict=True))


def _span_ok(sample: Sample, duration: float | None) -> bool:
    return all(duration is not None and 0 <= start < end <= duration + 1e-6 for start, end in sample.all_spans)


NUMBER_TASKS = ("numerical", "regression", "math")


def _answer_in_options(sample: Sample) -> bool:
    """mcq: the answer is an option letter (multi-select: letters, "A, C"); gqa with options: a letter."""
    if sample.task == "gqa" and sample.options:
        return sample.answer.strip() in sample.letters
    if sample.task != "mcq":
        return True
    letters = [t for t in re.split(r"[\s,;]+", sample.answer.strip()) if t]
    return bool(letters) and all(t in sample.letters for t in letters) and (len(letters) == 1 or
                                                                           sample.multi_select is not False)


def probe_frame(rows: list[tuple[int, Sample]], root: Path, n_workers: int = 2, progress: bool = False,
                data_dir: Path | None = None, allow_outside: bool = False) -> pd.DataFrame:
    """The manifest as a DataFrame joined with each video's probe, plus the derived columns the suite checks.

    A video outside ``data_dir`` (default ``root``) is not probed: its probe columns stay empty (GE skips nulls) and
    only the "video inside data.dir" check fails for it."""
    paths: dict[int, Path | str] = {}
    for row, s in rows:
        try:
            paths[row] = resolve_video(root, s.video, data_dir or root, allow_outside)
        except ValueError as exc:
            paths[row] = str(exc)
    probes = _probe_all([p for p in paths.values() if isinstance(p, Path)], n_workers, progress)
    outside = {"video_ok": None, "video_error": ""}
    first_row: dict[str, int] = {}
    records = []
    for row, s in rows:
        where = paths[row]
        info = probes[where] if isinstance(where, Path) else outside
        records.append({
            "row": row, "id": s.id, "video": s.video, "question": s.question, "task": s.task, "answer": s.answer,
            "letters": "".join(s.letters),
            "span": [list(x) for x in s.spans] if s.spans else list(s.span) if s.span else None,
            "duplicate_of": first_row.get(s.id),
            "answer_in_options": _answer_in_options(s),
            "answer_is_number": s.task not in NUMBER_TASKS or parse_number(s.answer) is not None,
            "span_ok": _span_ok(s, info.get("duration")),
            "video_inside": isinstance(where, Path), "video_where": "" if isinstance(where, Path) else where,
            **{k: info.get(k) for k in ("video_ok", "video_error", "width", "height", "fps", "duration", "n_frames",
                                        "rotation", "vfr", "edit_list")},
        })
        first_row.setdefault(s.id, row)
    frame = pd.DataFrame.from_records(records)
    frame["is_duplicate"] = frame["duplicate_of"].notna()
    return frame


def build_checks(params: ValidateParams, min_frames: int) -> list[Check]:
    import great_expectations.expectations as gxe

    return [
        Check("unique id", lambda: gxe.ExpectColumnValuesToBeInSet(column="is_duplicate", value_set=[False]),
              lambda r: f"duplicate id {r.id!r} (first at row {int(r.duplicate_of)})"),
        Check("non-empty question", lambda: gxe.ExpectColumnValuesToNotMatchRegex(column="question", regex=r"^\s*$"),
              lambda r: "empty question"),
        Check("answer among options", lambda: gxe.ExpectColumnValuesToBeInSet(column="answer_in_options",
                                                                              value_set=[True]),
              lambda r: f"answer {r.answer!r} is not among the option letters {', '.join(r.letters)}"),
        Check("non-empty answer", lambda: gxe.ExpectColumnValuesToNotMatchRegex(column="answer", regex=r"^\s*$"),
              lambda r: "empty answer"),
        Check("numeric answer", lambda: gxe.ExpectColumnValuesToBeInSet(column="answer_is_number", value_set=[True]),
              lambda r: f"answer {r.answer!r} of a {r.task} row does not parse as a number"),
        Check("span inside duration", lambda: gxe.ExpectColumnValuesToBeInSet(column="span_ok", value_set=[True]),
              lambda r: f"span {r.span} is not inside the video's 0–{r.duration if r.video_ok else '?'} s"),
        Check("video inside data.dir", lambda: gxe.ExpectColumnValuesToBeInSet(column="video_inside",
                                                                               value_set=[True]),
              lambda r: r.video_where),
        Check("video exists and decodes", lambda: gxe.ExpectColumnValuesToBeInSet(column="video_ok", value_set=[True]),
              lambda r: f"video {r.video!r}: {r.video_error}"),
        Check("fps sane", lambda: gxe.ExpectColumnValuesToBeBetween(column="fps", min_value=params.min_fps,
                                                                   max_value=params.max_fps),
              lambda r: f"fps {r.fps:g} outside [{params.min_fps:g}, {params.max_fps:g}]"),
        Check("duration sane", lambda: gxe.ExpectColumnValuesToBeBetween(
            column="duration", min_value=0, max_value=params.max_duration_s, strict_min=True),
              lambda r: f"duration {r.duration:g} s outside (0, {params.max_duration_s:g}]"),
        *[Check(f"{side} sane", lambda side=side: gxe.ExpectColumnValuesToBeBetween(
            column=side, min_value=params.min_side, max_value=params.max_side),
                lambda r, side=side: f"{side} {int(r[side])} px outside [{params.min_side}, {params.max_side}]")
          for side in ("width", "height")],
        Check("enough frames", lambda: gxe.ExpectColumnValuesToBeBetween(column="n_frames", min_value=min_frames),
              lambda r: f"only {int(r.n_frames)} frame(s) decode, fewer than the {min_frames} to sample"),
    ]


def run_suite(frame: pd.DataFrame, checks: list[Check]) -> tuple[dict[int, list[str]], list[dict]]:
    """Validate ``frame`` with an ephemeral GE context; return reasons per frame index and per-check statistics."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("manifest").add_dataframe_asset(name="rows")
    batch_def = batch.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="manifest", expectations=[c.build() for c in checks]))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="manifest", data=batch_def, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")
    reasons: dict[int, list[str]] = {}
    stats = []
    # GE reports results in its own order (an errored expectation first): match them to the checks by id
    outcomes = {outcome.expectation_config.id: outcome for outcome in result.results}
    for check, expectation in zip(checks, suite.expectations, strict=True):
        outcome = outcomes[expectation.id]
        info = outcome.exception_info or {}
        errors = [e.get("exception_message") for e in ([info] if "raised_exception" in info else info.values())
                  if isinstance(e, dict) and e.get("raised_exception")]
        if errors:
            raise SuiteError(f"check {check.name!r} ({outcome.expectation_config.type}) could not run: {errors[0]}")
        bad = outcome.result.get("unexpected_index_list") or []
        stats.append({"check": check.name, "expectation": outcome.expectation_config.type,
                      "success": bool(outcome.success), "unexpected": len(bad)})
        for index in bad:
            reasons.setdefault(int(index), []).append(check.reason(frame.loc[index]))
    return reasons, stats


def _real_world(frame: pd.DataFrame | None) -> dict[str, list[int]]:
    """Rows whose video is rotated, has a variable frame rate or an edit list (handled, and reported)."""
    if frame is None:
        return {"rotated": [], "vfr": [], "edit_list": []}
    probed = frame[frame["video_ok"].eq(True)]
    return {"rotated": [int(r) for r in probed.loc[probed["rotation"].fillna(0).astype(int) != 0, "row"]],
            "vfr": [int(r) for r in probed.loc[probed["vfr"].eq(True), "row"]],
            "edit_list": [int(r) for r in probed.loc[probed["edit_list"].eq(True), "row"]]}


def _report(summary: dict, stats: list[dict], rejects: list[dict]) -> str:
    lines = [
        "# Manifest validation", "",
        f"- manifest: `{summary['manifest']}`",
        f"- rows: {summary['rows']}, accepted: {summary['accepted']}, rejected: {summary['rejected']} "
        f"({summary['reject_fraction']:.1%}; allowed {summary['max_reject_fraction']:.1%})",
        "- videos handled as real-world files (rows): "
        + "; ".join(f"{name.replace('_', ' ')} {len(rows)}" + (f" ({', '.join(map(str, rows[:20]))}"
                                                              f"{', …' if len(rows) > 20 else ''})" if rows else "")
                    for name, rows in summary["real_world"].items()), "",
        "| check | expectation | result | failing rows |", "|---|---|---|---|",
        "| schema (pydantic) | manifest.Sample | " + ("ok" if not summary["schema_rejects"] else "FAIL")
        + f" | {summary['schema_rejects']} |",
        *[f"| {s['check']} | `{s['expectation']}` | {'ok' if s['success'] else 'FAIL'} | {s['unexpected']} |"
          for s in stats],
    ]
    if rejects:
        lines += ["", "## Rejected rows", "", "| row | id | reasons |", "|---|---|---|"]
        lines += [f"| {r['row']} | {r['id']} | {'; '.join(r['reasons'])} |" for r in rejects]
    return "\n".join(lines) + "\n"


def validate_manifest(manifest: Path, params: ValidateParams, min_frames: int, n_workers: int = 2,
                      progress: bool = True, data_dir: Path | None = None, allow_outside: bool = False) -> dict:
    """Validate ``manifest``; write accepted rows, rejects and a report to ``params.out_dir``; return the summary.

    The four outputs are written to a temp folder inside ``out_dir`` and replace the previous ones only when the run
    passes; a failing run leaves them in ``out_dir/failed/`` instead."""
    manifest = Path(manifest)
    out_dir = Path(params.out_dir)
    rows, rejects = read_manifest(manifest)
    n_schema = len(rejects)
    stats: list[dict] = []
    accepted: list[Sample] = []
    frame = None
    if rows:
        frame = probe_frame(rows, manifest.parent, n_workers, progress, data_dir, allow_outside)
        reasons, stats = run_suite(frame, build_checks(params, min_frames))
        for index, (row, sample) in enumerate(rows):
            if index in reasons:
                rejects.append({"row": row, "id": sample.id, "source": sample_row(sample), "reasons": reasons[index]})
            else:
                accepted.append(sample)
    rejects.sort(key=lambda r: r["row"])
    for sample in accepted:
        sample.video = os.path.relpath(manifest.parent / sample.video, out_dir)
    total = len(accepted) + len(rejects)
    summary = {
        "manifest": str(manifest), "rows": total, "accepted": len(accepted), "rejected": len(rejects),
        "schema_rejects": n_schema,
        "reject_fraction": len(rejects) / total if total else 1.0,
        "max_reject_fraction": params.max_reject_fraction,
        "real_world": _real_world(frame),
    }
    failure = None
    if total == 0:
        failure = f"{manifest}: the manifest has no rows"
    elif summary["reject_fraction"] > params.max_reject_fraction:
        failure = (f"{manifest}: rejected {len(rejects)} of {total} rows ({summary['reject_fraction']:.1%}), above "
                   f"validate.max_reject_fraction = {params.max_reject_fraction:.1%}; see "
                   f"{out_dir / FAILED / 'report.md'} (the previous outputs are unchanged)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".validate-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".validate-", dir=out_dir))
    os.chmod(tmp, 0o755)
    try:
        write_jsonl(tmp / "manifest.jsonl", (sample_row(s) for s in accepted))
        write_jsonl(tmp / "rejects.jsonl", rejects)
        write_json(tmp / "summary.json", {**summary, "checks": stats})
        write_text(tmp / "report.md", _report(summary, stats, rejects))
        shutil.rmtree(out_dir / FAILED, ignore_errors=True)
        if failure:
            tmp.rename(out_dir / FAILED)
            raise TooManyRejects(failure)
        for name in OUTPUTS:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
