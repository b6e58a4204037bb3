"""Every error path: the right exception, a message naming the argument, the
value or both shapes, and nothing the caller passed modified."""

import re

import numpy as np
import pytest

import fastxent
from fastxent import _backends

from conftest import assert_unchanged, make_logits, make_targets, make_weight, snapshot


def _base(rng, dtype=np.float64):
    x = make_logits(rng, (6, 5), dtype)
    t = make_targets(rng, x.shape)
    w = make_weight(rng, 5, dtype)
    return x, t, w


def _call_unchanged(exc, patterns, func, *args, **kwargs):
    """``func(*args, **kwargs)`` raises ``exc`` with every pattern in its
    message, and leaves every array argument as it was."""
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    snaps = snapshot(*arrays)
    with pytest.raises(exc) as info:
        func(*args, **kwargs)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))
    assert_unchanged(arrays, snaps)
    return info


# --------------------------------------------------------------------------
# cross_entropy: one valid call, one argument spoiled at a time.
# --------------------------------------------------------------------------

def _spoil(case, x, t, w, rng):
    """(args, kwargs, exception, patterns) for an error case."""
    kw = dict(weight=w, return_grad=True)
    target = t
    inp = x
    esc = re.escape
    if case == "target_too_large":
        target = t.copy()
        target[2] = 5
        return (inp, target), kw, IndexError, [r"\b5\b", esc("(2,)"), esc("[0, 5)")]
    if case == "target_negative":
        target = t.copy()
        target[4] = -1
        return (inp, target), kw, IndexError, [r"-1\b", esc("(4,)")]
    if case == "target_huge_uint64":
        target = t.astype(np.uint64)
        target[1] = 2**63 + 7
        return (inp, target), kw, IndexError, [str(2**63 + 7), esc("(1,)")]
    if case == "target_not_the_ignore_index":
        target = t.copy()
        target[3] = -100
        kw["ignore_index"] = 7        # -100 is no longer ignored
        return (inp, target), kw, IndexError, [r"-100\b", esc("(3,)")]
    if case == "target_bad_in_3d":
        inp = make_logits(rng, (2, 5, 3))
        target = make_targets(rng, inp.shape)
        target[1, 2] = 9
        return (inp, target), kw, IndexError, [r"\b9\b", esc("(1, 2)")]
    if case == "target_bad_unbatched":
        inp = x[0]
        target = np.array(5)
        return (inp, target), kw, IndexError, [r"\b5\b", esc("()")]
    if case == "target_shape":
        return (inp, t[:4]), kw, ValueError, [esc("(4,)"), esc("(6, 5)")]
    if case == "target_shape_3d":
        inp = make_logits(rng, (2, 5, 3))
        return (inp, np.zeros((2, 5), np.int64)), kw, ValueError, [esc("(2, 5)"), esc("(2, 5, 3)"),
                                                                  esc("(2, 3)")]
    if case == "probs_shape":
        return (inp, np.full((6, 4), 0.25)), kw, ValueError, [esc("(6, 4)"), esc("(6, 5)")]
    if case == "weight_shape":
        kw["weight"] = w[:4]
        return (inp, t), kw, ValueError, ["weight", esc("(4,)"), r"\b5\b"]
    if case == "weight_2d":
        kw["weight"] = np.ones((5, 1))
        return (inp, t), kw, ValueError, ["weight", esc("(5, 1)")]
    if case == "weight_strings":
        kw["weight"] = np.array(["a"] * 5)
        return (inp, t), kw, TypeError, ["weight"]
    if case.startswith("reduction="):
        kw["reduction"] = eval(case.split("=", 1)[1])
        return (inp, t), kw, ValueError, ["reduction", re.escape(repr(kw["reduction"]))]
    if case.startswith("backend="):
        kw["backend"] = eval(case.split("=", 1)[1])
        return (inp, t), kw, ValueError, ["backend", re.escape(repr(kw["backend"]))]
    if case.startswith("label_smoothing="):
        kw["label_smoothing"] = float(case.split("=", 1)[1])
        return (inp, t), kw, ValueError, ["label_smoothing"]
    if case == "label_smoothing_string":
        kw["label_smoothing"] = "a lot"
        return (inp, t), kw, TypeError, ["label_smoothing"]
    if case == "ignore_index_float":
        kw["ignore_index"] = 1.5
        return (inp, t), kw, TypeError, ["ignore_index"]
    if case.startswith("num_threads="):
        value = eval(case.split("=", 1)[1])
        kw["num_threads"] = value
        exc = ValueError if isinstance(value, int) and not isinstance(value, bool) else TypeError
        return (inp, t), kw, exc, ["num_threads"]
    if case == "input_strings":
        return (np.array([["a"] * 5] * 6), t), kw, TypeError, ["input"]
    if case == "input_complex":
        return (x.astype(np.complex128), t), kw, TypeError, ["input", "complex"]
    if case == "input_object":
        return (np.array([[None] * 5] * 6), t), kw, TypeError, ["input"]
    if case == "input_scalar":
        return (np.float64(1.0), np.array(0)), kw, ValueError, ["input", "scalar"]
    if case == "input_no_classes":
        return (np.zeros((6, 0)), t), kw, ValueError, ["class", esc("(6, 0)")]
    if case == "target_strings":
        return (inp, np.array(["a"] * 6)), kw, TypeError, ["target"]
    if case == "target_bool":
        return (inp, np.zeros(6, bool)), kw, TypeError, ["target", "bool"]
    if case == "target_complex":
        return (inp, t.astype(np.complex64)), kw, TypeError, ["target"]
    if case == "grad_output_shape_none":
        kw.update(reduction="none", grad_output=np.ones(5))
        return (inp, t), kw, ValueError, ["grad_output", esc("(5,)"), esc("(6,)")]
    if case == "grad_output_array_for_mean":
        kw.update(grad_output=np.ones(6))
        return (inp, t), kw, ValueError, ["grad_output", esc("(6,)")]
    if case == "grad_output_strings":
        kw.update(grad_output="x")
        return (inp, t), kw, TypeError, ["grad_output"]
    if case == "grad_output_without_return_grad":
        kw.update(grad_output=2.0, return_grad=False)
        return (inp, t), kw, ValueError, ["grad_output"]
    raise ValueError(case)


CASES = ["target_too_large", "target_negative", "target_huge_uint64",
         "target_not_the_ignore_index", "target_bad_in_3d", "target_bad_unbatched",
         "target_shape", "target_shape_3d", "probs_shape", "weight_shape", "weight_2d",
         "weight_strings", "reduction='avg'", "reduction='MEAN'", "reduction=None",
         "backend='gpu'", "backend=None", "backend=1", "label_smoothing=-0.1",
         "label_smoothing=1.5", "label_smoothing=nan", "label_smoothing=inf",
         "label_smoothing_string", "ignore_index_float", "num_threads=0", "num_threads=-2",
         "num_threads=1.5", "num_threads='2'", "num_threads=True", "input_strings",
         "input_complex", "input_object", "input_scalar", "input_no_classes",
         "target_strings", "target_bool", "target_complex", "grad_output_shape_none",
         "grad_output_array_for_mean", "grad_output_strings",
         "grad_output_without_return_grad"]


@pytest.mark.parametrize("out_kind", ["none", "separate", "input"])
@pytest.mark.parametrize("case", CASES)
def test_cross_entropy_errors(backend, case, out_kind, rng):
    x, t, w = _base(rng)
    args, kw, exc, patterns = _spoil(case, x, t, w, rng)
    inp = args[0]
    if out_kind == "separate" and isinstance(inp, np.ndarray) and inp.dtype == np.float64:
        kw["out"] = np.full(inp.shape, 7.0)
    elif out_kind == "input" and isinstance(inp, np.ndarray) and inp.dtype == np.float64:
        kw["out"] = inp       # in place: the input must survive the error too
    elif out_kind != "none":
        pytest.skip("no out= of the input's shape and dtype for this case")
    if kw.get("return_grad") is False:
        kw.pop("out", None)
    kw.setdefault("backend", backend)
    _call_unchanged(exc, patterns, fastxent.cross_entropy, *args, **kw)


def test_index_error_reports_first_bad_target(backend, rng):
    x, t, _ = _base(rng)
    t[[1, 3]] = [8, -5]
    info = _call_unchanged(IndexError, [r"\b8\b", re.escape("(1,)")], fastxent.cross_entropy,
                           x, t, backend=backend)
    assert "-5" not in str(info.value)


def test_ignore_index_inside_range_still_checks_others(backend, rng):
    x, t, _ = _base(rng)
    t[0] = 1
    t[5] = 5
    _call_unchanged(IndexError, [r"\b5\b", re.escape("(5,)")], fastxent.cross_entropy, x, t,
                    ignore_index=1, backend=backend)


@pytest.mark.parametrize("case", ["shape", "dtype", "readonly", "list", "no_grad",
                                  "readonly_input"])
def test_out_errors(backend, case, rng):
    x, t, w = _base(rng, np.float32)
    kw = dict(return_grad=True, backend=backend)
    esc = re.escape
    if case == "shape":
        out, exc, pats = np.zeros((6, 4), np.float32), ValueError, ["out", esc("(6, 4)"),
                                                                    esc("(6, 5)")]
    elif case == "dtype":
        out, exc, pats = np.zeros((6, 5), np.float64), ValueError, ["out", "float64", "float32"]
    elif case == "readonly":
        out = np.zeros((6, 5), np.float32)
        out.flags.writeable = False
        exc, pats = ValueError, ["out", "read-only"]
    elif case == "list":
        out, exc, pats = np.zeros((6, 5), np.float32).tolist(), TypeError, ["out"]
    elif case == "no_grad":
        out, exc, pats = np.zeros((6, 5), np.float32), ValueError, ["out"]
        kw["return_grad"] = False
    elif case == "readonly_input":       # out=input where input is read-only
        x.flags.writeable = False
        out, exc, pats = x, ValueError, ["out", "read-only"]
    _call_unchanged(exc, pats, fastxent.cross_entropy, x, t, w, out=out, **kw)


def test_float16_out_must_be_float16(backend, rng):
    x = make_logits(rng, (4, 3), np.float16)
    t = make_targets(rng, x.shape)
    out = np.zeros((4, 3), np.float32)     # the compute dtype is not the gradient's dtype
    _call_unchanged(ValueError, ["out", "float16"], fastxent.cross_entropy, x, t,
                    return_grad=True, out=out, backend=backend)


def test_integer_input_cannot_be_its_own_out(backend, rng):
    x = np.arange(12).reshape(4, 3)
    t = np.array([0, 1, 2, 0])
    _call_unchanged(ValueError, ["out", "float64"], fastxent.cross_entropy, x, t,
                    return_grad=True, out=x, backend=backend)


# --------------------------------------------------------------------------
# A backend that cannot run here (simulated, so this runs everywhere).
# --------------------------------------------------------------------------

@pytest.fixture
def broken_cython(monkeypatch):
    reason = "simulated: the compiled extension is missing"
    monkeypatch.setitem(_backends._LOADERS, "cython", lambda: (None, reason))
    return reason


def test_unavailable_backend_raises_runtime_error(broken_cython, rng):
    x, t, w = _base(rng)
    status = fastxent.available_backends()["cython"]
    assert status.available is False and status.detail == broken_cython
    out = np.full(x.shape, 3.0)
    info = _call_unchanged(RuntimeError, ["cython", re.escape(broken_cython)],
                           fastxent.cross_entropy, x, t, w, return_grad=True, out=out,
                           backend="cython")
    assert isinstance(info.value, fastxent.BackendUnavailableError)
    _call_unchanged(fastxent.BackendUnavailableError, ["cython"], fastxent.cross_entropy,
                    x, t, return_grad=True, out=x, backend="cython")
    for op in ("log_softmax", "softmax", "logsumexp"):
        _call_unchanged(fastxent.BackendUnavailableError, [re.escape(broken_cython)],
                        getattr(fastxent, op), x, backend="cython")


def test_auto_falls_back_with_a_warning(broken_cython, rng):
    x, t, _ = _base(rng)
    _backends._warn_fallback.cache_clear()
    with pytest.warns(RuntimeWarning, match=re.escape(broken_cython)):
        loss = fastxent.cross_entropy(x, t)
    assert loss == fastxent.cross_entropy(x, t, backend="numpy")


def test_backend_unavailable_error_is_runtime_error():
    assert issubclass(fastxent.BackendUnavailableError, RuntimeError)


# --------------------------------------------------------------------------
# log_softmax, softmax, logsumexp.
# --------------------------------------------------------------------------

TRANSFORMS = ["log_softmax", "softmax", "logsumexp"]


@pytest.mark.parametrize("op", TRANSFORMS)
@pytest.mark.parametrize("case", ["axis_out_of_range", "axis_negative_out_of_range",
                                  "axis_float", "strings", "complex", "scalar", "backend",
                                  "num_threads_zero", "num_threads_float"])
def test_transform_errors(backend, op, case, rng):
    x = make_logits(rng, (4, 5))
    kw = dict(backend=backend)
    args = (x,)
    if case == "axis_out_of_range":
        kw["axis"], exc, pats = 2, ValueError, ["axis", r"\b2\b"]
    elif case == "axis_negative_out_of_range":
        kw["axis"], exc, pats = -3, ValueError, ["axis", r"-3\b"]
    elif case == "axis_float":
        kw["axis"], exc, pats = 1.0, TypeError, ["axis"]
    elif case == "strings":
        args, exc, pats = (np.array(["a", "b"]),), TypeError, ["input"]
    elif case == "complex":
        args, exc, pats = (x.astype(np.complex64),), TypeError, ["input"]
    elif case == "scalar":
        args, exc, pats = (np.float64(2.0),), ValueError, ["input"]
    elif case == "backend":
        kw["backend"], exc, pats = "tpu", ValueError, ["backend", "'tpu'"]
    elif case == "num_threads_zero":
        kw["num_threads"], exc, pats = 0, ValueError, ["num_threads"]
    elif case == "num_threads_float":
        kw["num_threads"], exc, pats = 2.0, TypeError, ["num_threads"]
    _call_unchanged(exc, pats, getattr(fastxent, op), *args, **kw)


@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
@pytest.mark.parametrize("case", ["shape", "dtype", "readonly", "readonly_input", "list"])
def test_transform_out_errors(backend, op, case, rng):
    x = make_logits(rng, (4, 5), np.float32)
    if case == "shape":
        out, exc, pats = np.zeros((5, 4), np.float32), ValueError, ["out", re.escape("(5, 4)"),
                                                                    re.escape("(4, 5)")]
    elif case == "dtype":
        out, exc, pats = np.zeros((4, 5), np.float64), ValueError, ["out", "float32"]
    elif case == "readonly":
        out = np.zeros((4, 5), np.float32)
        out.flags.writeable = False
        exc, pats = ValueError, ["out", "read-only"]
    elif case == "readonly_input":
        x.flags.writeable = False
        out, exc, pats = x, ValueError, ["out", "read-only"]
    else:
        out, exc, pats = [[0.0] * 5] * 4, TypeError, ["out"]
    _call_unchanged(exc, pats, getattr(fastxent, op), x, out=out, backend=backend)


# --------------------------------------------------------------------------
# config().
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(backend=3), ValueError, "backend"),
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(num_threads=-1), ValueError, "num_threads"),
    (dict(num_threads=1.5), TypeError, "num_threads"),
    (dict(num_threads=True), TypeError, "num_threads"),
])
def test_config_errors(kwargs, exc, pattern, monkeypatch, rng):
    import fastxent._api as api
    calls = []
    real = api.get_kernel
    monkeypatch.setattr(api, "get_kernel", lambda *a: calls.append(a) or real(*a))
    with pytest.raises(exc, match=pattern):
        with fastxent.config(**kwargs):
            pass
    # The defaults are untouched (an input large enough to use every core).
    fastxent.cross_entropy(np.zeros((512, 512)), np.zeros(512, np.int64), backend="numpy")
    from fastxent._threads import usable_cores
    assert calls[-1][2] == usable_cores()


def test_num_threads_numpy_integer_is_accepted(backend, rng):
    x, t, _ = _base(rng)
    a = fastxent.cross_entropy(x, t, backend=backend, num_threads=np.int64(2))
    b = fastxent.cross_entropy(x, t, backend=backend, num_threads=2)
    assert a == b
