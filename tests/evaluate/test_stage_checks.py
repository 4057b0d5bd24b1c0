"""The evaluate stage refuses, before any work, a split it would only reach after minutes of sweeping."""

import argparse
import importlib.util
from pathlib import Path

import pytest

from resadapt.config import load_params
from resadapt.stage import StageError

REPO = Path(__file__).resolve().parents[2]


def evaluate_stage():
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO / "stages" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_test_or_long_split_without_features_is_refused_naming_the_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is built here: the check must come first
    params = load_params(REPO / "params.yaml")
    features = params.features.model_copy(update={"splits": [s for s in params.features.splits if s != "test_long"]})
    params = params.model_copy(update={"features": features})
    with pytest.raises(StageError, match=r"\['test_long'\].*features\.splits"):
        evaluate_stage().main(params, argparse.Namespace(no_progress=True))
    assert not any(tmp_path.iterdir())
