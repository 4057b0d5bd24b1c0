"""Training checkpoints as safetensors (weights and optimiser moments) plus JSON (step, history): nothing pickled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from resadapt.io import write_json


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = opt.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, s in state["state"].items() for k, v in s.items()
               if isinstance(v, torch.Tensor)}
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def save_checkpoint(folder: Path, models: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    step: int, history: list[dict], fingerprint: str = "") -> None:
    """Write into a sibling temp folder, then swap it in: a kill mid-write leaves the previous checkpoint whole."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        frozen = any(not p.requires_grad for p in model.parameters())
        if frozen:  # a LoRA adapter on a frozen backbone: only what trains (the rest is the pinned checkpoint)
            save_file({k: p.detach().contiguous() for k, p in model.named_parameters() if p.requires_grad},
                      str(tmp / f"{name}.safetensors"))
        else:
            save_model(model, str(tmp / f"{name}.safetensors"), force_contiguous=True)  # tied weights stored once
    groups = {}
    for name, opt in optimizers.items():
        tensors, groups[name] = _flatten_optimizer(opt)
        save_file(tensors, str(tmp / f"{name}.optimizer.safetensors"))
    write_json(tmp / "state.json", {"step": step, "history": history, "param_groups": groups,
                                    "fingerprint": fingerprint})
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _complete(folder: Path) -> Path:
    """The folder, or the previous checkpoint kept aside if a kill fell between the two renames of a swap."""
    old = folder.with_name(folder.name + ".old")
    return folder if (folder / "state.json").is_file() or not (old / "state.json").is_file() else old


def load_checkpoint(folder: Path, models: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, list[dict]]:
    """Restore models and optimisers in place; returns (next step, history)."""
    folder = _complete(folder)
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    for name, model in models.items():
        if any(not p.requires_grad for p in model.parameters()):
            trained = load_file(str(folder / f"{name}.safetensors"))
            expected = {k for k, p in model.named_parameters() if p.requires_grad}
            if set(trained) != expected:
                raise ValueError(f"{folder}/{name}.safetensors does not hold this model's trainable weights")
            model.load_state_dict(trained, strict=False)
        else:
            load_model(model, str(folder / f"{name}.safetensors"))
    for name, opt in optimizers.items():
        flat = load_file(str(folder / f"{name}.optimizer.safetensors"))
        moments: dict[int, dict] = {}
        for key, value in flat.items():
            index, field = key.split(".", 1)
            moments.setdefault(int(index), {})[field] = value
        opt.load_state_dict({"state": moments, "param_groups": state["param_groups"][name]})
    return state["step"], state["history"]


def has_checkpoint(folder: Path, fingerprint: str = "") -> bool:
    """A checkpoint of *this* run: same fingerprint (params and data), so a changed config never resumes."""
    path = _complete(folder) / "state.json"
    return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("fingerprint", "") == fingerprint
