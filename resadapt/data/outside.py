"""Videos outside ``data.dir`` made visible to DVC: one symlink per outside video in ``data/outside/``.

DVC hashes ``data.dir`` only, and dvc.yaml's dependencies are static. With ``data.allow_outside`` a manifest may name
videos anywhere; this folder links each of them (DVC follows symlinks when it hashes a folder), and the stages that
read videos depend on it, so a changed outside video reruns them. ``links.json`` maps each link to its target.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from resadapt.data.manifest import read_manifest
from resadapt.io import write_json

OUTSIDE_DIR = Path("data/outside")  # dvc.yaml names the same folder
LINKS = "links.json"


def link_outside(manifest: str | Path, data_dir: str | Path, allow_outside: bool,
                 out_dir: str | Path = OUTSIDE_DIR) -> dict[str, str]:
    """(Re)build ``out_dir``: a link per existing video of ``manifest`` that resolves outside ``data_dir``."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    inside = Path(data_dir).resolve()
    links: dict[str, str] = {}
    if allow_outside:
        rows, _ = read_manifest(manifest)
        for _, sample in rows:
            try:
                target = (manifest.parent / sample.video).resolve()
            except (OSError, RuntimeError):  # a symlink loop: validate rejects the row
                continue
            if not target.is_relative_to(inside) and target.is_file():
                links[hashlib.sha1(str(target).encode()).hexdigest()[:16] + target.suffix] = str(target)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name, target in sorted(links.items()):
        (out_dir / name).symlink_to(target)
    write_json(out_dir / LINKS, links)
    return links
