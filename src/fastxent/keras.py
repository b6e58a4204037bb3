"""Keras 3's cross-entropy losses on NumPy arrays.

The functions and classes of ``keras.losses`` with their arguments, defaults,
numerics and errors: ``y_true`` first, ``from_logits``, ``label_smoothing``,
``axis``, ``ignore_class``, Keras's reductions and ``sample_weight``. Losses
of logits, and both binary losses, run on fastxent's kernels; losses of
probabilities take Keras's normalise-clip-log step in NumPy (see
``_clipped_log_probs``). This module converts arguments the way Keras does
and reduces the per-sample losses the way ``keras.losses.Loss`` does; Keras
itself is never imported.

>>> import numpy as np
>>> from fastxent import keras as fk
>>> fk.categorical_crossentropy([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
array([0.05129331, 2.3025851 ], dtype=float32)
>>> fk.SparseCategoricalCrossentropy(from_logits=True)([0, 2], [[2.0, 1.0, 0.1], [0.5, 0.5, 3.0]])
np.float32(0.2845192)
"""

import math
import operator
import warnings

import numpy as np

from . import _validation as v
from ._api import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
]

# keras.backend.epsilon() and keras.backend.floatx() at their defaults.
EPSILON = 1e-7
FLOATX = "float32"

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


# ---------------------------------------------------------------------------
# Conversion, as keras.ops.convert_to_tensor does it
# ---------------------------------------------------------------------------

def _array(x, name, dtype=None):
    """``x`` as a NumPy array: of ``dtype`` if given (a loss object's dtype),
    else of its own floating dtype; Python numbers and lists become floatx."""
    # Keras's rule: Python scalars (np.float64 is a float) and lists get floatx.
    python = isinstance(x, (bool, int, float, list, tuple))
    array = v.as_array(x, name)
    if dtype is None:
        if python or not _is_float(array.dtype):
            dtype = np.dtype(FLOATX)
        else:
            return array
    return array.astype(dtype, copy=False)


def _is_float(dtype):
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _compute(dtype):
    """float32 and float64 are computed as they are; float16 and bfloat16 in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _clip_bounds(dtype):
    # Keras clips to [epsilon, 1 - epsilon] with both bounds rounded to the dtype.
    return dtype.type(EPSILON), dtype.type(1.0 - EPSILON)


def _class_axis(axis, ndim, name="y_pred"):
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type "
                         f"{type(axis)}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"`axis` must be an integer; got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, name)
    return axis % ndim


def _rows(array, axis, dtype):
    """``array`` as (rows, n_classes) with ``axis`` last, of ``dtype``."""
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1]).astype(dtype, copy=False)


def _without(shape, axis):
    return shape[:axis] + shape[axis + 1:]


# ---------------------------------------------------------------------------
# The loss functions
# ---------------------------------------------------------------------------

def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Categorical cross-entropy of each sample, as ``keras.losses.categorical_crossentropy``.

    Parameters
    ----------
    y_true : array_like, ``y_pred``'s shape
        Target class probabilities (one-hot or not), converted to ``y_pred``'s dtype.
    y_pred : array_like, shape (..., C, ...)
        Predicted probabilities, or logits with ``from_logits=True``. A float
        array keeps its dtype; Python numbers and lists become float32 (floatx).
    from_logits : bool, default False
        False: each slice along ``axis`` is divided by its sum, clipped to
        [1e-7, 1 - 1e-7] (and not renormalised after), and its log taken.
        True: the log-softmax of the logits.
    label_smoothing : float, default 0
        Targets become ``y_true * (1 - label_smoothing) + label_smoothing / K``,
        where K is the size of the *last* axis of ``y_true``, as in Keras.
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray of ``y_pred``'s shape without ``axis``, in ``y_pred``'s dtype.

    Examples
    --------
    >>> from fastxent.keras import categorical_crossentropy
    >>> categorical_crossentropy([[1, 0, 0]], [[0.7, 0.2, 0.1]])
    array([0.35667494], dtype=float32)
    """
    y_pred = _array(y_pred, "y_pred")
    y_true = _array(y_true, "y_true", y_pred.dtype)
    return _categorical(y_true, y_pred, from_logits, label_smoothing, axis)


def _categorical(y_true, y_pred, from_logits, label_smoothing, axis):
    if y_pred.ndim and y_pred.shape[-1] == 1:
        warnings.warn("In loss categorical_crossentropy, expected y_pred.shape to be "
                      f"(batch_size, num_classes) with num_classes > 1. Received: "
                      f"y_pred.shape={y_pred.shape}. Consider using 'binary_crossentropy' "
                      "if you only have 2 classes.", SyntaxWarning, stacklevel=3)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got "
                         f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
    if y_pred.ndim < 1:
        raise ValueError("y_true and y_pred must be at least rank 1; got scalars")
    axis = _class_axis(axis, y_pred.ndim)
    compute = _compute(y_pred.dtype)
    smoothing = float(label_smoothing)
    kernel_smoothing = 0.0
    if smoothing:
        # Keras divides by the last axis's size whatever ``axis`` is; the
        # kernel divides by the class axis's size and takes [0, 1] only.
        n_last = y_true.shape[-1]
        if from_logits and 0.0 <= smoothing <= 1.0 and y_true.shape[axis] == n_last:
            kernel_smoothing = smoothing
        else:
            y_true = (y_true.astype(compute) * compute.type(1.0 - smoothing)
                      + compute.type(smoothing / n_last))
    logits = _rows(y_pred, axis, compute)
    target = _rows(y_true, axis, compute)
    if from_logits:
        loss = cross_entropy(logits, target, reduction="none", label_smoothing=kernel_smoothing)
    else:
        loss = -np.einsum("ij,ij->i", target, _clipped_log_probs(logits))
    return loss.reshape(_without(y_pred.shape, axis)).astype(y_pred.dtype, copy=False)


def _clipped_log_probs(probs):
    """Keras's log-probabilities: each row divided by its sum, clipped, logged.

    The clip comes after the division and nothing renormalises after it, so
    once it binds the row no longer sums to 1 and the result is no
    log-softmax of anything: this is the one step the softmax kernels cannot
    take, so it is done here. (The kernels' loss on logits log q is Keras's
    loss plus sum(t) log sum(q); subtracting that term gives Keras's value
    only to an ulp or so of 1, which is ~1e-8 of a confident prediction's
    loss of 1e-7 in float64, where -sum t log q gives Keras's own bits.)
    """
    low, high = _clip_bounds(probs.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = probs / probs.sum(axis=1, keepdims=True)
        np.clip(q, low, high, out=q)
        return np.log(q, out=q)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Cross-entropy of each sample against class indices, as
    ``keras.losses.sparse_categorical_crossentropy``.

    Parameters
    ----------
    y_true : array_like, ``y_pred``'s shape without ``axis``
        Class indices in [0, C); a size-1 ``axis`` is squeezed. Floating
        values are truncated toward zero, as Keras's conversion to int64 does.
    y_pred : array_like, shape (..., C, ...)
        Predicted probabilities, or logits with ``from_logits=True``.
    from_logits : bool, default False
        As in ``categorical_crossentropy``.
    ignore_class : int, optional
        Samples whose ``y_true`` equals it get a loss of 0 (and are left out of
        the mean of the loss classes' reductions).
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray of ``y_pred``'s shape without ``axis``, in ``y_pred``'s dtype.

    Raises
    ------
    IndexError
        A class index outside [0, C) that is not ``ignore_class``.

    Examples
    --------
    >>> from fastxent.keras import sparse_categorical_crossentropy
    >>> sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    array([0.05129331, 2.3025851 ], dtype=float32)
    """
    y_pred = _array(y_pred, "y_pred")
    y_true = v.as_array(y_true, "y_true")
    return _sparse(y_true, y_pred, from_logits, ignore_class, axis)[0]


def _sparse(y_true, y_pred, from_logits, ignore_class, axis):
    """(per-sample losses, the mask of samples that count or None)."""
    if y_pred.ndim < 1:
        raise ValueError(f"y_pred must be at least rank 1; got shape {y_pred.shape}")
    axis = _class_axis(axis, y_pred.ndim)
    if y_true.ndim == y_pred.ndim and y_true.shape[axis] == 1:
        y_true = np.squeeze(y_true, axis=axis)
    batch_shape = _without(y_pred.shape, axis)
    if y_true.shape != batch_shape:
        raise ValueError(f"y_true must have y_pred's shape without the class axis, "
                         f"{batch_shape}; got y_true.shape={y_true.shape}, "
                         f"y_pred.shape={y_pred.shape}")
    n_classes = y_pred.shape[axis]
    compute = _compute(y_pred.dtype)
    labels = y_true.reshape(-1)
    valid = None
    if ignore_class is not None:
        valid = labels != y_pred.dtype.type(ignore_class)
        labels = np.where(valid, labels, 0)
    labels = _class_indices(labels, n_classes, y_true.shape)
    logits = _rows(y_pred, axis, compute)
    if from_logits:
        loss = cross_entropy(logits, labels, reduction="none")
    else:
        low, high = _clip_bounds(compute)
        with np.errstate(divide="ignore", invalid="ignore"):
            picked = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
            loss = -np.log(np.clip(picked / logits.sum(axis=1), low, high))
    if valid is not None:
        loss = np.where(valid, loss, compute.type(0))
        valid = valid.reshape(batch_shape)
    return loss.reshape(batch_shape).astype(y_pred.dtype, copy=False), valid


def _class_indices(labels, n_classes, shape):
    """Labels as int64 (floats truncated toward zero), each in [0, n_classes)."""
    if labels.dtype.kind == "f" or labels.dtype.name == "bfloat16":
        truncated = np.trunc(labels.astype(np.float64))
        bad = ~((truncated >= 0) & (truncated < n_classes))  # NaN is bad too
        ints = np.where(bad, 0, truncated).astype(np.int64)
    elif labels.dtype.kind in "biu":
        bad = (labels < 0) | (labels >= n_classes)
        ints = labels.astype(np.int64, copy=False)  # checked first: a conversion could wrap
    else:
        raise TypeError(f"y_true must hold class indices; got dtype {labels.dtype}")
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = tuple(int(i) for i in np.unravel_index(first, shape))
        raise IndexError(f"y_true holds {labels[first]} at index {where}, outside the "
                         f"{n_classes} classes [0, {n_classes})")
    return ints


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over ``axis``, as ``keras.losses.binary_crossentropy``.

    Parameters
    ----------
    y_true : array_like, ``y_pred``'s shape
        Targets in [0, 1], converted to ``y_pred``'s dtype.
    y_pred : array_like, any shape
        Probabilities, clipped to [1e-7, 1 - 1e-7] first; or logits with
        ``from_logits=True``.
    from_logits : bool, default False
    label_smoothing : float, default 0
        Targets become ``y_true * (1 - label_smoothing) + 0.5 * label_smoothing``.
    axis : int, tuple of int or None, default -1
        The axis (or axes) the elementwise losses are averaged over.

    Returns
    -------
    ndarray of ``y_pred``'s shape without ``axis``, in ``y_pred``'s dtype.

    Examples
    --------
    >>> from fastxent.keras import binary_crossentropy
    >>> binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    array([0.91629076, 0.7135582 ], dtype=float32)
    """
    y_pred = _array(y_pred, "y_pred")
    y_true = _array(y_true, "y_true", y_pred.dtype)
    return _binary(y_true, y_pred, from_logits, label_smoothing, axis)


def _binary(y_true, y_pred, from_logits, label_smoothing, axis):
    compute = _compute(y_pred.dtype)
    smoothing = float(label_smoothing)
    if smoothing:
        y_true = (y_true.astype(compute) * compute.type(1.0 - smoothing)
                  + compute.type(0.5 * smoothing))
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got "
                         f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
    probs_or_logits = y_pred.astype(compute, copy=False)
    target = y_true.astype(compute, copy=False)
    if from_logits:
        loss = binary_cross_entropy_with_logits(probs_or_logits, target, reduction="none")
    else:
        low, high = _clip_bounds(compute)
        loss = binary_cross_entropy(np.clip(probs_or_logits, low, high), target,
                                    reduction="none")
    if loss.ndim:
        # An empty axis gives NaN, as Keras's mean does.
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            loss = np.asarray(np.mean(loss, axis=axis))
    return loss.astype(y_pred.dtype, copy=False)


# ---------------------------------------------------------------------------
# Reductions, as keras.losses.Loss does them
# ---------------------------------------------------------------------------

def _check_reduction(reduction):
    if not (reduction is None or (isinstance(reduction, str) and reduction in REDUCTIONS)):
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                         f"{REDUCTIONS}. Received: reduction={reduction!r}")
    return reduction


def _loss_dtype(dtype):
    """A loss object's dtype: floatx by default; a Keras policy name or object
    stands for its compute dtype."""
    if dtype is None:
        dtype = FLOATX
    dtype = getattr(dtype, "compute_dtype", dtype)
    if isinstance(dtype, str) and dtype.startswith("mixed_"):
        dtype = dtype[len("mixed_"):]
    if isinstance(dtype, str) and dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError("dtype='bfloat16' needs the ml_dtypes package") from None
        return np.dtype(ml_dtypes.bfloat16)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a floating dtype or a Keras dtype policy name; "
                         f"got {dtype!r}") from None
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype; got {dtype}")
    return dtype


def _same_rank(x1, x2):
    """Keras's ``squeeze_or_expand_to_same_rank``: where the ranks differ by one
    and the larger has a last axis of size 1, that axis is squeezed, or the
    smaller, if it is 1-D, gets one."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1:
            x2 = x2[:, None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1:
            x1 = x1[:, None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _multiply(values, weights, what):
    try:
        return values * weights
    except ValueError:
        raise ValueError(f"{what} of shape {weights.shape} does not broadcast against the "
                         f"losses of shape {values.shape}") from None


def _reduce_weighted(values, sample_weight, mask, reduction, dtype):
    """``keras.losses.loss.reduce_weighted_values`` on NumPy arrays."""
    values = values.astype(dtype, copy=False)
    if sample_weight is not None:
        sample_weight = _array(sample_weight, "sample_weight", dtype)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            # Weight total/valid on the samples that count, so that dividing by
            # the batch size below divides by the number of those samples.
            valid = int(np.count_nonzero(mask))
            factor = dtype.type(mask.size) / dtype.type(valid) if valid else dtype.type(0)
            float_mask = np.where(mask, factor, dtype.type(0))
        else:
            float_mask = mask.astype(dtype)
        if sample_weight is None:
            sample_weight = float_mask
        else:
            float_mask, sample_weight = _same_rank(float_mask, sample_weight)
            sample_weight = _multiply(float_mask, sample_weight, "sample_weight")
    if sample_weight is not None:
        values, sample_weight = _same_rank(values, sample_weight)
        values = _multiply(values, sample_weight, "sample_weight")

    if reduction is None or reduction == "none" or values.shape in ((), (0,)):
        return values[()] if values.ndim == 0 else values
    total = np.sum(values, dtype=np.float64)
    if reduction in _MEAN_REDUCTIONS:
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = float(np.sum(sample_weight, dtype=np.float64))
        else:
            divisor = float(values.size)
        # Keras's divide_no_nan: a zero divisor gives 0.
        total = total / divisor if divisor != 0 else 0.0
    return dtype.type(total)


# ---------------------------------------------------------------------------
# The loss classes
# ---------------------------------------------------------------------------

class _Loss:
    """What ``keras.losses.Loss`` does around a loss function: conversion to
    the loss's dtype, matching ranks, then the reduction."""

    def __init__(self, name, reduction, dtype):
        self.name = name
        self.reduction = _check_reduction(reduction)
        self._dtype = _loss_dtype(dtype)

    @property
    def dtype(self):
        """The dtype the inputs are converted to, as a string (Keras's ``dtype``)."""
        return self._dtype.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of ``y_pred`` against ``y_true``, reduced.

        Parameters
        ----------
        y_true, y_pred : array_like
            As for the loss function; both are converted to the loss's dtype
            first. Where their ranks differ by one and the larger ends in an
            axis of size 1, that axis is dropped (or added to a 1-D smaller one).
        sample_weight : array_like, optional
            Multiplies the per-sample losses, after the same rank matching;
            any shape that then broadcasts against them.

        Returns
        -------
        NumPy scalar of the loss's dtype; with ``reduction=None`` or
        ``"none"`` the weighted per-sample losses.
        """
        y_pred = _array(y_pred, "y_pred", self._dtype)
        y_true = _array(y_true, "y_true", self._dtype)
        y_true, y_pred = _same_rank(y_true, y_pred)
        losses, mask = self._losses(y_true, y_pred)
        return _reduce_weighted(losses, sample_weight, mask, self.reduction, self._dtype)

    def get_config(self):
        """The constructor's arguments, as Keras's ``get_config`` gives them."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={val!r}" for k, val in self.get_config().items())
        return f"{type(self).__name__}({args})"


class CategoricalCrossentropy(_Loss):
    """Categorical cross-entropy with reduction, as ``keras.losses.CategoricalCrossentropy``.

    Parameters
    ----------
    from_logits, label_smoothing, axis
        As in ``categorical_crossentropy``.
    reduction : {"sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None}
        "sum_over_batch_size" and "mean" divide the (weighted) sum by the number
        of losses, "mean_with_sample_weight" by the sum of ``sample_weight``.
    name : str, default "categorical_crossentropy"
    dtype : dtype or str, optional
        The dtype inputs are converted to and the loss is computed in; float32
        by default (Keras's floatx), whatever the inputs' dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent.keras import CategoricalCrossentropy
    >>> cce = CategoricalCrossentropy()
    >>> cce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    np.float32(1.1769392)
    >>> cce([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]],
    ...     sample_weight=np.array([0.3, 0.7]))
    np.float32(0.8135988)
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _losses(self, y_true, y_pred):
        return _categorical(y_true, y_pred, self.from_logits, self.label_smoothing,
                            self.axis), None

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                      axis=self.axis)
        return config


class SparseCategoricalCrossentropy(_Loss):
    """Cross-entropy against class indices with reduction, as
    ``keras.losses.SparseCategoricalCrossentropy``.

    Parameters
    ----------
    from_logits, ignore_class, axis
        As in ``sparse_categorical_crossentropy``. Samples of ``ignore_class``
        are masked: the mean reductions average over the other samples only.
    reduction, name, dtype
        As in ``CategoricalCrossentropy``; ``y_true`` is converted to ``dtype``
        too, as Keras does, before it is truncated to class indices.

    Examples
    --------
    >>> from fastxent.keras import SparseCategoricalCrossentropy
    >>> SparseCategoricalCrossentropy(ignore_class=-1)([1, -1], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    np.float32(0.051293306)
    """

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis

    def _losses(self, y_true, y_pred):
        return _sparse(y_true, y_pred, self.from_logits, self.ignore_class, self.axis)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, ignore_class=self.ignore_class,
                      axis=self.axis)
        return config


class BinaryCrossentropy(_Loss):
    """Binary cross-entropy with reduction, as ``keras.losses.BinaryCrossentropy``.

    Parameters
    ----------
    from_logits, label_smoothing, axis
        As in ``binary_crossentropy``: the elementwise losses are averaged over
        ``axis`` first, then reduced.
    reduction, name, dtype
        As in ``CategoricalCrossentropy``.

    Examples
    --------
    >>> from fastxent.keras import BinaryCrossentropy
    >>> BinaryCrossentropy()([1.0], [0.8])
    np.float32(0.22314353)
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def _losses(self, y_true, y_pred):
        return _binary(y_true, y_pred, self.from_logits, self.label_smoothing, self.axis), None

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                      axis=self.axis)
        return config
