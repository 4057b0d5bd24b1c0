"""The model registry: the gate, the model package and its card, and GTO versions/stages on git tags.

A package is written by the ``register`` stage (a DVC output declared under ``artifacts:`` in dvc.yaml). A version is
a GTO tag on the commit whose ``dvc.lock`` holds that package, so checking out the tag and running ``dvc checkout``
(or ``dvc repro``) gives back exactly the registered model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from resadapt.features import ENCODER_DIR
from resadapt.io import sha256_file, write_json

STAGES = ("dev", "staging", "prod")


class RegistryError(Exception):
    """A registry operation the user can fix (no identity, gate closed, model not committed, unknown model)."""


@dataclass(frozen=True)
class Decision:
    registered: bool
    reason: str
    target_budget: float
    min_margin: float
    resadapt_accuracy: float | None
    fixed_accuracy: float | None
    resadapt_retention: float | None
    fixed_retention: float | None


def gate(metrics: dict, target_budget: float, min_margin: float) -> Decision:
    """Open only when ResAdapt's accuracy at ``target_budget`` beats FixedScale's there by ``min_margin``."""
    key = f"r{round(target_budget * 100):03d}"
    ours, fixed = metrics.get("resadapt", {}).get(key), metrics.get("fixed_scale", {}).get(key)
    if not ours or not fixed or ours.get("accuracy") is None or fixed.get("accuracy") is None:
        return Decision(False, f"the sweep has no ResAdapt and FixedScale accuracy at budget {target_budget:g}",
                        target_budget, min_margin, None, None, None, None)
    margin = ours["accuracy"] - fixed["accuracy"]
    ok = margin >= min_margin
    reason = (f"ResAdapt {ours['accuracy']:.1%} vs FixedScale {fixed['accuracy']:.1%} at budget {target_budget:g}: "
              f"margin {margin:+.1%} {'>=' if ok else '<'} required {min_margin:.1%}")
    return Decision(ok, reason, target_budget, min_margin, ours["accuracy"], fixed["accuracy"], ours["retention"],
                    fixed["retention"])


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def code_revision(root: str | Path = ".") -> str:
    """The commit the workspace was built from, ``+dirty`` when tracked files differ from it."""
    root = Path(root)
    sha = _git(root, "rev-parse", "HEAD") or "unknown"
    return sha + ("+dirty" if _git(root, "status", "--porcelain", "--untracked-files=no") else "")


def lock_hashes(lock: dict, paths: list[str]) -> dict[str, str]:
    """md5 of each path as recorded by DVC (the data and model versions a package came from)."""
    found = {}
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") in paths:
                found[out["path"]] = out.get("md5", "")
    return found


def build_package(out_dir: Path, decision: Decision, allocator_dir: Path, backbone_dir: Path,
                  pipeline: dict, lineage: dict, metrics: dict, encoder_dir: Path | None = None) -> None:
    """Write the package into ``out_dir`` (a fresh folder): weights only when the gate is open.

    Layout: the Allocator (config.json, model.safetensors); ``backbone/``: the backbone stage's output (the built-in
    weights, which are also the feature encoder, or a Qwen checkpoint's pinned identity.json); ``backbone/trained/``:
    the ResAdapt-RL update when ``train`` made one (built-in or full Qwen weights, or a LoRA adapter); ``encoder/``:
    the features stage's contrastive encoder (``encoder_dir``), when the features came from it.
    """
    if decision.registered:
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in allocator_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, out_dir / f.name)
        shutil.copytree(backbone_dir, out_dir / "backbone")
        if (allocator_dir / "backbone").is_dir():
            shutil.copytree(allocator_dir / "backbone", out_dir / "backbone" / "trained")
        if encoder_dir is not None:
            shutil.copytree(encoder_dir, out_dir / ENCODER_DIR)
        lineage = lineage | {"allocator_sha256": sha256_file(out_dir / "model.safetensors")}
    write_json(out_dir / "decision.json", asdict(decision))
    write_json(out_dir / "pipeline.json", pipeline)
    write_json(out_dir / "lineage.json", lineage)
    (out_dir / "README.md").write_text(model_card(decision, pipeline, lineage, metrics), encoding="utf-8")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def model_card(decision: Decision, pipeline: dict, lineage: dict, metrics: dict) -> str:
    key = f"r{round(decision.target_budget * 100):03d}"
    rows = [(m, metrics.get(m, {}).get(key) or metrics.get(m, {}).get("r100")) for m in
            ("full", "fixed_scale", "random_drop", "taskres", "resadapt", "resadapt_x2", "resadapt_x4")]
    table = ["| method | accuracy | retention | grounding mIoU |", "|---|---|---|---|"]
    table += [f"| {m} | {p['accuracy']:.3f} | {p['retention']:.3f} | {_num(p['miou'])} |" for m, p in rows if p]
    status = "registered" if decision.registered else "NOT registered"
    return "\n".join([
        "# ResAdapt Allocator", "",
        f"**Gate: {status}.** {decision.reason}.", "",
        "A query-aware Allocator that predicts one resize scale per frame (Beta policy, CAPO-trained) before the "
        "frames reach an unchanged video backbone.", "",
        f"## Metrics at budget {decision.target_budget:g} (split {pipeline['evaluate_split']!r})", "", *table, "",
        "## Lineage", "", "```json", json.dumps(lineage, indent=2, sort_keys=True), "```", "",
        "## Pipeline (what inference needs)", "", "```json", json.dumps(pipeline, indent=2, sort_keys=True), "```", "",
        "Load it with `resadapt allocate VIDEO QUESTION --model <this folder or name@stage>`.", ""])


def git_identity(root: str | Path = ".") -> tuple[str, str]:
    root = Path(root)
    name, email = _git(root, "config", "user.name"), _git(root, "config", "user.email")
    if not name or not email:
        raise RegistryError("registering needs a git identity (tags record who registered): run "
                            "`git config user.name \"Your Name\"` and `git config user.email you@example.com`")
    return name, email


def register(root: str | Path, name: str, package: str, stage: str | None = None, message: str = "") -> dict:
    """Register the committed package as a new version (and assign ``stage``); returns the tags made."""
    import gto.api

    root = Path(root)
    git_identity(root)
    declared = (yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("artifacts", {})
    if declared.get(name, {}).get("path") != package:
        raise RegistryError(f"dvc.yaml declares no artifact {name!r} at {package} (artifacts: {declared}): make "
                            "register.name / register.out_dir and the artifacts section of dvc.yaml agree")
    decision_path = root / package / "decision.json"
    if not decision_path.is_file():
        raise RegistryError(f"{decision_path}: no gate decision (run `dvc repro` first)")
    decision = json.loads(decision_path.read_text(encoding="utf-8"))
    if not decision["registered"]:
        raise RegistryError(f"the gate did not pass, nothing to register: {decision['reason']}")
    if _git(root, "status", "--porcelain", "dvc.lock", "dvc.yaml", "params.yaml"):
        raise RegistryError("dvc.lock, dvc.yaml or params.yaml has uncommitted changes: commit first, so the tag "
                            "points at the commit that reproduces this model")
    committed = yaml.safe_load(_git(root, "show", "HEAD:dvc.lock") or "{}") or {}
    if package not in lock_hashes(committed, [package]):
        raise RegistryError(f"HEAD's dvc.lock does not hold {package}: run `dvc repro` and commit dvc.lock")
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "register"], cwd=root,
                            capture_output=True, text=True, env=os.environ | {"DVC_NO_ANALYTICS": "1"})
    changed = json.loads(status.stdout or "{}") if status.returncode == 0 else status.stderr.strip()
    if changed:
        raise RegistryError(f"the workspace's {package} differs from HEAD's dvc.lock ({changed}): run `dvc repro` "
                            "and commit, or `dvc checkout` to restore the committed model")
    text = message or f"ResAdapt Allocator: {decision['reason']}"
    reg = gto.api.register(str(root), name, "HEAD", message=text)
    out = {"version": reg.version, "tag": reg.tag, "commit": reg.commit_hexsha}
    if stage:
        assigned = gto.api.assign(str(root), name, stage, version=reg.version, message=text)
        out["stage_tag"] = assigned.tag
    return out


def register_commit(root: str | Path, name: str, commit: str, package: str, stage: str | None = None,
                    message: str = "") -> dict:
    """Register ``commit`` (e.g. a DVC experiment's) when its own gate passed and its dvc.lock holds the package."""
    import gto.api

    root = Path(root)
    git_identity(root)
    decision = json.loads(_git(root, "show", f"{commit}:reports/register/decision.json") or "{}")
    if not decision.get("registered"):
        raise RegistryError(f"{commit[:10]}: its gate did not pass: {decision.get('reason', 'no decision')}")
    lock = yaml.safe_load(_git(root, "show", f"{commit}:dvc.lock") or "{}") or {}
    if package not in lock_hashes(lock, [package]):
        raise RegistryError(f"{commit[:10]}: its dvc.lock does not hold {package}")
    reg = gto.api.register(str(root), name, commit, message=message or decision["reason"])
    out = {"version": reg.version, "tag": reg.tag, "commit": commit}
    if stage:
        out["stage_tag"] = gto.api.assign(str(root), name, stage, version=reg.version, message=message).tag
    return out


def assign(root: str | Path, name: str, version: str, stage: str, message: str = "") -> str:
    import gto.api

    git_identity(root)
    return gto.api.assign(str(root), name, stage, version=version, message=message or f"promote to {stage}").tag


def resolve(root: str | Path, ref: str) -> tuple[str, str]:
    """``name@vX.Y.Z``, ``name@stage`` or ``name#stage`` → (commit, version)."""
    import gto.api

    if "#" in ref:
        name, stage = ref.split("#", 1)
        version = None
    else:
        name, _, tail = ref.partition("@")
        version, stage = (tail, None) if tail.startswith("v") else (None, tail or "prod")
    try:
        if version:
            found = [v for v in gto.api.show(str(root), name) if v["version"] == version]
            if found:
                return found[0]["commit_hexsha"], version
        else:
            in_stage = gto.api.find_versions_in_stage(str(root), name, stage)
            if in_stage:
                v = in_stage[0]
                return v.commit_hexsha, v.version
    except Exception as exc:  # noqa: BLE001 (gto raises several kinds for unknown names)
        raise RegistryError(f"{ref}: not in the registry ({exc})") from None
    raise RegistryError(f"{ref}: no such version or stage in the registry (see `resadapt models`)")


def fetch(root: str | Path, ref: str, package: str) -> Path:
    """A local folder holding the package of registry ref ``ref`` (read from the DVC cache at its commit)."""
    from dvc.fs import DVCFileSystem

    commit, _ = resolve(root, ref)
    dest = Path(tempfile.mkdtemp(prefix="resadapt-model-"))
    try:
        DVCFileSystem(repo=str(root), rev=commit).get(package, str(dest / "package"), recursive=True)
    except Exception as exc:  # noqa: BLE001
        raise RegistryError(f"{ref}: the package at {commit[:10]} is not in the local DVC cache ({exc}); "
                            "`dvc pull` it or rerun that commit") from None
    return dest / "package"


def versions(root: str | Path, name: str) -> list[dict]:
    """Every registered version with its stages and lineage (read from git at its commit), newest first."""
    import gto.api

    root = Path(root)
    try:
        shown = gto.api.show(str(root), name)
    except Exception:  # noqa: BLE001 (nothing registered yet)
        return []
    rows = []
    for v in shown:
        commit = v["commit_hexsha"]
        lock = yaml.safe_load(_git(root, "show", f"{commit}:dvc.lock") or "{}") or {}
        metrics = json.loads(_git(root, "show", f"{commit}:reports/evaluate/metrics.json") or "{}")
        decision = json.loads(_git(root, "show", f"{commit}:reports/register/decision.json") or "{}")
        reg = (v.get("registrations") or [{}])[0]
        rows.append({
            "version": v["version"], "commit": commit, "tag": v.get("ref"),
            "stages": [s["stage"] for s in v.get("stages", []) if s.get("is_active", True)],
            "registered_at": str(reg.get("created_at", "")), "author": reg.get("author"),
            "message": reg.get("message", ""),
            "data": lock_hashes(lock, ["data/shards", "data/validated/manifest.jsonl"]),
            "models": lock_hashes(lock, ["models/backbone", "models/allocator"]),
            "params_blob": _git(root, "rev-parse", f"{commit}:params.yaml"),
            "checks": metrics.get("checks", {}), "gate": decision.get("reason"),
        })
    return rows
