import re

import pytest

from resadapt.config import Params, ParamsError, load_params


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repo_params_file_is_valid():
    params = load_params("params.yaml")
    assert params.shard.n_frames == 16
    assert params.validate_.max_reject_fraction == 0.05


def test_missing_file_is_an_error_never_all_defaults(tmp_path):
    with pytest.raises(ParamsError, match="absent.yaml: parameters file not found"):
        load_params(tmp_path / "absent.yaml")
    assert load_params(write(tmp_path, "")) == Params()  # an empty file: every default, on purpose


@pytest.mark.parametrize("text,message", [
    ("validate:\n  min_fps: 30\n  max_fps: 10\n", "min_fps (30) must be at most max_fps (10)"),
    ("validate:\n  min_side: 64\n  max_side: 32\n", "min_side (64) must be at most max_side (32)"),
    ("synth:\n  splits: {../evil: 2}\n  hold: {}\n", "split names ['../evil'] must be"),
    ("data:\n  allow_outside: maybe\n", "data.allow_outside"),
    ("shard:\n  max_reject_fraction: 2\n", "shard.max_reject_fraction"),
    ("train:\n  nproc: 0\n", "train.nproc"),
    ("train:\n  nproc: 4\n  prompts: 3\n", "nproc (4) ranks share prompts (3)"),
    ("synth:\n  looks: {test: {shade: 5}}\n", "looks names splits that synth.splits does not render: ['test']"),
    ("synth:\n  looks: {eval: {background: [200, 100]}}\n", "background must be a grey range"),
    ("synth:\n  long: {eval: {frames: 16, brief: [1, 5]}}\n", "brief must be 1 <= lo <= hi <= frames/4"),
    ("synth:\n  long: {eval: {frames: 64}}\n", "splits ['eval'] are both long and held"),
    ("synth:\n  hold: {}\n  long: {eval: {frames: 16, brief: [1, 4]}}\n", "cannot show 13 other colours"),
    ("evaluate:\n  test_splits: [eval]\n", "test_splits and long_splits must be other splits"),
    ("evaluate:\n  test_splits: [t]\n  long_splits: [t]\n", "test_splits and long_splits must be other splits"),
])
def test_contradictory_or_unsafe_values(tmp_path, text, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(write(tmp_path, text))


def test_unknown_key_names_file_and_key_path(tmp_path):
    path = write(tmp_path, "shard:\n  n_frame: 8\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(path) in str(err.value)
    assert "shard.n_frame: unknown key" in str(err.value)


def test_unknown_section(tmp_path):
    with pytest.raises(ParamsError, match=r"shards: unknown key"):
        load_params(write(tmp_path, "shards: {}\n"))


def test_bad_value_names_key_and_value(tmp_path):
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, "validate:\n  max_reject_fraction: 1.5\nsynth:\n  glyph: emoji\n"))
    msg = str(err.value)
    assert "validate.max_reject_fraction" in msg and "1.5" in msg
    assert "synth.glyph" in msg and "emoji" in msg


def test_cross_field_rule(tmp_path):
    with pytest.raises(ParamsError, match="frame_side must be even"):
        load_params(write(tmp_path, "synth:\n  frame_side: 225\n"))


def test_glyph_must_fit_the_frame(tmp_path):
    with pytest.raises(ParamsError, match="glyph_size 40 does not fit"):
        load_params(write(tmp_path, "synth:\n  frame_side: 64\n  glyph_size: 40\n"))


def test_not_a_mapping(tmp_path):
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, "- a\n- b\n"))


def test_reasoning_prompts_need_a_chat_backbone(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  prompt: reasoning\nevaluate:\n  prompt: reasoning\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="train.prompt, evaluate.prompt: reasoning needs a chat backbone"):
        load_params(path)
    path.write_text("backbone: {source: hf, checkpoint: Qwen/Qwen2.5-VL-7B-Instruct}\nevaluate: {prompt: reasoning}\n"
                    "train: {reward: {format: 0.5}}\n", encoding="utf-8")
    params = load_params(path)
    assert params.evaluate.prompt == "reasoning" and params.train.prompt == "plain"
    assert params.train.reward.format == 0.5


def test_evaluate_methods_hold_relevance_top_k_by_default_and_accept_its_more_frames_variants(tmp_path):
    assert {"relevance_topk", "relevance_topk_drop"} <= set(Params().evaluate.methods)
    assert "relevance_topk_x4" not in Params().evaluate.methods  # accepted, not run by default
    params = load_params(write(tmp_path, "evaluate:\n  methods: [resadapt_x4, relevance_topk_drop_x4]\n"))
    assert params.evaluate.methods == ["resadapt_x4", "relevance_topk_drop_x4"]
    with pytest.raises(ParamsError, match=re.escape("unknown method(s) ['relevance_topk_x3']")):
        load_params(write(tmp_path, "evaluate:\n  methods: [relevance_topk_x3]\n"))
