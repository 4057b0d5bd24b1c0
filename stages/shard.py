"""Stage ``shard``: decode uniformly sampled frames at the base resolution and write WebDataset tars per split.

Reads ``shard``, ``data.dir`` / ``data.allow_outside`` (where videos may lie) and the validated manifest; writes
``shard.out_dir``: <split>-NNNNNN.tar, index.json (sha256 and counts per shard), rejects.jsonl (videos that failed
to decode, with the reason). Fails, keeping the previous shards, above ``shard.max_reject_fraction`` rejects.
With ``shard.partitions`` > 1 the manifest is written in that many partitions, Prefect tasks on a Dask cluster
(``shard.cluster_address``, or a local one): the same bytes as one process.
"""

from pathlib import Path

from resadapt.data.partition import shard_manifest
from resadapt.stage import run_stage


def main(params, args) -> None:
    index = shard_manifest(Path(params.validate_.out_dir) / "manifest.jsonl", params.shard,
                           progress=not args.no_progress, data_dir=params.data.dir,
                           allow_outside=params.data.allow_outside)
    counts = ", ".join(f"{k}: {v['samples']} in {len(v['shards'])} tar(s)" for k, v in index["splits"].items())
    print(f"shard: {counts}; rejected {index['rejected']}")


if __name__ == "__main__":
    run_stage("shard", __doc__, main)
