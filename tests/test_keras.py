"""fastxent.keras against Keras 3 itself (its PyTorch backend), on the same inputs."""

import doctest
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastxent  # noqa: E402
import fastxent.keras as fk  # noqa: E402

KL = keras.losses
FLOATS = (np.float32, np.float64)
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


@pytest.fixture(scope="module", autouse=True)
def torch_serial():
    """Keras's many tiny torch calls, one thread each: far faster on a busy machine."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def on_backend(backend):
    """Every call inside the test runs on ``backend`` (the layer has no backend
    argument); one thread, as the inputs are tiny (threading is tested elsewhere)."""
    with fastxent.config(backend=backend, num_threads=1):
        yield backend


def to_numpy(x):
    if hasattr(x, "detach"):  # a torch tensor, from Keras's PyTorch backend
        return x.detach().cpu().numpy()
    return np.asarray(x)


def assert_like_keras(ours, theirs, *, scale=1.0, dtype=None, precision=None):
    """Same shape, dtype, NaN/inf pattern, and values to the dtype's precision.

    ``scale`` is the size of the numbers a loss near 0 is computed from
    (1 + max|logit|): there both sides round at that scale, not the loss's.
    ``dtype`` is ours where it is not Keras's, and ``precision`` the dtype
    Keras's result is accurate to, where that is less than its dtype: under
    PyTorch, Keras's type promotion turns float64 into float32, so its
    ``ops.mean`` (the binary loss's average) and ``divide_no_nan`` (the mean
    reductions) run in float32; fastxent stays in float64.
    """
    theirs = to_numpy(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape
    assert ours.dtype == (theirs.dtype if dtype is None else dtype), (ours.dtype, theirs.dtype)
    precision = np.dtype(precision or min(ours.dtype, theirs.dtype, key=lambda d: d.itemsize))
    if precision == np.float64:
        tol = dict(rtol=1e-12, atol=8 * EPS64 * scale)
    elif precision == np.float32:
        tol = dict(rtol=1e-6, atol=4 * EPS32 * scale)
    else:
        tol = dict(rtol=4e-3, atol=4e-3 * scale)
    np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64), **tol)


def logit_scale(x):
    x = np.asarray(x, np.float64)
    return 1.0 + float(np.max(np.abs(x[np.isfinite(x)]), initial=0.0))


def with_axis(rows, batch, axis):
    """(n, C) rows as an array of shape ``batch`` with the class axis inserted at ``axis``."""
    return np.moveaxis(rows.reshape(tuple(batch) + (rows.shape[1],)), -1, axis)


def make_pred(rng, batch, n_classes, axis, dtype, from_logits):
    """Logits with extreme rows, or probabilities with exact 0s and 1s, tiny
    values and rows that do not sum to 1."""
    n = math.prod(batch)
    if from_logits:
        z = 3 * rng.standard_normal((n, n_classes))
        special = [np.zeros(n_classes), np.r_[60.0, np.full(n_classes - 1, -40.0)],
                   300 * rng.standard_normal(n_classes)]
    else:
        z = rng.random((n, n_classes)) * rng.uniform(0.3, 3.0, (n, 1))
        one_hot = np.eye(n_classes)[0]
        tiny = np.r_[1.0, np.full(n_classes - 1, 1e-9)]
        special = [one_hot, np.r_[0.0, np.ones(n_classes - 1)], tiny, 1.0 - one_hot]
    for i, row in enumerate(special[:n]):
        z[i] = row
    return with_axis(z, batch, axis).astype(dtype)


def make_soft_targets(rng, batch, n_classes, axis, dtype):
    n = math.prod(batch)
    t = rng.random((n, n_classes))
    t /= t.sum(axis=1, keepdims=True)
    t[::2] = np.eye(n_classes)[rng.integers(0, n_classes, t[::2].shape[0])]
    return with_axis(t, batch, axis).astype(dtype)


# ---------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------

CATEGORICAL_SHAPES = [  # (batch shape, n_classes, axis)
    ((7,), 4, -1),
    ((3, 5), 4, 1),     # (3, 4, 5), axis=1: label smoothing still divides by 5
    ((3, 5), 4, -2),
    ((2, 3), 4, 2),     # (2, 3, 4), axis=2
    ((), 5, -1),        # (5,): one sample, a 0-d loss
    ((0,), 3, -1),      # an empty batch
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("batch, n_classes, axis", CATEGORICAL_SHAPES)
def test_categorical_crossentropy(on_backend, rng, dtype, from_logits, batch, n_classes, axis):
    y_pred = make_pred(rng, batch, n_classes, axis, dtype, from_logits)
    y_true = make_soft_targets(rng, batch, n_classes, axis, dtype)
    scale = logit_scale(y_pred) if from_logits else 1.0
    for smoothing in (0.0, 0.1, 1.0):
        kw = dict(from_logits=from_logits, label_smoothing=smoothing, axis=axis)
        assert_like_keras(fk.categorical_crossentropy(y_true, y_pred, **kw),
                          KL.categorical_crossentropy(y_true, y_pred, **kw), scale=scale)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, -1, 2])
@pytest.mark.parametrize("batch, n_classes, axis", CATEGORICAL_SHAPES)
def test_sparse_categorical_crossentropy(on_backend, rng, dtype, from_logits, ignore_class,
                                         batch, n_classes, axis):
    y_pred = make_pred(rng, batch, n_classes, axis, dtype, from_logits)
    labels = rng.integers(0, n_classes, batch)
    if ignore_class is not None and labels.size > 1:
        labels.reshape(-1)[::3] = ignore_class
    scale = logit_scale(y_pred) if from_logits else 1.0
    kw = dict(from_logits=from_logits, ignore_class=ignore_class, axis=axis)
    expected = KL.sparse_categorical_crossentropy(labels, y_pred, **kw)
    assert_like_keras(fk.sparse_categorical_crossentropy(labels, y_pred, **kw), expected,
                      scale=scale)
    # Integer dtypes, float labels and a size-1 class axis in y_true give the same.
    assert_like_keras(fk.sparse_categorical_crossentropy(labels.astype(np.int32), y_pred, **kw),
                      expected, scale=scale)
    floats = labels.astype(dtype)
    assert_like_keras(fk.sparse_categorical_crossentropy(floats, y_pred, **kw),
                      KL.sparse_categorical_crossentropy(floats, y_pred, **kw), scale=scale)
    if y_pred.ndim > 1:
        kept = np.expand_dims(labels, axis)
        assert_like_keras(fk.sparse_categorical_crossentropy(kept, y_pred, **kw),
                          KL.sparse_categorical_crossentropy(kept, y_pred, **kw), scale=scale)


def test_sparse_float_labels_truncate(on_backend):
    # Keras converts float labels to int64, which truncates toward zero.
    y_pred = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    y_true = np.array([1.7, 2.2, -0.5])
    assert_like_keras(fk.sparse_categorical_crossentropy(y_true, y_pred),
                      KL.sparse_categorical_crossentropy(y_true, y_pred))


BINARY_SHAPES = [  # (shape, axis)
    ((8,), -1),         # one sample: a 0-d loss
    ((6, 5), -1),
    ((6, 5), 0),
    ((3, 4, 5), 1),
    ((3, 4, 5), (0, 2)),
    ((3, 4), None),
    ((0, 3), -1),
    ((3, 0), -1),       # an empty axis: NaN, as Keras's mean gives
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape, axis", BINARY_SHAPES)
def test_binary_crossentropy(on_backend, rng, dtype, from_logits, shape, axis):
    y_true = rng.random(shape)
    y_true.reshape(-1)[::2] = rng.integers(0, 2, y_true.reshape(-1)[::2].shape)
    if from_logits:
        y_pred = 4 * rng.standard_normal(shape)
        y_pred.reshape(-1)[:6] = [0.0, 60.0, -60.0, 1e4, -1e4, 17.0][:y_pred.size]
    else:
        y_pred = rng.random(shape)
        y_pred.reshape(-1)[:6] = [0.0, 1.0, 1e-9, 1 - 1e-9, 0.5, 1.0][:y_pred.size]
    y_true, y_pred = y_true.astype(dtype), y_pred.astype(dtype)
    scale = logit_scale(y_pred) if from_logits else 1.0
    for smoothing in (0.0, 0.2):
        kw = dict(from_logits=from_logits, label_smoothing=smoothing, axis=axis)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # torch's mean of an empty axis
            expected = KL.binary_crossentropy(y_true, y_pred, **kw)
        assert_like_keras(fk.binary_crossentropy(y_true, y_pred, **kw), expected, scale=scale,
                          precision=np.float32)
        # axis=() averages nothing: the elementwise losses, in float64 on both sides.
        kw["axis"] = ()
        assert_like_keras(fk.binary_crossentropy(y_true, y_pred, **kw),
                          KL.binary_crossentropy(y_true, y_pred, **kw), scale=scale)


def test_probability_edge_cases(on_backend):
    # Rows of zeros (0 / 0), rows far from summing to 1, exact 0s and 1s.
    y_pred = np.array([[0.0, 0.0, 0.0], [5.0, 3.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                       [1e-30, 1e-30, 1e-30]])
    y_true = np.eye(3)[[0, 1, 0, 0, 2]]
    for dtype in FLOATS:
        p, t = y_pred.astype(dtype), y_true.astype(dtype)
        with np.errstate(all="ignore"):
            assert_like_keras(fk.categorical_crossentropy(t, p), KL.categorical_crossentropy(t, p))
            labels = t.argmax(axis=1)
            assert_like_keras(fk.sparse_categorical_crossentropy(labels, p),
                              KL.sparse_categorical_crossentropy(labels, p))
    one = fk.categorical_crossentropy(np.eye(3)[:1], np.eye(3)[:1])
    assert one[0] == -np.log(1 - 1e-7)  # clipped at 1 - 1e-7, not renormalised after


def test_extreme_and_nonfinite_logits(on_backend):
    z = np.array([[-np.inf, 1.0, 0.0], [np.inf, 0.0, 0.0], [np.nan, 0.0, 0.0],
                  [1e308, -1e308, 0.0], [800.0, -800.0, 0.0]])
    t = np.eye(3)[[1, 1, 1, 0, 0]]
    with np.errstate(all="ignore"):
        for smoothing in (0.0, 0.1):
            assert_like_keras(
                fk.categorical_crossentropy(t, z, from_logits=True, label_smoothing=smoothing),
                KL.categorical_crossentropy(t, z, from_logits=True, label_smoothing=smoothing),
                scale=1e308)
        labels = np.array([1, 1, 1, 0, 1])
        assert_like_keras(fk.sparse_categorical_crossentropy(labels, z, from_logits=True),
                          KL.sparse_categorical_crossentropy(labels, z, from_logits=True),
                          scale=1e308)
        assert_like_keras(fk.binary_crossentropy(t, z, from_logits=True),
                          KL.binary_crossentropy(t, z, from_logits=True), scale=1e308)


def test_lists_are_float32(on_backend):
    # Python numbers and lists become floatx (float32), as Keras converts them.
    loss = fk.categorical_crossentropy([[0, 1, 0]], [[0.05, 0.95, 0.0]])
    assert loss.dtype == np.float32
    assert_like_keras(loss, KL.categorical_crossentropy(np.float32([[0, 1, 0]]),
                                                        np.float32([[0.05, 0.95, 0.0]])))
    assert fk.sparse_categorical_crossentropy([1], [[0.5, 0.5]]).dtype == np.float32
    assert fk.binary_crossentropy([1.0], [0.8]).dtype == np.float32


def test_float16_inputs(on_backend, rng):
    y_pred = make_pred(rng, (6,), 4, -1, np.float16, True)
    y_true = make_soft_targets(rng, (6,), 4, -1, np.float16)
    assert_like_keras(fk.categorical_crossentropy(y_true, y_pred, from_logits=True),
                      KL.categorical_crossentropy(y_true, y_pred, from_logits=True),
                      scale=logit_scale(y_pred))
    p = rng.random((6, 4)).astype(np.float16)
    assert_like_keras(fk.binary_crossentropy(y_true, p), KL.binary_crossentropy(y_true, p))


def test_inputs_are_left_unchanged(on_backend, rng):
    y_pred = make_pred(rng, (5,), 3, -1, np.float64, False)
    logits = make_pred(rng, (5,), 3, -1, np.float64, True)
    y_true = make_soft_targets(rng, (5,), 3, -1, np.float64)
    labels = np.array([0, -1, 2, 1, 0])
    weight = rng.random(5)
    copies = [a.copy() for a in (y_pred, logits, y_true, labels, weight)]
    fk.CategoricalCrossentropy(label_smoothing=0.1)(y_true, y_pred, sample_weight=weight)
    fk.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(y_true, logits)
    fk.SparseCategoricalCrossentropy(ignore_class=-1, dtype="float64")(labels, y_pred, weight)
    fk.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)(labels, logits)
    fk.BinaryCrossentropy(label_smoothing=0.1, dtype="float64")(y_true, y_pred, weight)
    fk.BinaryCrossentropy(from_logits=True)(y_true, logits)
    for a, c in zip((y_pred, logits, y_true, labels, weight), copies):
        np.testing.assert_array_equal(a, c)


def test_categorical_warns_for_one_class():
    with pytest.warns(SyntaxWarning, match="num_classes > 1"):
        fk.categorical_crossentropy(np.ones((2, 1)), np.ones((2, 1)))


# ---------------------------------------------------------------------------
# The classes: reductions and sample weights
# ---------------------------------------------------------------------------

def sample_weights(rng, loss_shape):
    """The weight shapes Keras accepts for losses of ``loss_shape``."""
    weights = [None, np.float64(0.5), rng.random(loss_shape) + 0.1, np.zeros(loss_shape)]
    if len(loss_shape) >= 1:
        weights.append((rng.random(loss_shape) + 0.1)[..., None])  # squeezed to loss_shape
    if len(loss_shape) == 2:
        weights.append(rng.random((loss_shape[0], 1)) + 0.1)        # broadcast
        weights.append([0.3] * loss_shape[1])                       # a list
    return weights


def keras_reference(loss, y_true, y_pred, sample_weight, loss_shape):
    try:
        return loss(y_true, y_pred, sample_weight=sample_weight)
    except RuntimeError as exc:
        # Keras multiplies its mask into sample_weight in place, which fails
        # under torch unless sample_weight already has the loss's shape;
        # fastxent multiplies out of place (the other backends' semantics),
        # which is Keras given the weight broadcast to that shape.
        assert "match the broadcast shape" in str(exc)
        full = np.broadcast_to(np.asarray(sample_weight), loss_shape).copy()
        return loss(y_true, y_pred, sample_weight=full)


def check_class(ours_cls, keras_cls, kwargs, y_true, y_pred, loss_shape, rng, scale):
    for dtype in (None, "float64"):
        for reduction in REDUCTIONS:
            ours = ours_cls(reduction=reduction, dtype=dtype, **kwargs)
            theirs = keras_cls(reduction=reduction, dtype=dtype, **kwargs)
            assert ours.dtype == theirs.dtype
            in_float32 = (dtype == "float64" and (reduction in MEAN_REDUCTIONS
                                                  or ours_cls is fk.BinaryCrossentropy))
            for weight in sample_weights(rng, loss_shape):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    expected = keras_reference(theirs, y_true, y_pred, weight, loss_shape)
                got = ours(y_true, y_pred, sample_weight=weight)
                if np.ndim(got) == 0:
                    assert isinstance(got, np.floating)
                assert_like_keras(got, expected, scale=scale, dtype=ours.dtype,
                                  precision=np.float32 if in_float32 else None)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("batch, n_classes, axis", [((6,), 4, -1), ((3, 5), 4, 1), ((), 3, -1)])
def test_categorical_class(on_backend, rng, from_logits, batch, n_classes, axis):
    y_pred = make_pred(rng, batch, n_classes, axis, np.float64, from_logits)
    y_true = make_soft_targets(rng, batch, n_classes, axis, np.float64)
    scale = logit_scale(y_pred) if from_logits else 1.0
    for smoothing in (0.0, 0.1):
        kwargs = dict(from_logits=from_logits, label_smoothing=smoothing, axis=axis)
        check_class(fk.CategoricalCrossentropy, KL.CategoricalCrossentropy, kwargs,
                    y_true, y_pred, batch, rng, scale)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, -1])
@pytest.mark.parametrize("batch, n_classes, axis, keep_dim", [
    ((6,), 4, -1, False), ((6,), 4, -1, True), ((3, 5), 4, 1, False), ((6,), 1, -1, False)])
def test_sparse_class(on_backend, rng, from_logits, ignore_class, batch, n_classes, axis,
                      keep_dim):
    y_pred = make_pred(rng, batch, n_classes, axis, np.float64, from_logits)
    labels = rng.integers(0, n_classes, batch)
    if ignore_class is not None:
        labels.reshape(-1)[1::3] = ignore_class
    if keep_dim:
        labels = np.expand_dims(labels, axis)
    scale = logit_scale(y_pred) if from_logits else 1.0
    kwargs = dict(from_logits=from_logits, ignore_class=ignore_class, axis=axis)
    check_class(fk.SparseCategoricalCrossentropy, KL.SparseCategoricalCrossentropy, kwargs,
                labels, y_pred, batch, rng, scale)


def test_sparse_class_everything_ignored(on_backend):
    y_pred = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    y_true = np.array([-1, -1])
    for reduction in REDUCTIONS:
        ours = fk.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)
        theirs = KL.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)
        assert_like_keras(ours(y_true, y_pred), theirs(y_true, y_pred))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape, axis, true_shape", [
    ((6, 5), -1, None), ((8,), -1, None), ((3, 4, 5), 1, None),
    ((6, 1), -1, (6,)),     # y_true (6,) gets the trailing axis of y_pred (6, 1)
    ((0, 3), -1, None)])
def test_binary_class(on_backend, rng, from_logits, shape, axis, true_shape):
    y_true = (rng.random(shape) > 0.5).astype(np.float64)
    y_pred = 4 * rng.standard_normal(shape) if from_logits else rng.random(shape)
    if true_shape is not None:
        y_true = y_true.reshape(true_shape)
    loss_shape = np.mean(np.zeros(shape), axis=axis).shape
    scale = logit_scale(y_pred) if from_logits else 1.0
    for smoothing in (0.0, 0.2):
        kwargs = dict(from_logits=from_logits, label_smoothing=smoothing, axis=axis)
        check_class(fk.BinaryCrossentropy, KL.BinaryCrossentropy, kwargs, y_true, y_pred,
                    loss_shape, rng, scale)


def test_class_defaults_and_config():
    for ours_cls, keras_cls in [(fk.CategoricalCrossentropy, KL.CategoricalCrossentropy),
                                (fk.SparseCategoricalCrossentropy,
                                 KL.SparseCategoricalCrossentropy),
                                (fk.BinaryCrossentropy, KL.BinaryCrossentropy)]:
        ours, theirs = ours_cls(), keras_cls()
        assert ours.name == theirs.name
        assert ours.reduction == theirs.reduction == "sum_over_batch_size"
        assert ours.dtype == theirs.dtype == "float32"
        config = ours.get_config()
        assert {k: v for k, v in config.items() if k != "axis"} == {
            k: v for k, v in theirs.get_config().items() if k != "axis"}
        assert ours_cls.from_config(config).get_config() == config
    assert fk.BinaryCrossentropy(dtype="mixed_float16").dtype == "float16"


def test_class_dtype_is_applied(on_backend):
    # float64 inputs are computed in the loss's dtype: float32 unless asked.
    y_true = np.eye(3)[[0, 2]]
    y_pred = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    assert fk.CategoricalCrossentropy()(y_true, y_pred).dtype == np.float32
    assert fk.CategoricalCrossentropy(dtype="float64")(y_true, y_pred).dtype == np.float64
    assert fk.CategoricalCrossentropy(dtype=np.float16)(y_true, y_pred).dtype == np.float16


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def raises_like_keras(expected, ours, theirs):
    with pytest.raises(expected):
        theirs()
    with pytest.raises(expected):
        ours()


def test_errors_like_keras():
    p = np.full((2, 3), 1 / 3)
    t = np.eye(3)[:2]
    # Shapes that do not fit.
    for fn in ("categorical_crossentropy", "binary_crossentropy"):
        raises_like_keras(ValueError, lambda: getattr(fk, fn)(t, np.full((2, 4), 0.25)),
                          lambda: getattr(KL, fn)(t, np.full((2, 4), 0.25)))
    raises_like_keras(ValueError, lambda: fk.CategoricalCrossentropy()(t, np.full((2, 4), 0.25)),
                      lambda: KL.CategoricalCrossentropy()(t, np.full((2, 4), 0.25)))
    raises_like_keras(ValueError, lambda: fk.sparse_categorical_crossentropy(np.array([0, 1, 2]), p),
                      lambda: KL.sparse_categorical_crossentropy(np.array([0, 1, 2]), p))
    # Unknown reductions, at construction.
    for name in ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy"):
        for bad in ("auto", "average", "Mean"):
            raises_like_keras(ValueError, lambda: getattr(fk, name)(reduction=bad),
                              lambda: getattr(KL, name)(reduction=bad))
    # Axes: a bool, and one out of range.
    raises_like_keras(ValueError, lambda: fk.categorical_crossentropy(t, p, axis=True),
                      lambda: KL.categorical_crossentropy(t, p, axis=True))
    raises_like_keras(IndexError, lambda: fk.categorical_crossentropy(t, p, axis=2),
                      lambda: KL.categorical_crossentropy(t, p, axis=2))
    # Class indices outside [0, C).
    for labels in ([0, 3], [-1, 0]):
        raises_like_keras(IndexError,
                          lambda: fk.sparse_categorical_crossentropy(np.array(labels), p),
                          lambda: KL.sparse_categorical_crossentropy(np.array(labels), p))


def test_errors_where_fastxent_says_more():
    p = np.full((2, 3), 1 / 3)
    t = np.eye(3)[:2]
    # A weight that does not broadcast: Keras lets torch raise RuntimeError.
    with pytest.raises(RuntimeError):
        KL.CategoricalCrossentropy()(t, p, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        fk.CategoricalCrossentropy()(t, p, sample_weight=np.ones(3))
    # Under torch, Keras's label -100 is silently ignored (torch's default
    # ignore_index); it is an index out of range like any other.
    with pytest.raises(IndexError, match="-100"):
        fk.sparse_categorical_crossentropy(np.array([-100, 0]), p)
    # Targets outside [0, 1] for probabilities: Keras lets torch raise RuntimeError.
    with pytest.raises(RuntimeError):
        KL.binary_crossentropy(np.array([2.0]), np.array([0.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fk.binary_crossentropy(np.array([2.0]), np.array([0.5]))
    with pytest.raises(ValueError, match="dtype"):
        fk.BinaryCrossentropy(dtype="int32")
    # Scalars have no class axis: Keras fails indexing their shape (IndexError).
    with pytest.raises(IndexError):
        KL.categorical_crossentropy(np.float64(1), np.float64(1))
    with pytest.raises(ValueError, match="rank 1"):
        fk.categorical_crossentropy(np.float64(1), np.float64(1))


# ---------------------------------------------------------------------------
# The worked examples of ../shared/seeds
# ---------------------------------------------------------------------------

def test_seed_000_keras_losses(on_backend):
    # tf.keras.losses.BinaryCrossentropy()(tf.constant([1.0]), tf.constant([0.8]))
    # printed 0.2231; CategoricalCrossentropy()(tf.constant([1, 0, 0]),
    # tf.constant([0.7, 0.2, 0.1])) printed 0.3567.
    bce = fk.BinaryCrossentropy()([1.0], [0.8])
    assert bce.dtype == np.float32 and f"{bce:.4f}" == "0.2231"
    assert_like_keras(bce, KL.BinaryCrossentropy()(np.float32([1.0]), np.float32([0.8])))
    cce = fk.CategoricalCrossentropy()([1, 0, 0], [0.7, 0.2, 0.1])
    assert cce.dtype == np.float32 and f"{cce:.4f}" == "0.3567"
    assert_like_keras(cce, KL.CategoricalCrossentropy()(np.int32([1, 0, 0]),
                                                        np.float32([0.7, 0.2, 0.1])))


def test_seed_001_keras_losses(on_backend):
    true_labels = [1, 0, 1, 1, 0]
    predicted = [0.8, 0.2, 0.6, 0.9, 0.3]
    bce = fk.BinaryCrossentropy()(true_labels, predicted)
    assert_like_keras(bce, KL.BinaryCrossentropy()(np.int32(true_labels), np.float32(predicted)))
    exact = -np.mean(np.log([0.8, 0.8, 0.6, 0.9, 0.7]))
    assert bce == pytest.approx(exact, rel=1e-6)

    ground_truth = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    predicted_probs = np.array([[0.2, 0.6, 0.2], [0.8, 0.1, 0.1], [0.3, 0.2, 0.5]],
                               dtype=np.float32)
    cce = fk.CategoricalCrossentropy()(ground_truth, predicted_probs)
    assert_like_keras(cce, KL.CategoricalCrossentropy()(ground_truth, predicted_probs))
    assert cce == pytest.approx(-np.mean(np.log([0.6, 0.8, 0.5])), rel=1e-6)


# ---------------------------------------------------------------------------
# Packaging
# ---------------------------------------------------------------------------

def test_docstring_examples():
    result = doctest.testmod(fk, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_import_loads_no_framework():
    code = ("import sys, fastxent, fastxent.keras\n"
            "loaded = {name.split('.')[0] for name in sys.modules}\n"
            "print(sorted(loaded & {'keras', 'tensorflow', 'torch'}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout
