"""The ``resadapt`` command on a real model package (tiny random weights) and a real mp4."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.builtin import BuiltinConfig, BuiltinVideoQA
from resadapt.cli import main
from resadapt.data.synth import PALETTE, STRIPES, render_frame
from resadapt.data.video import write_mp4

QUESTION = "Which stripe orientation is shown in the frame with the red border?"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "red", "border"],
                           width=16, stem_channels=8)
    model = BuiltinVideoQA(config)
    model.save_pretrained(root / "package" / "backbone")
    Allocator(AllocatorConfig(patch_dim=16, text_dim=config.word_dim, width=16, heads=2, aligned_dim=len(PALETTE),
                              s_min=0.1)).save_pretrained(root / "package")
    (root / "package" / "pipeline.json").write_text(json.dumps({
        "shard": {"n_frames": 8, "patch_factor": 28, "max_pixels": 602112, "frame_codec": "jpg", "jpeg_quality": 95},
        "features": {"encoder": "builtin", "checkpoint": "", "side": 56},
        "backbone": {"source": "builtin", "checkpoint": ""}, "evaluate_split": "eval", "target_budget": 0.15}))
    (root / "package" / "decision.json").write_text(json.dumps({"registered": True, "reason": "test"}))
    rng = np.random.default_rng(0)
    frames = [render_frame(rng, 112, c, "stripes", 12)[0] for c in list(PALETTE)[:8]]
    write_mp4(root / "clip.mp4", frames, (112, 112), 2.0, crf=12)
    return root


def run(capsys, *argv):
    main(list(argv))
    return capsys.readouterr().out


def test_allocate_prints_scales_sizes_tokens_and_retention(package, capsys, tmp_path):
    out = json.loads(run(capsys, "allocate", str(package / "clip.mp4"), QUESTION, "--model",
                         str(package / "package"), "--json", "--save-frames", str(tmp_path / "frames")))
    assert len(out["frames"]) == 8 and out["full_tokens"] == 8 * 16  # 112-px frames: 4x4 cells each
    assert out["tokens"] == sum(f["chunk_tokens"] for f in out["frames"])
    assert out["retention"] == pytest.approx(out["tokens"] / out["full_tokens"], abs=1e-5)
    assert all(0.1 <= f["scale"] <= 1.2 for f in out["frames"])
    saved = sorted((tmp_path / "frames").iterdir())
    assert len(saved) == 8
    for path, f in zip(saved, out["frames"], strict=True):
        assert Image.open(path).size == (f["size"][1], f["size"][0])
    budget = json.loads(run(capsys, "allocate", str(package / "clip.mp4"), QUESTION, "--model",
                            str(package / "package"), "--json", "--budget", "0.2"))
    assert budget["retention"] <= 0.2
    text = run(capsys, "allocate", str(package / "clip.mp4"), QUESTION, "--model", str(package / "package"))
    assert "retention" in text and "frame" in text


def test_answer_adds_the_backbones_answer(package, capsys):
    out = json.loads(run(capsys, "answer", str(package / "clip.mp4"), QUESTION, "--model", str(package / "package"),
                         "--options", ",".join(STRIPES), "--json"))
    assert out["answer"] in "ABCD" and len(out["answer"]) == 1


def test_bad_video_or_unknown_model_is_a_clear_error(package, capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(SystemExit) as exc:
        main(["allocate", str(bad), QUESTION, "--model", str(package / "package")])
    assert exc.value.code == 1 and "bad.mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["allocate", str(package / "clip.mp4"), QUESTION, "--model", str(tmp_path / "nowhere")])
    assert exc.value.code == 1 and "no such folder, and not a registry ref" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["allocate", str(package / "clip.mp4"), QUESTION, "--model", str(package)])
    assert exc.value.code == 1 and "not a model package" in capsys.readouterr().err


@pytest.mark.parametrize("budget,message", [("0", "outside (0, 1]"), ("-1", "outside (0, 1]"),
                                            ("nan", "outside (0, 1]"), ("5", "outside (0, 1]"),
                                            ("abc", "is not a number")])
def test_a_budget_outside_0_1_is_refused_with_a_message(package, capsys, budget, message):
    with pytest.raises(SystemExit) as exc:
        main(["allocate", str(package / "clip.mp4"), QUESTION, "--model", str(package / "package"), "--budget",
              budget])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--budget" in err and message in err
