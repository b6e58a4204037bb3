"""Short rows (n_classes <= TILE_MAX_C) vectorised across rows instead: the
transcription of FX_TILES in ``_cython/_sweeps.h`` and of ``_xent_index_tile``
in ``_cython/_xent.pyx.tp``. A tile of up to TILE_ROWS rows is transposed
into zt (n_classes x TILE_ROWS, lanes past the tile's rows padded with 0), so
that every loop runs over the TILE_ROWS rows of the tile.

The scratch of a tile is made once per task by ``tile_scratch``: zt, the
per-row m, s, dot, shift, k, c in the data's dtype, and the per-row
zy_shifted, log_s, inv_s, exp_zy, fix in double.
"""

import numpy as np
from numba import njit

from ._math import fx_exp, fx_log
from ._row import ROW, SWEEP, _index_loss

TILE_ROWS = 16
TILE_MAX_C = 32
M, S, DOT, SHIFT, K, C = range(6)  # rows of a tile's per-row state
INF = np.inf


@njit(**ROW)
def tile_scratch(dtype):
    """(zt, per-row state in dtype, per-row state in double) for one task.
    zt is flat, indexed c * TILE_ROWS + i: 2-D indexing, or a view per
    column, leaves the loops over the rows scalar."""
    return (np.empty(TILE_MAX_C * TILE_ROWS, dtype), np.empty((C + 1, TILE_ROWS), dtype),
            np.empty((5, TILE_ROWS)))


@njit(**SWEEP)
def _tile_online(z, o, rs, rows, n, w, has_w, with_dot, zt, state):
    """zt = the tile transposed; m, s, dot per row as in the row sweeps, with
    shift = m (0 where m is -inf); zt then holds exp(z - shift). w: see
    _weighted_shifted (t absent); dot only with with_dot.

    Each row's max is taken while it is transposed, and zt holds z - shift:
    the exp is then one flat loop, which LLVM vectorises. (Loops over the
    rows of the tile, with state per row, stay scalar here: LLVM unrolls
    them and cannot tell that zt and the state do not overlap.)"""
    R = TILE_ROWS
    m, s, dot, shift = state[M], state[S], state[DOT], state[SHIFT]
    # Each row's sums in a local: state that LLVM cannot keep in a register
    # would go through memory on every step.
    for i in range(R):
        row = o + i * rs
        m_i = z.dtype.type(-INF if i < rows else 0)  # lanes past the rows hold 0
        for c in range(n if i < rows else 0):
            zc = z[np.uint64(row + c)]  # unsigned: no negative-index wraparound test
            m_i = zc if zc > m_i else m_i
        shift_i = m_i if m_i > -INF else z.dtype.type(0)
        for c in range(n):
            zt[c * R + i] = z[np.uint64(row + c)] - shift_i if i < rows else 0
        m[i] = m_i
        shift[i] = shift_i
        dot_i = z.dtype.type(0)
        if with_dot:
            for c in range(n):
                dot_i += (w[c] if has_w else z.dtype.type(1)) * zt[c * R + i]
        dot[i] = dot_i
    for j in range(n * R):
        zt[j] = fx_exp(zt[j])
    for i in range(R):
        s_i = z.dtype.type(0)
        for c in range(n):
            s_i += zt[c * R + i]
        s[i] = s_i


@njit(**SWEEP)
def _tile_log_exp(s, x, log_s, inv_s, exp_x):
    """log(s), 1 / s and exp(x) for each row of the tile (x <= 0), in double."""
    for i in range(TILE_ROWS):
        log_s[i] = fx_log(float(s[i]))
        inv_s[i] = 1.0 / float(s[i])
        exp_x[i] = fx_exp(x[i])


@njit(**SWEEP)
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
                     grad_scale, loss_out, g, go, grs, with_grad, zt, state, state_d):
    """Up to TILE_ROWS short rows, vectorised across rows: rows first to
    first + rows of labels, grad_scale and loss_out."""
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
            zy_shifted[i] = float(zy) - (float(m[i]) if m[i] > -INF else 0.0)
    _tile_log_exp(state[S], zy_shifted, log_s, inv_s, exp_zy)
    for i in range(rows):
        y = labels[first + i]
        if y == ignore_index:
            loss_out[first + i] = 0.0
            continue
        loss_out[first + i], row_k, row_c, fix[i] = _index_loss(
            zy_shifted[i], float(w[y]) if has_w else 1.0, w_sum, eps, n, grad_scale[first + i],
            inv_s[i], log_s[i], exp_zy[i], float(dot[i]), with_grad)
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
