"""Every check of user input; each error names the argument and what was found.

The kernels run without bounds checks, so everything they index is checked
here first, before anything is written.
"""

import numbers
import operator

import numpy as np

REDUCTIONS = ("mean", "sum", "none")


def check_backend_name(backend, known):
    if not isinstance(backend, str) or backend not in known:
        raise ValueError(f"backend must be one of {', '.join(map(repr, known))}; "
                         f"got {backend!r}")
    return backend


def check_num_threads(num_threads):
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or a positive integer; got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be None or a positive integer; got {num_threads}")
    return int(num_threads)


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; "
                         f"got {reduction!r}")
    return reduction


def check_label_smoothing(label_smoothing):
    try:
        value = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing must be a number in [0, 1]; "
                        f"got {label_smoothing!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    return value


def check_ignore_index(ignore_index):
    try:
        return operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer; got {ignore_index!r}") from None


def is_cuda_array(x):
    """Whether ``x`` lives on a CUDA device (decided without importing CUDA)."""
    module = type(x).__module__
    if module.startswith("torch"):
        return bool(getattr(x, "is_cuda", False))
    if module.startswith(("numba.cuda", "numba_cuda")):
        return hasattr(x, "copy_to_host")
    return hasattr(type(x), "__cuda_array_interface__")


def as_array(x, name):
    """``x`` as a NumPy array, sharing memory where the source allows."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        raise TypeError(f"{name} is a CUDA array; this build of fastxent runs on the CPU "
                        "only: copy it to host memory first")
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, BufferError, RuntimeError):
            pass  # e.g. a dtype NumPy lacks; __array__ may still convert it
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} could not be converted to a NumPy array: {exc}") from exc


def compute_dtype(array, name):
    """The dtype a float argument is computed in (see API.md)."""
    dtype = array.dtype
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return np.dtype(f"f{dtype.itemsize}")  # native byte order
    if (dtype.kind == "f" and dtype.itemsize == 2) or dtype.name == "bfloat16":
        return np.dtype(np.float32)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(f"{name} must hold real numbers (float32 or float64 are computed "
                    f"natively); got dtype {dtype}. Convert it, e.g. {name}.astype(np.float64)")


def check_axis(axis, ndim, name):
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer; got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for {name} with {ndim} dimension(s)")
    return axis % ndim


def raise_bad_label(target, flat_index, n_classes, ignore_index):
    where = np.unravel_index(flat_index, target.shape)
    raise IndexError(f"target value {target[where]} at index {tuple(map(int, where))} "
                     f"is outside [0, {n_classes}) and is not ignore_index ({ignore_index})")


def check_weight(weight, n_classes, dtype):
    weight = as_array(weight, "weight")
    compute_dtype(weight, "weight")
    if weight.shape != (n_classes,):
        raise ValueError(f"weight must have shape (n_classes,) = ({n_classes},); "
                         f"got shape {weight.shape}")
    return np.ascontiguousarray(weight, dtype=dtype)


def check_out(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}; got dtype {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; pass a writeable array")
    return out


def check_grad_output(grad_output, loss_shape):
    """``grad_output`` as float64 broadcast to the unreduced loss's shape."""
    if grad_output is None:
        return np.ones(loss_shape)
    arr = as_array(grad_output, "grad_output")
    compute_dtype(arr, "grad_output")
    try:
        return np.broadcast_to(arr.astype(np.float64, copy=False), loss_shape)
    except ValueError:
        raise ValueError(f"grad_output of shape {arr.shape} does not fit the loss's "
                         f"shape {tuple(loss_shape)}") from None


def check_scalar_grad_output(grad_output):
    if grad_output is None:
        return 1.0
    arr = as_array(grad_output, "grad_output")
    compute_dtype(arr, "grad_output")
    if arr.size != 1:
        raise ValueError("grad_output must be a scalar when the loss is reduced; "
                         f"got shape {arr.shape}")
    return float(arr.reshape(()))


def check_unit_interval(flat, first_bad, shape, name):
    """Probabilities for binary_cross_entropy: ``first_bad``, the position in
    ``flat`` of the first value outside [0, 1] (NaN passes), must be -1."""
    if first_bad >= 0:
        where = tuple(int(i) for i in np.unravel_index(first_bad, shape))
        raise ValueError(f"{name} of binary_cross_entropy must hold values in [0, 1]; "
                         f"got {flat[first_bad]} at index {where}")


def check_z_loss(z_loss):
    try:
        value = float(z_loss)
    except (TypeError, ValueError):
        raise TypeError(f"z_loss must be a number >= 0; got {z_loss!r}") from None
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"z_loss must be a finite number >= 0; got {z_loss!r}")
    return value


def check_softcap(softcap):
    """None (no cap) as 0.0, the kernels' 'off'; else a finite number > 0."""
    if softcap is None:
        return 0.0
    try:
        value = float(softcap)
    except (TypeError, ValueError):
        raise TypeError(f"softcap must be None or a number > 0; got {softcap!r}") from None
    if not 0.0 < value < float("inf"):
        raise ValueError(f"softcap must be None or a finite number > 0; got {softcap!r}")
    return value


def check_sample_weight(sample_weight, batch_shape):
    """``sample_weight`` as a flat float64 array, one value per row of the batch."""
    arr = as_array(sample_weight, "sample_weight")
    compute_dtype(arr, "sample_weight")
    if arr.shape != tuple(batch_shape):
        raise ValueError(f"sample_weight must have the target's shape {tuple(batch_shape)} "
                         f"(one weight per sample); got shape {arr.shape}")
    return np.ascontiguousarray(arr, np.float64).reshape(-1)


def check_topk(topk):
    """``topk`` as a tuple of distinct positive integers, in the order given."""
    try:
        values = list((topk,) if isinstance(topk, numbers.Integral) else topk)
        if any(isinstance(k, (bool, np.bool_)) for k in values):
            raise TypeError  # True is an Integral, but no k
        values = [operator.index(k) for k in values]
    except TypeError:
        raise TypeError(f"topk must be a positive integer or a sequence of them; "
                        f"got {topk!r}") from None
    if any(k < 1 for k in values):
        raise ValueError(f"topk values must be >= 1; got {topk!r}")
    return tuple(dict.fromkeys(values))


def check_chunk_rows(chunk_rows):
    if chunk_rows is None:
        return None
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral):
        raise TypeError(f"chunk_rows must be None or a positive integer; got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be None or a positive integer; got {chunk_rows}")
    return int(chunk_rows)
