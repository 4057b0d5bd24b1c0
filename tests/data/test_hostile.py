"""Hostile manifests and faults against validate and shard, in process: every bad row is a reject with its reason,
no good row is lost, nothing is written outside the output folder, and a failed run keeps the previous outputs."""

import errno
import json
import os
from pathlib import Path

import pytest
import webdataset as wds

from resadapt.config import ShardParams, ValidateParams
from resadapt.data.outside import link_outside
from resadapt.data.shards import ShardError, iter_split, read_index, split_urls, write_shards
from resadapt.data.validate import SuiteError, build_checks, probe_frame, run_suite, validate_manifest
from tests.conftest import counting_clip, mcq_row, write_manifest


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*") if not p.is_dir()}


def new_files(before: dict, root: Path) -> set[str]:
    return {p for p, m in snapshot(root).items() if before.get(p) != m}


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def project(tmp_path):
    """data.dir ``in/`` with good clips, a video outside it, and symlinks that lead out."""
    root = tmp_path / "in"
    for i in range(4):
        counting_clip(root / f"v{i}.mp4", 12)
    counting_clip(tmp_path / "elsewhere" / "out.mp4", 12)
    (root / "link-out.mp4").symlink_to(tmp_path / "elsewhere" / "out.mp4")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    (root / "link-in.mp4").symlink_to(root / "v0.mp4")
    return tmp_path


def test_split_names_that_are_paths_never_leave_the_output_folder(project):
    rows = [mcq_row("a", "v0.mp4"), mcq_row("evil", "v1.mp4", split="../../../evil"),
            mcq_row("pct", "v2.mp4", split="x%d"), mcq_row("slash", "v3.mp4", split="x/y"), mcq_row("b", "v1.mp4")]
    manifest = write_manifest(project / "in" / "manifest.jsonl", rows)
    before = snapshot(project)
    index = write_shards(manifest, ShardParams(out_dir=str(project / "out"), n_frames=4, max_reject_fraction=0.6),
                         progress=False)
    assert all(p.startswith("out/") for p in new_files(before, project)), new_files(before, project)
    assert index["rejected"] == 3 and index["splits"]["train"]["samples"] == 2
    rejects = rows_of(project / "out" / "rejects.jsonl")
    assert [(r["row"], r["id"]) for r in rejects] == [(2, "evil"), (3, "pct"), (4, "slash")]
    assert all("split" in r["reasons"][0] for r in rejects)


def test_a_split_is_its_index_entry_never_a_name_prefix(project):
    rows = [mcq_row("a", "v0.mp4"), mcq_row("h1", "v1.mp4", split="train-hard"), mcq_row("h2", "v2.mp4",
                                                                                     split="train-hard")]
    manifest = write_manifest(project / "in" / "manifest.jsonl", rows)
    index = write_shards(manifest, ShardParams(out_dir=str(project / "out"), n_frames=4), progress=False)
    assert [s["file"] for s in index["splits"]["train"]["shards"]] == ["train-000000.tar"]
    assert index["splits"]["train"]["samples"] == 1 and index["splits"]["train-hard"]["samples"] == 2
    assert [key for key, _, _ in iter_split(project / "out", "train")] == ["a"]
    assert [key for key, _, _ in iter_split(project / "out", "train-hard")] == ["h1", "h2"]


@pytest.mark.parametrize("video,reason", [
    ("../elsewhere/out.mp4", "outside data.dir"),
    ("link-out.mp4", "outside data.dir"),
    ("/dev/zero", "outside data.dir"),
    ("loop.mp4", "cannot be resolved"),
])
def test_videos_must_resolve_inside_data_dir(project, video, reason):
    manifest = write_manifest(project / "in" / "manifest.jsonl", [mcq_row("good", "link-in.mp4"),
                                                                  mcq_row("bad", video)])
    summary = validate_manifest(manifest, ValidateParams(out_dir=str(project / "val"), max_reject_fraction=0.5),
                                min_frames=4, progress=False, data_dir=project / "in")
    assert summary["accepted"] == 1
    [reject] = rows_of(project / "val" / "rejects.jsonl")
    assert reject["id"] == "bad" and len(reject["reasons"]) == 1 and reason in reject["reasons"][0]


def test_an_absolute_outside_path_is_rejected_unless_allowed_and_then_linked_for_dvc(project):
    outside = project / "elsewhere" / "out.mp4"
    manifest = write_manifest(project / "in" / "manifest.jsonl", [mcq_row("abs", str(outside)),
                                                                  mcq_row("rel", "../elsewhere/out.mp4"),
                                                                  mcq_row("in", "v0.mp4")])
    params = ValidateParams(out_dir=str(project / "val"), max_reject_fraction=1.0)
    denied = validate_manifest(manifest, params, min_frames=4, progress=False, data_dir=project / "in")
    assert denied["accepted"] == 1
    assert "data.allow_outside" in rows_of(project / "val" / "rejects.jsonl")[0]["reasons"][0]
    allowed = validate_manifest(manifest, params, min_frames=4, progress=False, data_dir=project / "in",
                                allow_outside=True)
    assert allowed["accepted"] == 3
    links = link_outside(manifest, project / "in", True, project / "links")
    assert list(links.values()) == [str(outside.resolve())]  # both rows name the same outside file: one link
    [link] = [p for p in (project / "links").iterdir() if p.is_symlink()]
    assert link.resolve() == outside.resolve()
    assert link_outside(manifest, project / "in", False, project / "links") == {}
    assert sorted(p.name for p in (project / "links").iterdir()) == ["links.json"]
    index = write_shards(project / "val" / "manifest.jsonl", ShardParams(out_dir=str(project / "out"), n_frames=4,
                                                                         max_reject_fraction=1.0),
                         progress=False, data_dir=project / "in")
    assert index["rejected"] == 2  # the shard stage checks the same rule
    assert "outside data.dir" in rows_of(project / "out" / "rejects.jsonl")[0]["reasons"][0]


def test_an_expectation_that_errors_fails_loudly_instead_of_rejecting_nothing(project):
    manifest = write_manifest(project / "in" / "m.jsonl", [mcq_row("a", "v0.mp4")])
    from resadapt.data.manifest import read_manifest

    rows, _ = read_manifest(manifest)
    frame = probe_frame(rows, manifest.parent)
    contradictory = ValidateParams.model_construct(**{**ValidateParams().model_dump(), "min_fps": 30.0,
                                                      "max_fps": 10.0})  # past the params check, on purpose
    with pytest.raises(SuiteError, match="check 'fps sane'.*min_value cannot be greater than max_value"):
        run_suite(frame, build_checks(contradictory, 4))
    checks = build_checks(ValidateParams(), 4)
    _, stats = run_suite(frame, checks)
    assert [s["check"] for s in stats] == [c.name for c in checks]
    assert [s["expectation"] for s in stats] == [c.build().expectation_type for c in checks]


def test_shard_fails_when_too_many_rows_are_rejected_and_keeps_the_previous_shards(project):
    root = project / "in"
    manifest = write_manifest(root / "manifest.jsonl", [mcq_row(f"s{i}", f"v{i}.mp4") for i in range(4)])
    params = ShardParams(out_dir=str(project / "out"), n_frames=4)
    before_index = write_shards(manifest, params, progress=False)
    out = project / "out"
    tars = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    for i in range(4):
        (root / f"v{i}.mp4").write_bytes(b"garbage")
    with pytest.raises(ShardError, match=r"rejected 4 of 4 rows \(100.0%\), above shard.max_reject_fraction"):
        write_shards(manifest, params, progress=False)
    assert read_index(out) == before_index and {p.name: p.read_bytes() for p in out.glob("*.tar")} == tars
    assert len(rows_of(out / "failed" / "rejects.jsonl")) == 4
    with pytest.raises(ShardError, match="no rows"):
        write_shards(write_manifest(root / "empty.jsonl", []), params, progress=False)
    assert read_index(out) == before_index


def test_disk_full_while_writing_leaves_no_temp_and_the_previous_shards(project, monkeypatch):
    manifest = write_manifest(project / "in" / "manifest.jsonl", [mcq_row(f"s{i}", f"v{i}.mp4") for i in range(4)])
    params = ShardParams(out_dir=str(project / "out"), n_frames=4, maxcount=2)
    before = write_shards(manifest, params, progress=False)
    listing = sorted(p.name for p in (project / "out").iterdir())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wds.TarWriter, "write", full)
    monkeypatch.setattr(wds.TarWriter, "close", full)  # and closing fails too, as it does on a full disk
    with pytest.raises(OSError, match="No space left"):
        write_shards(manifest, params, progress=False)
    assert sorted(p.name for p in (project / "out").iterdir()) == listing
    assert read_index(project / "out") == before


@pytest.fixture
def built(project):
    manifest = write_manifest(project / "in" / "manifest.jsonl", [mcq_row(f"s{i}", f"v{i}.mp4") for i in range(4)])
    write_shards(manifest, ShardParams(out_dir=str(project / "out"), n_frames=4, maxcount=2), progress=False)
    return project / "out"


def test_readers_check_each_tar_against_the_index(built):
    tar = built / "train-000001.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF  # one flipped byte, same size
    tar.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"train-000001.tar: does not match index.json"):
        list(iter_split(built, "train"))
    tar.unlink()
    with pytest.raises(ShardError, match=r"train-000001.tar: listed in index.json but missing"):
        split_urls(built, "train")


def test_readers_check_counts_and_refuse_paths_in_the_index(built):
    index = json.loads((built / "index.json").read_text())
    index["splits"]["train"]["shards"][0]["samples"] = 3
    (built / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"train-000000.tar: holds 2 samples, index.json says 3"):
        list(iter_split(built, "train"))
    index["splits"]["train"]["shards"][0]["file"] = "../in/v0.mp4"
    (built / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match="is not a tar in"):
        split_urls(built, "train")
    (built / "index.json").write_text("{not json")
    with pytest.raises(ShardError, match="not a valid index"):
        read_index(built)


def test_a_killed_runs_temp_folders_are_cleared(built, project):
    (built / ".tmp-shards-killed").mkdir()
    (built / ".tmp-shards-killed" / "x.tar").write_bytes(b"partial")
    write_shards(project / "in" / "manifest.jsonl", ShardParams(out_dir=str(built), n_frames=4), progress=False)
    assert not any(p.name.startswith(".tmp") for p in built.iterdir())
    assert os.listdir(built)
