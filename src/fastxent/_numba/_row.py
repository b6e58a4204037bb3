"""The row sweeps and row losses of the Numba kernels: the transcription of
``_cython/_sweeps.h`` and the row functions of ``_cython/_xent.pyx.tp``, with
the same names, the same blocked online algorithm and the same accumulators
(in the data's dtype within a block of BLOCK elements, double across blocks).

Arrays are flat and C-contiguous with an offset for each row (``z[o + j]``),
so that LLVM sees unit strides and vectorises; where the C code passes NULL
for an absent array, these take an empty array and a flag. The sweeps are
compiled with ``reassoc`` (and ``contract``): that lets LLVM split a
reduction across vector lanes, in an order fixed at compile time, and keeps
-inf and NaN semantics (no ``nnan``/``ninf``).
"""

import numpy as np
from numba import njit

from ._math import fx_exp, fx_max

BLOCK = 1024      # online max/sum block, swept twice while it sits in L1
MAX_BLOCKS = 256  # per-row block maxima; longer rows get longer blocks
INF = np.inf

SWEEP = dict(cache=True, nogil=True, fastmath={"reassoc"}, boundscheck=False, error_model="numpy")
ROW = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


# ------------------------------------------------------------- sweeps (_sweeps.h)

# Each sweep first takes the views it indexes from 0: with an index that is
# plainly >= 0, LLVM drops Numba's negative-index wraparound, which otherwise
# keeps every loop scalar.

@njit(**SWEEP)
def _max(z, o, n):
    """max(z[o:o + n]), skipping NaN (the sums that follow propagate it)."""
    z = z[o:o + n]
    m = z.dtype.type(-INF)
    for j in range(n):
        m = fx_max(m, z[j])
    return m


@njit(**SWEEP)
def _sum_exp(z, o, n, shift):
    """sum(exp(z - shift)) over z[o:o + n], for shift >= max(z)."""
    z = z[o:o + n]
    s = z.dtype.type(0)
    for j in range(n):
        s += fx_exp(z[j] - shift)
    return s


@njit(**SWEEP)
def _sum_exp_store(z, o, n, shift, e, eo):
    """The same, also stored into e[eo:eo + n] (which may be z's memory).

    Stored first, then summed: a loop that stores and sums at once is
    vectorised behind a run-time check that e and z do not overlap, so an
    in-place call would sum in another order than the others."""
    z = z[o:o + n]
    e_row = e[eo:eo + n]
    for j in range(n):
        e_row[j] = fx_exp(z[j] - shift)
    return _sum(e, eo, n)


@njit(**SWEEP)
def _sum(e, o, n):
    """sum(e[o:o + n]), in e's dtype."""
    e = e[o:o + n]
    s = e.dtype.type(0)
    for j in range(n):
        s += e[j]
    return s


@njit(**SWEEP)
def _sum_double(e, o, n):
    """sum(e[o:o + n]), in double."""
    e = e[o:o + n]
    s = 0.0
    for j in range(n):
        s += e[j]
    return s


@njit(**SWEEP)
def _weighted_shifted(z, o, t, to, w, wo, n, shift, keep, spread, has_t, has_w):
    """(sum(v (z - shift)), sum(v)) with v = q w, q = keep t + spread (1
    without t) and w = 1 without w: over z[o:o + n], t[to:], w[wo:]."""
    z = z[o:o + n]
    t = t[to:to + n] if has_t else t
    w = w[wo:wo + n] if has_w else w
    dot = z.dtype.type(0)
    tot = z.dtype.type(0)
    if not has_t and not has_w:
        for j in range(n):
            dot += z[j] - shift
        tot = z.dtype.type(n)
    elif not has_t:
        for j in range(n):
            tot += w[j]
            dot += w[j] * (z[j] - shift)
    elif not has_w:
        for j in range(n):
            v = t[j] * keep + spread
            tot += v
            dot += v * (z[j] - shift)
    else:
        for j in range(n):
            v = (t[j] * keep + spread) * w[j]
            tot += v
            dot += v * (z[j] - shift)
    return dot, tot


@njit(**SWEEP)
def _rescale_sweep(g, go, t, to, w, wo, n, factor, c, keep, spread, has_t, has_w):
    """g = g factor - c v over g[go:go + n], v as in _weighted_shifted."""
    g = g[go:go + n]
    t = t[to:to + n] if has_t else t
    w = w[wo:wo + n] if has_w else w
    if not has_t and not has_w:
        for j in range(n):
            g[j] = g[j] * factor - c
    elif not has_t:
        for j in range(n):
            g[j] = g[j] * factor - c * w[j]
    elif not has_w:
        for j in range(n):
            g[j] = g[j] * factor - c * (t[j] * keep + spread)
    else:
        for j in range(n):
            g[j] = g[j] * factor - c * (t[j] * keep + spread) * w[j]


@njit(**SWEEP)
def _write_shifted(z, o, n, m, log_s, out, oo):
    """out = (z - m) - log_s."""
    z = z[o:o + n]
    out = out[oo:oo + n]
    for j in range(n):
        out[j] = (z[j] - m) - log_s


# ------------------------------------------------------------- rows (_xent.pyx.tp)

@njit(**ROW)
def _block_size(n):
    """BLOCK, or larger for rows beyond MAX_BLOCKS blocks (a multiple of 64)."""
    if n <= BLOCK * MAX_BLOCKS:
        return BLOCK
    return ((n + MAX_BLOCKS - 1) // MAX_BLOCKS + 63) // 64 * 64


@njit(**ROW)
def _online(z, o, n, block, t, to, w, keep, spread, with_target, has_t, has_w,
            e, eo, store, block_max):
    """One read of z[o:o + n], block by block: (m = max(z), s, dot, total).

    shift is m, or 0 while m is -inf: everything seen is then -inf or NaN, and
    exp(z - 0) gives 0 or NaN where exp(z + inf) would give NaN for both. When
    the running max rises, what was summed is rebased onto the new shift.
    With the target: also dot and total. With store: also stores exp(z - shift)
    into e[eo:], and the running max after each block into block_max, for
    _rescale.
    """
    m = z.dtype.type(-INF)
    shift = z.dtype.type(0)
    s = 0.0
    dot = 0.0
    total = 0.0
    b = 0
    i = 0
    while b < n:
        nb = min(block, n - b)
        bm = _max(z, o + b, nb)
        if bm > m:
            if s != 0.0:
                s *= np.exp(float(shift) - float(bm))
            if total != 0.0:
                dot -= total * (float(bm) - float(shift))
            m = shift = bm
        if with_target:  # before e is written: e may be z
            d, tot = _weighted_shifted(z, o + b, t, to + b, w, b, nb, shift, keep, spread,
                                       has_t, has_w)
            dot += d
            total += tot
        if store:
            s += _sum_exp_store(z, o + b, nb, shift, e, eo + b)
            block_max[i] = m
        else:
            s += _sum_exp(z, o + b, nb, shift)
        b += nb
        i += 1
    return m, s, dot, total


@njit(**ROW)
def _rescale(g, go, n, block, block_max, m, k, c, t, to, w, keep, spread, has_t, has_w):
    """g = k exp(z - m) - c v from the exp(z - shift) that _online stored in g."""
    b = 0
    i = 0
    while b < n:
        nb = min(block, n - b)
        # exp(-inf) = 0 for blocks stored while the max was -inf (0 or NaN there).
        factor = k if block_max[i] == m else k * np.exp(float(block_max[i]) - float(m))
        _rescale_sweep(g, go + b, t, to + b, w, b, nb, g.dtype.type(factor), g.dtype.type(c),
                       keep, spread, has_t, has_w)
        b += nb
        i += 1


@njit(**ROW)
def _index_loss(zy_shifted, wy, w_sum, eps, n, scale, inv_s, log_s, exp_zy, dot, with_grad):
    """Loss of a row with class index y, and (k, c, fix) of its gradient: see
    _xent.pyx.tp. q = (1 - eps) onehot(y) + eps / n, so sum_c w_c q_c (z_c -
    shift) is a (z_y - shift) + b dot with a = (1 - eps) w_y and b = eps / n."""
    a = (1.0 - eps) * wy
    b = eps / n
    # Without smoothing the other classes' weights play no part.
    total = a + b * w_sum if eps != 0.0 else a
    k = c = fix = 0.0
    if with_grad:
        k = scale * total * inv_s
        c = scale * b
        # The target's entry in double: T p_y - q_y w_y cancels as p_y -> 1.
        fix = scale * (total * exp_zy * inv_s - a - b * wy)
    loss = total * log_s - (a * zy_shifted + (b * dot if eps != 0.0 else 0.0))
    return loss, k, c, fix


@njit(**ROW)
def _xent_index_row(z, o, n, block, y, w, has_w, w_sum, eps, scale, g, go, with_grad,
                    block_max):
    """Loss of one row with class index y; its gradient into g[go:] with with_grad."""
    keep = z.dtype.type(1)
    spread = z.dtype.type(0)
    zy = z[o + y]  # read before g, which may be z, is written
    m, s, dot, _ = _online(z, o, n, block, z, 0, w, keep, spread, eps != 0.0, False,
                           has_w and eps != 0.0, g, go, with_grad, block_max)
    zy_shifted = float(zy) - (float(m) if m > -INF else 0.0)
    loss, k, c, fix = _index_loss(zy_shifted, float(w[y]) if has_w else 1.0, w_sum, eps, n,
                                  scale, 1.0 / s, np.log(s),
                                  float(fx_exp(zy_shifted)) if with_grad else 0.0, dot,
                                  with_grad)
    if with_grad:
        _rescale(g, go, n, block, block_max, m, k, c, z, 0, w, keep, spread, False,
                 has_w and eps != 0.0)
        g[go + y] = fix
    return loss


@njit(**ROW)
def _xent_probs_row(z, o, t, to, n, block, w, has_w, eps, scale, g, go, with_grad,
                    block_max):
    """Loss of one row with target probabilities t[to:to + n]."""
    keep = z.dtype.type(1.0 - eps)
    spread = z.dtype.type(eps / n)
    m, s, dot, total = _online(z, o, n, block, t, to, w, keep, spread, True, True, has_w,
                               g, go, with_grad, block_max)
    if with_grad:
        _rescale(g, go, n, block, block_max, m, scale * total / s, scale, t, to, w, keep,
                 spread, True, has_w)
    return total * np.log(s) - dot


@njit(**ROW)
def _log_softmax_row(z, o, n, block, out, oo):
    m, s, _, _ = _online(z, o, n, block, z, 0, z, z.dtype.type(1), z.dtype.type(0), False,
                         False, False, out, oo, False, out)
    _write_shifted(z, o, n, m if m > -INF else z.dtype.type(0), z.dtype.type(np.log(s)),
                   out, oo)


@njit(**ROW)
def _softmax_row(z, o, n, block, out, oo, block_max):
    m, s, _, _ = _online(z, o, n, block, z, 0, z, z.dtype.type(1), z.dtype.type(0), False,
                         False, False, out, oo, True, block_max)
    _rescale(out, oo, n, block, block_max, m, 1.0 / s, 0.0, z, 0, z, z.dtype.type(1),
             z.dtype.type(0), False, False)


@njit(**ROW)
def _has_nan(z, o, n):
    for j in range(o, o + n):
        if z[j] != z[j]:
            return True
    return False


@njit(**ROW)
def _logsumexp_row(z, o, n, block, unused):
    """(unused: a writable array of z's dtype, for _online's absent outputs)"""
    m, s, _, _ = _online(z, o, n, block, z, 0, z, z.dtype.type(1), z.dtype.type(0), False,
                         False, False, unused, 0, False, unused)
    if m == INF:  # +inf, unless a NaN is there too (as torch.logsumexp)
        return np.nan if _has_nan(z, o, n) else INF
    return (float(m) if m > -INF else 0.0) + np.log(s)
