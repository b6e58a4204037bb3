"""scikit-learn's ``log_loss`` computed by fastxent's kernels.

``log_loss`` takes the arguments of ``sklearn.metrics.log_loss`` (scikit-learn
1.9) and gives its results, warnings and errors without importing
scikit-learn: the labels are checked and encoded here as scikit-learn's
``LabelBinarizer`` does, and the per-sample losses come from the cross-entropy
kernel. The error messages are scikit-learn's, so that code matching on them
keeps working.
"""

import math
import numbers
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from ._api import cross_entropy, logsumexp

__all__ = ["InvalidParameterError", "log_loss"]

# check_array keeps these dtypes of y_proba and converts anything else to float64.
_PROBA_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


class InvalidParameterError(ValueError, TypeError):
    """An argument of the wrong kind, as scikit-learn's parameter validation says.

    It is both a ValueError and a TypeError, like scikit-learn's exception of
    the same name.
    """


def log_loss(y_true, y_proba, *, normalize=True, sample_weight=None, labels=None):
    """Log loss (cross-entropy) of predicted probabilities, as scikit-learn computes it.

    The values, warnings and errors of ``sklearn.metrics.log_loss`` of
    scikit-learn 1.9. Each probability is clipped to ``[eps, 1 - eps]``, with
    ``eps`` the machine epsilon of ``y_proba``'s dtype; rows are not
    renormalised (a row that does not sum to 1 only warns), so a sample's loss
    is ``-log(p[i, y_i])`` of the clipped probabilities.

    Parameters
    ----------
    y_true : array_like, shape (n_samples,) or (n_samples, n_classes)
        True labels of any sortable kind (integers, strings, bools, ...), or a
        label indicator matrix.
    y_proba : array_like of float, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, the columns in the sorted order of the labels.
        A 1-D array holds the probabilities of the larger of two labels.
        float32 and float16 are kept (float16 is computed in float32); any
        other input is converted to float64.
    normalize : bool, default True
        Return the mean loss per sample (weighted by ``sample_weight``) if
        True, else the sum.
    sample_weight : array_like, shape (n_samples,), optional
        Weight of each sample.
    labels : array_like, optional
        All the labels; by default those found in ``y_true``. Needed when
        ``y_true`` holds a single label, or fewer labels than ``y_proba`` has
        columns.

    Returns
    -------
    loss : float

    Raises
    ------
    InvalidParameterError
        An argument of the wrong kind (e.g. a scalar for ``y_true``).
    ValueError
        Probabilities outside [0, 1], NaN or inf in ``y_proba``, lengths that
        differ, fewer than two labels, a label of ``y_true`` missing from
        ``labels``, a number of columns other than the number of labels, ...
        with scikit-learn's messages.

    Warns
    -----
    UserWarning
        When a row of ``y_proba`` does not sum to 1 (within a relative
        ``sqrt(eps)``), and when ``labels`` is not sorted.

    Examples
    --------
    >>> from fastxent.sklearn import log_loss
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 5)
    0.21616
    """
    _check_params(y_true=y_true, y_proba=y_proba, normalize=normalize,
                  sample_weight=sample_weight, labels=labels)
    proba = _check_proba(y_proba)
    if np.max(proba) > 1:
        raise ValueError(f"y_prob contains values greater than 1: {np.max(proba)}")
    if np.min(proba) < 0:
        raise ValueError(f"y_prob contains values lower than 0: {np.min(proba)}")
    _check_consistent_length(proba, y_true, sample_weight)
    if sample_weight is not None:
        _check_sample_weight(sample_weight, proba.shape[0])

    target, classes = _encode_targets(y_true, labels)

    if proba.ndim == 1:
        proba = proba[:, np.newaxis]
    if proba.shape[1] == 1:
        proba = np.concatenate([1 - proba, proba], axis=1)
    eps = np.finfo(proba.dtype).eps
    # The check is on the probabilities as given (before clipping), in their dtype.
    row_sums = np.sum(proba, axis=1)
    if not np.all(np.isclose(row_sums, proba.dtype.type(1), rtol=math.sqrt(eps))):
        warnings.warn("The y_prob values do not sum to one. Make sure to pass probabilities.",
                      UserWarning, stacklevel=2)
    if len(classes) != proba.shape[1]:
        if labels is None:
            raise ValueError(
                f"y_true and y_prob contain different number of classes: {len(classes)} vs "
                f"{proba.shape[1]}. Please provide the true labels explicitly through the "
                f"labels argument. Classes found in y_true: {classes}")
        raise ValueError("The number of classes in labels is different from that in "
                         f"y_prob. Classes found in labels: {classes}")

    loss = _sample_losses(np.clip(proba, eps, 1 - eps), target)
    # NumPy weighs and reduces the raw sample_weight as in scikit-learn: the
    # same dtype promotion, and the same ZeroDivisionError for weights summing to 0.
    if normalize:
        return float(np.average(loss, weights=sample_weight))
    if sample_weight is not None:
        return float(np.dot(loss, sample_weight))
    return float(np.sum(loss))


def _sample_losses(proba, target):
    """``-sum_c target[i, c] log proba[i, c]`` per row, by the cross-entropy kernel.

    ``target`` holds class indices (n_samples,) or an indicator matrix. The
    kernel's loss of the logits ``log p`` is ``logsumexp(log p) - log p[y]``:
    it renormalises the row, which scikit-learn does not, so the row's
    logsumexp (``log sum p``, near 0 for a row that sums to 1) is taken off.
    """
    if proba.dtype == np.float16:
        proba = proba.astype(np.float32)  # the kernels compute float16 in float32
    logits = np.log(proba)
    lse = logsumexp(logits)
    if target.ndim == 1:
        return cross_entropy(logits, target, reduction="none") - lse
    # An indicator row counts log p once for each 1 it holds (and y_true's
    # values weigh in as they are, as in scikit-learn).
    weights = target.astype(logits.dtype)
    return (cross_entropy(logits, weights, reduction="none")
            - np.sum(weights, axis=1) * lse)


# --------------------------------------------------------------------------
# Arguments, checked as scikit-learn checks them.
# --------------------------------------------------------------------------

def _is_sparse(x):
    # A SciPy sparse matrix exists only if scipy.sparse was imported.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(x)


def _is_array_like(x):
    return ((hasattr(x, "__len__") or hasattr(x, "shape") or hasattr(x, "__array__"))
            and not np.isscalar(x) and not _is_sparse(x))


def _check_params(**params):
    array_like, optional = "an array-like", "an array-like or None"
    rules = {
        "y_true": (_is_array_like, array_like),
        "y_proba": (lambda x: x is None or _is_array_like(x), array_like),
        "normalize": (lambda x: isinstance(x, (bool, np.bool_)),
                      "an instance of 'bool' or an instance of 'numpy.bool'"),
        "sample_weight": (lambda x: x is None or _is_array_like(x), optional),
        "labels": (lambda x: x is None or _is_array_like(x), optional),
    }
    for name, value in params.items():
        accepts, expected = rules[name]
        if not accepts(value):
            raise InvalidParameterError(f"The {name!r} parameter of log_loss must be "
                                        f"{expected}. Got {value!r} instead.")


def _num_samples(x):
    message = f"Expected sequence or array-like, got {type(x)}"
    if callable(getattr(x, "fit", None)):
        raise TypeError(message)
    shape = getattr(x, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            raise TypeError("Input should have at least 1 dimension i.e. satisfy "
                            f"`len(x.shape) > 0`, got scalar `{x!r}` instead.")
        if isinstance(shape[0], numbers.Integral):
            return shape[0]
    if not hasattr(x, "__len__") and not hasattr(x, "shape"):
        if not hasattr(x, "__array__"):
            raise TypeError(message)
        x = np.asarray(x)
    try:
        return len(x)
    except TypeError as exc:
        raise TypeError(message) from exc


def _check_consistent_length(*arrays):
    lengths = [_num_samples(x) for x in arrays if x is not None]
    if len(set(lengths)) > 1:
        raise ValueError("Found input variables with inconsistent numbers of samples: "
                         f"{[int(n) for n in lengths]!r}")


def _assert_all_finite(array, input_name=""):
    name = input_name + " " if input_name else ""
    if array.dtype == object:
        if np.any(array != array):
            raise ValueError("Input contains NaN")
        return
    if array.dtype.kind not in "fc":
        return
    with np.errstate(over="ignore"):
        if np.isfinite(np.sum(array)):
            return
    if np.any(np.isnan(array)):
        raise ValueError(f"Input {name}contains NaN.")
    if np.any(np.isinf(array)):
        raise ValueError(f"Input {name}contains infinity or a value too large for "
                         f"{array.dtype!r}.")


def _check_array(array, input_name=""):
    """The checks of scikit-learn's ``check_array(ensure_2d=False)`` on a converted array."""
    if array.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{array}\n")
    if array.ndim >= 3:
        raise ValueError(f"Found array with dim {array.ndim}, while dim <= 2 is required.")
    _assert_all_finite(array, input_name)
    n_samples = _num_samples(array)
    if n_samples < 1:
        raise ValueError(f"Found array with {n_samples} sample(s) (shape={array.shape}) "
                         "while a minimum of 1 is required.")
    if array.ndim == 2 and array.shape[1] < 1:
        raise ValueError(f"Found array with {array.shape[1]} feature(s) "
                         f"(shape={array.shape}) while a minimum of 1 is required.")
    return array


def _check_proba(y_proba):
    dtype = getattr(y_proba, "dtype", None)
    if not hasattr(dtype, "kind"):  # e.g. a torch dtype: converted to float64
        dtype = None
    if dtype is not None and dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{y_proba}\n")
    keep = dtype is not None and dtype in _PROBA_DTYPES
    return _check_array(np.asarray(y_proba, dtype=None if keep else np.float64))


def _check_sample_weight(sample_weight, n_samples):
    weights = _check_array(np.asarray(sample_weight), "sample_weight")
    if weights.ndim != 1:
        raise ValueError(f"Sample weights must be 1D array or scalar, got {weights.ndim}D "
                         "array. Expected either a scalar value or a 1D array of length "
                         f"{n_samples}.")
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n_samples,)}!")
    if np.all(weights == 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")


# --------------------------------------------------------------------------
# Labels: scikit-learn's type_of_target, unique_labels and LabelBinarizer.
# --------------------------------------------------------------------------

def _as_label_array(y):
    try:
        array = np.asarray(y)
    except ValueError:  # ragged nesting
        array = np.asarray(y, dtype=object)
    if array.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{array}\n")
    return array


def _is_integral_float(array):
    return array.dtype.kind == "f" and bool(
        np.all(array.astype(np.int64).astype(array.dtype) == array))


def _is_multilabel(array):
    if not (array.ndim == 2 and array.shape[1] > 1):
        return False
    values = np.unique(array)
    return len(values) < 3 and (array.dtype.kind in "biu" or _is_integral_float(values))


def _type_of_target(y, input_name=""):
    """One of "binary", "multiclass", "multilabel-indicator", "continuous",
    "multiclass-multioutput", "continuous-multioutput", "unknown"."""
    if not ((isinstance(y, Sequence) or hasattr(y, "__array__"))
            and not isinstance(y, str)):
        raise ValueError(f"Expected array-like (array or non-string sequence), got {y!r}")
    array = _as_label_array(y)
    if _is_multilabel(array):
        return "multilabel-indicator"
    try:
        first = array[0]
    except IndexError:
        first = None
    else:
        if isinstance(first, bytes):
            raise TypeError("Support for labels represented as bytes is not supported. "
                            "Convert the labels to a string or integer format.")
        if (not hasattr(first, "__array__") and isinstance(first, Sequence)
                and not isinstance(first, str)):
            raise ValueError("You appear to be using a legacy multi-label data "
                             "representation. Sequence of sequences are no longer "
                             "supported; use a binary array or sparse matrix instead - the "
                             "MultiLabelBinarizer transformer can convert to this format.")
    if array.ndim not in (1, 2):
        return "unknown"
    if not min(array.shape):
        return "binary" if array.ndim == 1 else "unknown"
    if array.dtype == object and not isinstance(array.flat[0], str):
        return "unknown"
    suffix = "-multioutput" if array.ndim == 2 and array.shape[1] > 1 else ""
    # (NumPy warns here when it casts a NaN, as it does in scikit-learn.)
    if array.dtype.kind == "f" and np.any(array != array.astype(np.int64).astype(array.dtype)):
        _assert_all_finite(array, input_name)
        return "continuous" + suffix
    if len(np.unique(array)) > 2 or (array.ndim == 2 and len(first) > 1):
        return "multiclass" + suffix
    return "binary"


def _unique_labels(y, y_type):
    """The sorted labels of ``y``: values, or columns of an indicator matrix."""
    # An array's values are sorted before anything else is looked at, so
    # values that do not compare (1 and "a" in an object array) raise TypeError.
    unique = np.unique(y) if isinstance(y, np.ndarray) else None
    if y_type == "multilabel-indicator":
        return np.arange(np.asarray(y).shape[1])
    if y_type not in ("binary", "multiclass"):
        raise ValueError(f"Unknown label type: {(y,)!r}")
    if unique is None and hasattr(y, "__array__"):
        unique = np.unique(np.asarray(y))
    values = set(y if unique is None else unique)
    if len({isinstance(v, str) for v in values}) > 1:
        raise ValueError("Mix of label input types (string and number); "
                         f"Got {np.unique(np.asarray(y))}.")
    return np.asarray(sorted(values))


def _fit_labels(y):
    """(target type of ``y``, its sorted labels), as ``LabelBinarizer.fit``."""
    y_type = _type_of_target(y, input_name="y")
    if "multioutput" in y_type:
        raise ValueError("Multioutput target data is not supported with label binarization")
    if _num_samples(y) == 0:
        raise ValueError(f"y has 0 samples: {y!r}")
    return y_type, _unique_labels(y, y_type)


def _encode_targets(y_true, labels):
    """(class indices (n_samples,) or an indicator matrix, the sorted labels).

    A class index is the position of the label among the sorted labels: the
    column of ``y_proba`` it picks.
    """
    if labels is not None:
        fitted_type, classes = _fit_labels(labels)
        if not np.all(classes == labels):
            warnings.warn(f"Labels passed were {labels}. But this function assumes labels "
                          "are ordered lexicographically. Pass the ordered "
                          f"labels={classes.tolist()} and ensure that the columns of y_prob "
                          "correspond to this ordering.", UserWarning, stacklevel=3)
        if not np.all(np.isin(y_true, labels)):
            raise ValueError(f"y_true contains values {set(y_true) - set(labels)} not "
                             f"belonging to the passed labels {labels}.")
    else:
        fitted_type, classes = _fit_labels(y_true)
    if len(classes) == 1:
        if labels is None:
            raise ValueError(f"y_true contains only one label ({classes[0]}). Please provide "
                             "the list of all expected class labels explicitly through the "
                             "labels argument.")
        raise ValueError(f"The labels array needs to contain at least two labels, got "
                         f"{classes}.")

    y_type = _type_of_target(y_true)
    if y_type.startswith("multilabel") and not fitted_type.startswith("multilabel"):
        raise ValueError("The object was not fitted with multilabel input.")
    if "multioutput" in y_type:
        raise ValueError("Multioutput target data is not supported with label binarization")
    if y_type == "unknown":
        raise ValueError("The type of target data is not known")
    if y_type == "multilabel-indicator":
        indicator = np.asarray(y_true)
        if indicator.shape[1] != len(classes):
            raise ValueError(f"classes {classes} mismatch with the labels "
                             f"{_unique_labels(y_true, y_type)} found in the data")
        # Values other than 0 and 1 (an indicator may hold any two integers,
        # e.g. [[2, 5], [5, 2]]) weigh the log-probabilities as they are.
        dtype = indicator.dtype if indicator.dtype.kind == "i" else np.intp
        return indicator.astype(dtype), classes
    if y_type not in ("binary", "multiclass"):
        raise ValueError(f"{y_type} target data is not supported with label binarization")
    values = np.asarray(y_true)
    if values.ndim == 2:  # a column vector
        values = values.reshape(-1)
    # Every value is among the labels (checked above, or they come from y_true).
    return np.searchsorted(classes, values).astype(np.intp), classes
