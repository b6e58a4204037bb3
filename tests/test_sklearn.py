"""fastxent.sklearn.log_loss against sklearn.metrics.log_loss itself: the same
values, the same warnings and the same errors, on every backend."""

import doctest
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import metrics as sk_metrics  # noqa: E402

import fastxent  # noqa: E402
import fastxent.sklearn  # noqa: E402
from fastxent.sklearn import InvalidParameterError, log_loss  # noqa: E402

from conftest import assert_unchanged, snapshot  # noqa: E402

# scikit-learn computes in y_proba's dtype; so does fastxent, except float16
# (computed in float32, so closer to the exact value than scikit-learn's).
VALUE_TOL = {np.dtype(np.float64): dict(rtol=1e-12, atol=1e-15),
             np.dtype(np.float32): dict(rtol=2e-6, atol=1e-7),
             np.dtype(np.float16): dict(rtol=2e-3, atol=2e-3)}


def outcome(func, *args, **kwargs):
    """(result, warnings): result is ("ok", value) or ("error", exception);
    warnings are (category, message) pairs, fastxent's backend notice aside."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("ok", func(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - any exception is compared
            result = ("error", exc)
    seen = sorted({(w.category, str(w.message)) for w in caught
                   if not str(w.message).startswith("fastxent")},
                  key=lambda w: (w[0].__name__, w[1]))
    return result, seen


def proba_dtype(y_proba):
    dtype = getattr(y_proba, "dtype", None)
    return dtype if dtype in VALUE_TOL else np.dtype(np.float64)


def assert_same_as_sklearn(backend, y_true, y_proba, **kwargs):
    """Same value (within the dtype's tolerance) and the very same warnings."""
    expected, expected_warnings = outcome(sk_metrics.log_loss, y_true, y_proba, **kwargs)
    assert expected[0] == "ok", f"scikit-learn raised {expected[1]!r}"
    snaps = snapshot(*[a for a in (y_true, y_proba) if isinstance(a, np.ndarray)])
    with fastxent.config(backend=backend):
        got, got_warnings = outcome(log_loss, y_true, y_proba, **kwargs)
    assert got[0] == "ok", f"fastxent raised {got[1]!r}"
    assert_unchanged([a for a in (y_true, y_proba) if isinstance(a, np.ndarray)], snaps)
    assert type(got[1]) is float
    np.testing.assert_allclose(got[1], expected[1], **VALUE_TOL[proba_dtype(y_proba)])
    assert got_warnings == expected_warnings
    return got[1], got_warnings


# --------------------------------------------------------------------------
# Values (and warnings) on many inputs.
# --------------------------------------------------------------------------

def _probs(rng, n, c, dtype=np.float64):
    p = rng.random((n, c)) + 0.01
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def _value_cases():
    rng = np.random.default_rng(445)
    n = 37
    p2, p3, p5 = _probs(rng, n, 2), _probs(rng, n, 3), _probs(rng, n, 5)
    y2, y3 = rng.integers(0, 2, n), rng.integers(0, 3, n)
    y3[:3] = [0, 1, 2]
    w = rng.random(n) * 3
    names3 = np.array(["ant", "bee", "cat"])
    cases = {
        "binary 2-D": (y2, p2, {}),
        "binary 1-D": (y2, p2[:, 1], {}),
        "binary 1-column": (y2, p2[:, 1:], {}),
        "multiclass": (y3, p3, {}),
        "many classes": (rng.integers(0, 50, 400), _probs(rng, 400, 50), {"labels": range(50)}),
        "one sample": ([2], [[0.2, 0.3, 0.5]], {"labels": [0, 1, 2]}),
        "lists": (y3.tolist(), p3.tolist(), {}),
        "str labels": (names3[y3].tolist(), p3, {}),
        "str array": (names3[y3], p3, {}),
        "object str array": (names3[y3].astype(object), p3, {}),
        "str binary 1-D": (np.array(["no", "yes"])[y2], p2[:, 1], {}),
        "bool labels": (y2.astype(bool), p2, {}),
        "bool labels 1-D": (y2.astype(bool).tolist(), p2[:, 1], {}),
        "float labels": (y3 * 2.0 - 1.0, p3, {}),
        "negative int labels": (y3 - 7, p3, {}),
        "uint8 labels": (y3.astype(np.uint8), p3, {}),
        "int8 labels with int labels=": (y3.astype(np.int8), p3, {"labels": [0, 1, 2]}),
        "large int labels": (y3 * 10**12, p3, {}),
        "column y_true": (y3[:, None], p3, {}),
        "labels absent from y_true": (y3 % 2, p3, {"labels": [0, 1, 2]}),
        "single label with labels=": (np.zeros(n, int), p2, {"labels": [0, 1]}),
        "str labels absent": (names3[y3 % 2], p3, {"labels": names3}),
        "labels= wider, 1-D y_true": (np.array([1, 3, 3, 1]), _probs(rng, 4, 5),
                                      {"labels": [0, 1, 2, 3, 4]}),
        "unsorted labels= (warns)": (y3, p3, {"labels": [2, 0, 1]}),
        "unsorted str labels= (warns)": (names3[y3], p3, {"labels": ["cat", "ant", "bee"]}),
        "sample_weight": (y3, p3, {"sample_weight": w}),
        "sample_weight list of ints": (y3, p3, {"sample_weight": (1 + y3 % 4).tolist()}),
        "sample_weight float32": (y3, p3, {"sample_weight": w.astype(np.float32)}),
        "sample_weight bool": (y3, p3, {"sample_weight": (w > 1).tolist()}),
        "sample_weight with zeros": (y3, p3, {"sample_weight": np.where(w > 1, w, 0.0)}),
        "normalize=False": (y3, p3, {"normalize": False}),
        "normalize=np.False_": (y3, p3, {"normalize": np.False_}),
        "normalize=False, sample_weight": (y3, p3, {"normalize": False, "sample_weight": w}),
        "zeros and ones (clipped)": ([0, 1, 2, 1], np.eye(3)[[0, 1, 1, 2]], {}),
        "exact predictions (clipped)": ([0, 1, 2], np.eye(3), {}),
        "binary 1-D zeros and ones": ([0, 1, 1, 0], [0.0, 1.0, 0.0, 1.0], {}),
        "integer y_proba": ([0, 1], [[1, 0], [0, 1]], {}),
        "tiny probabilities": (y3, np.where(p3 > 0.5, 1.0, 1e-30) / np.where(
            p3 > 0.5, 1.0, 1e-30).sum(axis=1, keepdims=True), {}),
        "rows not summing to 1 (warns)": (y3, p3 * 0.8, {}),
        "rows summing to 1 + 1e-9": (y3, p3 * (1 + 1e-9), {}),
        "one row off (warns)": (y3, np.vstack([p3[:-1], [0.5, 0.3, 0.1]]), {}),
        "unnormalised and clipped (warns)": ([0, 1, 2], [[1.0, 1.0, 0.0], [0.0, 0.5, 0.0],
                                                          [0.2, 0.2, 1.0]], {}),
        "float32": (y3, p3.astype(np.float32), {}),
        "float32 1-D": (y2, p2[:, 1].astype(np.float32), {}),
        "float32 zeros and ones": ([0, 1, 2], np.eye(3, dtype=np.float32), {}),
        "float32 rows off by 1e-5": (y3, (p3 * (1 + 1e-5)).astype(np.float32), {}),
        "float32 rows off by 1e-3 (warns)": (y3, (p3 * (1 + 1e-3)).astype(np.float32), {}),
        "float32 weighted sum": (y3, p3.astype(np.float32),
                                 {"sample_weight": w, "normalize": False}),
        "float16": (y3, p3.astype(np.float16), {}),
        "Fortran order": (y3, np.asfortranarray(p3), {}),
        "strided": (y3, p5[:, ::2] / p5[:, ::2].sum(axis=1, keepdims=True), {}),
        "negative strides": (y3[::-1], p3[::-1, ::-1], {}),
        "read-only": (y3, np.lib.stride_tricks.as_strided(p3, writeable=False), {}),
        "multilabel indicator": ([[1, 0, 1], [0, 1, 1], [0, 0, 0]],
                                 [[0.3, 0.3, 0.4], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], {}),
        "multilabel indicator, 1-D y_proba": ([[0, 1], [1, 1]], [0.3, 0.7], {}),
        "indicator of two other integers": ([[2, 5], [5, 2]], [[0.3, 0.7], [0.2, 0.8]], {}),
        "bool indicator": (np.array([[True, False], [False, True]]),
                           [[0.3, 0.7], [0.2, 0.8]], {}),
        "list of tuples": ([(0, 1), (1, 0)], [0.3, 0.7], {}),
    }
    return cases


VALUE_CASES = _value_cases()


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_values_and_warnings_match_sklearn(backend, case):
    y_true, y_proba, kwargs = VALUE_CASES[case]
    value, warned = assert_same_as_sklearn(backend, y_true, y_proba, **kwargs)
    assert np.isfinite(value)
    if "(warns)" in case:
        assert warned and all(category is UserWarning for category, _ in warned)
    else:
        assert warned == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_problems_match_sklearn(backend, dtype):
    rng = np.random.default_rng(2)
    for _ in range(12):
        n, c = int(rng.integers(1, 60)), int(rng.integers(2, 9))
        # Sharp to flat rows, some with exact zeros and ones.
        p = rng.random((n, c)) ** rng.uniform(0.2, 12)
        p[rng.random((n, c)) < 0.2] = 0.0
        p[p.sum(axis=1) == 0, 0] = 1.0
        p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
        y = rng.integers(0, c, n)
        w = rng.random(n) if rng.random() < 0.5 else None
        for normalize in (True, False):
            assert_same_as_sklearn(backend, y, p, labels=np.arange(c), sample_weight=w,
                                   normalize=normalize)


def test_clipping_is_the_dtypes_epsilon(backend):
    # A certain and right prediction costs -log(1 - eps), a certain and
    # wrong one -log(eps): eps of y_proba's dtype, not a fixed 1e-15.
    with fastxent.config(backend=backend):
        for dtype in (np.float64, np.float32):
            eps = float(np.finfo(dtype).eps)
            right = log_loss([0, 1], np.eye(2, dtype=dtype))
            wrong = log_loss([0, 1], np.eye(2, dtype=dtype)[::-1])
            assert right == pytest.approx(-np.log1p(-eps), rel=1e-6)
            assert wrong == pytest.approx(-np.log(eps), rel=1e-6)


def test_rows_are_not_renormalised(backend):
    # scikit-learn 1.9 warns about a row that does not sum to 1 but keeps its
    # values: the loss is -log p[y], not -log(p[y] / sum(p)).
    with fastxent.config(backend=backend):
        with pytest.warns(UserWarning, match="do not sum to one"):
            value = log_loss([0, 1], [[0.2, 0.2], [0.1, 0.4]])
    assert value == pytest.approx(-(np.log(0.2) + np.log(0.4)) / 2, rel=1e-14)


def test_layer_calls_the_kernels(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("reduction"))
        return fastxent.cross_entropy(*args, **kwargs)

    monkeypatch.setattr(fastxent.sklearn, "cross_entropy", spy)
    log_loss([0, 1, 2], [[0.2, 0.3, 0.5]] * 3)
    log_loss([[1, 0], [1, 1]], [[0.2, 0.8], [0.6, 0.4]])
    assert calls == ["none", "none"]


# --------------------------------------------------------------------------
# Errors: the same exception type as scikit-learn, and its message.
# --------------------------------------------------------------------------

P = [0.3, 0.7]
ERROR_CASES = {
    # parameter validation
    "y_true scalar": ((5, P), {}, "'y_true' parameter of log_loss must be an array-like"),
    "y_true string": (("ab", P), {}, "'y_true' parameter of log_loss must be an array-like"),
    "y_true None": ((None, P), {}, "'y_true' parameter of log_loss must be an array-like"),
    "y_proba scalar": (([0, 1], 0.5), {}, "'y_proba' parameter of log_loss must be"),
    "normalize int": (([0, 1], P), {"normalize": 1}, "'normalize' parameter of log_loss must "
                      "be an instance of 'bool' or an instance of 'numpy.bool'. Got 1"),
    "sample_weight scalar": (([0, 1], P), {"sample_weight": 1.0},
                             "'sample_weight' parameter of log_loss must be an array-like "
                             "or None. Got 1.0 instead"),
    "labels scalar": (([0, 1], P), {"labels": 1}, "'labels' parameter of log_loss must be"),
    # y_proba
    "y_proba None": (([0, 1], None), {}, "Input contains NaN."),
    "y_proba NaN": (([0, 1], [np.nan, 0.7]), {}, "Input contains NaN."),
    "y_proba inf": (([0, 1], [np.inf, 0.7]), {}, "Input contains infinity or a value too "
                    "large for dtype('float64')."),
    "y_proba inf and NaN": (([0, 1], [np.inf, np.nan]), {}, "Input contains NaN."),
    "y_proba float32 inf": (([0, 1], np.array([0.5, np.inf], np.float32)), {},
                            "value too large for dtype('float32')"),
    "y_proba above 1": (([0, 1], [1.3, 0.7]), {}, "y_prob contains values greater than 1: 1.3"),
    "y_proba below 0": (([0, 1], [-0.3, 0.7]), {}, "y_prob contains values lower than 0: -0.3"),
    "y_proba strings": (([0, 1], ["a", "b"]), {}, "could not convert string to float"),
    "y_proba complex list": (([0, 1], [1j, 0.5]), {}, "complex"),
    "y_proba complex array": (([0, 1], np.array([0.3j, 0.7])), {}, "Complex data not supported"),
    "y_proba 0-d": (([0, 1], np.array(0.5)), {}, "Input should have at least 1 dimension"),
    "y_proba 3-D": (([0, 1], [[[0.3, 0.7]]] * 2), {}, "Found array with dim 3, while dim <= 2"),
    "y_proba empty": (([], []), {}, "Found array with 0 sample(s) (shape=(0,)) while a minimum "
                      "of 1 is required."),
    "y_proba no columns": (([0, 1], np.zeros((2, 0))), {}, "Found array with 0 feature(s)"),
    "y_proba ragged": (([0, 1], [[0.3, 0.7], [0.5]]), {}, "inhomogeneous"),
    # lengths and sample_weight
    "lengths differ": (([0, 1], [[0.3, 0.7]] * 3), {}, "Found input variables with "
                       "inconsistent numbers of samples: [3, 2]"),
    "sample_weight length": (([0, 1], P), {"sample_weight": [1, 2, 3]},
                             "inconsistent numbers of samples: [2, 2, 3]"),
    "sample_weight 0-d": (([0, 1], P), {"sample_weight": np.array(1.0)},
                          "Input should have at least 1 dimension"),
    "sample_weight 2-D": (([0, 1], P), {"sample_weight": [[1], [2]]},
                          "Sample weights must be 1D array or scalar, got 2D array"),
    "sample_weight 3-D": (([0, 1], P), {"sample_weight": [[[1]], [[2]]]},
                          "Found array with dim 3"),
    "sample_weight no columns": (([0, 1], P), {"sample_weight": np.zeros((2, 0))},
                                 "Found array with 0 feature(s)"),
    "sample_weight all zero": (([0, 1], P), {"sample_weight": [0, 0]},
                               "Sample weights must contain at least one non-zero number."),
    "sample_weight sums to zero": (([0, 1], P), {"sample_weight": [1, -1]},
                                   "Weights sum to zero, can't be normalized"),
    "sample_weight NaN": (([0, 1], P), {"sample_weight": [1, np.nan]},
                          "Input sample_weight contains NaN."),
    "sample_weight inf": (([0, 1], P), {"sample_weight": [np.inf, 2]},
                          "Input sample_weight contains infinity"),
    "sample_weight complex": (([0, 1], P), {"sample_weight": [1j, 2]},
                              "Complex data not supported"),
    # labels
    "single label": (([0, 0], P), {}, "y_true contains only one label (0). Please provide the "
                     "list of all expected class labels explicitly"),
    "single str label": ((["a", "a"], P), {}, "y_true contains only one label (a)"),
    "single label in labels=": (([0, 0], P), {"labels": [0]},
                                "The labels array needs to contain at least two labels, got [0]"),
    "label missing from labels=": (([0, 2], P), {"labels": [0, 1]},
                                   "y_true contains values {2} not belonging to the passed "
                                   "labels [0, 1]."),
    "str labels vs int labels=": ((["a", "b"], P), {"labels": [0, 1]},
                                  "not belonging to the passed labels"),
    "duplicate labels=": (([0, 1], P), {"labels": [0, 1, 1]}, "could not be broadcast"),
    "empty labels=": (([0, 1], P), {"labels": []}, "y has 0 samples: []"),
    "set labels=": (([0, 1], P), {"labels": {0, 1}},
                    "Expected array-like (array or non-string sequence), got {0, 1}"),
    "continuous labels=": (([0, 1], P), {"labels": [0.5, 1.5]}, "Unknown label type"),
    "mixed labels=": (([0, 1], P), {"labels": [0, "a"]},
                      "Mix of label input types (string and number)"),
    "more classes in y_proba": (([0, 1], [[0.3, 0.7, 0.0]] * 2), {},
                                "y_true and y_prob contain different number of classes: 2 vs 3. "
                                "Please provide the true labels explicitly through the labels "
                                "argument. Classes found in y_true: [0 1]"),
    "more classes in y_true": (([0, 1, 2], [0.3, 0.7, 0.2]), {},
                               "different number of classes: 3 vs 2"),
    "labels= vs y_proba columns": (([0, 1], [[0.3, 0.7, 0.0]] * 2), {"labels": [0, 1]},
                                   "The number of classes in labels is different from that in "
                                   "y_prob. Classes found in labels: [0 1]"),
    "three labels=, 1-D y_proba": (([0, 1], P), {"labels": [0, 1, 2]},
                                   "Classes found in labels: [0 1 2]"),
    "indicator width vs y_proba": (([[1, 0, 0], [0, 1, 0]], [[0.3, 0.7], [0.2, 0.8]]), {},
                                   "different number of classes: 3 vs 2"),
    # y_true
    "y_true continuous": (([0.5, 1.5], P), {}, "Unknown label type: ([0.5, 1.5],)"),
    "y_true NaN": (([0, np.nan], P), {}, "Input y contains NaN."),
    "y_true inf": (([0, np.inf], P), {}, "Input y contains infinity"),
    "y_true complex": (([0, 1j], P), {}, "Complex data not supported"),
    "y_true multioutput": (([[1, 2], [3, 4]], [[0.3, 0.7], [0.2, 0.8]]), {},
                           "Multioutput target data is not supported with label binarization"),
    "y_true indicator with labels=": (([[1, 0], [0, 1]], [[0.3, 0.7], [0.2, 0.8]]),
                                      {"labels": [0, 1]},
                                      "The object was not fitted with multilabel input."),
    "y_true mixed types": (([1, "a"], P), {}, "Mix of label input types (string and number)"),
    "y_true unorderable objects": ((np.array([1, "a"], dtype=object), P), {}, "not supported"),
    "y_true None among str": ((["a", None], P), {}, "not supported between instances"),
    "y_true bytes": (([b"a", b"b"], P), {}, "Support for labels represented as bytes"),
    "y_true sequence of sequences": (([[1, 2], [3]], P), {},
                                     "legacy multi-label data representation"),
    "y_true nested column list": (([[1], [0]], [[0.3, 0.7], [0.2, 0.8]]), {},
                                  "unhashable type"),
    "y_true dict": (({0: 1, 1: 2}, P), {}, "Expected array-like (array or non-string sequence)"),
    "y_true objects": ((np.array([1, 2], dtype=object), P), {}, "Unknown label type"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_match_sklearn(backend, case):
    args, kwargs, key = ERROR_CASES[case]
    expected, expected_warnings = outcome(sk_metrics.log_loss, *args, **kwargs)
    assert expected[0] == "error", f"scikit-learn returned {expected[1]!r}"
    with fastxent.config(backend=backend):
        got, got_warnings = outcome(log_loss, *args, **kwargs)
    assert got[0] == "error", f"fastxent returned {got[1]!r}"
    sk_exc, exc = expected[1], got[1]
    if type(sk_exc).__name__ == "InvalidParameterError":
        assert isinstance(exc, InvalidParameterError)
    else:
        assert type(exc) is type(sk_exc), (exc, sk_exc)
    assert key in str(sk_exc), f"the key is not in scikit-learn's message: {sk_exc}"
    assert key in str(exc), f"{key!r} not in {str(exc)!r}"
    assert [c for c, _ in got_warnings] == [c for c, _ in expected_warnings]


def test_invalid_parameter_error_is_value_and_type_error():
    for exc in (ValueError, TypeError):
        with pytest.raises(exc, match="'normalize' parameter"):
            log_loss([0, 1], P, normalize="yes")


def test_errors_leave_inputs_unchanged():
    y = np.array([0, 1, 2])
    p = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [1.2, 0.3, 0.5]])
    w = np.array([1.0, 2.0, 3.0])
    snaps = snapshot(y, p, w)
    with pytest.raises(ValueError, match="greater than 1"):
        log_loss(y, p, sample_weight=w)
    assert_unchanged([y, p, w], snaps)


# --------------------------------------------------------------------------
# The worked examples of ../shared/seeds/002: scikit-learn's cells, through fastxent.
# --------------------------------------------------------------------------

def test_seed_002_two_class_log_loss_is_bce(backend):
    # log_loss(y, column_stack([1 - p, p])) is the binary cross-entropy and the
    # 2-class cross-entropy of the seed (its data is unseeded: same identities).
    from scipy.special import xlogy

    rng = np.random.default_rng(1000)
    n = 1000
    y_pred = rng.random(n)
    y_actual = rng.integers(0, 2, n)
    bce = -np.mean(y_actual * np.log(y_pred) + (1 - y_actual) * np.log(1 - y_pred))
    y_pred_0, y_actual_0 = 1 - y_pred, 1 - y_actual
    ce_2class = -np.mean(y_actual * np.log(y_pred) + y_actual_0 * np.log(y_pred_0))
    bce_scipy = -np.mean(xlogy(y_actual, y_pred) + xlogy(1 - y_actual, 1 - y_pred))
    with fastxent.config(backend=backend):
        ours = log_loss(y_actual, np.column_stack([1 - y_pred, y_pred]))
        ours_1d = log_loss(y_actual, y_pred)
        via_core = fastxent.cross_entropy(np.log(np.column_stack([1 - y_pred, y_pred])),
                                          y_actual)
    for value in (ce_2class, bce_scipy, ours_1d, via_core,
                  sk_metrics.log_loss(y_actual, np.column_stack([1 - y_pred, y_pred]))):
        assert ours == pytest.approx(value, rel=1e-13)
    assert ours == pytest.approx(bce, rel=1e-13)


def test_seed_002_three_class_log_loss_is_onehot_ce(backend):
    rng = np.random.default_rng(1343)
    n = 1000
    y_pred_3class = rng.random((n, 3))
    y_pred_3class = y_pred_3class / np.sum(y_pred_3class, axis=1, keepdims=True)
    y_actual_3class = rng.integers(0, 3, n)
    onehot = np.eye(3)[y_actual_3class]
    ce_3class = -np.mean(np.sum(onehot * np.log(y_pred_3class), axis=1))
    with fastxent.config(backend=backend):
        ours = log_loss(y_actual_3class, y_pred_3class)
    # The seed's two numbers differ in the last digit: summation order.
    assert ours == pytest.approx(ce_3class, rel=1e-13)
    assert ours == pytest.approx(sk_metrics.log_loss(y_actual_3class, y_pred_3class),
                                 rel=1e-13)


# --------------------------------------------------------------------------
# Import and documentation.
# --------------------------------------------------------------------------

def test_import_does_not_import_sklearn():
    # Neither importing nor calling the layer imports scikit-learn (or torch, Keras).
    code = ("import sys, json, fastxent, fastxent.sklearn; "
            "fastxent.sklearn.log_loss(['a', 'b', 'c'], [[0.2, 0.3, 0.5]] * 3); "
            "print(json.dumps(sorted(m for m in ('sklearn', 'scipy', 'torch', 'keras') "
            "if m in sys.modules)))")
    src = os.path.dirname(os.path.dirname(fastxent.__file__))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, env=env, timeout=60, check=True)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_docstring_examples():
    result = doctest.testmod(fastxent.sklearn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
