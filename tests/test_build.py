"""The build and the import: OpenMP compiled in, backends reported, imports light."""

import json
import os
import subprocess
import sys

import pytest

import fastxent
from fastxent import _threads


def test_openmp_enabled():
    if os.environ.get("FASTXENT_SKIP_OPENMP_TEST"):
        pytest.skip("FASTXENT_SKIP_OPENMP_TEST is set")
    status = fastxent.available_backends()["cython"]
    if not status.available:
        pytest.skip(f"backend 'cython' unavailable: {status.detail}")
    assert _threads.openmp_enabled(), f"the cython backend was built without OpenMP ({status.detail})"
    assert "OpenMP" in status.detail


def test_available_backends_reports_numpy():
    status = fastxent.available_backends()
    assert {"numpy", "cython"} <= set(status)
    for name, s in status.items():
        assert isinstance(s, fastxent.BackendStatus)
        assert isinstance(s.available, bool) and isinstance(s.detail, str) and s.detail, name
    assert status["numpy"].available


def test_public_names():
    for name in ("cross_entropy", "log_softmax", "softmax", "logsumexp", "available_backends",
                 "config", "BackendUnavailableError", "BackendStatus"):
        assert name in fastxent.__all__ and hasattr(fastxent, name)
    assert isinstance(fastxent.__version__, str)


def test_import_is_light():
    # API.md: import fastxent imports neither torch, Keras nor scikit-learn (nor scipy).
    code = ("import sys, json, fastxent; "
            "print(json.dumps(sorted(m for m in ('torch', 'scipy', 'sklearn', 'keras', "
            "'tensorflow', 'jax', 'numba') if m in sys.modules)))")
    src = os.path.dirname(os.path.dirname(fastxent.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
