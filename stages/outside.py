"""Stage ``outside``: link the videos that lie outside ``data.dir`` into data/outside/, so DVC hashes them.

Reads ``data`` (with ``data.allow_outside: false``, the default, no video may lie outside and the folder holds only
an empty links.json). ``validate``, ``shard`` and ``evaluate`` depend on the folder: a changed outside video reruns
them.
"""

from pathlib import Path

from resadapt.data.outside import OUTSIDE_DIR, link_outside
from resadapt.stage import StageError, run_stage


def main(params, args) -> None:
    manifest = params.data.manifest_path
    if not manifest.is_file():
        raise StageError(f"manifest {manifest} not found (params.yaml: data.dir / data.manifest)")
    links = link_outside(manifest, Path(params.data.dir), params.data.allow_outside)
    print(f"outside: {len(links)} video(s) outside {params.data.dir} linked in {OUTSIDE_DIR}")


if __name__ == "__main__":
    run_stage("outside", __doc__, main)
