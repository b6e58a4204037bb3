"""The public functions on CUDA arrays (see ``_api.py`` for the semantics).

Shapes and dtypes are checked on the host; class labels and probabilities
are checked on the device, and only the verdict (two numbers) is read back,
so an error is raised before any caller array is written. Everything else is
issued on the caller's stream without waiting: a reduced loss is a 0-d device
array. Inputs are used in place; results are arrays of the input's library.
"""

import math

import numpy as np

from .. import _validation as v
from . import _launch as L
from ._arrays import (BF16, DeviceArray, host_copy, is_cuda_array, overlaps, same_view,
                      to_device)

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _compute(arr):
    """The compute dtype of a float CUDA array (float32 for 16-bit floats)."""
    if arr.dtype == BF16 or arr.dtype == np.float16:
        return np.dtype(np.float32)
    if arr.dtype in FLOATS:
        return arr.dtype
    raise TypeError(f"{arr.name} on a CUDA device must be float16, bfloat16, float32 or "
                    f"float64; got dtype {arr.dtype}")


def _divide(a, b):
    if b != 0:
        return a / b
    return math.nan if a == 0 or a != a else math.copysign(math.inf, a)


def _rows(arr, axis=-1):
    """A CUDA array as (rows, n_classes) with the class axis ``axis`` last."""
    nb = arr.nb
    if nb.ndim == 0:
        raise ValueError(f"{arr.name} must have at least one dimension; got a scalar")
    axis = v.check_axis(axis, nb.ndim, arr.name)
    if axis != nb.ndim - 1:
        raise ValueError(f"on a CUDA device the class axis must be the last one; got axis "
                         f"{axis} of shape {arr.shape} (move it last, e.g. with movedim)")
    if nb.ndim == 2:
        return nb
    if nb.ndim > 2 and not nb.is_c_contiguous():
        raise ValueError(f"{arr.name} of shape {arr.shape} on a CUDA device must be "
                         f"C-contiguous to be read as rows (e.g. .contiguous())")
    return nb.reshape(-1, arr.shape[-1]) if nb.size else nb.reshape(
        math.prod(arr.shape[:-1]), arr.shape[-1])


def _out(out, x, dtype):
    """The caller's ``out`` checked, as a DeviceArray."""
    if not is_cuda_array(out):
        raise TypeError(f"out must be a CUDA array for CUDA input; got {type(out).__name__}")
    o = DeviceArray(out, "out")
    if o.shape != x.shape:
        raise ValueError(f"out must have shape {x.shape}; got shape {o.shape}")
    if o.dtype != dtype:
        raise ValueError(f"out must have dtype {dtype}; got dtype {o.dtype}")
    return o


def _result(x, out, dtype, reads):
    """(the array returned, its rows the kernel writes, a copy to finish with).

    The kernel writes into ``out`` when it overlaps no input, or is the
    logits themselves, element for element; otherwise into a new array
    that is copied to ``out`` afterwards."""
    if out is None:
        obj, nb = x.new(x.shape, dtype)
        return obj, _rows_of(nb, x), None
    o = _out(out, x, dtype)
    direct = same_view(o.nb, x.nb) or not any(overlaps(o.nb, r) for r in (x.nb,) + reads)
    if direct:
        return out, _rows_of(o.nb, x), None
    tmp_obj, tmp = x.new(x.shape, dtype)
    return out, _rows_of(tmp, x), lambda: o.nb.copy_to_device(tmp, stream=x.stream)


def _rows_of(nb, x):
    """nb, a C-contiguous array of x's shape, as rows of x's last axis (a 0-d
    one as one row of one value)."""
    if nb.ndim == 2:
        return nb
    if not x.shape:
        return nb.reshape(1, 1)
    return nb.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _ones(x):
    """A device array holding 1.0, written on x's stream."""
    _, one = x.new((1,), np.float64)
    L.fill(one, 1.0, x.stream)
    return one


def _grad_output(grad_output, x, shape):
    """grad_output as a device array of 1 (scalar) or n values (none where
    the loss has none: no kernel then reads it)."""
    if grad_output is None:
        return _ones(x)
    if is_cuda_array(grad_output):
        g = DeviceArray(grad_output, "grad_output")
        if g.shape not in ((), (1,), tuple(shape)):
            raise ValueError(f"grad_output of shape {g.shape} does not fit the loss's "
                             f"shape {tuple(shape)}")
        if g.dtype in FLOATS and g.nb.is_c_contiguous():
            return g.nb.reshape(g.nb.size)  # () and (1,) as (1,)
    arr = np.asarray(grad_output if not is_cuda_array(grad_output) else
                     to_device(grad_output, x, np.float64, "grad_output").copy_to_host())
    v.compute_dtype(arr, "grad_output")
    if arr.shape not in ((), (1,), tuple(shape)):
        raise ValueError(f"grad_output of shape {arr.shape} does not fit the loss's "
                         f"shape {tuple(shape)}")
    if arr.size == 1:  # a kernel writes it: no copy from pageable host memory
        _, value = x.new((1,), np.float64)
        L.fill(value, float(arr.reshape(())), x.stream)
        return value
    return to_device(arr.reshape(-1), x, np.float64, "grad_output")


def _verdict(stats, x):
    """The device's check result, read back (the one wait of a call)."""
    host = stats.copy_to_host(stream=x.stream)
    x.stream.synchronize()
    return host


def _reduce(values, factor, x, dtype):
    loss, cell = x.scalar(dtype)
    L.sum_into(values, factor, cell, 0, x.stream)
    return loss


def _logits(input, name="input"):
    """(DeviceArray, compute dtype, (rows, n_classes) view) of CUDA logits."""
    x = DeviceArray(input, name)
    compute = _compute(x)
    if len(x.shape) not in (1, 2):
        raise ValueError(f"on a CUDA device {name} must have shape (C,) or (N, C); got shape "
                         f"{x.shape} (for (N, C, d1, ...) move the class axis last and "
                         f"flatten the rest)")
    z = _rows(x)
    if z.shape[1] == 0:
        raise ValueError(f"{name} must have at least one class; got shape {x.shape}")
    return x, compute, z


def _class_weight(weight, x, n_classes, compute):
    if weight is None:
        return L.empty(compute)
    return to_device(_host_or_device_weight(weight, n_classes, compute), x, compute, "weight")


class _Target:
    """A target on the device (``dev``) or the host (``host``): its dtype and shape."""

    def __init__(self, target):
        self.on_device = is_cuda_array(target)
        self.dev = DeviceArray(target, "target") if self.on_device else None
        self.host = None if self.on_device else v.as_array(target, "target")
        self.dtype = self.dev.dtype if self.on_device else self.host.dtype
        self.shape = self.dev.shape if self.on_device else self.host.shape
        self.probabilities = self.dtype == BF16 or np.dtype(self.dtype).kind == "f"

    def check_indices(self, batch, x):
        if np.dtype(self.dtype).kind not in "iu":
            raise TypeError(f"target must hold integer class indices or floating class "
                            f"probabilities; got dtype {self.dtype}")
        if self.shape != batch:
            raise ValueError(f"target of class indices must have shape {batch} for input "
                             f"of shape {x.shape}; got shape {self.shape}")


def _labels(t, x, n_classes, ignore_index, w, sw):
    """Class-index targets as a flat device array, checked on the device:
    (labels, sum of sw w_y, sum of sw) over the rows not ignored (sw, w = 1
    where empty). IndexError names the first bad label."""
    nb = t.dev.nb if t.on_device else None
    labels = (nb.reshape(nb.size) if nb is not None and nb.is_c_contiguous()
              else to_device(t.host if nb is None else nb.copy_to_host(), x, np.int64,
                             "target").reshape(-1))
    stats = _verdict(L.label_stats(labels, n_classes, ignore_index, w, sw, x.stream,
                                   new=x.allocator), x)
    if stats[0] < np.inf:
        bad = int(stats[0])
        where = np.unravel_index(bad, t.shape)
        value = labels[bad:bad + 1].copy_to_host(stream=x.stream)[0]
        raise IndexError(f"target value {value} at index {tuple(map(int, where))} is "
                         f"outside [0, {n_classes}) and is not ignore_index "
                         f"({ignore_index})")
    return labels, float(stats[1]), float(stats[2])


SAMPLE_WEIGHT_DTYPES = FLOATS + (np.dtype(np.float16), BF16)


def _sample_weight(sample_weight, x, batch):
    """sample_weight as (a flat device array of one value per row, of any
    float dtype the kernels read, or an empty one for None; its float64
    host copy where it came from the host, else None)."""
    if sample_weight is None:
        return L.empty(np.float64), None
    n_rows = math.prod(batch)
    if is_cuda_array(sample_weight):
        s = DeviceArray(sample_weight, "sample_weight")
        _check_sample_weight_shape(s.shape, batch)
        if s.dtype in SAMPLE_WEIGHT_DTYPES and s.nb.is_c_contiguous():
            return (s.nb.reshape(n_rows) if n_rows else L.empty(np.float64)), None
    host = _host_sample_weight(sample_weight, batch)
    return (to_device(host, x, np.float64, "sample_weight") if n_rows
            else L.empty(np.float64)), host


def _host_sample_weight(sample_weight, batch):
    """sample_weight (host or CUDA array of the batch shape) as a flat float64
    host array."""
    if is_cuda_array(sample_weight):
        s = DeviceArray(sample_weight, "sample_weight")
        _check_sample_weight_shape(s.shape, batch)
        sample_weight = host_copy(s)
    return v.check_sample_weight(sample_weight, batch)


def _check_sample_weight_shape(shape, batch):
    """The shape check of ``v.check_sample_weight``, before any copy."""
    if tuple(shape) != tuple(batch):
        raise ValueError(f"sample_weight must have the target's shape {tuple(batch)} "
                         f"(one weight per sample); got shape {tuple(shape)}")


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                  return_grad, grad_output, out, sample_weight=None, z_loss=0.0, softcap=0.0):
    """cross_entropy of CUDA logits. Rows weighted by sample_weight (sw) and
    the z-loss are normalised as the CPU path does: "mean" is
    sum(sw CE) / D1 + z_loss sum(sw lse**2) / D2, with D1 = sum(sw w_y) and
    D2 = sum(sw) over the rows not ignored, so the kernels get z_loss D1 / D2
    and the factor 1 / D1."""
    x, compute, z = _logits(input)
    n_rows, n_classes = z.shape
    z_loss = float(z_loss)
    softcap = float(softcap or 0.0)
    if not return_grad and (grad_output is not None or out is not None):
        raise ValueError("grad_output and out are used only with return_grad=True")
    w = _class_weight(weight, x, n_classes, compute)
    batch = x.shape[:-1]
    t = _Target(target)
    sw, host_sw = _sample_weight(sample_weight, x, batch)
    if t.probabilities:
        if t.shape != x.shape:
            raise ValueError(f"target of floating dtype holds class probabilities and must "
                             f"have input's shape {x.shape}; got shape {t.shape}")
        probs = _rows(t.dev) if t.on_device else to_device(
            t.host.reshape(n_rows, n_classes), x, compute, "target")
        denominator = n_rows
        if sample_weight is not None and reduction == "mean":
            denominator = (float(np.sum(host_sw)) if host_sw is not None
                           else _device_sum(sw, x))
        z_kernel = z_loss  # D1 = D2
    else:
        t.check_indices(batch, x)
        labels, denominator, kept = _labels(t, x, n_classes, ignore_index, w, sw)
        # the z-loss is not weighted by class weight: its sum is divided by D2
        z_kernel = (z_loss * _divide(denominator, kept) if z_loss != 0.0
                    and reduction == "mean" else z_loss)
    if return_grad:
        loss_shape = batch if reduction == "none" else ()
        go = _grad_output(grad_output, x, loss_shape) if reduction == "none" else \
            _grad_output(grad_output, x, ())
        inv_denom = _divide(1.0, denominator) if reduction == "mean" else 1.0
        grad_dtype = x.dtype
        grad, g, finish = _result(x, out, grad_dtype,
                                  (probs if t.probabilities else labels, sw))
    else:
        go, inv_denom, g, finish = L.empty(np.float64), 1.0, L.empty(x.nb.dtype, 2), None

    # Everything is checked: from here on nothing raises.
    if reduction == "none":
        loss, loss_rows = x.new(batch, compute)
        loss_rows = loss_rows.reshape(n_rows) if len(batch) == 0 else loss_rows
    else:
        _, loss_rows = x.new((n_rows,), np.float64)
    if t.probabilities:
        L.xent_probs(z, probs, w, label_smoothing, z_kernel, softcap, go, sw, inv_denom,
                     loss_rows, g, x.stream)
    else:
        L.xent_index(z, labels, w, label_smoothing, ignore_index, z_kernel, softcap, go, sw,
                     inv_denom, loss_rows, g, x.stream)
    if reduction != "none":
        factor = _divide(1.0, denominator) if reduction == "mean" else 1.0
        loss = _reduce(loss_rows, factor, x, compute)
    if finish is not None:
        finish()
    return (loss, grad) if return_grad else loss


def _device_sum(values, x):
    """sum(values) of a device array, read back (a wait)."""
    _, cell = x.new((1,), np.float64)
    L.sum_into(values, 1.0, cell, 0, x.stream)
    return float(_verdict(cell, x)[0])


def evaluate_rows(input, target, weight, ignore_index, sample_weight):
    """The evaluate kernel on CUDA logits with class-index targets: a dict of
    host NumPy arrays, one entry per row: "labels" (int64), "loss", "lse",
    "entropy" (float64), "argmax", "rank" (int64), "sample_weight" (float64,
    or None); and "class_weight", the (n_classes,) float64 weights the loss
    used (or None). The API reduces them."""
    x, compute, z = _logits(input, "logits")
    n_rows, n_classes = z.shape
    w = _class_weight(weight, x, n_classes, compute)
    batch = x.shape[:-1]
    t = _Target(target)
    if t.probabilities:
        raise TypeError(f"target must hold integer class indices here; got dtype {t.dtype}")
    t.check_indices(batch, x)
    host_sw = (None if sample_weight is None
               else _host_sample_weight(sample_weight, batch))
    labels, _, _ = _labels(t, x, n_classes, ignore_index, w, L.empty(np.float64))

    # Everything is checked: from here on nothing raises.
    outs = [x.allocator((n_rows,), dtype, x.stream)
            for dtype in (np.float64, np.float64, np.float64, np.int64, np.int64)]
    L.evaluate(z, labels, w, ignore_index, *outs, x.stream)
    loss, lse, entropy, argmax, rank = (o.copy_to_host(stream=x.stream) for o in outs)
    host_labels = (np.asarray(t.host).reshape(-1) if not t.on_device
                   else labels.copy_to_host(stream=x.stream))
    host_w = None if weight is None else w.copy_to_host(stream=x.stream)
    x.stream.synchronize()
    return {"labels": host_labels.astype(np.int64).reshape(n_rows), "loss": loss,
            "lse": lse, "entropy": entropy, "argmax": argmax, "rank": rank,
            "sample_weight": host_sw,
            "class_weight": None if host_w is None else host_w.astype(np.float64)}


def _host_or_device_weight(weight, n_classes, compute):
    if is_cuda_array(weight):
        w = DeviceArray(weight, "weight")
        if w.shape != (n_classes,):
            raise ValueError(f"weight must have shape ({n_classes},); got shape {w.shape}")
        return weight
    return v.check_weight(weight, n_classes, compute)


def transform(op, input, axis, out):
    """log_softmax or softmax of a CUDA array along its last axis."""
    x = DeviceArray(input, "input")
    _compute(x)
    z = _rows(x, axis)
    result, rows, finish = _result(x, out, x.dtype, ())
    L.transform(z, rows, op == "log_softmax", x.stream)
    if finish is not None:
        finish()
    return result


def logsumexp(input, axis):
    x = DeviceArray(input, "input")
    _compute(x)  # checks the dtype
    z = _rows(x, axis)
    result, rows = x.new(x.shape[:-1], x.dtype)
    L.logsumexp(z, rows.reshape(z.shape[0]) if rows.ndim != 1 else rows, x.stream)
    return result


def binary(from_logits, input, target, weight, pos_weight, reduction, return_grad,
           grad_output, out):
    """binary_cross_entropy(_with_logits) of CUDA arrays, elementwise."""
    x = DeviceArray(input, "input")
    compute = _compute(x)
    t = DeviceArray(target, "target") if is_cuda_array(target) else None
    if t is None:
        host = v.as_array(target, "target")
        if host.shape != x.shape:
            raise ValueError(f"target must have input's shape {x.shape}; got shape {host.shape}")
        flat_t = to_device(host.reshape(-1), x, compute, "target")
    else:
        _compute(t)
        if t.shape != x.shape:
            raise ValueError(f"target must have input's shape {x.shape}; got shape {t.shape}")
        flat_t = _flat(t)
    flat_x = _flat(x)
    if not return_grad and (grad_output is not None or out is not None):
        raise ValueError("grad_output and out are used only with return_grad=True")
    w = _periodic(weight, x, compute, "weight")
    pw = _periodic(pos_weight, x, compute, "pos_weight")
    n = flat_x.size
    if not from_logits:
        for values, name in ((flat_x, "input"), (flat_t, "target")):
            first = _verdict(L.first_outside_unit(values, x.stream, new=x.allocator), x)[0]
            if first < np.inf:
                bad = int(first)
                value = values[bad:bad + 1].copy_to_host(stream=x.stream)[0]
                v.check_unit_interval([value] * (bad + 1), bad, x.shape, name)
    go = L.empty(np.float64)
    scale = 0.0
    if return_grad:
        if reduction == "none":
            scale = 1.0
            if grad_output is not None:  # the loss's shape (flat: n values), or a scalar
                go = _grad_output(grad_output, x, x.shape)
        else:
            g0 = _grad_output(grad_output, x, ())
            if is_cuda_array(grad_output):  # a device scalar scales on the device
                go = g0
                scale = _divide(1.0, n) if reduction == "mean" else 1.0
            else:
                upstream = v.check_scalar_grad_output(grad_output)
                scale = _divide(upstream, n) if reduction == "mean" else upstream
        grad, g, finish = _result(x, out, x.dtype, (flat_t, w, pw))
        g = g.reshape(n) if g.size else L.empty(x.nb.dtype)
    else:
        g, finish = L.empty(x.nb.dtype), None

    # Everything is checked: from here on nothing raises.
    _, block_sums = x.new((L.n_chunks(n),), np.float64)
    if reduction == "none":
        loss, loss_flat = x.new(x.shape, compute)
        loss_flat = loss_flat.reshape(n)
    else:
        loss_flat = L.empty(compute)
    L.bce(flat_x, flat_t, w, pw, from_logits, scale, go, block_sums, loss_flat, g, x.stream)
    if reduction != "none":
        loss = _reduce(block_sums, _divide(1.0, n) if reduction == "mean" else 1.0, x, compute)
    if finish is not None:
        finish()
    return (loss, grad) if return_grad else loss


def _flat(arr):
    if not arr.nb.is_c_contiguous():
        raise ValueError(f"{arr.name} on a CUDA device must be C-contiguous for the binary "
                         f"losses (e.g. .contiguous())")
    return arr.nb.reshape(arr.nb.size)


def _periodic(weight, x, compute, name):
    """As ``_api._periodic``: a flat array whose entry j % len weights element j."""
    if weight is None:
        return L.empty(compute)
    if is_cuda_array(weight):
        w = DeviceArray(weight, name)
        if w.shape == x.shape[len(x.shape) - len(w.shape):] and w.nb.is_c_contiguous():
            if w.dtype == x.dtype or (w.dtype in FLOATS and w.dtype == compute):
                return w.nb.reshape(max(1, w.nb.size)) if w.nb.size else L.empty(compute)
    from .._api import _periodic as host_periodic
    host = weight
    if is_cuda_array(weight):
        host = to_device(weight, x, compute, name).copy_to_host()
    return to_device(host_periodic(host, x.shape, compute, name), x, compute, name)
