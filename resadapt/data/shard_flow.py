"""The shard partitions as a Prefect flow on a Dask cluster (prefect-dask): one task per partition, retried when it
fails (a worker lost, a full disk), the merge after every task has finished.

``shard.cluster_address`` names a running scheduler (its workers must import resadapt and see the manifest, the
videos and ``shard.out_dir`` under the same paths); empty, a local cluster of ``shard.partitions`` processes is
started for the run. Without PREFECT_API_URL the flow runs on Prefect's temporary local server.
"""

from __future__ import annotations

import os
from pathlib import Path

from resadapt.stage import prefect_defaults

# Before prefect is imported (this module is imported only when partitions run). Dask's scheduler and workers log
# every connection at INFO: the stage's log keeps their warnings (the worker processes of a local cluster inherit
# this; DASK_LOGGING__DISTRIBUTED=info shows it all).
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
prefect_defaults()

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.server.api.server import SubprocessASGIServer  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402
from prefect.task_runners import TaskRunner  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from resadapt.config import ShardParams  # noqa: E402
from resadapt.data.partition import write_partition, write_partitioned  # noqa: E402
from resadapt.data.shards import PlannedShard  # noqa: E402


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE, task_run_name="shard partition {number}")
def shard_partition(number: int, manifest: str, plan: list[PlannedShard], params: ShardParams, tmp: str,
                    data_dir: str | None, allow_outside: bool) -> list[dict]:
    return write_partition(manifest, plan, params, tmp, data_dir, allow_outside)


@flow(name="resadapt-shard", log_prints=True)
def shard_partitions(manifest: str, params: ShardParams, data_dir: str | None = None,
                     allow_outside: bool = False) -> dict:
    """Shard ``manifest`` in ``params.partitions`` partitions; returns the merged index."""

    def run(groups: list[list[PlannedShard]], tmp: Path) -> list[list[dict]]:
        futures = [shard_partition.submit(k, manifest, g, params, str(tmp), data_dir, allow_outside)
                   for k, g in enumerate(groups)]
        wait(futures)  # every partition settles before the first failure removes the temp folder
        return [f.result() for f in futures]

    return write_partitioned(manifest, params, run)


def api_url() -> str:
    """The Prefect API this process reports to: PREFECT_API_URL, else Prefect's temporary server, started here (as
    the first flow would) so that the cluster's worker processes are told its address instead of each starting
    their own."""
    url = PREFECT_API_URL.value()
    if not url:
        server = SubprocessASGIServer()
        server.start()  # stopped when this process exits, as Prefect does for its own
        url = server.api_url
    return url


def task_runner(params: ShardParams, n_workers: int | None = None, api: str | None = None) -> DaskTaskRunner:
    """The cluster at ``params.cluster_address``, else a local one of ``n_workers`` (default: one per partition)
    single-threaded worker processes (a partition decodes on its own ``n_workers`` threads) that report to ``api``."""
    if params.cluster_address:
        return DaskTaskRunner(address=params.cluster_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers or params.partitions, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": ":0",
                                          "env": {"PREFECT_API_URL": api or api_url()}})


def shard_on_dask(manifest: str | Path, params: ShardParams, data_dir: str | Path | None = None,
                  allow_outside: bool = False, runner: TaskRunner | None = None) -> dict:
    """Run the flow on ``runner`` (default: ``task_runner(params)``)."""
    url = api_url()
    with temporary_settings({PREFECT_API_URL: url}):
        flow_run = shard_partitions.with_options(task_runner=runner or task_runner(params, api=url))
        return flow_run(str(manifest), params, None if data_dir is None else str(data_dir), allow_outside)
