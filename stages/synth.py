"""Stage ``synth``: render the built-in "needle frame" video-QA set as H.264 mp4 files plus manifest.jsonl.

Reads params.yaml section ``synth``; writes ``synth.out_dir`` (videos/ and manifest.jsonl).
"""

from resadapt.data.synth import build_dataset
from resadapt.stage import run_stage


def main(params, args) -> None:
    manifest = build_dataset(params.synth, progress=not args.no_progress)
    print(f"synth: wrote {manifest}")


if __name__ == "__main__":
    run_stage("synth", __doc__, main)
