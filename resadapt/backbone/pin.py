"""Pinning a real checkpoint: record exactly which weights the pipeline used (name, revision, file hashes)."""

from __future__ import annotations

from pathlib import Path

from resadapt.io import sha256_file

PINNED_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.txt")


def checkpoint_identity(checkpoint: str, revision: str = "") -> dict:
    """A local checkpoint folder: sha256 of every config/weight/tokenizer file. A hub id: the resolved commit."""
    local = Path(checkpoint)
    if local.is_dir():
        files = sorted({p for pattern in PINNED_FILES for p in local.glob(pattern)})
        if not any(p.suffix == ".safetensors" for p in files):
            raise FileNotFoundError(f"{local}: no *.safetensors weights in this checkpoint folder")
        return {"checkpoint": str(local.resolve()), "revision": revision or None,
                "files": {p.name: sha256_file(p) for p in files}}
    if local.is_absolute() or checkpoint.startswith((".", "~")) or local.exists():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(checkpoint, revision=revision or None)
    except Exception as exc:  # offline, unknown repo, gated: all mean "cannot pin"
        raise OSError(f"cannot resolve hub id {checkpoint!r}: {type(exc).__name__}: {exc}") from None
    return {"checkpoint": checkpoint, "revision": info.sha, "files": {s.rfilename: None for s in info.siblings or []}}
