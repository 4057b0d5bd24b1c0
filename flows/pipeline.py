"""Prefect flow: the DVC pipeline stage by stage, each stage a task (stages and their order come from dvc.yaml).

    python flows/pipeline.py                      # every stage; unchanged ones are skipped by DVC
    python flows/pipeline.py --stages evaluate register --force

Without PREFECT_API_URL the flow runs on a temporary local API (no server needed); with it set (e.g.
``prefect server start`` and ``PREFECT_API_URL=http://127.0.0.1:4200/api``) runs, logs and artifacts show in the UI.
A stage that fails for a transient reason (killed, I/O) is retried; one that reports a user error (a bad param, bad
input: "<stage>: error: ...") fails at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from resadapt.stage import prefect_defaults

# Before prefect is imported: the temporary server of a plain run (no PREFECT_API_URL) takes its settings from
# here. With analytics on, its telemetry heartbeat fails offline and can race the SQLite database ("database is
# locked" tracebacks).
prefect_defaults()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402

from resadapt.orchestrate import StageFailed, StageRun, evaluation_table, run_stage, stage_order  # noqa: E402


def _transient(task, task_run, state) -> bool:
    """Retry only failures that are not the stage's own verdict on its input."""
    try:
        state.result()
    except StageFailed as exc:
        return exc.transient
    except Exception:  # noqa: BLE001 (anything else: the machine, not the input)
        return True
    return False


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_transient, task_run_name="dvc repro {stage}")
def dvc_stage(root: str, stage: str, force: bool = False) -> StageRun:
    logger = get_run_logger()
    result = run_stage(root, stage, force=force, log=logger.info)
    logger.info(f"{stage}: {'ran' if result.ran else 'up to date, skipped'} in {result.seconds:.1f} s")
    return result


@task
def publish(root: str) -> int:
    """The evaluation table (table artifact) and the sweep report (markdown artifact)."""
    rows = evaluation_table(root)
    if rows:
        create_table_artifact(table=rows, key="evaluation-table", description="Budget sweep (reports/evaluate)")
    report = Path(root) / "reports/evaluate/report.md"
    if report.is_file():
        create_markdown_artifact(markdown=report.read_text(encoding="utf-8"), key="evaluation-report",
                                 description="reports/evaluate/report.md")
    decision = Path(root) / "reports/register/decision.json"
    if decision.is_file():
        create_markdown_artifact(markdown=f"```json\n{decision.read_text(encoding='utf-8')}\n```",
                                 key="register-decision", description="The register stage's gate")
    return len(rows)


@flow(name="resadapt-pipeline", log_prints=True)
def pipeline(root: str = ".", stages: list[str] | None = None, force: bool = False) -> list[dict]:
    """Run the stages of dvc.yaml in dependency order (all of them, or the named ones in that order)."""
    order = stage_order(root)
    unknown = sorted(set(stages or []) - set(order))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    runs = []
    for stage in order:
        if stages and stage not in stages:
            continue
        runs.append(dvc_stage(root, stage, force=force))
    publish(root)
    return [vars(r) for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the repository (default: here)")
    parser.add_argument("--stages", nargs="*", help="only these stages (default: all, from dvc.yaml)")
    parser.add_argument("--force", action="store_true", help="rerun even unchanged stages")
    args = parser.parse_args()
    for run in pipeline(args.root, args.stages, args.force):
        print(f"{run['stage']:>10}: {'ran' if run['ran'] else 'skipped'} ({run['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
