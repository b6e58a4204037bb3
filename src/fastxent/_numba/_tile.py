"""Short rows (n_classes <= TILE_MAX_C) vectorised across rows instead: the
transcription of FX_TILES in ``_cython/_sweeps.h`` and of ``_xent_index_tile``
in ``_cython/_xent.pyx.tp``, and ``_evaluate_tile`` (the row path costs
about three times as much on such rows). A tile of up to TILE_ROWS rows is
transposed into zt (n_classes x TILE_ROWS, lanes past the tile's rows padded
with 0), so that every loop runs over the TILE_ROWS rows of the tile.

The scratch of a tile lives on the stack (``_simd.stack_empty``): zt, the
per-row m, s, dot, shift, k, c in the data's dtype, and the per-row
zy_shifted, log_s, inv_s, exp_zy, fix in double. The functions given it are
inlined, so that LLVM sees that it overlaps nothing.
"""

import numpy as np
from numba import carray, njit, types
from numba.extending import overload

from ._math import fx_exp, fx_fma, fx_log
from ._row import LANES, ROW, _count_nan, _index_loss
from ._simd import stack_empty, transpose8_max

TILE_ROWS = LANES
TILE_MAX_C = 32
M, S, DOT, SHIFT, K, C = range(6)  # rows of a tile's per-row state
INF = np.inf


_zt_empty = stack_empty(TILE_MAX_C * TILE_ROWS)
_state_empty = stack_empty((C + 1) * TILE_ROWS)
_state_d_empty = stack_empty(5 * TILE_ROWS)
_state_i_empty = stack_empty(4 * TILE_ROWS)


def _transpose_max(z, o, rs, rows, n, zt, m):
    """zt[c * TILE_ROWS + i] = z[o + i * rs + c] and m[i] = the max of m[i]
    and row i, in 8 x 8 blocks, for a full tile of float32 rows with n >= 8
    (the last block of columns overlapping the one before); False, having
    done nothing, elsewhere."""
    raise NotImplementedError("only inside Numba-compiled code")


@overload(_transpose_max, inline="always")
def _transpose_max_impl(z, o, rs, rows, n, zt, m):
    if z.dtype != types.float32:
        return lambda z, o, rs, rows, n, zt, m: False

    def impl(z, o, rs, rows, n, zt, m):
        if rows < TILE_ROWS or n < 8:
            return False
        for c0 in range(0, n, 8):
            c = min(c0, n - 8)
            for i in range(0, TILE_ROWS, 8):
                transpose8_max(z, o + i * rs + c, rs, zt, c * TILE_ROWS + i, TILE_ROWS, m, i)
        return True
    return impl


@njit(inline="always", **ROW)
def _tile_load(z, o, rs, rows, n, zt, m):
    """zt = the tile transposed (lanes past its rows 0) and m = the max of
    each row (skipping NaN; 0 past the rows)."""
    R = TILE_ROWS
    for i in range(R):
        m[i] = -INF
    if not _transpose_max(z, o, rs, rows, n, zt, m):
        for i in range(R):
            row = o + i * rs
            m_i = z.dtype.type(-INF if i < rows else 0)  # lanes past the rows hold 0
            for c in range(n if i < rows else 0):
                zc = z[np.uint64(row + c)]  # unsigned: no negative-index wraparound test
                m_i = zc if zc > m_i else m_i
                zt[c * R + i] = zc
            for c in range(n if i >= rows else 0):
                zt[c * R + i] = 0
            m[i] = m_i


@njit(inline="always", **ROW)
def _tile_online(z, o, rs, rows, n, w, has_w, with_dot, zt, state):
    """zt = the tile transposed; m, s, dot per row as in the row sweeps, with
    shift = m (0 where m is -inf); zt then holds exp(z - shift). w: see
    _weighted_shifted (t absent); dot only with with_dot."""
    R = TILE_ROWS
    m, s, dot, shift = state[M], state[S], state[DOT], state[SHIFT]
    for i in range(R):
        s[i] = 0
        dot[i] = 0
    _tile_load(z, o, rs, rows, n, zt, m)
    for i in range(R):
        shift[i] = m[i] if m[i] > -INF else 0
    for c in range(n):
        wc = w[c] if has_w else z.dtype.type(1)
        if with_dot:
            for i in range(R):
                dot[i] += wc * (zt[c * R + i] - shift[i])
        for i in range(R):
            e = fx_exp(zt[c * R + i] - shift[i])
            zt[c * R + i] = e
            s[i] += e


@njit(inline="always", **ROW)
def _tile_log_exp(s, x, log_s, inv_s, exp_x):
    """log(s), 1 / s and exp(x) for each row of the tile (x <= 0), in double."""
    for i in range(TILE_ROWS):
        log_s[i] = fx_log(np.float64(s[i]))
        inv_s[i] = 1.0 / np.float64(s[i])
        exp_x[i] = fx_exp(x[i])


@njit(inline="always", **ROW)
def _tile_rescale(zt, state, rows, n, w, has_w, g, go, grs):
    """g row i = k[i] e - c[i] w, from the e in zt, written back row by row."""
    R = TILE_ROWS
    k, c = state[K], state[C]
    for i in range(rows):
        row = go + i * grs
        k_i = k[i]
        c_i = c[i]
        for col in range(n):
            wc = w[col] if has_w else g.dtype.type(1)
            g[np.uint64(row + col)] = zt[col * R + i] * k_i - c_i * wc


@njit(**ROW)
def _xent_index_tile(z, o, rs, first, rows, n, labels, w, has_w, w_sum, eps, ignore_index,
                     z_loss, grad_scale, loss_out, g, go, grs, with_grad):
    """Up to TILE_ROWS short rows, vectorised across rows: rows first to
    first + rows of labels, grad_scale and loss_out."""
    zt = carray(_zt_empty(z.dtype), TILE_MAX_C * TILE_ROWS)
    state = carray(_state_empty(z.dtype), (C + 1, TILE_ROWS))
    state_d = carray(_state_d_empty(np.dtype(np.float64)), (5, TILE_ROWS))
    m, dot, k, c = state[M], state[DOT], state[K], state[C]
    zy_shifted, log_s, inv_s, exp_zy, fix = state_d[0], state_d[1], state_d[2], state_d[3], \
        state_d[4]
    w_grad = has_w and eps != 0.0
    _tile_online(z, o, rs, rows, n, w, w_grad, eps != 0.0, zt, state)
    for i in range(TILE_ROWS):
        k[i] = 0
        c[i] = 0
        zy_shifted[i] = 0
    for i in range(rows):
        y = labels[first + i]
        if y != ignore_index:
            zy = z[np.uint64(o + i * rs + y)]
            zy_shifted[i] = np.float64(zy) - (np.float64(m[i]) if m[i] > -INF else 0.0)
    _tile_log_exp(state[S], zy_shifted, log_s, inv_s, exp_zy)
    for i in range(rows):
        y = labels[first + i]
        if y == ignore_index:
            loss_out[first + i] = 0.0
            continue
        lse = (np.float64(m[i]) if m[i] > -INF else 0.0) + log_s[i]
        loss_out[first + i], row_k, row_c, fix[i] = _index_loss(
            zy_shifted[i], np.float64(w[y]) if has_w else 1.0, w_sum, eps, n,
            grad_scale[first + i], inv_s[i], log_s[i], exp_zy[i], np.float64(dot[i]), with_grad,
            lse, z_loss)
        k[i] = row_k
        c[i] = row_c
    if not with_grad:
        return
    _tile_rescale(zt, state, rows, n, w, w_grad, g, go, grs)
    for i in range(rows):
        y = labels[first + i]
        if y == ignore_index:
            for col in range(n):
                g[np.uint64(go + i * grs + col)] = 0
        else:
            g[np.uint64(go + i * grs + y)] = fix[i]


@njit(inline="always", **ROW)
def _evaluate_tile(z, o, rs, rows, n, y, kept, wy, loss, lse, entropy, argmax, rank):
    """_evaluate_row for TILE_ROWS lanes, the first rows of them rows of z
    (from o, stride rs), vectorised across rows: y is each lane's class (any
    where kept is 0; then loss 0 and rank n). The sums of _evaluate_row (s, d
    in the data's dtype), the rank counted and the first maximum found in one
    pass over the columns, in int32 lanes as wide as float32 ones; the first
    NaN where s is NaN; then each lane's values, as fx_tile_finish."""
    R = TILE_ROWS
    zt = carray(_zt_empty(z.dtype), TILE_MAX_C * TILE_ROWS)
    state = carray(_state_empty(z.dtype), (C + 1, TILE_ROWS))
    log_s = carray(_state_d_empty(np.dtype(np.float64)), (5, TILE_ROWS))[0]
    state_i = carray(_state_i_empty(np.dtype(np.int32)), (4, TILE_ROWS))
    m, s, d, shift, zy = state[M], state[S], state[DOT], state[SHIFT], state[K]
    y32, rank32, top, first_nan = state_i[0], state_i[1], state_i[2], state_i[3]
    _tile_load(z, o, rs, rows, n, zt, m)
    for i in range(R):
        y32[i] = np.int32(y[i])
        shift[i] = m[i] if m[i] > -INF else 0
        s[i] = 0
        d[i] = 0
        rank32[i] = 0
        top[i] = np.int32(n)
        first_nan[i] = np.int32(n)
    for i in range(R):
        zy[i] = zt[y32[i] * R + i]
    lowest = z.dtype.type(-1e30)  # as _sum_exp_dot
    for c in range(n):
        c32 = np.int32(c)
        for i in range(R):
            zc = zt[c * R + i]
            x = zc - shift[i]
            e = fx_exp(x)
            s[i] += e
            d[i] = fx_fma(e, x if x > lowest else lowest, d[i])
            # above zy or NaN, or equal to it after it (zy NaN: fixed below)
            before = not (zc < zy[i]) if c32 > y32[i] else not (zc <= zy[i])
            rank32[i] = np.int32(rank32[i] + np.int32(before))
            top[i] = min(top[i], c32 if zc == m[i] else np.int32(n))
    # Only a row with a NaN has s NaN (+inf - +inf aside): looked for there.
    for i in range(R):
        if s[i] != s[i]:
            for c in range(n):
                if zt[c * R + i] != zt[c * R + i]:
                    first_nan[i] = np.int32(c)
                    break
    for i in range(R):
        log_s[i] = fx_log(np.float64(s[i]))
    for i in range(R):
        nan = first_nan[i] < n
        counted = kept[i] != 0.0
        sh = np.float64(shift[i])
        if m[i] == INF:  # +inf, unless a NaN is there too (as _logsumexp_row)
            lse[i] = np.nan if nan else INF
        else:
            lse[i] = sh + log_s[i]
        entropy[i] = log_s[i] - np.float64(d[i]) / np.float64(s[i])
        loss[i] = wy[i] * (log_s[i] - (np.float64(zy[i]) - sh)) if counted else 0.0
        argmax[i] = first_nan[i] if nan else top[i]
        rank[i] = rank32[i] if counted else n
    for i in range(rows):
        if kept[i] != 0.0 and zy[i] != zy[i]:  # rare: the NaNs after the target
            rank[i] = _count_nan(z, o + i * rs + y[i] + 1, n - y[i] - 1)
