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

from ._math import fx_exp, fx_fma, fx_max, fx_tanh

BLOCK = 1024      # online max/sum block, swept twice while it sits in L1
MAX_BLOCKS = 256  # per-row block maxima; longer rows get longer blocks
INF = np.inf
LANES = 16  # rows whose evaluate sums are added in separate lanes (a tile's rows)

SWEEP = dict(cache=True, nogil=True, fastmath={"reassoc"}, boundscheck=False, error_model="numpy")
ROW = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")
# Elementwise sweeps: nothing to reassociate, and without it the vector body
# and the scalar remainder of a loop surely compute alike.
ELEMENTWISE = ROW


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


@njit(**ELEMENTWISE)
def _softcap(z, o, n, cap, out):
    """out[:n] = cap tanh(z / cap) over z[o:o + n] (out: a scratch row, not z)."""
    z = z[o:o + n]
    out = out[:n]
    for j in range(n):
        out[j] = cap * fx_tanh(z[j] / cap)


@njit(**ELEMENTWISE)
def _softcap_grad(g, go, n, cap, capped):
    """g *= 1 - tanh(z / cap)**2 over g[go:go + n], from capped = cap tanh(z / cap)."""
    g = g[go:go + n]
    capped = capped[:n]
    for j in range(n):
        t = capped[j] / cap
        g[j] = g[j] * (1 - t * t)


@njit(**SWEEP)
def _sum_exp_dot(z, o, n, shift):
    """(sum(e), sum(e (z - shift))) with e = exp(z - shift) over z[o:o + n],
    for shift >= max(z); a term with e == 0 adds 0: z - shift is clamped at
    -1e30, far below where exp gives 0, so z = -inf gives no 0 * inf NaN
    (NaN stays NaN)."""
    z = z[o:o + n]
    s = z.dtype.type(0)
    d = z.dtype.type(0)
    lowest = z.dtype.type(-1e30)
    for j in range(n):
        x = z[j] - shift
        e = fx_exp(x)
        s += e
        d = fx_fma(e, x if x > lowest else lowest, d)
    return s, d


# Counts and indices are kept in int32 lanes, as wide as float32 ones (int64
# ones halve the vectors); a block holds fewer than 2^31 elements.

@njit(**SWEEP)
def _count_above(z, o, n, zy):
    """How many of z[o:o + n] are above zy or NaN (zy not NaN)."""
    z = z[o:o + n]
    count = np.int32(0)
    for j in range(n):
        count = np.int32(count + np.int32(not (z[j] <= zy)))
    return count


@njit(**SWEEP)
def _count_not_below(z, o, n, zy):
    """How many of z[o:o + n] are above zy, equal to it, or NaN."""
    z = z[o:o + n]
    count = np.int32(0)
    for j in range(n):
        count = np.int32(count + np.int32(not (z[j] < zy)))
    return count


@njit(**SWEEP)
def _first_equal(z, o, n, m):
    """The first j with z[o + j] == m (n if none): a min over the whole block,
    vectorised, costs less than a scalar search that stops there."""
    z = z[o:o + n]
    first = np.int32(n)
    for j in range(n):
        first = min(first, np.int32(j) if z[j] == m else np.int32(n))
    return first


# ------------------------------------------------------------- rows (_xent.pyx.tp)

@njit(**ROW)
def _block_size(n):
    """BLOCK, or larger for rows beyond MAX_BLOCKS blocks (a multiple of 64)."""
    if n <= BLOCK * MAX_BLOCKS:
        return BLOCK
    return ((n + MAX_BLOCKS - 1) // MAX_BLOCKS + 63) // 64 * 64


@njit(**ROW)
def _online(z, o, n, block, t, to, w, keep, spread, with_target, has_t, has_w,
            e, eo, store, through, block_max):
    """One read of z[o:o + n], block by block: (m = max(z), s, dot, total).

    shift is m, or 0 while m is -inf: everything seen is then -inf or NaN, and
    exp(z - 0) gives 0 or NaN where exp(z + inf) would give NaN for both. When
    the running max rises, what was summed is rebased onto the new shift.
    With the target: also dot and total. With store: also stores exp(z - shift)
    into e[eo:], and the running max after each block into block_max, for
    _rescale. With through (and not store): e[eo:eo + block] is scratch that
    each block's exp(z - shift) goes through, so that s has the bits it has
    with store (_sum_exp, one loop, is vectorised otherwise than
    _sum_exp_store's two): a loss is then the same with and without its
    gradient.
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
                s *= np.exp(np.float64(shift) - np.float64(bm))
            if total != 0.0:
                dot -= total * (np.float64(bm) - np.float64(shift))
            m = shift = bm
        if with_target:  # before e is written: e may be z
            d, tot = _weighted_shifted(z, o + b, t, to + b, w, b, nb, shift, keep, spread,
                                       has_t, has_w)
            dot += d
            total += tot
        if store:
            s += _sum_exp_store(z, o + b, nb, shift, e, eo + b)
            block_max[i] = m
        elif through:
            s += _sum_exp_store(z, o + b, nb, shift, e, eo)
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
        factor = k if block_max[i] == m else k * np.exp(np.float64(block_max[i]) - np.float64(m))
        _rescale_sweep(g, go + b, t, to + b, w, b, nb, g.dtype.type(factor), g.dtype.type(c),
                       keep, spread, has_t, has_w)
        b += nb
        i += 1


@njit(**ROW)
def _index_loss(zy_shifted, wy, w_sum, eps, n, scale, inv_s, log_s, exp_zy, dot, with_grad,
                lse, z_loss):
    """Loss of a row with class index y, and (k, c, fix) of its gradient: see
    _xent.pyx.tp. q = (1 - eps) onehot(y) + eps / n, so sum_c w_c q_c (z_c -
    shift) is a (z_y - shift) + b dot with a = (1 - eps) w_y and b = eps / n.
    With z_loss, z_loss lse**2 joins the loss and 2 z_loss lse softmax the
    gradient (lse is not read without it)."""
    a = (1.0 - eps) * wy
    b = eps / n
    # Without smoothing the other classes' weights play no part.
    total = a + b * w_sum if eps != 0.0 else a
    # The coefficient of softmax in the gradient.
    total_p = total + 2.0 * z_loss * lse if z_loss != 0.0 else total
    k = c = fix = 0.0
    if with_grad:
        k = scale * total_p * inv_s
        c = scale * b
        # The target's entry in double: T p_y - q_y w_y cancels as p_y -> 1.
        fix = scale * (total_p * exp_zy * inv_s - a - b * wy)
    loss = total * log_s - (a * zy_shifted + (b * dot if eps != 0.0 else 0.0))
    if z_loss != 0.0:
        loss += z_loss * lse * lse
    return loss, k, c, fix


@njit(**ROW)
def _xent_index_row(z, o, n, block, y, w, has_w, w_sum, eps, z_loss, scale, g, go, with_grad,
                    block_max, scratch):
    """Loss of one row with class index y; its gradient into g[go:] with
    with_grad, else the sums go through scratch (block elements; see _online)."""
    keep = z.dtype.type(1)
    spread = z.dtype.type(0)
    zy = z[o + y]  # read before g, which may be z, is written
    m, s, dot, _ = _online(z, o, n, block, z, 0, w, keep, spread, eps != 0.0, False,
                           has_w and eps != 0.0, g if with_grad else scratch,
                           go if with_grad else 0, with_grad, True, block_max)
    shift = np.float64(m) if m > -INF else 0.0
    zy_shifted = np.float64(zy) - shift
    log_s = np.log(s)
    loss, k, c, fix = _index_loss(zy_shifted, np.float64(w[y]) if has_w else 1.0, w_sum, eps, n,
                                  scale, 1.0 / s, log_s,
                                  np.float64(fx_exp(zy_shifted)) if with_grad else 0.0, dot,
                                  with_grad, shift + log_s, z_loss)
    if with_grad:
        _rescale(g, go, n, block, block_max, m, k, c, z, 0, w, keep, spread, False,
                 has_w and eps != 0.0)
        g[go + y] = fix
    return loss


@njit(**ROW)
def _xent_probs_row(z, o, t, to, n, block, w, has_w, eps, z_loss, scale, g, go, with_grad,
                    block_max, scratch):
    """Loss of one row with target probabilities t[to:to + n]; with z_loss,
    z_loss lse**2 joins it and 2 z_loss lse softmax its gradient. g and
    scratch as in _xent_index_row."""
    keep = z.dtype.type(1.0 - eps)
    spread = z.dtype.type(eps / n)
    m, s, dot, total = _online(z, o, n, block, t, to, w, keep, spread, True, True, has_w,
                               g if with_grad else scratch, go if with_grad else 0,
                               with_grad, True, block_max)
    log_s = np.log(s)
    lse = (np.float64(m) if m > -INF else 0.0) + log_s
    # The coefficient of softmax in the gradient (z_loss == 0 adds nothing, not 0 * inf).
    total_p = total + 2.0 * z_loss * lse if z_loss != 0.0 else total
    if with_grad:
        _rescale(g, go, n, block, block_max, m, scale * total_p / s, scale, t, to, w, keep,
                 spread, True, has_w)
    loss = total * log_s - dot
    if z_loss != 0.0:
        loss += z_loss * lse * lse
    return loss


@njit(**ROW)
def _log_softmax_row(z, o, n, block, out, oo):
    m, s, _, _ = _online(z, o, n, block, z, 0, z, z.dtype.type(1), z.dtype.type(0), False,
                         False, False, out, oo, False, False, out)
    _write_shifted(z, o, n, m if m > -INF else z.dtype.type(0), z.dtype.type(np.log(s)),
                   out, oo)


@njit(**ROW)
def _softmax_row(z, o, n, block, out, oo, block_max):
    m, s, _, _ = _online(z, o, n, block, z, 0, z, z.dtype.type(1), z.dtype.type(0), False,
                         False, False, out, oo, True, False, block_max)
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
                         False, False, unused, 0, False, False, unused)
    if m == INF:  # +inf, unless a NaN is there too (as torch.logsumexp)
        return np.nan if _has_nan(z, o, n) else INF
    return (np.float64(m) if m > -INF else 0.0) + np.log(s)


@njit(**ROW)
def _count_nan(z, o, n):
    """How many of z[o:o + n] are NaN."""
    count = 0
    for j in range(o, o + n):
        count += z[j] != z[j]
    return count


@njit(**ROW)
def _first_nan(z, o, n):
    """The first j with z[o + j] NaN, or -1."""
    for j in range(n):
        if z[o + j] != z[o + j]:
            return j
    return -1


@njit(**ROW)
def _evaluate_row(z, o, n, block, y, with_target, wy, with_argmax):
    """(loss, lse, entropy, argmax, rank) of one row, from one read of
    z[o:o + n], block by block as _online: with shift as there, s = sum(e)
    and d = sum(e (z - shift)), e = exp(z - shift), rebased when the max
    rises; entropy = log(s) - d / s (both terms >= 0: nothing cancels). The
    argmax is the first m in the block where the max last rose, found right
    after that block's max as in the Cython kernel, or the first NaN (then s
    is NaN); without with_argmax it is only told apart from y: -1 unless the
    target holds the maximum (saves a sweep per row). Without the target
    (with_target False; y is then any class): loss 0 and rank n."""
    zy = z[o + y]
    m = z.dtype.type(-INF)
    shift = z.dtype.type(0)
    s = 0.0
    d = 0.0
    rank = 0
    top = 0  # the first m where it is sought, else where its block begins
    b = 0
    while b < n:
        nb = min(block, n - b)
        bm = _max(z, o + b, nb)
        if bm > m:
            if s != 0.0:
                # Each e scales by r and each z - shift drops by bm - shift.
                r = np.exp(np.float64(shift) - np.float64(bm))
                d = r * (d - (np.float64(bm) - np.float64(shift)) * s)
                s *= r
            m = shift = bm
            top = b
            if with_argmax or (with_target and zy == m):
                top = b + _first_equal(z, o + b, nb, m)
        bs, bd = _sum_exp_dot(z, o + b, nb, shift)
        s += bs
        d += bd
        if with_target and zy == zy:
            # Up to the target: those above it (or NaN); after it: also those equal.
            k = min(max(y + 1 - b, 0), nb)
            rank += _count_above(z, o + b, k, zy) + _count_not_below(z, o + b + k, nb - k, zy)
        b += nb
    if with_target and zy != zy:  # rare: a scalar sweep over the NaNs after the target
        rank = _count_nan(z, o + y + 1, n - y - 1)
    first_nan = _first_nan(z, o, n) if s != s else -1  # NaN, or +inf - +inf
    if first_nan >= 0:
        argmax = first_nan
    elif with_argmax or (with_target and zy == m):
        argmax = top
    else:
        argmax = -1
    log_s = np.log(s)
    if m == INF:  # +inf, unless a NaN is there too (as _logsumexp_row)
        lse = np.nan if first_nan >= 0 else INF
    else:
        lse = np.float64(shift) + log_s
    entropy = log_s - d / s
    if not with_target:
        return 0.0, lse, entropy, argmax, n
    return wy * (log_s - (np.float64(zy) - np.float64(shift))), lse, entropy, argmax, rank


@njit(inline="always", **ROW)
def _add_evaluated(acc, kept, v, wy, loss, lse, entropy, argmax, rank, y, topk):
    """Adds the evaluate sums of a group of LANES rows (see _reference.py)
    into lanes, as fx_add_evaluated in ``_cython/_sweeps.h``: acc[k * LANES +
    i] += row i's term of sum k. A row where kept is 0 adds nothing (its
    values are not read); v is the sample weight. (Selects, not branches, and
    unsigned indices, free of the negative-index test: the loops vectorise.)"""
    R = np.uint64(LANES)
    for j in range(LANES):
        i = np.uint64(j)
        counted = kept[i] != 0.0
        vi = v[i]
        hit = vi * (1.0 if argmax[i] == y[i] else 0.0)
        acc[i] += kept[i]
        acc[R + i] += vi * loss[i] if counted else 0.0
        acc[2 * R + i] += vi * wy[i] if counted else 0.0
        acc[3 * R + i] += vi if counted else 0.0
        acc[4 * R + i] += hit if counted else 0.0
        acc[5 * R + i] += vi * entropy[i] if counted else 0.0
        acc[6 * R + i] += vi * lse[i] if counted else 0.0
    # LANES read from acc's size: with a constant, LLVM unrolls this loop and
    # vectorises the one over k instead, in gathers.
    lanes = acc.size // (7 + topk.size)
    for k in range(topk.size):
        top_k = topk[k]
        row = np.uint64(7 + k) * R
        for j in range(lanes):
            i = np.uint64(j)
            hit = v[i] * (1.0 if rank[i] < top_k else 0.0)
            acc[row + i] += hit if kept[i] != 0.0 else 0.0


@njit(inline="always", **ROW)
def _lane_sums(acc, sums):
    """sums[k] = the LANES lanes of acc[k * LANES:] added in order."""
    for k in range(sums.size):
        total = 0.0
        for i in range(LANES):
            total += acc[k * LANES + i]
        sums[k] = total
