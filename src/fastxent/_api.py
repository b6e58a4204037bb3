"""The public functions: shape handling, validation, then one kernel call.

Every array reaches a kernel as (rows, classes) with contiguous rows; the
kernel writes per-row results, and reductions happen here, in NumPy, in a
fixed order, so results do not depend on the thread count.
"""

import math

import numpy as np

from . import _validation as v
from ._backends import (KERNEL_LABEL_DTYPES, first_outside_unit, get_kernel, label_stats,
                        resolve_backend, resolve_name)
from ._config import get_defaults
from ._threads import effective_num_threads


def _device_module(array, backend):
    """The CUDA front end when ``array`` lives on a CUDA device, else None."""
    if not v.is_cuda_array(array):
        return None
    if resolve_name(backend) not in ("auto", "cuda"):
        raise TypeError(f"input is a CUDA array; backend {backend!r} runs on the CPU: use "
                        f"backend='cuda' (or 'auto'), or copy the input to the host")
    from ._cuda import _device
    return _device


# With num_threads left to fastxent, inputs smaller than this run on one thread:
# they take well under a millisecond, where waking other threads costs more than
# it gains, and idle OpenMP workers keep spinning for milliseconds afterwards,
# stealing the cores from the caller's next NumPy (BLAS) or PyTorch call.
PARALLEL_MIN_SIZE = 1 << 18


def _kernel(op, backend, num_threads, size):
    backend = resolve_backend(backend)
    if num_threads is None:
        num_threads = get_defaults()["num_threads"]
        if num_threads is None and size < PARALLEL_MIN_SIZE:
            num_threads = 1
    num_threads = effective_num_threads(num_threads)
    return get_kernel(op, backend, num_threads), num_threads


def _result_dtype(array, compute):
    """Gradients and transforms keep a float input's dtype (float16 and bfloat16 too)."""
    return array.dtype if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else compute


def _row_view(array, axis):
    """``array`` as (rows, n_classes) with ``axis`` last, as a view; None if that needs a copy."""
    moved = array if axis == array.ndim - 1 else np.moveaxis(array, axis, -1)
    try:
        return moved.reshape((math.prod(moved.shape[:-1]), moved.shape[-1]), copy=False)
    except ValueError:
        return None


def _contiguous_rows(rows):
    return rows.shape[1] <= 1 or rows.strides[1] == rows.itemsize


def _rows(array, axis, dtype):
    """``array`` as (rows, n_classes) of ``dtype`` with contiguous rows; a view if possible."""
    rows = _row_view(array, axis)
    if rows is None:
        moved = np.moveaxis(array, axis, -1)
        return np.ascontiguousarray(moved, dtype).reshape(-1, moved.shape[-1])
    if rows.dtype != dtype or not _contiguous_rows(rows):
        rows = rows.astype(dtype, order="C")
    return rows


def _from_rows(rows, shape, axis):
    """The inverse of ``_rows``: (rows, n_classes) back to ``shape`` (a view)."""
    if axis == len(shape) - 1:
        return rows.reshape(shape)
    return np.moveaxis(rows.reshape(_without(shape, axis) + (shape[axis],)), -1, axis)


def _same_rows(n_rows, value):
    """A (n_rows,) float64 array holding ``value`` everywhere, without writing n_rows values."""
    return np.ndarray((n_rows,), np.float64, np.array([value], np.float64), 0, (0,))


def _divide(a, b):
    """``a / b`` as IEEE arithmetic does it (x / 0 is inf or nan), without a warning."""
    if b != 0:
        return a / b
    if a == 0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _without(shape, axis):
    return shape[:axis] + shape[axis + 1:]


def _same_view(a, b):
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _output_rows(out, shape, axis, result_dtype, compute, logits_rows, others=()):
    """The (rows, n_classes) array a kernel writes, and how to return it.

    The kernel writes straight into ``out`` when its layout allows and it
    overlaps no input except the logits themselves, element for element (the
    in-place case); otherwise it writes a new buffer that is copied to
    ``out`` (or returned) afterwards.
    """
    n_rows, n_classes = logits_rows.shape
    if out is not None and out.dtype == compute:
        rows = _row_view(out, axis)
        direct = rows is not None and _contiguous_rows(rows) and not any(
            np.may_share_memory(rows, other) for other in others)
        if direct and np.may_share_memory(rows, logits_rows):
            direct = _same_view(rows, logits_rows)
        if direct:
            return rows, lambda: out
    rows = np.empty((n_rows, n_classes), compute)
    return rows, lambda: _finish(_from_rows(rows, shape, axis), out, result_dtype, compute)


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, sample_weight=None, z_loss=0.0, softcap=None,
                  return_grad=False, grad_output=None, out=None, backend="auto",
                  num_threads=None):
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
    sample_weight : array_like of the batch shape, optional
        Multiplies each sample's loss (and gradient). With class indices,
        "mean" divides by the sum of ``sample_weight * weight[target]`` over
        the samples that are not ignored (by the sum of ``sample_weight`` for
        probabilities): PyTorch's weighted mean, extended.
    z_loss : float >= 0, default 0
        Adds ``z_loss * lse**2`` to each counted sample's loss (lse the
        log-sum-exp of its logits), as PaLM and Liger-Kernel's
        ``lse_square_scale`` do. "mean" divides this term by the summed
        ``sample_weight`` of the counted samples (their number), without the
        class weights, as Liger-Kernel does.
    softcap : float > 0, optional
        Replaces the logits z by ``softcap * tanh(z / softcap)`` first (as in
        Gemma 2); the gradient is with respect to the original logits.
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
    z_loss = v.check_z_loss(z_loss)
    softcap = v.check_softcap(softcap)
    device = _device_module(input, backend)
    if device is not None:
        return device.cross_entropy(input, target, weight, ignore_index, reduction,
                                    label_smoothing, return_grad, grad_output, out,
                                    sample_weight, z_loss, softcap)
    logits, compute, axis, batch_shape, class_weight = _class_logits(input, "input", weight)
    n_classes = logits.shape[axis]
    probabilities, target_rows, denominator = _targets(
        target, logits.shape, axis, ignore_index, class_weight, compute)
    sample_rows = (None if sample_weight is None
                   else v.check_sample_weight(sample_weight, batch_shape))
    denominator, z_coef = _normalisation(probabilities, target_rows, class_weight,
                                         ignore_index, sample_rows, denominator, z_loss,
                                         reduction)
    grad_dtype = _result_dtype(logits, compute)
    if not return_grad and (grad_output is not None or out is not None):
        raise ValueError("grad_output and out are used only with return_grad=True")
    if out is not None:
        v.check_out(out, logits.shape, grad_dtype)
    rows = _rows(logits, axis, compute)
    n_rows = rows.shape[0]
    grad_scale = _grad_scale(return_grad, reduction, grad_output, batch_shape, n_rows,
                             denominator)
    if return_grad and sample_rows is not None:
        with np.errstate(invalid="ignore"):  # inf * 0 is nan, as in the loss
            grad_scale = grad_scale * sample_rows
    op = "xent_probs" if probabilities else "xent_index"
    if (weight is not None and resolve_backend(backend) != "numpy"
            and not np.isfinite(class_weight).all()):
        # The fused kernels write sum v (lse - z) as sum(v) log(s) - sum v (z - max),
        # where an infinite weight meets z = max as inf * 0; PyTorch's formula,
        # followed literally, gives its inf (or nan) instead.
        backend = "numpy"
    kernel, num_threads = _kernel(op, backend, num_threads, logits.size)

    # Everything is checked: from here on nothing raises.
    if return_grad:
        grad_rows, finish = _output_rows(out, logits.shape, axis, grad_dtype, compute,
                                         rows, others=(target_rows, class_weight, grad_scale))
    else:
        grad_rows = np.empty((0, 0), compute)
    loss_rows = np.empty(n_rows, np.float64)
    if probabilities:
        kernel(rows, target_rows, class_weight, label_smoothing, z_coef, softcap, grad_scale,
               loss_rows, grad_rows, num_threads)
    else:
        kernel(rows, target_rows, class_weight, label_smoothing, ignore_index, z_coef,
               softcap, grad_scale, loss_rows, grad_rows, num_threads)
    # NaN and inf propagate as values, never as errors, whatever np.errstate is.
    with np.errstate(invalid="ignore", over="ignore"):
        if sample_rows is not None:
            loss_rows *= sample_rows
        if reduction == "none":
            loss = loss_rows.astype(compute).reshape(batch_shape)
        else:
            total = float(np.sum(loss_rows))
            loss = compute.type(_divide(total, denominator) if reduction == "mean" else total)
    return (loss, finish()) if return_grad else loss


def _class_logits(input, name, weight):
    """(logits as an array, compute dtype, class axis, batch shape, class weights
    or an empty array): checked."""
    logits = v.as_array(input, name)
    compute = v.compute_dtype(logits, name)
    if logits.ndim == 0:
        raise ValueError(f"{name} must have a class axis: shape (C,), (N, C) or "
                         "(N, C, d1, ..., dk); got a scalar")
    axis = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[axis]
    if n_classes == 0:
        raise ValueError(f"{name} must have at least one class; got shape {logits.shape}")
    class_weight = (np.empty(0, compute) if weight is None
                    else v.check_weight(weight, n_classes, compute))
    return logits, compute, axis, _without(logits.shape, axis), class_weight


def _targets(target, shape, axis, ignore_index, class_weight, compute):
    """(whether ``target`` holds probabilities, its rows, the mean's denominator)."""
    target = v.as_array(target, "target")
    n_classes = shape[axis]
    if target.dtype.kind == "f" or (target.dtype.kind == "V" and target.dtype.name == "bfloat16"):
        if target.shape != shape:
            raise ValueError(
                f"target of floating dtype holds class probabilities and must have "
                f"input's shape {shape}; got shape {target.shape} (for class "
                f"indices pass integers, e.g. target.astype(np.int64))")
        target_rows = _rows(target, axis, compute)
        return True, target_rows, target_rows.shape[0]
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices or floating class "
                        f"probabilities; got dtype {target.dtype}")
    if target.shape != _without(shape, axis):
        raise ValueError(f"target of class indices must have shape {_without(shape, axis)} "
                         f"for input of shape {shape}; got shape {target.shape}")
    return (False,) + _class_indices(target, n_classes, ignore_index, class_weight)


def _normalisation(probabilities, target_rows, class_weight, ignore_index, sample_rows,
                   denominator, z_loss, reduction):
    """(the mean's denominator, the z-loss coefficient the kernel applies).

    The mean is sum(sw loss) / D1 with D1 the summed sw w[y] of the counted
    samples, and its z-loss term z_loss sum(sw lse**2) / D2 with D2 their
    summed sw: the kernel gets z_loss D1 / D2, so that one division by D1
    does both. D1 = D2 without class weights, and for probabilities.
    """
    weighted = class_weight.size != 0 and not probabilities
    if sample_rows is not None:
        if probabilities:
            denominator = float(np.sum(sample_rows))
        else:
            kept = target_rows != ignore_index
            counted = sample_rows[kept]
            denominator = float(np.sum(counted * class_weight[target_rows[kept]] if weighted
                                       else counted))
    if not (z_loss and weighted and reduction == "mean"):
        return denominator, z_loss
    kept = target_rows != ignore_index
    counted = (float(np.count_nonzero(kept)) if sample_rows is None
               else float(np.sum(sample_rows[kept])))
    return denominator, z_loss * _divide(denominator, counted)


def _grad_scale(return_grad, reduction, grad_output, batch_shape, n_rows, denominator):
    """The factor of each row's gradient: upstream gradient / the mean's denominator."""
    if not return_grad:
        return _same_rows(n_rows, 0.0)
    if reduction == "none":
        return v.check_grad_output(grad_output, batch_shape).reshape(n_rows)
    upstream = v.check_scalar_grad_output(grad_output)
    return _same_rows(n_rows, _divide(upstream, denominator) if reduction == "mean"
                      else upstream)


def _class_indices(target, n_classes, ignore_index, class_weight):
    """Labels as int32/int64 rows, checked, and the mean's denominator.

    IndexError names the first label outside [0, n_classes) that is not
    ``ignore_index``, and where it is in ``target``.
    """
    labels = target.reshape(-1)
    bad, denominator = label_stats(labels, n_classes, ignore_index, class_weight)
    if bad >= 0:
        v.raise_bad_label(target, bad, n_classes, ignore_index)
    if labels.dtype not in KERNEL_LABEL_DTYPES:
        labels = labels.astype(np.int64)  # checked first: a conversion could wrap
    return labels, denominator


# Elementwise kernels sum their losses in blocks of this many elements (the
# same blocks for any thread count), and the blocks are summed here.
BCE_BLOCK = 8192
# Periodic weights shorter than this are repeated, so each sweep is long.
MIN_PERIOD = 1024


def binary_cross_entropy(input, target, weight=None, *, reduction="mean", return_grad=False,
                         grad_output=None, out=None, backend="auto", num_threads=None):
    """Binary cross-entropy between probabilities and targets.

    Semantics of ``torch.nn.functional.binary_cross_entropy``: each log is
    clamped at -100, and the gradient is ``w (x - y) / max(x (1 - x), 1e-12)``
    as PyTorch computes it. Elementwise, computed in double precision.

    Parameters
    ----------
    input : array_like, any shape
        Probabilities in [0, 1] (NaN is allowed and gives a NaN loss).
    target : array_like, ``input``'s shape
        Target probabilities in [0, 1].
    weight : array_like, optional
        Rescales each element's loss; must broadcast to ``input``'s shape.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the summed loss by the number of elements.
    return_grad, grad_output, out, backend, num_threads
        As in ``cross_entropy``; ``grad_output`` with ``reduction="none"``
        broadcasts to ``input``'s shape.

    Returns
    -------
    loss : NumPy scalar (mean, sum) or ndarray of ``input``'s shape (none)
    grad : ndarray of ``input``'s shape, only with ``return_grad=True``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> round(float(fastxent.binary_cross_entropy(np.float32([0.8]), np.float32([1.0]))), 4)
    0.2231
    """
    return _binary(False, input, target, weight, None, reduction, return_grad, grad_output,
                   out, backend, num_threads)


def binary_cross_entropy_with_logits(input, target, weight=None, *, pos_weight=None,
                                     reduction="mean", return_grad=False, grad_output=None,
                                     out=None, backend="auto", num_threads=None):
    """Binary cross-entropy between logits and targets, in a stable form.

    Semantics of ``torch.nn.functional.binary_cross_entropy_with_logits``:
    ``loss = w ((1 - y) x - lw log(sigmoid(x)))`` with
    ``lw = 1 + (pos_weight - 1) y``, and the gradient
    ``w (lw sigmoid(x) - pos_weight y)``. Computed in double precision, in a
    form where no two terms cancel.

    Parameters
    ----------
    input : array_like, any shape
        Logits.
    target : array_like, ``input``'s shape
        Target probabilities (not range-checked, as in PyTorch).
    weight : array_like, optional
        Rescales each element's loss; must broadcast to ``input``'s shape.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast over the last axis (shape (C,)
        for input (..., C)); must broadcast to ``input``'s shape.
    reduction, return_grad, grad_output, out, backend, num_threads
        As in ``binary_cross_entropy``.

    Returns
    -------
    As ``binary_cross_entropy``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> round(float(fastxent.binary_cross_entropy_with_logits([0.0], [1.0])), 4)
    0.6931
    """
    return _binary(True, input, target, weight, pos_weight, reduction, return_grad,
                   grad_output, out, backend, num_threads)


def _binary(from_logits, input, target, weight, pos_weight, reduction, return_grad,
            grad_output, out, backend, num_threads):
    reduction = v.check_reduction(reduction)
    device = _device_module(input, backend)
    if device is not None:
        return device.binary(from_logits, input, target, weight, pos_weight, reduction,
                             return_grad, grad_output, out)
    x = v.as_array(input, "input")
    compute = v.compute_dtype(x, "input")
    t = v.as_array(target, "target")
    v.compute_dtype(t, "target")
    if t.shape != x.shape:
        raise ValueError(f"target must have input's shape {x.shape}; got shape {t.shape}")
    grad_dtype = _result_dtype(x, compute)
    if not return_grad and (grad_output is not None or out is not None):
        raise ValueError("grad_output and out are used only with return_grad=True")
    if out is not None:
        v.check_out(out, x.shape, grad_dtype)
    w = _periodic(weight, x.shape, compute, "weight")
    pw = _periodic(pos_weight, x.shape, compute, "pos_weight")
    flat = np.ascontiguousarray(x, compute).reshape(-1)
    flat_target = np.ascontiguousarray(t, compute).reshape(-1)
    n = flat.size
    go = np.empty(0)
    if not return_grad:
        scale = 0.0
    elif reduction == "none":
        scale = 1.0
        if grad_output is not None:
            go = np.ascontiguousarray(v.check_grad_output(grad_output, x.shape)).reshape(-1)
    else:
        upstream = v.check_scalar_grad_output(grad_output)
        scale = _divide(upstream, n) if reduction == "mean" else upstream
    kernel, num_threads = _kernel("bce", backend, num_threads, n)
    if not from_logits:
        for values, name in ((flat, "input"), (flat_target, "target")):
            v.check_unit_interval(values, first_outside_unit(values, num_threads), x.shape, name)

    # Everything is checked: from here on nothing raises.
    if return_grad:
        grad, finish = _output_flat(out, x.shape, grad_dtype, compute, flat,
                                    others=(flat_target, w, pw, go))
    else:
        grad = np.empty(0, compute)
    loss_out = np.empty(n if reduction == "none" else 0, compute)
    block_sums = np.empty(-(-n // BCE_BLOCK), np.float64)
    kernel(flat, flat_target, w, pw, from_logits, scale, go, BCE_BLOCK, block_sums, loss_out,
           grad, num_threads)
    if reduction == "none":
        loss = loss_out.reshape(x.shape)
    else:
        total = float(np.sum(block_sums))
        loss = compute.type(_divide(total, n) if reduction == "mean" else total)
    return (loss, finish()) if return_grad else loss


def _periodic(weight, shape, compute, name):
    """``weight`` as a flat array whose entry j % len applies to element j of
    ``input`` (C order): its trailing axes when those are all it has beyond
    leading 1s, else the whole broadcast array; empty for None."""
    if weight is None:
        return np.empty(0, compute)
    w = v.as_array(weight, name)
    v.compute_dtype(w, name)
    try:
        fits = np.broadcast_shapes(w.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {w.shape} does not broadcast to input's shape "
                         f"{tuple(shape)}")
    core = w.reshape(w.shape[next((i for i, d in enumerate(w.shape) if d != 1), w.ndim):])
    if core.shape != tuple(shape[len(shape) - core.ndim:]):
        core = np.broadcast_to(w, shape)
    periodic = np.ascontiguousarray(core, compute).reshape(-1)
    if 0 < periodic.size < MIN_PERIOD:
        periodic = np.tile(periodic, -(-MIN_PERIOD // periodic.size))
    return periodic


def _output_flat(out, shape, result_dtype, compute, flat_input, others=()):
    """The flat array an elementwise kernel writes, and how to return it
    (``_output_rows`` for C-contiguous outputs)."""
    if out is not None and out.dtype == compute and out.flags.c_contiguous:
        flat = out.reshape(-1)
        direct = not any(np.may_share_memory(flat, other) for other in others)
        if direct and np.may_share_memory(flat, flat_input):
            direct = _same_view(flat, flat_input)
        if direct:
            return flat, lambda: out
    flat = np.empty(math.prod(shape), compute)
    return flat, lambda: _finish(flat.reshape(shape), out, result_dtype, compute)


def _finish(result, out, result_dtype, compute):
    """A result computed in a buffer: copied into ``out``, or returned in ``result_dtype``."""
    if out is not None:
        np.copyto(out, result, casting="unsafe")
        return out
    return result if result_dtype == compute else result.astype(result_dtype)


def _transform(op, input, axis, out, backend, num_threads):
    """log_softmax and softmax: a (rows, n_classes) result of input's shape."""
    device = _device_module(input, backend)
    if device is not None:
        return device.transform(op, input, axis, out)
    array = v.as_array(input, "input")
    compute = v.compute_dtype(array, "input")
    if array.ndim == 0:
        raise ValueError(f"input of {op} must have at least one dimension; got a scalar")
    axis = v.check_axis(axis, array.ndim, "input")
    result_dtype = _result_dtype(array, compute)
    if out is not None:
        v.check_out(out, array.shape, result_dtype)
    kernel, num_threads = _kernel(op, backend, num_threads, array.size)
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
    device = _device_module(input, backend)
    if device is not None:
        return device.logsumexp(input, axis)
    array = v.as_array(input, "input")
    compute = v.compute_dtype(array, "input")
    if array.ndim == 0:
        raise ValueError("input of logsumexp must have at least one dimension; got a scalar")
    axis = v.check_axis(axis, array.ndim, "input")
    kernel, num_threads = _kernel("logsumexp", backend, num_threads, array.size)
    rows = _rows(array, axis, compute)
    lse = np.empty(rows.shape[0], np.float64)
    kernel(rows, lse, num_threads)
    result = lse.astype(_result_dtype(array, compute)).reshape(_without(array.shape, axis))
    return result[()] if result.ndim == 0 else result
