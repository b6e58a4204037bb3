"""``fastxent bench``: it runs every operation, checks every implementation
before timing it, reports what does not match, and says what it skipped."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fastxent.bench import cli, implementations
from fastxent.bench.implementations import OPS, make_problem, reference
from fastxent.bench.run import check

TINY = ["--shapes", "48x10,16x40", "--repeat", "3", "--budget", "0"]


def run(capsys, *args):
    code = cli.main(["bench", *TINY, *args])
    return code, capsys.readouterr().out


def test_every_operation_checked_and_timed(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code, out = run(capsys, "--dtype", "float32,float64", "--json", str(path))
    assert code == 0
    saved = json.loads(path.read_text())
    assert saved["machine"]["cpu"] and saved["machine"]["versions"]["numpy"] == np.__version__
    rows = saved["results"]
    for op in OPS:
        for dtype in ("float32", "float64"):
            case = [r for r in rows if r["op"] == op and r["dtype"] == dtype]
            assert {r["family"] for r in case} >= {"fastxent", "numpy", "roofline"}
            for r in case:
                assert "failed" not in r, r
                assert len(r["times_s"]) == 3 and r["median_s"] > 0 and r["gb_s"] > 0
                if r["family"] != "roofline":
                    assert r["matches"], r
    for title in implementations.OP_TITLES.values():
        assert title in out
    assert "MISMATCH" not in out and "FAILED" not in out


def test_competitors_run_where_installed(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    code, out = run(capsys, "--ops", "loss+grad,loss", "--competitors", "torch,sklearn")
    assert code == 0
    for name in ("PyTorch fwd+bwd", "scikit-learn _loss", "scikit-learn log_loss(softmax)"):
        assert name in out
    assert "MISMATCH" not in out


def test_a_mismatch_is_reported_not_hidden(capsys, monkeypatch):
    real = implementations.numpy_loss_grad

    def wrong(x, labels):
        loss, grad = real(x, labels)
        return loss * 1.01, grad
    monkeypatch.setattr(implementations, "numpy_loss_grad", wrong)
    code, out = run(capsys, "--ops", "loss+grad", "--competitors", "scipy")
    assert code == 0  # a competitor's mismatch is shown; only fastxent's fails the run
    numpy_rows = [line for line in out.splitlines() if "NumPy (1 thread)" in line]
    assert numpy_rows and all("MISMATCH (rel. error 1.0e-02)" in line for line in numpy_rows)
    assert all(" ok" in line for line in out.splitlines() if "fastxent cython" in line)


def test_a_wrong_fastxent_result_fails_the_run(capsys, monkeypatch):
    real = implementations.fastxent.log_softmax
    monkeypatch.setattr(implementations.fastxent, "log_softmax",
                        lambda x, **kw: real(x, **kw) + (0 if kw.get("backend") == "numpy"
                                                         else 1e-2))
    code, out = run(capsys, "--ops", "log_softmax", "--competitors", "scipy")
    assert code == 1 and "MISMATCH" in out


def test_missing_competitor_is_one_line_with_the_install_command(capsys, monkeypatch):
    real = implementations._try_import

    def no_keras(name):
        return (None, "ModuleNotFoundError: No module named 'keras'") if name == "keras" \
            else real(name)
    monkeypatch.setattr(implementations, "_try_import", no_keras)
    code, out = run(capsys, "--ops", "loss", "--competitors", "keras")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("skipped keras")]
    assert lines == ["skipped keras (ModuleNotFoundError: No module named 'keras'): "
                     + implementations.INSTALL_HINTS["keras"]]


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    code, _ = run(capsys, "--ops", "loss,bce_logits", "--competitors", "scipy",
                  "--plot", str(path))
    assert code == 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--shapes", "100"], "a shape is ROWSxCLASSES"),
    (["--shapes", "0x10"], "at least one row"),
    (["--dtype", "float16"], "unknown dtype float16"),
    (["--ops", "loss,grad"], "unknown operation grad"),
    (["--backends", "fortran"], "unknown backend fortran"),
])
def test_bad_arguments_name_what_is_wrong(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_reference_is_float64_and_check_measures_relative_error():
    p = make_problem("loss+grad", (8, 5), np.float32)
    loss, grad = reference(p)
    assert grad.dtype == np.float64
    assert check((loss, grad), (loss, grad)) == 0.0
    assert check((loss * 1.001, grad), (loss, grad)) == pytest.approx(1e-3)
    assert check((loss, grad[:4]), (loss, grad)) == np.inf


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "fastxent", "bench", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--quick" in done.stdout
