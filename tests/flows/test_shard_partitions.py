"""Partitioned sharding: Prefect tasks on a local Dask cluster write the bytes of a one-process run, a failed
partition is retried, and no index ever claims a partial shard."""

from pathlib import Path

import pytest
from prefect_dask import DaskTaskRunner

import resadapt.data.shard_flow as shard_flow
import resadapt.data.shards as shards
from resadapt.config import ShardParams
from resadapt.data.manifest import read_manifest
from resadapt.data.partition import partition
from resadapt.data.shard_flow import shard_on_dask, task_runner
from resadapt.data.shards import iter_split, plan_shards, read_index, write_shards
from tests.conftest import counting_clip, mcq_row, write_manifest


@pytest.fixture
def manifest(tmp_path):
    root = tmp_path / "in"
    rows = []
    for i in range(7):
        counting_clip(root / f"v{i}.mp4", 12 + i, size=(32, 48))
        rows.append(mcq_row(f"s{i}", f"v{i}.mp4", split="train" if i < 5 else "eval"))
    (root / "v1.mp4").write_bytes(b"not a video")  # a reject inside the first tar: later rows must not move
    return write_manifest(root / "manifest.jsonl", rows)


def params(tmp_path: Path, name: str, **over) -> ShardParams:
    return ShardParams(out_dir=str(tmp_path / name), n_frames=4, maxcount=2, max_reject_fraction=0.2, **over)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def in_process_cluster() -> DaskTaskRunner:
    """A local Dask cluster whose workers are threads of this process, so a test can make one of them fail."""
    return DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 3, "processes": False,
                                          "dashboard_address": ":0"})


@pytest.mark.slow
def test_three_partitions_on_a_local_dask_cluster_write_the_bytes_of_one_process(manifest, tmp_path):
    rows, _ = read_manifest(manifest)
    assert len(partition(plan_shards(rows, 2), 3)) == 3  # train-000000..2 and eval-000000: three groups
    one = write_shards(manifest, params(tmp_path, "one"), progress=False)
    three_params = params(tmp_path, "three", partitions=3)
    three = shard_on_dask(manifest, three_params, runner=task_runner(three_params, n_workers=2))  # worker processes
    assert three == one and files(tmp_path / "three") == files(tmp_path / "one")
    assert one["rejected"] == 1 and [s["samples"] for s in one["splits"]["train"]["shards"]] == [1, 2, 1]
    assert [key for key, _, _ in iter_split(tmp_path / "three", "train")] == ["s0", "s2", "s3", "s4"]


@pytest.mark.slow
def test_a_failed_partition_is_retried_and_no_index_claims_a_partial_shard(manifest, tmp_path, monkeypatch):
    one = write_shards(manifest, params(tmp_path, "one"), progress=False)
    monkeypatch.setattr(shard_flow, "shard_partition", shard_flow.shard_partition.with_options(retry_delay_seconds=0))
    real, failures = shards.encode_sample, []

    def lose_s3(sample, *args):  # s3 is the second sample of train-000001: its first is already in the .part file
        if sample.id == "s3" and len(failures) < budget:
            failures.append(sample.id)
            raise OSError("worker lost its scratch disk")
        return real(sample, *args)

    monkeypatch.setattr(shards, "encode_sample", lose_s3)
    budget = 1  # fails once: the retry writes the same bytes
    out = tmp_path / "three"
    index = shard_on_dask(manifest, params(tmp_path, "three", partitions=3), runner=in_process_cluster())
    assert failures == ["s3"] and index == one and files(out) == files(tmp_path / "one")

    budget, failures[:] = 10, []  # fails on every try: the run fails, the previous shards stay as they were
    with pytest.raises(OSError, match="scratch disk"):
        shard_on_dask(manifest, params(tmp_path, "three", partitions=3), runner=in_process_cluster())
    assert len(failures) == 3  # the first try and both retries
    assert files(out) == files(tmp_path / "one") and read_index(out) == one  # no temp folder, no new tar
    assert [key for key, _, _ in iter_split(out, "train")] == ["s0", "s2", "s3", "s4"]
