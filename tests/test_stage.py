"""The stage shell: any failure is one line naming what is wrong, with the traceback only behind --debug."""

import sys

import pytest

from resadapt.data.shards import read_index
from resadapt.stage import StageError, run_stage


def run(monkeypatch, capsys, body, *argv, params="params.yaml"):
    monkeypatch.setattr(sys, "argv", ["stages/x.py", "--params", str(params), *argv])
    with pytest.raises(SystemExit) as exc:
        run_stage("x", "doc", body)
    return exc.value.code, capsys.readouterr().err


def test_every_failure_is_one_clear_line(monkeypatch, capsys, tmp_path):
    def corrupt_index(params, args):
        (tmp_path / "index.json").write_text("{not json")
        read_index(tmp_path)

    code, err = run(monkeypatch, capsys, corrupt_index)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"x: error: {tmp_path / 'index.json'}: not a valid index") and "--debug" in err

    def disk_full(params, args):
        raise OSError(28, "No space left on device", str(tmp_path / "out.tar"))

    code, err = run(monkeypatch, capsys, disk_full)
    assert code == 1 and err.startswith(f"x: error: {tmp_path / 'out.tar'}: No space left on device")

    def missing_split(params, args):
        raise KeyError("index.json: no split 'val' (have ['train'])")

    code, err = run(monkeypatch, capsys, missing_split)
    assert err.startswith("x: error: KeyError: index.json: no split 'val' (have")  # not the repr's quotes

    def user_error(params, args):
        raise StageError("manifest m.jsonl not found")

    code, err = run(monkeypatch, capsys, user_error)
    assert err == "x: error: manifest m.jsonl not found\n"


def test_debug_shows_the_traceback(monkeypatch):
    def boom(params, args):
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(sys, "argv", ["stages/x.py", "--debug"])
    with pytest.raises(ZeroDivisionError, match="deep inside"):
        run_stage("x", "doc", boom)


def test_a_missing_params_file_stops_before_the_body_runs(monkeypatch, capsys, tmp_path):
    ran = []
    code, err = run(monkeypatch, capsys, lambda p, a: ran.append(1), params=tmp_path / "typo.yaml")
    assert code == 1 and not ran and f"{tmp_path / 'typo.yaml'}: parameters file not found" in err
