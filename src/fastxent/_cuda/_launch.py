"""Launch configurations of the CUDA kernels, on Numba device arrays.

Each function issues its kernels on ``stream`` and returns at once; absent
arrays are empty ones (``empty``). Shapes and labels are checked before.
"""

import functools

import numpy as np
from numba import cuda

from . import _kernels as K

# Columns per thread a row group aims at; rows this short share a warp.
COLUMNS_PER_THREAD = 8
MAX_GRID = 65535


@functools.lru_cache(maxsize=None)
def _empty(dtype, ndim):
    return cuda.device_array((0,) * ndim, np.dtype(dtype))


def empty(dtype, ndim=1):
    """An empty device array standing for an absent one."""
    return _empty(np.dtype(dtype).str, ndim)


def threads_per_row(n_classes):
    """A power of two near n_classes / COLUMNS_PER_THREAD, within [1, MAX_THREADS]."""
    want = max(1, -(-n_classes // COLUMNS_PER_THREAD))
    return min(K.MAX_THREADS, 1 << (want - 1).bit_length())


def _row_config(n_rows, n_classes):
    """(grid, block, tpr): a block per row for long rows, several for short."""
    tpr = threads_per_row(n_classes)
    block = tpr if tpr > K.WARP else K.ROW_BLOCK
    groups = -(-n_rows // (block // tpr))
    return min(groups, MAX_GRID), block, tpr


def xent_index(z, labels, w, eps, ignore_index, z_loss, softcap, go, sw, inv_denom, loss_out,
               g, stream):
    if z.shape[0]:
        grid, block, tpr = _row_config(*z.shape)
        kernel = K.xent_index if z.dtype == np.float64 else K.xent_index_narrow
        kernel[grid, block, stream](z, labels, w, eps, ignore_index, float(z_loss),
                                    float(softcap), go, sw, inv_denom, loss_out, g, tpr)


def xent_probs(z, t, w, eps, z_loss, softcap, go, sw, inv_denom, loss_out, g, stream):
    if z.shape[0]:
        grid, block, tpr = _row_config(*z.shape)
        K.xent_probs[grid, block, stream](z, t, w, eps, float(z_loss), float(softcap), go, sw,
                                          inv_denom, loss_out, g, tpr)


def evaluate(z, labels, w, ignore_index, loss_out, lse_out, entropy_out, argmax_out, rank_out,
             stream):
    if z.shape[0]:
        grid, block, tpr = _row_config(*z.shape)
        K.evaluate[grid, block, stream](z, labels, w, ignore_index, loss_out, lse_out,
                                        entropy_out, argmax_out, rank_out, tpr)


def transform(z, out, log, stream):
    if z.shape[0]:
        grid, block, tpr = _row_config(*z.shape)
        K.transform[grid, block, stream](z, out, log, tpr)


def logsumexp(z, lse_out, stream):
    if z.shape[0]:
        grid, block, tpr = _row_config(*z.shape)
        K.logsumexp[grid, block, stream](z, lse_out, tpr)


def n_chunks(n):
    return -(-n // K.CHUNK)


def bce(x, y, w, pw, from_logits, scale, go, block_sums, loss_out, g, stream):
    if x.shape[0]:
        grid = min(n_chunks(x.shape[0]), MAX_GRID)
        K.bce[grid, K.REDUCE_THREADS, stream](x, y, w, pw, from_logits, scale, go,
                                              block_sums, loss_out, g)


def sum_into(values, factor, out, k, stream):
    """out[k] = factor * sum(values) (0 for no values); for 2-D values,
    out[k + b] = factor * sum(values[b]) for each row b."""
    if values.ndim == 1:
        values = values.reshape(1, values.shape[0])
    K.sum_into[values.shape[0], K.REDUCE_THREADS, stream](values, factor, out, k)


def _new(shape, dtype, stream):
    return cuda.device_array(shape, dtype, stream=stream)


def fill(values, value, stream):
    K.fill[1, K.REDUCE_THREADS, stream](values, value)


def label_stats(labels, n_classes, ignore_index, w, sw, stream, new=_new):
    """A float64 device array [first bad position or inf, summed kept weight
    sw w_y, summed kept sw] (sw and w are 1 where empty).
    ``new(shape, dtype, stream)`` allocates (the caller's library does it best)."""
    stats = new((3,), np.float64, stream)
    fill(stats, np.inf, stream)
    chunks = n_chunks(labels.shape[0])
    block_weights = new((2, max(1, chunks)), np.float64, stream)
    if chunks:
        K.label_stats[min(chunks, MAX_GRID), K.REDUCE_THREADS, stream](
            labels, n_classes, ignore_index, w, sw, stats, block_weights)
    sum_into(block_weights[:, :chunks], 1.0, stats, 1, stream)
    return stats


def first_outside_unit(values, stream, new=_new):
    """A float64 device array [first position of a value outside [0, 1], or inf]."""
    stats = new((1,), np.float64, stream)
    fill(stats, np.inf, stream)
    if values.shape[0]:
        grid = min(n_chunks(values.shape[0]), MAX_GRID)
        K.first_outside_unit[grid, K.REDUCE_THREADS, stream](values, stats)
    return stats
