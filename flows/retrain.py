"""Prefect flow: scheduled retraining with a champion/challenger gate.

When data or params changed since dvc.lock, the pipeline runs as a DVC experiment (``dvc exp run --temp``: the
workspace is left as it was); the challenger is compared with the registry's ``prod`` model on the same evaluation
split, and only a better one is registered and promoted (GTO tags on the experiment's commit, which holds the
dvc.lock that reproduces it; a ``retrain/<experiment>`` branch points there too). Every run leaves its trail: the
experiment ref, the metrics diff, the registry tags and the Prefect run id, in a Prefect markdown artifact, in
reports/retrain/runs.jsonl and in the tag messages. ``resadapt audit`` reads it back.

Scheduled by prefect.yaml (deployment ``nightly-retrain``); run once by hand with ``python flows/retrain.py``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from resadapt.stage import prefect_defaults

# Before prefect is imported: the temporary server of a plain run (no PREFECT_API_URL) takes its settings from
# here. With analytics on, its telemetry heartbeat fails offline and can race the SQLite database ("database is
# locked" tracebacks).
prefect_defaults()

from prefect import flow, get_run_logger, runtime, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from resadapt import orchestrate as orch  # noqa: E402
from resadapt.registry import RegistryError, register_commit, resolve  # noqa: E402


@task(retries=1, retry_delay_seconds=10, task_run_name="dvc exp run {name}")
def run_experiment(root: str, name: str) -> tuple[str, str]:
    """The whole pipeline as a DVC experiment in a temporary copy; returns its (git ref, commit)."""
    logger = get_run_logger()
    orch.dvc(root, "exp", "run", "--temp", "--name", name, log=logger.info)
    return orch.experiment_ref(root, name)


@task
def champion(root: str, name: str) -> tuple[str | None, dict, dict]:
    """The prod model's commit, metrics and score (None, {}, {} when nothing is in prod yet)."""
    try:
        commit, _ = resolve(root, f"{name}@prod")
    except RegistryError:
        return None, {}, {}
    metrics = orch.read_at(root, commit, orch.EVAL_METRICS)
    return commit, metrics, orch.score(metrics, orch.read_at(root, commit, orch.DECISION))


@flow(name="resadapt-retrain", log_prints=True)
def retrain(root: str = ".", name: str = "allocator", package: str = "models/package", min_gain: float = 0.0,
            stage: str = "prod", force: bool = False) -> dict:
    """Retrain when data or params changed; register and promote the challenger only if it beats prod."""
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id or "local")
    record: dict = {"prefect_run_id": run_id, "flow_run_name": runtime.flow_run.name,
                    "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    changed = orch.changed_stages(root)
    record["changed"] = sorted(changed)
    if not changed and not force:
        record |= {"outcome": "skipped", "reason": "data, params and code match dvc.lock: nothing to retrain"}
        return _finish(root, record)
    experiment = f"retrain-{run_id[:8]}"
    ref, commit = run_experiment(root, experiment)
    metrics = orch.read_at(root, commit, orch.EVAL_METRICS)
    challenger = orch.score(metrics, orch.read_at(root, commit, orch.DECISION))
    prod_commit, prod_metrics, prod_score = champion(root, name)
    verdict = orch.compare(challenger, prod_score or None, min_gain)
    record |= {"experiment": experiment, "experiment_ref": ref, "experiment_commit": commit,
               "prod_commit": prod_commit, "challenger": challenger, "champion": prod_score,
               "metrics_diff": orch.metrics_diff(prod_metrics.get("checks", {}), metrics.get("checks", {})),
               "promoted": verdict.promote, "reason": verdict.reason}
    logger.info(f"{experiment}: {'promote' if verdict.promote else 'keep prod'}: {verdict.reason}")
    if verdict.promote:
        orch.git(root, "branch", "--force", f"retrain/{experiment}", commit)
        message = f"{experiment} (prefect run {run_id}): {verdict.reason}"
        record["registry"] = register_commit(root, name, commit, package, stage=stage, message=message)
        record["branch"] = f"retrain/{experiment}"
    record["outcome"] = "promoted" if verdict.promote else "rejected"
    return _finish(root, record)


def _finish(root: str, record: dict) -> dict:
    orch.append_audit(root, record)
    create_markdown_artifact(key="retrain-decision", description="champion/challenger decision",
                             markdown="# Retrain: " + record["outcome"] + "\n\n" + record.get("reason", "") +
                             "\n\n```json\n" + json.dumps(record, indent=2, default=str) + "\n```\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".")
    parser.add_argument("--min-gain", type=float, default=0.0, help="accuracy the challenger must add over prod")
    parser.add_argument("--force", action="store_true", help="run the experiment even if nothing changed")
    args = parser.parse_args()
    print(json.dumps(retrain(args.root, min_gain=args.min_gain, force=args.force), indent=2, default=str))


if __name__ == "__main__":
    main()
