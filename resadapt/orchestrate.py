"""What the Prefect flows do, as plain functions: the DAG from dvc.yaml, one stage run, experiments, the
champion/challenger comparison and the audit trail. Importable and testable without Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resadapt.stage import TELEMETRY_OFF

EVAL_METRICS = "reports/evaluate/metrics.json"
DECISION = "reports/register/decision.json"
AUDIT_LOG = "reports/retrain/runs.jsonl"


class StageFailed(Exception):
    """A stage that exited non-zero; ``transient`` unless the stage itself reported a user error."""

    def __init__(self, stage: str, code: int, tail: str, transient: bool):
        super().__init__(f"stage {stage!r} exited with {code}" + (" (transient: will retry)" if transient else "")
                         + f":\n{tail}")
        self.stage, self.code, self.tail, self.transient = stage, code, tail, transient

    def __reduce__(self):  # picklable (Prefect may persist a task's exception)
        return StageFailed, (self.stage, self.code, self.tail, self.transient)


def stage_order(root: str | Path = ".") -> list[str]:
    """Every stage of dvc.yaml in an order that respects its dependencies (DVC's own graph)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        return [stage.name for stage in reversed(list(nx.topological_sort(graph)))]


def _env() -> dict[str, str]:
    return os.environ | TELEMETRY_OFF | {"TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def dvc(root: str | Path, *args: str, log=print) -> str:
    """Run ``dvc ARGS`` in ``root``, streaming its output lines to ``log``; returns the output."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines = []
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line:
            log(line)
    code = proc.wait()
    if code:
        raise subprocess.CalledProcessError(code, ["dvc", *args], "\n".join(lines))
    return "\n".join(lines)


@dataclass
class StageRun:
    stage: str
    ran: bool
    seconds: float


def run_stage(root: str | Path, stage: str, force: bool = False, log=print) -> StageRun:
    """``dvc repro --single-item STAGE``: runs it when its deps, params or code changed, else skips it."""
    start = time.perf_counter()
    try:
        out = dvc(root, "repro", "--single-item", *(["--force"] if force else []), stage, log=log)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join(exc.output.splitlines()[-15:])
        user_error = f"{stage}: error:" in exc.output or "ERROR: Parameters" in exc.output
        raise StageFailed(stage, exc.returncode, tail, transient=not user_error) from None
    return StageRun(stage, ran="didn't change, skipping" not in out, seconds=time.perf_counter() - start)


def evaluation_table(root: str | Path = ".") -> list[dict]:
    """The sweep as table rows (method, budget, accuracy, retention, mIoU, tokens)."""
    path = Path(root) / EVAL_METRICS
    if not path.is_file():
        return []
    metrics = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for method, points in metrics.items():
        if method in ("checks", "paired"):
            continue
        for budget, m in points.items():
            rows.append({"method": method, "budget": budget, "accuracy": m["accuracy"], "retention": m["retention"],
                         "miou": m["miou"], "tokens": m["tokens"]})
    return rows


# ---- scheduled retraining: champion / challenger -------------------------------------------------------------

def changed_stages(root: str | Path = ".") -> dict:
    """Stages whose data, params or code differ from dvc.lock ({} when the pipeline is up to date)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.status()


def git(root: str | Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def read_at(root: str | Path, rev: str, path: str) -> dict:
    """A committed JSON file at a revision (metrics are committed: cache: false), {} when absent."""
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}


def experiment_ref(root: str | Path, name: str) -> tuple[str, str]:
    """(git ref, commit) of a DVC experiment by name."""
    for ref in git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines():
        refname, sha = ref.split()
        if refname.rsplit("/", 1)[-1] == name:
            return refname, sha
    raise RuntimeError(f"experiment {name!r} not found under refs/exps")


@dataclass
class Verdict:
    promote: bool
    reason: str
    challenger: dict = field(default_factory=dict)  # the challenger's score and checks
    champion: dict = field(default_factory=dict)


def score(metrics: dict, decision: dict) -> dict:
    """What a champion/challenger comparison reads: ResAdapt at the gate's budget, and the gate itself."""
    checks = metrics.get("checks", {})
    target = checks.get("target_budget")
    point = metrics.get("resadapt", {}).get(f"r{round(target * 100):03d}", {}) if target else {}
    return {"accuracy": point.get("accuracy"), "retention": point.get("retention"), "target_budget": target,
            "gate": bool(decision.get("registered")), "gate_reason": decision.get("reason")}


def compare(challenger: dict, champion: dict | None, min_gain: float) -> Verdict:
    """Promote only a challenger whose gate passed and that beats the champion's accuracy at the same budget by
    ``min_gain`` (no champion: the gate decides)."""
    if not challenger.get("gate"):
        return Verdict(False, f"challenger's gate is closed: {challenger.get('gate_reason')}", challenger,
                       champion or {})
    if challenger.get("accuracy") is None:
        return Verdict(False, "challenger has no ResAdapt accuracy at the gate's budget", challenger, champion or {})
    if not champion or champion.get("accuracy") is None:
        return Verdict(True, "no prod model yet; the challenger passed the gate", challenger, {})
    if champion.get("target_budget") != challenger.get("target_budget"):
        return Verdict(False, f"budgets differ (prod {champion.get('target_budget')}, challenger "
                       f"{challenger.get('target_budget')}): not comparable", challenger, champion)
    gain = challenger["accuracy"] - champion["accuracy"]
    better = gain >= min_gain and gain > 0
    return Verdict(better, f"accuracy at r={challenger['target_budget']:g}: challenger {challenger['accuracy']:.1%} "
                   f"vs prod {champion['accuracy']:.1%} (gain {gain:+.1%}, required > 0 and >= {min_gain:.1%})",
                   challenger, champion)


def metrics_diff(old: dict, new: dict, prefix: str = "") -> dict:
    """Flat {key: [old, new]} of numeric metrics that differ."""
    out = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) or isinstance(b, dict):
            out |= metrics_diff(a or {}, b or {}, name + ".")
        elif a != b and (isinstance(a, int | float) or isinstance(b, int | float)):
            out[name] = [a, b]
    return out


def append_audit(root: str | Path, record: dict) -> None:
    path = Path(root) / AUDIT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def params_of(root: str | Path, rev: str) -> dict:
    out = subprocess.run(["git", "show", f"{rev}:params.yaml"], cwd=root, capture_output=True, text=True)
    return (yaml.safe_load(out.stdout) or {}) if out.returncode == 0 else {}
