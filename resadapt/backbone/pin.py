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


class PinError(ValueError):
    """The checkpoint on disk is not the one the pipeline pinned."""


def pinned_source(identity: dict) -> tuple[str, str | None]:
    """(what to load, revision) for a pinned identity; a local folder is re-hashed first.

    Local folder: every pinned file must exist with its recorded sha256, and no new weight/config file may appear;
    the error names each file that differs. Hub id: the exact resolved commit.
    """
    checkpoint, files = identity["checkpoint"], identity.get("files", {})
    local = Path(checkpoint)
    if not local.is_dir():
        if local.is_absolute():
            raise PinError(f"{checkpoint}: the pinned checkpoint folder is gone")
        return checkpoint, identity.get("revision")
    now = {p.name: p for pattern in PINNED_FILES for p in local.glob(pattern)}
    problems = [f"{name}: missing" for name in files if name not in now]
    problems += [f"{name}: changed (sha256 {sha256_file(now[name])[:12]}…, pinned {digest[:12]}…)"
                 for name, digest in files.items() if name in now and sha256_file(now[name]) != digest]
    problems += [f"{name}: not in the pinned checkpoint" for name in sorted(set(now) - set(files))]
    if problems:
        raise PinError(f"{checkpoint} differs from the pinned identity (rerun the backbone stage to pin it anew): "
                       + "; ".join(problems))
    return checkpoint, None
