"""``resadapt benchmark``: lmms-eval tasks at a list of budgets for ResAdapt and FixedScale (Full optionally), one
loaded model moved through the operating points; written like reports/evaluate/: report.md (the table),
pareto.json and pareto.png (score against measured retention), metrics.json, and per point the responses'
allocations (responses/<method>_<budget>.jsonl).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from resadapt.evaluate.figures import label, pareto_png
from resadapt.evaluate.report import budget_key
from resadapt.io import atomic_path, write_json, write_jsonl
from resadapt.lmms import BenchmarkError


def score_of(entry: dict, metric: str | None) -> tuple[str, float]:
    """(metric, value): ``metric`` (lmms-eval's ``name,filter`` key or its name alone) or the first numeric one."""
    numeric = {k: v for k, v in entry.items() if isinstance(v, int | float) and not isinstance(v, bool)
               and "_stderr" not in k and k != "samples"}
    if metric is not None:
        key = metric if metric in numeric else f"{metric},none"
        if key not in numeric:
            raise BenchmarkError(f"metric {metric!r} not among the task's: {', '.join(numeric) or 'none'}")
        return key, float(numeric[key])
    if not numeric:
        raise BenchmarkError(f"the task reported no numeric metric (keys: {', '.join(entry)})")
    key = next(iter(numeric))
    return key, float(numeric[key])


def subtasks(results: dict, name: str) -> set[str]:
    """The tasks whose responses make up ``name`` (a task, or a group's tasks at every depth)."""
    children = results.get("group_subtasks", {}).get(name)
    if not children:
        return {name}
    return set().union(*(subtasks(results, c) for c in children))


def rows_of(results: dict, records: Sequence[dict], tasks: Sequence[str], method: str, budget: float | None,
            metric: str | None) -> list[dict]:
    """One row per task: lmms-eval's score and the retention its responses realised."""
    rows = []
    for name in tasks:
        entry = results.get("results", {}).get(name) or results.get("groups", {}).get(name)
        if entry is None:
            raise BenchmarkError(f"lmms-eval reported no result for task {name!r} "
                                 f"(got: {', '.join(results.get('results', {}))})")
        key, value = score_of(entry, metric)
        mine = [r for r in records if r["task"] in subtasks(results, name)]
        if not mine:
            raise BenchmarkError(f"task {name!r}: no responses were generated (is it a generate_until task?)")
        rows.append({"task": name, "method": method, "budget": budget, "metric": key, "score": value,
                     "retention": sum(r["retention"] for r in mine) / len(mine),
                     "tokens": sum(r["tokens"] for r in mine) / len(mine), "samples": len(mine)})
    return rows


def run(model_args: dict, tasks: Sequence[str], budgets: Sequence[float], out_dir: str | Path,
        methods: Sequence[str] = ("resadapt", "fixed_scale"), full: bool = False,
        include_path: str | None = None, limit: int | None = None, metric: str | None = None,
        builtin_tasks: bool = True) -> list[dict]:
    """Every (method, budget) point (and Full once with ``full``) on ``tasks`` through lmms-eval's evaluator;
    ``builtin_tasks=False`` looks for them in ``include_path`` only (lmms-eval then skips indexing its thousands of
    task files)."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from resadapt.lmms.model import ResAdapt

    points = [(m, b) for m in methods for b in budgets] + ([("full", None)] if full else [])
    lm = ResAdapt(**model_args, method=points[0][0], budget=points[0][1])
    manager = TaskManager("WARNING", include_path=include_path, include_defaults=builtin_tasks, model_name="resadapt")
    out, rows = Path(out_dir), []
    for method, budget in points:
        lm.configure(method, budget)
        results = simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  bootstrap_iters=0, log_samples=False, verbosity="WARNING")
        point = 1.0 if method == "full" else budget  # Full's one operating point, as the sweep reports it
        rows += rows_of(results, lm.records, tasks, method, point, metric)
        write_jsonl(out / "responses" / f"{method}_{budget_key(point)}.jsonl", lm.records)
    write_report(rows, budgets, out, lm.package.path, lm.frames or lm.package.shard.n_frames)
    return rows


def write_report(rows: Sequence[dict], budgets: Sequence[float], out: Path, package: Path, frames: int) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    metrics: dict = {}
    for r in rows:  # {task: {method: {budget key: numbers}}}, as reports/evaluate/metrics.json is per method
        numbers = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()
                   if k not in ("task", "method", "budget")}
        metrics.setdefault(r["task"], {}).setdefault(r["method"], {})[budget_key(r["budget"])] = numbers
    write_json(out / "metrics.json", metrics)
    plotted = [{"method": label(r["method"]) if len(tasks) == 1 else f"{r['task']}: {label(r['method'])}",
                "task": r["task"], "budget": r["budget"], "retention": round(r["retention"], 5), "score": r["score"]}
               for r in rows]
    write_json(out / "pareto.json", plotted)
    pareto_png(plotted, out / "pareto.png", metric="score")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(rows, budgets, package, frames), encoding="utf-8")


def markdown(rows: Sequence[dict], budgets: Sequence[float], package: Path, frames: int) -> str:
    columns = sorted(set(budgets) | ({1.0} if any(r["method"] == "full" for r in rows) else set()))
    lines = ["# lmms-eval benchmarks", "", f"Package {package}, {frames} frames per video. Score (measured "
             "retention %) per retention budget r; retention is against the same frames at scale 1.", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        lines += [f"## {task} ({mine[0]['metric']}, {mine[0]['samples']} samples)", "",
                  "| method | " + " | ".join(f"r = {b:g}" for b in columns) + " |", "|" + "---|" * (len(columns) + 1)]
        for method in dict.fromkeys(r["method"] for r in mine):
            cells = []
            for b in columns:
                p = next((r for r in mine if r["method"] == method and r["budget"] == b), None)
                over = "†" if p and p["retention"] > b + 1e-9 else ""
                cells.append(f"{p['score']:.4g} ({100 * p['retention']:.1f}{over})" if p else "")
            lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["† realised retention above r: grid rounding or the one-token floor.", ""]
    return "\n".join(lines)
