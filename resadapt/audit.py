"""The audit: experiments and registered models with their params, data hash, metrics and the Prefect run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from resadapt.orchestrate import AUDIT_LOG, EVAL_METRICS, git, params_of, read_at, score
from resadapt.registry import lock_hashes, versions

DATA_OUTS = ["data/shards", "data/validated/manifest.jsonl"]
RUN_ID = re.compile(r"prefect run ([0-9a-f-]{36})")


def _runs(root: Path) -> dict[str, dict]:
    """reports/retrain/runs.jsonl keyed by experiment name (the flow's own trail)."""
    path = root / AUDIT_LOG
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["experiment"]: r for r in records if r.get("experiment")}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def experiments(root: str | Path = ".") -> list[dict]:
    """Every DVC experiment (refs/exps) with what differs from its baseline, its data hash and its scores."""
    root = Path(root)
    runs = _runs(root)
    rows = []
    listing = git(root, "for-each-ref", "--sort=-creatordate",
                  "--format=%(refname) %(objectname) %(creatordate:iso-strict)", "refs/exps")
    for line in listing.splitlines():
        ref, commit, created = line.split(" ", 2)
        name = ref.rsplit("/", 1)[-1]
        baseline = git(root, "rev-parse", f"{commit}^")
        params, base_params = _flat(params_of(root, commit)), _flat(params_of(root, baseline))
        lock = yaml.safe_load(read_text_at(root, commit, "dvc.lock")) or {}
        metrics = read_at(root, commit, EVAL_METRICS)
        run = runs.get(name, {})
        rows.append({"experiment": name, "ref": ref, "commit": commit, "baseline": baseline, "created": created,
                     "params_changed": {k: [base_params.get(k), v] for k, v in params.items()
                                        if base_params.get(k) != v},
                     "data": lock_hashes(lock, DATA_OUTS), "checks": metrics.get("checks", {}),
                     "score": score(metrics, read_at(root, commit, "reports/register/decision.json")),
                     "prefect_run_id": run.get("prefect_run_id"), "outcome": run.get("outcome")})
    return rows


def read_text_at(root: Path, rev: str, path: str) -> str:
    try:
        return git(root, "show", f"{rev}:{path}")
    except RuntimeError:
        return ""


def models(root: str | Path = ".", name: str = "allocator") -> list[dict]:
    """Registered versions (newest first) with the Prefect run named in their tag message, if any."""
    rows = versions(root, name)
    for r in rows:
        found = RUN_ID.search(r.get("message") or "")
        r["prefect_run_id"] = found.group(1) if found else None
    return rows


def audit(root: str | Path = ".", name: str = "allocator") -> dict:
    return {"experiments": experiments(root), "models": models(root, name)}
