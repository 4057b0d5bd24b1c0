"""Stage ``synth``: render the built-in "needle frame" video-QA set as H.264 mp4 files plus manifest.jsonl.

Reads params.yaml sections ``synth`` and ``data``; writes ``synth.out_dir`` (videos/ and manifest.jsonl). When
``data.dir`` points at your own videos (anything but ``synth.out_dir``), nothing is rendered: the stage leaves only
a note in ``synth.out_dir`` (DVC has no conditional stages, and nothing downstream reads it then).
"""

from pathlib import Path

from resadapt.data.synth import build_dataset
from resadapt.io import atomic_dir
from resadapt.stage import run_stage


def main(params, args) -> None:
    if Path(params.data.dir).resolve() != Path(params.synth.out_dir).resolve():
        with atomic_dir(params.synth.out_dir) as tmp:
            (tmp / "NOT_RENDERED.md").write_text(
                f"data.dir is {params.data.dir!r}, not synth.out_dir: the built-in set was not rendered.\n",
                encoding="utf-8")
        print(f"synth: data.dir is {params.data.dir}: nothing to render")
        return
    manifest = build_dataset(params.synth, progress=not args.no_progress)
    print(f"synth: wrote {manifest}")


if __name__ == "__main__":
    run_stage("synth", __doc__, main)
