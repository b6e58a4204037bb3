"""Binary cross-entropy for the Numba kernels: the transcription of FX_BCE
in ``_cython/_sweeps.h`` and of ``_bce_block`` in ``_cython/_xent.pyx.tp``.
Computed in the data's dtype, the losses summed in double.

The element loops take every array as real (absent weights stand in as
ones, absent outputs as scratch), so that they have no branch and vectorise.
"""

import numpy as np
from numba import njit

from ._math import fx_exp, fx_log, fx_log1p, fx_log1p_unit
from ._row import ROW, SWEEP, _sum_double

INF = np.inf


@njit(**SWEEP)
def _bce_probs_run(x, o, y, w, wo, n, sc, go, loss, lo, g, gout):
    """Probabilities, PyTorch's formula: each log clamped at -100, and the
    gradient w (x - y) / max(x (1 - x), eps) with PyTorch's eps: 1e-12 in float."""
    one = x.dtype.type(1)
    eps = x.dtype.type(9.999999960041972e-13)
    floor = x.dtype.type(-100)
    x, y, w, go = x[o:o + n], y[o:o + n], w[wo:wo + n], go[:n]  # 0-based: see _row.py
    g_run, loss_run = g[gout:gout + n], loss[lo:lo + n]
    for j in range(n):
        z = x[j]
        t = y[j]
        wj = w[j]
        log_p = fx_log(z)
        log_q = fx_log1p(-z)
        log_p = floor if log_p < floor else log_p  # NaN stays NaN
        log_q = floor if log_q < floor else log_q
        l = -(t * log_p + (one - t) * log_q)
        den = z * (one - z)
        d = (z - t) / (eps if den < eps else den)
        g_run[j] = sc * go[j] * wj * d
        loss_run[j] = wj * l
    # summed apart: see _sum_exp_store
    return _sum_double(loss, lo, n)


@njit(**SWEEP)
def _bce_logits_run(x, o, y, w, wo, pw, po, n, sc, go, loss, lo, g, gout):
    """Logits: (1 - y) x - lw log(sigmoid(x)) with lw = 1 + (pw - 1) y, written
    as lw L + (1 - y) max(x, 0) - (lw - 1 + y) min(x, 0), L = log(1 + exp(-|x|)):
    no term cancels another; gradient lw sigmoid(x) - pw y."""
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    x, y, w, pw, go = x[o:o + n], y[o:o + n], w[wo:wo + n], pw[po:po + n], go[:n]  # see _row.py
    g_run, loss_run = g[gout:gout + n], loss[lo:lo + n]
    for j in range(n):
        z = x[j]
        t = y[j]
        wj = w[j]
        pos = pw[j]
        lw = one + (pos - one) * t
        e = fx_exp(z if z < zero else -z)
        z_pos = z if z > zero else zero
        z_neg = z if z < zero else zero
        l = lw * fx_log1p_unit(e) + (one - t) * z_pos - (lw - one + t) * z_neg
        # z = -inf: (1 - t) z - lw log_sigmoid(z) in IEEE arithmetic, as PyTorch
        l = l if z > -INF else (one - t) * z + lw * x.dtype.type(INF)
        d = lw * ((one if z >= zero else e) / (one + e)) - pos * t
        g_run[j] = sc * go[j] * wj * d
        loss_run[j] = wj * l
    # summed apart: see _sum_exp_store
    return _sum_double(loss, lo, n)


@njit(**ROW)
def _bce_block(x, y, w, pw, from_logits, start, end, scale, go, loss, g):
    """Sum of the losses of elements [start, end), element j weighted by
    w[j % len(w)] (and pw[j % len(pw)]; absent weights come as ones): in runs
    over which both weights are contiguous, so that each run is one
    vectorised sweep."""
    size = end - start
    go_c = np.ones(size, x.dtype)
    if go.shape[0]:  # in the data's dtype once, so the sweep converts nothing
        go_c[:] = go[start:end]
    # absent outputs are written to scratch, indexed from start
    loss_at = 0 if loss.shape[0] else start
    g_at = 0 if g.shape[0] else start
    if not loss.shape[0]:
        loss = np.empty(size, x.dtype)
    if not g.shape[0]:
        g = np.empty(size, x.dtype)
    sc = x.dtype.type(scale)
    total = 0.0
    j = start
    while j < end:
        wj = j % w.shape[0]
        pj = j % pw.shape[0]
        n = min(end - j, w.shape[0] - wj, pw.shape[0] - pj)
        if from_logits:
            total += _bce_logits_run(x, j, y, w, wj, pw, pj, n, sc, go_c[j - start:], loss,
                                     j - loss_at, g, j - g_at)
        else:
            total += _bce_probs_run(x, j, y, w, wj, n, sc, go_c[j - start:], loss,
                                    j - loss_at, g, j - g_at)
        j += n
    return total
