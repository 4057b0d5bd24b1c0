"""The sweep's outputs: DVC metrics, Pareto rows for the plot template, the required checks and a markdown table."""

from __future__ import annotations

from collections.abc import Sequence

from resadapt.evaluate.figures import label


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
    x2 = point(rows, "resadapt_x2", target)
    if ours and x2:
        out["x2_minus_x1"] = x2["accuracy"] - ours["accuracy"]
        out["x2_retention"] = x2["retention"]
        out["x2_not_worse"] = out["x2_minus_x1"] >= 0
    return out


def metrics_json(rows: Sequence[dict], check: dict) -> dict:
    """{method: {budget key: metrics}} plus the checks: what ``dvc metrics diff`` compares between commits."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["method"], {})[budget_key(r["budget"])] = {
            k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k not in ("method", "budget")}
    return out | {"checks": check}


def pareto_rows(rows: Sequence[dict]) -> list[dict]:
    """Flat rows for the ``pareto`` DVC plot template (x: retention, y: accuracy, colour: method)."""
    return [{"method": label(r["method"]), "budget": r["budget"] if r["budget"] is not None else "policy",
             "retention": round(r["retention"], 5), "accuracy": r["accuracy"], "miou": r["miou"]} for r in rows]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(rows: Sequence[dict], check: dict, budgets: Sequence[float], notes: Sequence[str] = ()) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "| method | " + " | ".join(f"r = {b:g}" for b in budgets) + " |"
    lines = ["# Budget sweep", "", "MCQ accuracy % (measured retention %) per retention budget r. Full and the",
             "unconstrained policy have one operating point each.", "", head,
             "|" + "---|" * (len(budgets) + 1)]
    for m in methods:
        cells = []
        for b in budgets:
            p = point(rows, m, b) or (point(rows, m, 1.0) if m == "full" and b == 1.0 else None)
            if m in ("full", "resadapt_policy"):
                p = point(rows, m, 1.0 if m == "full" else None) if b == budgets[-1] else None
            over = "†" if p and p["budget"] is not None and p["retention"] > p["budget"] + 1e-9 else ""
            cells.append(f"{_pct(p['accuracy'])} ({_pct(p['retention'])}{over})" if p else "")
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
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
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
