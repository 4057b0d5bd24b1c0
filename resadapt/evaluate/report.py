"""The sweep's outputs: DVC metrics, Pareto rows for the plot template, the required checks and a markdown table."""

from __future__ import annotations

from collections.abc import Sequence

from resadapt.evaluate.figures import label
from resadapt.evaluate.paired import compare

# (ours, baseline): the paired comparisons reported where both methods ran; the x2/x4 rows against the 1x clip
# and against top-k on as many frames
PAIRS = (("resadapt", "relevance_topk"), ("resadapt", "relevance_topk_drop"), ("resadapt", "fixed_scale"),
         ("resadapt", "resadapt_nosim"), ("resadapt", "oracle"),
         ("resadapt_split", "relevance_topk"), ("resadapt_split", "relevance_topk_drop"),
         ("resadapt_split", "resadapt"),
         ("resadapt_x2", "resadapt"), ("resadapt_x4", "resadapt"),
         *((f"resadapt_x{k}", f"{m}_x{k}") for k in (2, 4) for m in ("relevance_topk", "relevance_topk_drop")))


def budget_key(r: float | None) -> str:
    """A metrics key for a budget without dots (DVC flattens nested keys with dots): 0.15 → r015."""
    return "policy" if r is None else f"r{round(r * 100):03d}"


def point(rows: Sequence[dict], method: str, budget: float | None) -> dict | None:
    return next((r for r in rows if r["method"] == method and r["budget"] == budget), None)


def checks(rows: Sequence[dict], target: float, min_margin: float, full_tolerance: float = 0.05) -> dict:
    """The issue's requirements at the target budget, each with the numbers it compares."""
    full, ours, fixed = point(rows, "full", 1.0), point(rows, "resadapt", target), point(rows, "fixed_scale", target)
    out: dict = {"target_budget": target}
    if ours and fixed:
        out["resadapt_minus_fixed"] = ours["accuracy"] - fixed["accuracy"]
        out["beats_fixed"] = out["resadapt_minus_fixed"] >= min_margin
        out["resadapt_retention"] = ours["retention"]
        out["within_budget"] = ours["retention"] <= target + 1e-9
    if ours and full:
        out["resadapt_minus_full"] = ours["accuracy"] - full["accuracy"]
        out["near_full"] = out["resadapt_minus_full"] >= -full_tolerance
    for k in (2, 4):
        more = point(rows, f"resadapt_x{k}", target)
        if ours and more:
            out[f"x{k}_minus_x1"] = more["accuracy"] - ours["accuracy"]
            out[f"x{k}_retention"] = more["retention"]
            out[f"x{k}_not_worse"] = out[f"x{k}_minus_x1"] >= 0
    return out


def paired(rows: Sequence[dict], target: float, seed: int = 0, pairs: Sequence[tuple[str, str]] = PAIRS) -> dict:
    """{"<ours>_vs_<baseline>": {budget key: Δ, CI, McNemar p, significant, n, both retentions}, "summary": ...}
    on MCQ correctness at every budget both methods ran (resadapt.evaluate.paired). The summary: whether ``ours``
    is nowhere significantly below the baseline, and its largest Δ at a budget ≤ ``target``."""
    out: dict = {}
    for ours, other in pairs:
        points = {}
        for a in (r for r in rows if r["method"] == ours and r["budget"] is not None):
            b = point(rows, other, a["budget"])
            if b is None or not a["scores"]["mcq"]:
                continue
            points[a["budget"]] = compare(a["scores"]["mcq"], b["scores"]["mcq"], seed) | {
                "budget": a["budget"], "retention": a["retention"], "retention_baseline": b["retention"]}
        if not points:
            continue
        low = {r: p for r, p in points.items() if r <= target + 1e-9}
        best = max(low, key=lambda r: low[r]["diff"]) if low else None
        out[f"{ours}_vs_{other}"] = {budget_key(r): p for r, p in sorted(points.items())} | {"summary": {
            "never_significantly_below": not any(p["significant"] and p["diff"] < 0 for p in points.values()),
            "max_diff_at_or_below_target": low[best]["diff"] if low else None,
            "max_diff_budget": best, "max_diff_significant": low[best]["significant"] if low else None}}
    return out


def metrics_json(rows: Sequence[dict], check: dict, comparisons: dict | None = None) -> dict:
    """{method: {budget key: metrics}} plus the checks and the paired comparisons: what ``dvc metrics diff``
    compares between commits (per-sample scores go to ``per_sample``)."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["method"], {})[budget_key(r["budget"])] = _rounded(
            {k: v for k, v in r.items() if k not in ("method", "budget", "scores")})
    return out | {"checks": check, "paired": _rounded(comparisons or {})}


def by_kind(rows: Sequence[dict], kinds: dict[str, str | None]) -> dict:
    """{method: {budget key: {question kind: {"accuracy", "n"}}}} on MCQ questions; ``kinds``: video key → the
    generator's ``question_kind`` (None without labels: {} when no video has one)."""
    out: dict = {}
    for r in rows:
        groups: dict[str, list[float]] = {}
        for key, correct in r["scores"]["mcq"].items():
            if kinds.get(key) is not None:
                groups.setdefault(kinds[key], []).append(correct)
        if groups:
            out.setdefault(r["method"], {})[budget_key(r["budget"])] = {
                k: {"accuracy": round(sum(v) / len(v), 5), "n": len(v)} for k, v in sorted(groups.items())}
    return out


def kind_markdown(kinds: dict, target: float) -> list[str]:
    """MCQ accuracy % per question kind at the target budget (Full and the policy at their one point)."""
    names = sorted({k for m in kinds.values() for b in m.values() for k in b})
    if not names:
        return []
    lines = ["", f"## MCQ accuracy per question kind at r = {target:g}", "",
             "| method | " + " | ".join(f"{k} (n)" for k in names) + " |", "|" + "---|" * (len(names) + 1)]
    for method, budgets in kinds.items():
        cell = budgets.get(budget_key(target)) or budgets.get("r100" if method == "full" else "policy")
        if cell:
            lines.append(f"| {label(method)} | " + " | ".join(
                f"{_pct(cell[k]['accuracy'])} ({cell[k]['n']})" if k in cell else "" for k in names) + " |")
    return lines


def per_sample(rows: Sequence[dict]) -> dict:
    """{method: {budget key: {"mcq": {key: 1/0}, "grounding": {key: IoU}}}}: every row's per-sample scores."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["method"], {})[budget_key(r["budget"])] = _rounded(r["scores"])
    return out


def _rounded(x):
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return round(x, 5) if isinstance(x, float) else x


def pareto_rows(rows: Sequence[dict]) -> list[dict]:
    """Flat rows for the ``pareto`` DVC plot template (x: retention, y: accuracy, colour: method)."""
    return [{"method": label(r["method"]), "budget": r["budget"] if r["budget"] is not None else "policy",
             "retention": round(r["retention"], 5), "accuracy": r["accuracy"], "miou": r["miou"]} for r in rows]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def paired_markdown(comparisons: dict) -> list[str]:
    lines = ["", "## Paired comparisons (MCQ accuracy)", "",
             "Δ = accuracy difference in points on the same questions at the same budget r (measured retentions",
             "in brackets: ours / baseline); 95% paired bootstrap CI; significant when the CI excludes 0; McNemar's",
             "exact p alongside.", "",
             "| comparison | r | Δ (points) | 95% CI | McNemar p | significant | retention % |",
             "|---|---|---|---|---|---|---|"]
    for name, points in comparisons.items():
        ours, other = name.split("_vs_")
        for key, p in points.items():
            if key == "summary":
                continue
            lines.append(f"| {label(ours)} vs {label(other)} | {p['budget']:g} | "
                         f"{100 * p['diff']:+.1f} | [{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}] | "
                         f"{p['p_mcnemar']:.3g} | {'yes' if p['significant'] else 'no'} | "
                         f"{_pct(p['retention'])} / {_pct(p['retention_baseline'])} |")
    lines.append("")
    for name, points in comparisons.items():
        ours, other = (label(m) for m in name.split("_vs_"))
        s = points["summary"]
        best = ("" if s["max_diff_budget"] is None else f"; largest Δ at a budget ≤ the target: "
                f"{100 * s['max_diff_at_or_below_target']:+.1f} points at r = {s['max_diff_budget']:g}"
                f" ({'significant' if s['max_diff_significant'] else 'not significant'})")
        lines.append(f"- {ours} vs {other}: {'nowhere' if s['never_significantly_below'] else 'somewhere'} "
                     f"significantly below{best}.")
    return lines


def accuracy_table(rows: Sequence[dict], budgets: Sequence[float]) -> list[str]:
    """MCQ accuracy % (measured retention %) per method and budget, as markdown lines."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | " + " | ".join(f"r = {b:g}" for b in budgets) + " |", "|" + "---|" * (len(budgets) + 1)]
    for m in methods:
        cells = []
        for b in budgets:
            p = point(rows, m, b) or (point(rows, m, 1.0) if m == "full" and b == 1.0 else None)
            if m in ("full", "resadapt_policy"):
                p = point(rows, m, 1.0 if m == "full" else None) if b == budgets[-1] else None
            over = "†" if p and p["budget"] is not None and p["retention"] > p["budget"] + 1e-9 else ""
            cells.append(f"{_pct(p['accuracy'])} ({_pct(p['retention'])}{over})" if p else "")
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    return lines


def split_section(split: str, rows: Sequence[dict], budgets: Sequence[float], comparisons: dict | None = None
                  ) -> str:
    """Another split's accuracy table (a test split, or a long-video split), appended to the report."""
    n = max((r["n_mcq"] for r in rows), default=0)
    lines = ["", f"## Split `{split}`", "", f"MCQ accuracy % (measured retention %), {n} mcq videos.", "",
             *accuracy_table(rows, budgets)]
    if comparisons:
        lines += [line.replace("## Paired", f"### `{split}`: paired") for line in paired_markdown(comparisons)]
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[dict], check: dict, budgets: Sequence[float], notes: Sequence[str] = (),
             comparisons: dict | None = None, kinds: dict | None = None) -> str:
    lines = ["# Budget sweep", "", "MCQ accuracy % (measured retention %) per retention budget r. Full and the",
             "unconstrained policy have one operating point each.", "", *accuracy_table(rows, budgets)]
    lines += ["", "† realised retention above r: grid rounding, whole frames, or the one-token floor.", "",
              "Grounding: mIoU and R@0.3/0.5/0.7 (%), measured retention and visual tokens per sample",
              "(prefill time against tokens: benchmarks/backbone_prefill.py).", "",
              "| method | r | mIoU | R@0.3 | R@0.5 | R@0.7 | retention | tokens |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = "policy" if r["budget"] is None else f"{r['budget']:g}"
        lines.append(f"| {label(r['method'])} | {b} | {_pct(r['miou'])} | {_pct(r['r@0.3'])} | {_pct(r['r@0.5'])} | "
                     f"{_pct(r['r@0.7'])} | {_pct(r['retention'])} | {r['tokens']:.1f} |")
    lines += ["", "## Checks", "", "| check | value |", "|---|---|"]
    lines += [f"| {k} | {round(v, 4) if isinstance(v, float) else v} |" for k, v in check.items()]
    if kinds:
        lines += kind_markdown(kinds, check["target_budget"])
    if comparisons:
        lines += paired_markdown(comparisons)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
