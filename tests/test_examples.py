"""The scripts in examples/ run (shortened) and show what they claim."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_training_learns_the_digits(capsys):
    pytest.importorskip("sklearn")
    results = _load("numpy_training").main(["--epochs", "4"])
    for name, result in results.items():
        assert result["curve"][-1] < result["curve"][0] / 3, name
        assert result["accuracy"] > 0.9, name
    assert "test accuracy" in capsys.readouterr().out


def test_torch_mlp_curves_agree(capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    results = _load("torch_mlp").main(["--epochs", "3"])
    (curve_a, acc_a, _), (curve_b, acc_b, _) = results.values()
    assert curve_a[-1] < curve_a[0] / 3
    assert max(abs(a - b) / a for a, b in zip(curve_a, curve_b)) < 1e-5
    assert abs(acc_a - acc_b) <= 1 / 450  # at most one test image apart
    assert "ms per epoch" in capsys.readouterr().out


def test_bigram_lm_curves_agree(capsys):
    pytest.importorskip("torch")
    results = _load("bigram_lm").main(["--steps", "4", "--batch-size", "64",
                                       "--tokens", "5000"])
    curves = [curve for curve, _ in results.values()]
    assert curves[0][-1] < curves[0][0]
    for curve in curves[1:]:
        assert max(abs(a - b) / a for a, b in zip(curves[0], curve)) < 1e-5
    assert "per training step" in capsys.readouterr().out
