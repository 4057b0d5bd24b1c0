"""The audit: what each experiment and each registered model changed, against what it was compared with.

An experiment is diffed against its champion (the prod model the retrain flow compared it with, recorded in
reports/retrain/runs.jsonl) and against its baseline (the workspace commit it ran from); a registered version against
the one it replaced (the champion of the retrain run that registered it, else the version registered before it).
A diff names the params that differ (old → new), the tracked files that differ (code; params.yaml, dvc.lock and the
pipeline's committed outputs aside) and the data versions (DVC hashes) that differ.
"""

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


def read_text_at(root: Path, rev: str, path: str) -> str:
    try:
        return git(root, "show", f"{rev}:{path}")
    except RuntimeError:
        return ""


def _lock(root: Path, rev: str) -> dict:
    return yaml.safe_load(read_text_at(root, rev, "dvc.lock")) or {}


def _outs(lock: dict) -> set[str]:
    return {out["path"] for stage in lock.get("stages", {}).values() for out in stage.get("outs", [])}


def _data(root: Path, rev: str, lock: dict) -> dict[str, str]:
    """The data a commit's pipeline read: the shards and manifest, and every dependency neither git nor a stage
    makes (an input folder such as ``data.dir``), by DVC hash."""
    tracked = set(git(root, "ls-tree", "-r", "--name-only", rev).splitlines())
    outs = _outs(lock)
    found = lock_hashes(lock, DATA_OUTS)
    for stage in lock.get("stages", {}).values():
        for dep in stage.get("deps", []):
            if dep["path"] not in tracked and dep["path"] not in outs:
                found[dep["path"]] = dep.get("md5", "")
    return found


def diff(root: str | Path, old: str, new: str) -> dict:
    """Params, code and data of commit ``new`` against commit ``old``: ``{"commit": old, "params": {key: [old,
    new]}, "code": [paths], "data": {path: [old hash, new hash]}}``."""
    root = Path(root)
    old_params, new_params = _flat(params_of(root, old)), _flat(params_of(root, new))
    old_lock, new_lock = _lock(root, old), _lock(root, new)
    outputs = _outs(old_lock) | _outs(new_lock)
    changed = git(root, "diff", "--name-only", old, new).splitlines()
    code = [p for p in changed if p not in ("params.yaml", "dvc.lock") and not p.endswith(".gitignore")
            and not any(p == o or p.startswith(o.rstrip("/") + "/") for o in outputs)]
    old_data, new_data = _data(root, old, old_lock), _data(root, new, new_lock)
    return {"commit": old,
            "params": {k: [old_params.get(k), new_params.get(k)] for k in sorted(set(old_params) | set(new_params))
                       if old_params.get(k) != new_params.get(k)},
            "code": code,
            "data": {k: [old_data.get(k), new_data.get(k)] for k in sorted(set(old_data) | set(new_data))
                     if old_data.get(k) != new_data.get(k)}}


def experiments(root: str | Path = ".") -> list[dict]:
    """Every DVC experiment (refs/exps), newest first, with its diffs against its champion and its baseline, its
    data hashes and its scores."""
    root = Path(root)
    runs = _runs(root)
    rows = []
    listing = git(root, "for-each-ref", "--sort=-creatordate",
                  "--format=%(refname) %(objectname) %(creatordate:iso-strict)", "refs/exps")
    for line in listing.splitlines():
        ref, commit, created = line.split(" ", 2)
        name = ref.rsplit("/", 1)[-1]
        baseline = git(root, "rev-parse", f"{commit}^")
        metrics = read_at(root, commit, EVAL_METRICS)
        run = runs.get(name, {})
        champion = run.get("prod_commit")
        rows.append({"experiment": name, "ref": ref, "commit": commit, "baseline": baseline, "created": created,
                     "vs_champion": diff(root, champion, commit) if champion else None,
                     "vs_baseline": diff(root, baseline, commit),
                     "data": lock_hashes(_lock(root, commit), DATA_OUTS), "checks": metrics.get("checks", {}),
                     "score": score(metrics, read_at(root, commit, "reports/register/decision.json")),
                     "prefect_run_id": run.get("prefect_run_id"), "outcome": run.get("outcome")})
    return rows


def models(root: str | Path = ".", name: str = "allocator") -> list[dict]:
    """Registered versions (newest first) with the Prefect run named in their tag message, if any, and their diff
    against the version they replaced."""
    root = Path(root)
    rows = versions(root, name)
    champion_of = {r["experiment_commit"]: r.get("prod_commit") for r in _runs(root).values()
                   if r.get("experiment_commit")}
    version_at = {r["commit"]: r["version"] for r in rows}
    for k, r in enumerate(rows):
        found = RUN_ID.search(r.get("message") or "")
        r["prefect_run_id"] = found.group(1) if found else None
        replaced = champion_of.get(r["commit"]) or (rows[k + 1]["commit"] if k + 1 < len(rows) else None)
        r["replaced"] = version_at.get(replaced) if replaced else None
        r["vs_replaced"] = diff(root, replaced, r["commit"]) if replaced else None
    return rows


def audit(root: str | Path = ".", name: str = "allocator") -> dict:
    return {"experiments": experiments(root), "models": models(root, name)}
