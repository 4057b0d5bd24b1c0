"""Scheduled retraining: champion/challenger on a real DVC project with GTO tags, and the audit it leaves."""

import json

import pytest
import yaml

from flows.retrain import retrain
from resadapt.audit import audit
from resadapt.cli import _describe_diff
from resadapt.registry import register, resolve
from tests.flows.conftest import git, reproduce_and_commit, set_params


@pytest.mark.slow
def test_only_a_better_challenger_is_registered_and_promoted_and_every_run_is_audited(project):
    first = reproduce_and_commit(project)
    assert register(project, "allocator", "models/package", stage="prod")["commit"] == first

    nothing = retrain(str(project))
    assert nothing["outcome"] == "skipped"

    set_params(project, acc=0.95)  # better params arrive
    better = retrain(str(project))
    assert better["outcome"] == "promoted", better["reason"]
    prod_commit, version = resolve(project, "allocator@prod")
    assert prod_commit == better["experiment_commit"] != first and version == "v0.0.2"
    assert better["metrics_diff"]["resadapt_minus_fixed"][1] > better["metrics_diff"]["resadapt_minus_fixed"][0]
    assert better["prefect_run_id"] in git(project, "tag", "-n1", "allocator@v0.0.2")
    assert git(project, "rev-parse", f"retrain/{better['experiment']}").strip() == prod_commit
    assert yaml.safe_load((project / "params.yaml").read_text())["acc"] == 0.95  # the workspace was left alone

    set_params(project, acc=0.92)  # passes the gate, but is worse than prod (0.95); committed, with a code change
    (project / "evaluate.py").write_text((project / "evaluate.py").read_text() + "# reviewed\n")
    git(project, "commit", "-qam", "acc 0.92, evaluate.py reviewed")
    worse = retrain(str(project))
    assert worse["outcome"] == "rejected" and "challenger 92.0% vs prod 95.0%" in worse["reason"]
    set_params(project, acc=0.5)  # fails the gate
    closed = retrain(str(project))
    assert closed["outcome"] == "rejected" and "gate is closed" in closed["reason"]
    assert "ResAdapt 50.0% vs FixedScale 30.0% at budget 0.15: margin +20.0% < required 30.0%" in closed["reason"]
    assert resolve(project, "allocator@prod")[0] == prod_commit  # prod never moved

    trail = audit(project)
    by_name = {e["experiment"]: e for e in trail["experiments"]}
    assert set(by_name) == {better["experiment"], worse["experiment"], closed["experiment"]}
    assert by_name[better["experiment"]]["vs_baseline"]["params"] == {"acc": [0.9, 0.95]}
    # the auditor's question: what differs from the prod model it was compared with (the baseline already had it)
    against_prod = by_name[worse["experiment"]]["vs_champion"]
    against_base = by_name[worse["experiment"]]["vs_baseline"]
    assert against_prod["commit"] == prod_commit and against_prod["params"] == {"acc": [0.95, 0.92]}
    assert against_prod["code"] == ["evaluate.py"] and against_prod["data"] == {}
    assert against_base["params"] == {} and against_base["code"] == []
    line = _describe_diff(against_prod, {m["commit"]: m["version"] for m in trail["models"]})
    assert line.startswith(f"@v0.0.2 {prod_commit[:10]}: params: acc 0.95 → 0.92; code: evaluate.py"), line
    assert by_name[better["experiment"]]["prefect_run_id"] == better["prefect_run_id"]
    assert by_name[closed["experiment"]]["outcome"] == "rejected"
    models = {m["version"]: m for m in trail["models"]}
    assert models["v0.0.2"]["prefect_run_id"] == better["prefect_run_id"] and models["v0.0.2"]["stages"] == ["prod"]
    assert models["v0.0.2"]["replaced"] == "v0.0.1"
    assert models["v0.0.2"]["vs_replaced"]["params"] == {"acc": [0.9, 0.95]}
    assert models["v0.0.1"]["vs_replaced"] is None
    runs = (project / "reports/retrain/runs.jsonl").read_text().splitlines()
    assert [json.loads(r)["outcome"] for r in runs] == ["skipped", "promoted", "rejected", "rejected"]
