"""Read-only inputs: memory-mapped files opened with mode "r" and arrays with
writeable=False work in every function and give the bits of ordinary arrays;
out= pointing at read-only memory raises a ValueError saying so, and writes
nothing."""
import re

import numpy as np
import pytest

import fastxent
from conftest import (assert_unchanged, make_logits, make_probs, make_targets, make_weight,
                      snapshot)


def _inputs(rng):
    x = make_logits(rng, (50, 37), np.float32)
    return {"x": x, "t": make_targets(rng, x.shape, n_ignore=4), "p": make_probs(rng, x.shape),
            "w": make_weight(rng, 37, np.float32), "sw": rng.random(50),
            "b": rng.standard_normal((20, 30)), "bt": rng.random((20, 30)),
            "bw": rng.random(30), "pw": rng.random(30) + 0.5}


def _results(a, backend):
    """Every public function on the arrays of a (values, in tuples of arrays)."""
    kw = dict(backend=backend)
    bp = 1 / (1 + np.exp(-np.asarray(a["b"])))
    ev = fastxent.evaluate(a["x"], a["t"], weight=a["w"], sample_weight=a["sw"],
                           per_sample=True, **kw)
    return {
        "cross_entropy": fastxent.cross_entropy(a["x"], a["t"], a["w"], label_smoothing=0.1,
                                                sample_weight=a["sw"], return_grad=True, **kw),
        "cross_entropy_probs": fastxent.cross_entropy(a["x"], a["p"], a["w"], z_loss=1e-3,
                                                      return_grad=True, **kw),
        "log_softmax": fastxent.log_softmax(a["x"], **kw),
        "softmax": fastxent.softmax(a["x"], axis=0, **kw),
        "logsumexp": fastxent.logsumexp(a["x"], axis=1, **kw),
        "binary_cross_entropy": fastxent.binary_cross_entropy(bp, a["bt"], a["bw"],
                                                              return_grad=True, **kw),
        "binary_cross_entropy_with_logits": fastxent.binary_cross_entropy_with_logits(
            a["b"], a["bt"], a["bw"], pos_weight=a["pw"], return_grad=True, **kw),
        "evaluate": (ev.pop("top_k_accuracy"), ev.pop("per_sample"), ev),
    }


def _as_bytes(value):
    if isinstance(value, dict):
        return {k: _as_bytes(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_as_bytes(v) for v in value)
    a = np.asarray(value)
    return a.dtype.str, a.shape, a.tobytes()


def _memory_mapped(arrays, tmp_path):
    mapped = {}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        mapped[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        assert not mapped[name].flags.writeable
    return mapped


def _frozen(arrays):
    frozen = {}
    for name, a in arrays.items():
        frozen[name] = a.copy()
        frozen[name].flags.writeable = False
    return frozen


@pytest.mark.parametrize("kind", ["memmap", "writeable_false"])
def test_read_only_inputs_work(backend, kind, rng, tmp_path):
    arrays = _inputs(rng)
    expected = _as_bytes(_results(arrays, backend))
    inputs = _memory_mapped(arrays, tmp_path) if kind == "memmap" else _frozen(arrays)
    snaps = snapshot(*inputs.values())
    got = _as_bytes(_results(inputs, backend))
    assert_unchanged(tuple(inputs.values()), snaps)
    for name in expected:
        assert got[name] == expected[name], name


def _read_only_out(like, kind, tmp_path):
    if kind == "memmap":
        np.save(tmp_path / "out.npy", np.zeros_like(like))
        return np.load(tmp_path / "out.npy", mmap_mode="r")
    out = np.zeros_like(like)
    out.flags.writeable = False
    return out


@pytest.mark.parametrize("kind", ["memmap", "writeable_false"])
@pytest.mark.parametrize("function", ["cross_entropy", "log_softmax", "softmax",
                                      "binary_cross_entropy",
                                      "binary_cross_entropy_with_logits"])
def test_read_only_out_is_refused(backend, function, kind, rng, tmp_path):
    a = _inputs(rng)
    if function == "cross_entropy":
        args, kw, like = (a["x"], a["t"]), dict(return_grad=True), a["x"]
    elif function in ("log_softmax", "softmax"):
        args, kw, like = (a["x"],), {}, a["x"]
    elif function == "binary_cross_entropy":
        args, kw, like = (1 / (1 + np.exp(-a["b"])), a["bt"]), dict(return_grad=True), a["b"]
    else:
        args, kw, like = (a["b"], a["bt"]), dict(return_grad=True), a["b"]
    out = _read_only_out(like, kind, tmp_path)
    snaps = snapshot(out, *args)
    with pytest.raises(ValueError, match=re.compile("out.*read-only", re.S)):
        getattr(fastxent, function)(*args, out=out, backend=backend, **kw)
    assert_unchanged((out,) + args, snaps)
