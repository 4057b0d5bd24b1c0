"""A Qwen-VL model package (tiny random Qwen2.5-VL, tiny CLIP encoder, Allocator) and a local lmms-eval task (a YAML
over a JSON data set of mp4s, multiple choice, with its own ``process_results``), all made here."""

import json
import os
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.pin import checkpoint_identity
from resadapt.backbone.tiny_qwen import build
from tests.conftest import counting_clip
from tests.features.conftest import tiny_clip

REPO = Path(__file__).resolve().parents[2]
TASK = "resadapt_tiny_mcq"
N_FRAMES = 4
OPTIONS = ["dark", "bright", "grey", "striped"]
UTILS = '''from pathlib import Path

HERE = Path(__file__).parent


def doc_to_visual(doc):
    return [str(HERE / doc["video"])]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    options = "\\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(doc["options"]))
    return f"{doc['question']}\\n{options}\\nAnswer with the option's letter."


def process_results(doc, results):
    return {"accuracy": float(results[0].strip()[:1].upper() == doc["answer"])}
'''


@pytest.fixture(scope="session")
def qwen_package(tmp_path_factory) -> Path:
    """A package as the register stage writes it for a Qwen backbone: Allocator, pinned identity, pipeline.json.
    The Allocator asks for ~0.3 per frame (0.09 of the tokens), so a budget of 0.25 covers its policy."""
    root = tmp_path_factory.mktemp("qwen_pkg")
    checkpoint = build("qwen2_5_vl", root / "qwen")
    clip = tiny_clip(root / "clip")
    pkg = root / "package"
    (pkg / "backbone").mkdir(parents=True)
    identity = {"source": "hf", **checkpoint_identity(str(checkpoint))}
    (pkg / "backbone" / "identity.json").write_text(json.dumps(identity))
    torch.manual_seed(0)
    Allocator(AllocatorConfig(patch_dim=32, text_dim=32, width=16, heads=2, aligned_dim=16, s_min=0.1,
                              init_scale=0.3)).save_pretrained(pkg)
    (pkg / "pipeline.json").write_text(json.dumps({
        "shard": {"n_frames": 8, "patch_factor": 28, "max_pixels": 602112, "frame_codec": "jpg", "jpeg_quality": 95},
        "features": {"encoder": "hf", "checkpoint": clip, "side": 32},
        "backbone": {"source": "hf", "engine": "transformers", "device": "cpu", "dtype": "float32",
                     "max_new_tokens": 3, "checkpoint": str(checkpoint), "updated": False},
        "evaluate_split": "eval", "target_budget": 0.25}))
    (pkg / "decision.json").write_text(json.dumps({"registered": True, "reason": "test"}))
    return pkg


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    """The local task: 3 multiple-choice questions over 224×336 mp4s (8×12 token cells per frame at scale 1)."""
    root = tmp_path_factory.mktemp("lmms_task")
    docs = []
    for i in range(3):
        counting_clip(root / f"v{i}.mp4", 12, size=(224, 336), fps=6.0)
        docs.append({"id": i, "video": f"v{i}.mp4", "question": "Which shade fills the right half?",
                     "options": OPTIONS, "answer": "ABCD"[i % 4]})
    (root / "data.json").write_text(json.dumps(docs))
    (root / "utils.py").write_text(UTILS)
    (root / f"{TASK}.yaml").write_text(yaml.safe_dump({
        "task": TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(root / "data.json")}},
        "test_split": "test", "output_type": "generate_until", "doc_to_target": "answer",
        "generation_kwargs": {"max_new_tokens": 3, "temperature": 0, "do_sample": False},
        "metric_list": [{"metric": "accuracy", "aggregation": "mean", "higher_is_better": True}],
        "metadata": [{"version": 0.0}]}, sort_keys=False)
        + "".join(f"{key}: !function utils.{key}\n" for key in ("doc_to_visual", "doc_to_text", "process_results")))
    return root


@pytest.fixture(scope="session")
def entry_point_path(tmp_path_factory) -> Path:
    """A folder holding distribution metadata with exactly the ``lmms_eval.models`` entry points pyproject.toml
    declares (the machine's resadapt may be installed from another checkout; CI's declares the same)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    root = tmp_path_factory.mktemp("entry_points")
    dist = root / "resadapt_lmms_entry_points-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: resadapt-lmms-entry-points\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in
                                                                             declared.items()))
    return root


@pytest.fixture
def on_path(entry_point_path, monkeypatch):
    monkeypatch.syspath_prepend(str(entry_point_path))
    return entry_point_path


def env_with(entry_point_path: Path, home: Path) -> dict:
    """A subprocess environment: this checkout and the entry-point metadata first on the path, offline, caches in
    ``home``."""
    path = os.pathsep.join([str(entry_point_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
            "TOKENIZERS_PARALLELISM": "false"}
