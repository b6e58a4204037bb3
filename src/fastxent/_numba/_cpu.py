"""The ``"numba"`` backend: each kernel is one loop body compiled twice, with
``@njit`` (serial, for ``num_threads=1``) and ``@njit(parallel=True)`` (rows,
or blocks of elements, spread over threads with ``prange``), around the row
functions of ``_row.py``. The arguments are those of ``_reference.py``.

The Python wrappers check lengths (the compiled loops run without bounds
checks), pass each 2-D array as a flat view plus its row stride, and set
Numba's thread count for the call (thread-local; restored afterwards).

Every kernel is cached on disk (``cache=True``). Numba checks a cached
function against its own source file only, not against the files of the
functions it calls: after editing a module of ``_numba/`` in a checkout,
delete ``_numba/__pycache__/*.nb[ic]`` (an installed release is a new set of
files, and invalidates the cache itself).
"""

import functools
import threading
import types

import numba
import numpy as np
from numba import carray, njit, prange

from .._reference import check_evaluate_buffers
from ._row import (MAX_BLOCKS, ROW, _add_evaluated, _block_size, _evaluate_row, _lane_sums,
                   _log_softmax_row, _logsumexp_row, _softcap, _softcap_grad, _softmax_row,
                   _xent_index_row, _xent_probs_row)
from ._binary import _bce_block
from ._simd import stack_empty
from ._tile import TILE_MAX_C, TILE_ROWS, _evaluate_tile, _xent_index_tile

KERNEL = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")
CHUNK = 64  # rows per task (one block_max allocation each); a multiple of TILE_ROWS


# ---------------------------------------------------------------- loop bodies

def _xent_index_loop(z, z0, rs, n_rows, n, labels, w, has_w, w_sum, eps, ignore_index, z_loss,
                     softcap, grad_scale, loss_out, g, g0, grs, with_grad):
    block = _block_size(n)
    cap = z.dtype.type(softcap)
    for chunk in prange((n_rows + CHUNK - 1) // CHUNK):
        first, end = chunk * CHUNK, min(n_rows, (chunk + 1) * CHUNK)
        if n <= TILE_MAX_C and softcap == 0.0:
            for i in range(first, end, TILE_ROWS):
                _xent_index_tile(z, z0 + i * rs, rs, i, min(TILE_ROWS, end - i), n, labels, w,
                                 has_w, w_sum, eps, ignore_index, z_loss, grad_scale, loss_out,
                                 g, g0 + i * grs, grs, with_grad)
            continue
        block_max = np.empty(MAX_BLOCKS, z.dtype)
        sums = np.empty(0 if with_grad else block, z.dtype)  # see _online's through
        # With the soft cap, each row is capped into this scratch row (not into
        # g, which may be z) and the ordinary row runs on it.
        capped = np.empty(n if softcap != 0.0 else 0, z.dtype)
        for i in range(first, end):
            y = labels[i]
            if y == ignore_index:
                loss_out[i] = 0.0
                if with_grad:
                    g[g0 + i * grs:g0 + i * grs + n] = 0
            elif softcap != 0.0:
                _softcap(z, z0 + i * rs, n, cap, capped)
                loss_out[i] = _xent_index_row(capped, 0, n, block, y, w, has_w, w_sum, eps,
                                              z_loss, grad_scale[i], g, g0 + i * grs, with_grad,
                                              block_max, sums)
                if with_grad:
                    _softcap_grad(g, g0 + i * grs, n, cap, capped)
            else:
                loss_out[i] = _xent_index_row(z, z0 + i * rs, n, block, y, w, has_w, w_sum, eps,
                                              z_loss, grad_scale[i], g, g0 + i * grs, with_grad,
                                              block_max, sums)


def _xent_probs_loop(z, z0, rs, n_rows, n, t, t0, ts, w, has_w, eps, z_loss, softcap,
                     grad_scale, loss_out, g, g0, grs, with_grad):
    block = _block_size(n)
    cap = z.dtype.type(softcap)
    for chunk in prange((n_rows + CHUNK - 1) // CHUNK):
        block_max = np.empty(MAX_BLOCKS, z.dtype)
        sums = np.empty(0 if with_grad else block, z.dtype)  # as in _xent_index_loop
        capped = np.empty(n if softcap != 0.0 else 0, z.dtype)
        for i in range(chunk * CHUNK, min(n_rows, (chunk + 1) * CHUNK)):
            if softcap != 0.0:
                _softcap(z, z0 + i * rs, n, cap, capped)
                loss_out[i] = _xent_probs_row(capped, 0, t, t0 + i * ts, n, block, w, has_w,
                                              eps, z_loss, grad_scale[i], g, g0 + i * grs,
                                              with_grad, block_max, sums)
                if with_grad:
                    _softcap_grad(g, g0 + i * grs, n, cap, capped)
            else:
                loss_out[i] = _xent_probs_row(z, z0 + i * rs, t, t0 + i * ts, n, block, w,
                                              has_w, eps, z_loss, grad_scale[i], g,
                                              g0 + i * grs, with_grad, block_max, sums)


_lanes_empty = stack_empty(6 * TILE_ROWS)
_int_lanes_empty = stack_empty(3 * TILE_ROWS)


@njit(**ROW)
def _evaluate_block(z, o, rs, rows, n, block, labels, w, has_w, sw, has_sw, ignore_index, topk,
                    acc, sums, per_row, loss_out, lse_out, entropy_out, argmax_out, rank_out):
    """_evaluate_block of ``_cython/_xent.pyx.tp``: one block's rows (z from
    o, stride rs; labels, sw and the *_out arrays from the block's first row)
    TILE_ROWS at a time, each group's values in lanes on the stack, added
    into the lanes of acc ((7 + topk.size) x TILE_ROWS, flat) by
    _add_evaluated; sums = acc's lanes added in order."""
    R = TILE_ROWS
    lanes = carray(_lanes_empty(np.dtype(np.float64)), (6, R))
    int_lanes = carray(_int_lanes_empty(np.dtype(np.int64)), (3, R))
    kept, v, wy, loss, lse, entropy = lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5]
    y, argmax, rank = int_lanes[0], int_lanes[1], int_lanes[2]
    for r in range(R):  # lanes past a group's rows are read, not counted
        loss[r] = lse[r] = entropy[r] = 0.0
        argmax[r] = rank[r] = 0
    acc[:] = 0.0
    for i in range(0, rows, R):
        g = min(R, rows - i)
        for r in range(R):
            label = labels[i + r] if r < g else ignore_index
            kept[r] = 1.0 if label != ignore_index else 0.0
            y[r] = label if label != ignore_index else 0
            v[r] = sw[i + r] if has_sw and r < g else 1.0
            wy[r] = np.float64(w[y[r]]) if has_w else 1.0
        if n <= TILE_MAX_C:
            _evaluate_tile(z, o + i * rs, rs, g, n, y, kept, wy, loss, lse, entropy, argmax, rank)
        else:
            for r in range(g):
                loss[r], lse[r], entropy[r], argmax[r], rank[r] = _evaluate_row(
                    z, o + (i + r) * rs, n, block, y[r], kept[r] != 0.0, wy[r], per_row)
        _add_evaluated(acc, kept, v, wy, loss, lse, entropy, argmax, rank, y, topk)
        if per_row:
            loss_out[i:i + g] = loss[:g]
            lse_out[i:i + g] = lse[:g]
            entropy_out[i:i + g] = entropy[:g]
            argmax_out[i:i + g] = argmax[:g]
            rank_out[i:i + g] = rank[:g]
    _lane_sums(acc, sums)


def _evaluate_loop(z, z0, rs, n_rows, n, labels, w, has_w, sw, has_sw, ignore_index, topk,
                   block_rows, sums, per_row, loss_out, lse_out, entropy_out, argmax_out,
                   rank_out):
    block = _block_size(n)
    for b in prange((n_rows + block_rows - 1) // block_rows):
        first = b * block_rows
        end = min(n_rows, first + block_rows)
        _evaluate_block(z, z0 + first * rs, rs, end - first, n, block, labels[first:end], w,
                        has_w, sw[first:end] if has_sw else sw, has_sw, ignore_index, topk,
                        np.empty((7 + topk.size) * TILE_ROWS), sums[b], per_row,
                        loss_out[first:end] if per_row else loss_out,
                        lse_out[first:end] if per_row else lse_out,
                        entropy_out[first:end] if per_row else entropy_out,
                        argmax_out[first:end] if per_row else argmax_out,
                        rank_out[first:end] if per_row else rank_out)


def _log_softmax_loop(z, z0, rs, n_rows, n, out, o0, ors):
    block = _block_size(n)
    for i in prange(n_rows):
        _log_softmax_row(z, z0 + i * rs, n, block, out, o0 + i * ors)


def _softmax_loop(z, z0, rs, n_rows, n, out, o0, ors):
    block = _block_size(n)
    for chunk in prange((n_rows + CHUNK - 1) // CHUNK):
        block_max = np.empty(MAX_BLOCKS, z.dtype)
        for i in range(chunk * CHUNK, min(n_rows, (chunk + 1) * CHUNK)):
            _softmax_row(z, z0 + i * rs, n, block, out, o0 + i * ors, block_max)


def _logsumexp_loop(z, z0, rs, n_rows, n, lse_out):
    block = _block_size(n)
    unused = np.empty(0, z.dtype)
    for i in prange(n_rows):
        lse_out[i] = _logsumexp_row(z, z0 + i * rs, n, block, unused)


def _bce_loop(x, y, w, pw, from_logits, scale, go, n, block, block_sums, loss, g):
    for b in prange((n + block - 1) // block):
        block_sums[b] = _bce_block(x, y, w, pw, from_logits, b * block,
                                   min(n, (b + 1) * block), scale, go, loss, g)


_LOOPS = {"xent_index": _xent_index_loop, "xent_probs": _xent_probs_loop,
          "evaluate": _evaluate_loop, "log_softmax": _log_softmax_loop, "softmax": _softmax_loop,
          "logsumexp": _logsumexp_loop, "bce": _bce_loop}


def _renamed(func, suffix):
    """A copy of ``func`` under another name. Numba's cache keys a compiled
    function by its name, signature and bytecode, not by its options: the
    serial and the parallel build of one function would load each other."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                              func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + suffix
    return copy


_COMPILED = {(op, parallel): njit(parallel=parallel, **KERNEL)(
                 _renamed(loop, "_parallel") if parallel else loop)
             for op, loop in _LOOPS.items() for parallel in (False, True)}


# ----------------------------------------------------------- threads and views

# The workqueue threading layer (Numba's fallback when neither OpenMP nor TBB
# is there) must not be entered from two Python threads at once.
_WORKQUEUE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _thread_safe_layer():
    """Whether Numba's threading layer (started on first use) is OpenMP or TBB."""
    from numba.np.ufunc import parallel
    parallel._launch_threads()
    return numba.threading_layer() in ("omp", "tbb")


def _run(op, parallel, num_threads, *args):
    kernel = _COMPILED[op, parallel]
    if not parallel:
        kernel(*args)
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(num_threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        if _thread_safe_layer():
            kernel(*args)
        else:
            with _WORKQUEUE_LOCK:
                kernel(*args)
    finally:
        numba.set_num_threads(previous)


def _flat(rows, name):
    """(n_rows, n_classes) with unit column stride as (flat view, offset of
    row 0, row stride): row i starts at offset + i * stride (a stride that
    may be negative, as for a reversed array)."""
    n_rows, n_classes = rows.shape
    item = rows.itemsize
    if n_rows == 0 or n_classes == 0:
        return np.zeros(0, rows.dtype), 0, 0
    if n_classes > 1 and rows.strides[1] != item:
        raise ValueError(f"{name} rows must be contiguous")
    if rows.strides[0] % item:
        raise ValueError(f"{name} rows must be a whole number of elements apart")
    stride = rows.strides[0] // item if n_rows > 1 else n_classes
    forward = rows if stride >= 0 else rows[::-1]
    length = (n_rows - 1) * abs(stride) + n_classes
    flat = np.lib.stride_tricks.as_strided(forward, shape=(length,), strides=(item,))
    return flat, (0 if stride >= 0 else (n_rows - 1) * -stride), stride


def _flat_input(rows, name):
    flat, first, stride = _flat(rows, name)
    return (_readonly(flat), first, stride)


def _readonly(a):
    """``a`` as a C-contiguous read-only array (a view where it already is
    contiguous). Every call then runs the same compiled specialisation:
    Numba compiles one per layout and writeability, and LLVM may vectorise
    each differently, which would change the rounding with the layout."""
    a = np.ascontiguousarray(a).view()
    a.flags.writeable = False
    return a


def _check_length(found, expected, name):
    if found != expected:
        raise ValueError(f"{name} must have length {expected}; got {found}")


def _grad_rows(logits, grad_out):
    """(with_grad, flat gradient, offset, row stride); (0, 0) means loss only."""
    if grad_out.size == 0 and grad_out.shape != logits.shape:
        return False, np.zeros(0, logits.dtype), 0, 0
    if grad_out.shape != logits.shape or grad_out.dtype != logits.dtype:
        raise ValueError("grad_out must have the logits' shape and dtype")
    return (logits.size > 0,) + _flat(grad_out, "grad_out")


def _weights(class_weight, n_classes, dtype):
    if class_weight.size == 0:
        return _readonly(np.zeros(0, dtype)), False, float(n_classes)
    _check_length(class_weight.shape[0], n_classes, "class_weight")
    w = _readonly(class_weight.astype(dtype, copy=False))
    return w, True, float(np.sum(w, dtype=np.float64))


# -------------------------------------------------------------------- kernels

def _kernels(parallel):
    def xent_index(logits, labels, class_weight, label_smoothing, ignore_index, z_loss,
                   softcap, grad_scale, loss_out, grad_out, num_threads):
        n_rows, n_classes = logits.shape
        for found, name in ((labels.shape[0], "labels"), (grad_scale.shape[0], "grad_scale"),
                            (loss_out.shape[0], "loss_out")):
            _check_length(found, n_rows, name)
        z, z0, rs = _flat_input(logits, "logits")
        with_grad, g, g0, grs = _grad_rows(logits, grad_out)
        w, has_w, w_sum = _weights(class_weight, n_classes, logits.dtype)
        _run("xent_index", parallel, num_threads, z, z0, rs, n_rows, n_classes,
             _readonly(labels), w, has_w, w_sum, float(label_smoothing), int(ignore_index),
             float(z_loss), float(softcap), _readonly(grad_scale), loss_out, g, g0, grs,
             with_grad)

    def xent_probs(logits, probs, class_weight, label_smoothing, z_loss, softcap, grad_scale,
                   loss_out, grad_out, num_threads):
        n_rows, n_classes = logits.shape
        if probs.shape != logits.shape:
            raise ValueError("probs must have the logits' shape")
        for found, name in ((grad_scale.shape[0], "grad_scale"), (loss_out.shape[0], "loss_out")):
            _check_length(found, n_rows, name)
        z, z0, rs = _flat_input(logits, "logits")
        t, t0, ts = _flat_input(probs, "probs")
        with_grad, g, g0, grs = _grad_rows(logits, grad_out)
        w, has_w, _ = _weights(class_weight, n_classes, logits.dtype)
        _run("xent_probs", parallel, num_threads, z, z0, rs, n_rows, n_classes, t, t0, ts, w,
             has_w, float(label_smoothing), float(z_loss), float(softcap),
             _readonly(grad_scale), loss_out, g, g0, grs, with_grad)

    def evaluate(logits, labels, class_weight, sample_weight, ignore_index, topk, block_rows,
                 block_sums, loss_out, lse_out, entropy_out, argmax_out, rank_out,
                 num_threads):
        n_rows, n_classes = logits.shape
        check_evaluate_buffers(n_rows, labels, sample_weight, topk, block_rows, block_sums,
                               (loss_out, lse_out, entropy_out, argmax_out, rank_out))
        per_row = loss_out.shape[0] != 0
        if n_rows == 0:
            return
        if n_classes == 0:  # every label is ignore_index: nothing is counted
            block_sums[:] = 0.0
            if per_row:
                loss_out[:] = 0.0
                lse_out[:] = -np.inf
                entropy_out[:] = 0.0
                argmax_out[:] = 0
                rank_out[:] = 0
            return
        z, z0, rs = _flat_input(logits, "logits")
        w, has_w, _ = _weights(class_weight, n_classes, logits.dtype)
        _run("evaluate", parallel, num_threads, z, z0, rs, n_rows, n_classes, _readonly(labels),
             w, has_w, _readonly(sample_weight.astype(np.float64, copy=False)),
             sample_weight.shape[0] != 0, int(ignore_index), _readonly(topk.astype(np.int64)),
             int(block_rows), block_sums, per_row, loss_out, lse_out, entropy_out, argmax_out,
             rank_out)

    def log_softmax(logits, out, num_threads):
        _transform("log_softmax", logits, out, num_threads)

    def softmax(logits, out, num_threads):
        _transform("softmax", logits, out, num_threads)

    def _transform(op, logits, out, num_threads):
        if out.shape != logits.shape or out.dtype != logits.dtype:
            raise ValueError("out must have the logits' shape")
        if logits.size == 0:
            return
        z, z0, rs = _flat_input(logits, "logits")
        o, o0, ors = _flat(out, "out")
        _run(op, parallel, num_threads, z, z0, rs, logits.shape[0], logits.shape[1], o, o0, ors)

    def logsumexp(logits, lse_out, num_threads):
        _check_length(lse_out.shape[0], logits.shape[0], "lse_out")
        if logits.shape[0] == 0:
            return
        if logits.shape[1] == 0:
            lse_out[:] = -np.inf
            return
        z, z0, rs = _flat_input(logits, "logits")
        _run("logsumexp", parallel, num_threads, z, z0, rs, logits.shape[0], logits.shape[1],
             lse_out)

    def bce(input, target, weight, pos_weight, from_logits, grad_scale, grad_output, block,
            block_sums, loss_out, grad_out, num_threads):
        n = input.shape[0]
        if block < 1:
            raise ValueError(f"block must be positive; got {block}")
        _check_length(target.shape[0], n, "target")
        _check_length(block_sums.shape[0], (n + block - 1) // block, "block_sums")
        for arr, name in ((grad_output, "grad_output"), (loss_out, "loss_out"),
                          (grad_out, "grad_out")):
            if arr.shape[0]:
                _check_length(arr.shape[0], n, name)
        # An absent weight is a period of ones: the sweeps then never branch.
        ones = np.ones(max(1, min(n, block)), input.dtype)
        _run("bce", parallel, num_threads, _readonly(input), _readonly(target),
             _readonly(weight if weight.size else ones),
             _readonly(pos_weight if pos_weight.size else ones), bool(from_logits),
             float(grad_scale), _readonly(grad_output), n, block, block_sums, loss_out, grad_out)

    return dict(xent_index=xent_index, xent_probs=xent_probs, evaluate=evaluate,
                log_softmax=log_softmax, softmax=softmax, logsumexp=logsumexp, bce=bce)


for _parallel, _mode in ((False, "serial"), (True, "parallel")):
    for _op, _kernel in _kernels(_parallel).items():
        _kernel.__name__ = f"{_op}_{_mode}"
        globals()[_kernel.__name__] = _kernel
