"""The public functions: shape handling, validation, then one kernel call.

Every array reaches a kernel as (rows, classes) with contiguous rows; the
kernel writes per-row results, and reductions happen here, in NumPy, in a
fixed order, so results do not depend on the thread count.
"""

import math

import numpy as np

from . import _validation as v
from ._backends import get_kernel, resolve_backend
from ._config import get_defaults
from ._threads import effective_num_threads


def _kernel(op, backend, num_threads):
    backend = resolve_backend(backend)
    if num_threads is None:
        num_threads = get_defaults()["num_threads"]
    num_threads = effective_num_threads(num_threads)
    return get_kernel(op, backend, num_threads), num_threads


def _result_dtype(array, compute):
    """Gradients and transforms keep a float input's dtype (float16 too)."""
    return array.dtype if array.dtype.kind == "f" else compute


def _rows(array, axis, dtype):
    """``array`` as (rows, n_classes) of ``dtype`` with contiguous rows; a view if possible."""
    moved = np.moveaxis(array, axis, -1)
    n_classes = moved.shape[-1]
    rows = moved.reshape(math.prod(moved.shape[:-1]), n_classes)
    if rows.dtype != dtype or (n_classes > 1 and rows.strides[1] != rows.itemsize):
        rows = rows.astype(dtype, order="C")
    return rows


def _without(shape, axis):
    return shape[:axis] + shape[axis + 1:]


def _same_view(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def _output_rows(out, shape, axis, result_dtype, compute, logits_rows, others=()):
    """The (rows, n_classes) array a kernel writes, and how to return it.

    The kernel writes straight into ``out`` when its layout allows and it
    overlaps no input except the logits themselves, element for element (the
    in-place case); otherwise it writes a new buffer that is copied to
    ``out`` (or returned) afterwards.
    """
    n_rows, n_classes = logits_rows.shape
    moved_shape = _without(shape, axis) + (n_classes,)
    if out is not None and out.dtype == compute:
        rows = np.moveaxis(out, axis, -1).reshape(n_rows, n_classes)
        direct = (rows.size == 0 or np.may_share_memory(rows, out)) and (
            n_classes <= 1 or rows.strides[1] == rows.itemsize)
        if direct and (_same_view(rows, logits_rows)
                       or not np.may_share_memory(rows, logits_rows)) and not any(
                np.may_share_memory(rows, other) for other in others):
            return rows, lambda: out
    rows = np.empty((n_rows, n_classes), compute)

    def finish():
        result = np.moveaxis(rows.reshape(moved_shape), -1, axis)
        if out is not None:
            np.copyto(out, result, casting="unsafe")
            return out
        return result if result_dtype == compute else result.astype(result_dtype)

    return rows, finish


def _no_output(dtype):
    return np.empty((0, 0), dtype)


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, return_grad=False, grad_output=None, out=None,
                  backend="auto", num_threads=None):
    """Cross-entropy between logits and targets, optionally with its gradient.

    Semantics of ``torch.nn.functional.cross_entropy``, computed by a fused
    log-softmax + loss (+ gradient) kernel that reads each row once.

    Parameters
    ----------
    input : array_like, shape (N, C), (C,) or (N, C, d1, ..., dk)
        Unnormalised logits; the class axis is axis 1 (axis 0 for 1-D input).
    target : array_like
        Class indices of any integer dtype, shape (N,), () or (N, d1, ..., dk),
        each in [0, C) or equal to ``ignore_index``; or class probabilities
        (floating dtype) of ``input``'s shape.
    weight : array_like, shape (C,), optional
        A rescaling weight for each class.
    ignore_index : int, default -100
        Class-index targets equal to it contribute neither loss nor gradient,
        nor count in the mean.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the summed loss by the summed weight of the non-ignored
        targets (class indices) or by the number of samples (probabilities).
    label_smoothing : float in [0, 1], default 0
        Mixes the targets with the uniform distribution over the C classes.
    return_grad : bool, default False
        Also return d(loss)/d(input), computed in the same pass.
    grad_output : scalar or array_like, optional
        Upstream gradient: a scalar for a reduced loss, or an array of the
        unreduced loss's shape with ``reduction="none"``. Default 1.
    out : ndarray, optional
        Receives the gradient (``input``'s shape and dtype); may be ``input``.
    backend : {"auto", "cython", "numpy"}, default "auto"
    num_threads : int, optional
        Threads for the kernel; default every usable core, 1 the serial kernel.

    Returns
    -------
    loss : NumPy scalar (mean, sum) or ndarray of the unreduced shape (none)
        In the compute dtype: float32 for float32/float16 input, else float64.
    grad : ndarray of ``input``'s shape, only with ``return_grad=True``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> logits = np.array([[1.2, -0.5, 0.1]], dtype=np.float32)
    >>> round(float(fastxent.cross_entropy(logits, [0])), 4)
    0.4158
    >>> loss, grad = fastxent.cross_entropy(logits, [0], return_grad=True)
    >>> grad.shape
    (1, 3)
    """
    reduction = v.check_reduction(reduction)
    label_smoothing = v.check_label_smoothing(label_smoothing)
    ignore_index = v.check_ignore_index(ignore_index)
    logits = v.as_array(input, "input")
    compute = v.compute_dtype(logits, "input")
    if logits.ndim == 0:
        raise ValueError("input must have a class axis: shape (C,), (N, C) or "
                         "(N, C, d1, ..., dk); got a scalar")
    axis = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[axis]
    if n_classes == 0:
        raise ValueError(f"input must have at least one class; got shape {logits.shape}")
    batch_shape = _without(logits.shape, axis)

    target = v.as_array(target, "target")
    probabilities = target.dtype.kind == "f" or target.dtype.name == "bfloat16"
    if probabilities:
        if target.shape != logits.shape:
            raise ValueError(
                f"target of floating dtype holds class probabilities and must have "
                f"input's shape {logits.shape}; got shape {target.shape} (for class "
                f"indices pass integers, e.g. target.astype(np.int64))")
    elif target.dtype.kind in "iu":
        if target.shape != batch_shape:
            raise ValueError(f"target of class indices must have shape {batch_shape} for "
                             f"input of shape {logits.shape}; got shape {target.shape}")
        v.check_class_indices(target, n_classes, ignore_index)
    else:
        raise TypeError(f"target must hold integer class indices or floating class "
                        f"probabilities; got dtype {target.dtype}")

    class_weight = (np.empty(0, compute) if weight is None
                    else v.check_weight(weight, n_classes, compute))
    grad_dtype = _result_dtype(logits, compute)
    if not return_grad and (grad_output is not None or out is not None):
        raise ValueError("grad_output and out are used only with return_grad=True")
    if out is not None:
        v.check_out(out, logits.shape, grad_dtype)
    if reduction == "none":
        row_scale = v.check_grad_output(grad_output, batch_shape) if return_grad else None
    else:
        upstream = v.check_scalar_grad_output(grad_output)
    op = "xent_probs" if probabilities else "xent_index"
    kernel, num_threads = _kernel(op, backend, num_threads)

    # Everything is checked: from here on nothing raises.
    rows = _rows(logits, axis, compute)
    n_rows = rows.shape[0]
    if probabilities:
        target_rows = _rows(target, axis, compute)
        denominator = n_rows
    else:
        target_rows = target.reshape(-1)
        if target_rows.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            target_rows = target_rows.astype(np.int64)
        kept = target_rows != ignore_index
        if weight is None:
            denominator = np.count_nonzero(kept)
        else:
            denominator = np.sum(class_weight[target_rows[kept]], dtype=np.float64)

    if reduction == "none":
        grad_scale = (np.ascontiguousarray(row_scale).reshape(-1) if return_grad
                      else np.zeros(n_rows))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.float64(upstream) / (denominator if reduction == "mean" else 1.0)
        grad_scale = np.broadcast_to(factor, (n_rows,))
    if return_grad:
        grad_rows, finish = _output_rows(out, logits.shape, axis, grad_dtype, compute,
                                         rows, others=(target_rows, class_weight))
    else:
        grad_rows = _no_output(compute)
    loss_rows = np.empty(n_rows, np.float64)
    if probabilities:
        kernel(rows, target_rows, class_weight, label_smoothing, grad_scale,
               loss_rows, grad_rows, num_threads)
    else:
        kernel(rows, target_rows, class_weight, label_smoothing, ignore_index,
               grad_scale, loss_rows, grad_rows, num_threads)

    if reduction == "none":
        loss = loss_rows.astype(compute).reshape(batch_shape)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.sum(loss_rows)
            loss = compute.type(total / denominator if reduction == "mean" else total)
    return (loss, finish()) if return_grad else loss


def _transform(op, input, axis, out, backend, num_threads):
    """log_softmax and softmax: a (rows, n_classes) result of input's shape."""
    array = v.as_array(input, "input")
    compute = v.compute_dtype(array, "input")
    if array.ndim == 0:
        raise ValueError(f"input of {op} must have at least one dimension; got a scalar")
    axis = v.check_axis(axis, array.ndim, "input")
    result_dtype = _result_dtype(array, compute)
    if out is not None:
        v.check_out(out, array.shape, result_dtype)
    kernel, num_threads = _kernel(op, backend, num_threads)
    rows = _rows(array, axis, compute)
    out_rows, finish = _output_rows(out, array.shape, axis, result_dtype, compute, rows)
    kernel(rows, out_rows, num_threads)
    return finish()


def log_softmax(input, axis=-1, *, out=None, backend="auto", num_threads=None):
    """Logarithm of the softmax along ``axis``: ``z - logsumexp(z)``.

    Parameters
    ----------
    input : array_like
    axis : int, default -1
    out : ndarray, optional
        Receives the result (``input``'s shape and dtype); may be ``input``.
    backend, num_threads : see ``cross_entropy``.

    Returns
    -------
    ndarray of ``input``'s shape; float input keeps its dtype, other input
    gives float64.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.log_softmax(np.log([1.0, 3.0]))
    array([-1.38629436, -0.28768207])
    """
    return _transform("log_softmax", input, axis, out, backend, num_threads)


def softmax(input, axis=-1, *, out=None, backend="auto", num_threads=None):
    """Softmax along ``axis``: ``exp(z - logsumexp(z))``.

    Parameters and result as for ``log_softmax``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.softmax(np.log([1.0, 3.0]))
    array([0.25, 0.75])
    """
    return _transform("softmax", input, axis, out, backend, num_threads)


def logsumexp(input, axis=-1, *, backend="auto", num_threads=None):
    """``log(sum(exp(input)))`` along ``axis``, without overflow.

    An all ``-inf`` slice gives ``-inf`` and a ``+inf`` entry ``+inf`` (as
    ``torch.logsumexp`` and ``scipy.special.logsumexp`` do).

    Returns
    -------
    ndarray of ``input``'s shape without ``axis``, or a NumPy scalar for 1-D
    input; float input keeps its dtype, other input gives float64.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> float(fastxent.logsumexp(np.log([1.0, 3.0])))
    1.3862943611198906
    """
    array = v.as_array(input, "input")
    compute = v.compute_dtype(array, "input")
    if array.ndim == 0:
        raise ValueError("input of logsumexp must have at least one dimension; got a scalar")
    axis = v.check_axis(axis, array.ndim, "input")
    kernel, num_threads = _kernel("logsumexp", backend, num_threads)
    rows = _rows(array, axis, compute)
    lse = np.empty(rows.shape[0], np.float64)
    kernel(rows, lse, num_threads)
    result = lse.astype(_result_dtype(array, compute)).reshape(_without(array.shape, axis))
    return result[()] if result.ndim == 0 else result
