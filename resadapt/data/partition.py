"""Sharding in partitions: the planned tars cut into balanced groups that write independently, and the merge that
indexes them as one run.

Which row lands in which tar is fixed by the manifest (resadapt.data.shards.plan_shards), so every partition writes
whole tars under their final numbers into the run's temp folder, and the merge (``publish``) indexes them in plan
order once every partition has finished: the tars, ``index.json`` and ``rejects.jsonl`` are byte-identical to a
one-process run, and no index is written while any partition is missing. How the groups run is the caller's
(resadapt.data.shard_flow: Prefect tasks on a Dask cluster); a partition rerun after a failure rewrites the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from resadapt.config import ShardParams
from resadapt.data.manifest import read_manifest
from resadapt.data.shards import PlannedShard, shard_planned, write_planned, write_shards

# Runs every group and returns each group's rejects: groups, the temp folder they write into.
Runner = Callable[[list[list[PlannedShard]], Path], list[list[dict]]]


def partition(plan: list[PlannedShard], n: int) -> list[list[PlannedShard]]:
    """At most ``n`` groups of consecutive planned tars with about the same number of rows each (none empty)."""
    total = sum(len(s.rows) for s in plan)
    groups: list[list[PlannedShard]] = [[] for _ in range(max(1, min(n, len(plan))))]
    done = 0
    for shard in plan:
        groups[min(len(groups) - 1, done * len(groups) // total)].append(shard)
        done += len(shard.rows)
    return [g for g in groups if g]


def write_partition(manifest: str | Path, plan: list[PlannedShard], params: ShardParams, tmp: str | Path,
                    data_dir: str | Path | None = None, allow_outside: bool = False) -> list[dict]:
    """One partition's tars into ``tmp``; returns its rejects. It reads the manifest itself, so a worker on another
    machine needs only the same paths (a shared file system), not the rows shipped to it."""
    manifest = Path(manifest)
    rows, _ = read_manifest(manifest)
    return write_planned(manifest, dict(rows), plan, params, Path(tmp), data_dir, allow_outside)


def write_partitioned(manifest: str | Path, params: ShardParams, run: Runner) -> dict:
    """Plan, let ``run`` write ``params.partitions`` groups, then merge into ``params.out_dir``; returns the index.

    Fails (previous shards kept, temp folder removed) if any group fails or too many rows are rejected."""
    return shard_planned(Path(manifest), params, lambda rows, plan, tmp: [
        reject for group in run(partition(plan, params.partitions), tmp) for reject in group])


def shard_manifest(manifest: str | Path, params: ShardParams, progress: bool = True,
                   data_dir: str | Path | None = None, allow_outside: bool = False) -> dict:
    """The shard stage's work: in this process for ``partitions: 1``, else partitions on a Dask cluster."""
    if params.partitions == 1:
        return write_shards(manifest, params, progress, data_dir, allow_outside)
    from resadapt.data.shard_flow import shard_on_dask

    return shard_on_dask(manifest, params, data_dir, allow_outside)
