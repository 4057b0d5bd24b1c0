"""The pipeline flow on a real DVC project: stages and order from dvc.yaml, retries, artifacts."""

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import pipeline as flow_module
from resadapt.orchestrate import StageFailed, stage_order
from tests.flows.conftest import set_params


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(flow_module, "dvc_stage", flow_module.dvc_stage.with_options(retry_delay_seconds=0))


def test_stages_come_from_dvc_yaml_in_dependency_order(project):
    assert stage_order(project) == ["prepare", "evaluate", "register"]


@pytest.mark.slow
def test_the_flow_runs_every_stage_retries_a_transient_failure_and_publishes_the_table(project, tmp_path):
    set_params(project, mode="transient")
    runs = flow_module.pipeline(str(project))
    assert [r["stage"] for r in runs] == ["prepare", "evaluate", "register"] and all(r["ran"] for r in runs)
    assert (tmp_path / "counter").read_text() == "xx"  # killed once, retried once
    assert (project / "models/package/model.safetensors").is_file()
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["evaluation-table", "evaluation-report", "register-decision"])))}
    assert keys == {"evaluation-table", "evaluation-report", "register-decision"}
    again = flow_module.pipeline(str(project))
    assert not any(r["ran"] for r in again)  # DVC skips what did not change


def test_a_user_error_fails_at_once_without_retries(project, tmp_path):
    set_params(project, mode="user_error")
    with pytest.raises(StageFailed, match="prepare: error: params.yaml: prepare.mode"):
        flow_module.pipeline(str(project))
    assert (tmp_path / "counter").read_text() == "x"


def test_unknown_stage_names_are_refused(project):
    with pytest.raises(ValueError, match="unknown stage"):
        flow_module.pipeline(str(project), stages=["trian"])
