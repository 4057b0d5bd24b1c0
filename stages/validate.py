"""Stage ``validate``: check the manifest and every video with a great-expectations suite.

Reads ``data`` (which manifest; videos must lie inside ``data.dir`` unless ``data.allow_outside``), ``validate`` and
``shard.n_frames`` (a video needs that many frames). Writes ``validate.out_dir``: manifest.jsonl (accepted rows),
rejects.jsonl (row + reasons), report.md, summary.json. Fails only when the rejected share exceeds
``validate.max_reject_fraction``; the previous outputs then stay and the failed run's go to ``failed/``.
"""

from pathlib import Path

from resadapt.data.validate import TooManyRejects, validate_manifest
from resadapt.stage import StageError, run_stage


def main(params, args) -> None:
    manifest = params.data.manifest_path
    if not manifest.is_file():
        raise StageError(f"manifest {manifest} not found (params.yaml: data.dir / data.manifest)")
    try:
        summary = validate_manifest(manifest, params.validate_, params.shard.n_frames,
                                    n_workers=params.validate_.n_workers, progress=not args.no_progress,
                                    data_dir=Path(params.data.dir), allow_outside=params.data.allow_outside)
    except TooManyRejects as exc:
        raise StageError(str(exc)) from None
    print(f"validate: accepted {summary['accepted']} of {summary['rows']} rows, rejected {summary['rejected']} "
          f"(see {params.validate_.out_dir}/report.md)")


if __name__ == "__main__":
    run_stage("validate", __doc__, main)
