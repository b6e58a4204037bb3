"""The CUDA kernels: the row algorithm of the CPU kernels, spread over a group
of threads.

A group of ``tpr`` threads (a power of two) owns a row: one block for long
rows, a slice of a warp for short ones, so that a block holds several. Each
thread sweeps the columns ``lane, lane + tpr, ...``, ``UNROLL`` at a time:
the blocked online max/sum of the CPU kernels (the max of the chunk first,
then one exp per element against it, the running sum rebased when the max
rises). The group merges its threads' partial states by an xor butterfly over
warp shuffles, then through shared memory across warps, in an order fixed by
the group size: the same bits on every run. The gradient is written in a
second sweep over the row, by the same threads, in the same kernel. A soft
cap is applied to each logit as it is loaded (no scratch row, unlike the CPU
kernels), in both sweeps; the gradient sweep also multiplies by its slope.

Partial sums are kept in float64 (the CPU kernels' double accumulators); the
exps are computed in the compute dtype, float32 for float16/bfloat16 storage.
bfloat16 arrays arrive as their uint16 bits and are converted in the loads
and stores. Kernels run with every thread of a block in every loop trip
(rows past the end sweep nothing), because shuffles and barriers need the
whole warp or block.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which has no warp
shuffles, the butterfly exchanges through shared memory instead, in the same
order; blocks are small there.
"""

import math

import numpy as np
from numba import config, cuda, float32, float64, int32, int64, types, uint16
from numba.extending import overload

from .._numba._row import _index_loss as _index_loss_cpu

SIM = bool(config.ENABLE_CUDASIM)
WARP = 32
FULL_MASK = 0xFFFFFFFF
# A long row's group is a whole block of up to MAX_THREADS; short rows share
# blocks of ROW_BLOCK threads. The simulator runs a thread per Python thread.
MAX_THREADS = 64 if SIM else 512  # ptxas gives some kernels more than 64 registers
ROW_BLOCK = 64 if SIM else 256
UNROLL = 4
# Elementwise kernels and label checks: one block per CHUNK elements.
CHUNK = 8192
REDUCE_THREADS = 64 if SIM else 1024
XS = MAX_THREADS if SIM else 1  # the simulator's shuffle scratch
INF = math.inf

_index_loss = cuda.jit(device=True)(_index_loss_cpu.py_func)


# ------------------------------------------------------------- loads and stores

def _bf16_bits_to_float(bits):
    return np.array([(int(bits) & 0xFFFF) << 16], np.uint32).view(np.float32)[0]


def _round_bf16(u, is_nan):
    """Round-to-nearest-even of float32 bits u to bfloat16 bits (quiet NaN for NaN)."""
    if is_nan:
        return 0x7FC0
    u = int64(u) & 0xFFFFFFFF
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def to_compute(x):
    """An element as the compute dtype: float64 stays, bfloat16 bits (uint16)
    and float16 become float32."""
    if isinstance(x, np.uint16):
        return _bf16_bits_to_float(x)
    return np.float64(x) if isinstance(x, np.float64) else np.float32(x)


def like(a, value):
    """value in the compute dtype of array a's elements."""
    return np.float64(value) if a.dtype == np.float64 else np.float32(value)


def store(a, i, value):
    """a[i] = value, rounded to a's dtype (bfloat16 bits for uint16)."""
    if a.dtype == np.uint16:
        a[i] = _round_bf16(np.array([value], np.float32).view(np.uint32)[0], value != value)
    else:
        a[i] = value


if not SIM:
    from numba.cuda import libdevice

    @overload(to_compute, target="cuda")
    def _to_compute(x):
        if x == types.uint16:
            return lambda x: libdevice.int_as_float(int32(x) << 16)
        if x == types.float64:
            return lambda x: x
        return lambda x: float32(x)

    @overload(like, target="cuda")
    def _like(a, value):
        if a.dtype == types.float64:
            return lambda a, value: float64(value)
        return lambda a, value: float32(value)

    @overload(store, target="cuda")
    def _store(a, i, value):
        if a.dtype == types.uint16:
            def impl(a, i, value):
                f = float32(value)
                a[i] = uint16(_round_bf16(libdevice.float_as_int(f), f != f))
            return impl

        def impl(a, i, value):
            a[i] = value
        return impl

    _round_bf16 = cuda.jit(device=True)(_round_bf16)

if SIM:
    def _log(x):
        """math.log as the GPU has it: log(0) is -inf (Python's raises)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.float64(x))
else:
    _log = math.log


# ------------------------------------------------------------- row states
# A state is (m, s, d, t): the max seen, sum exp(z - shift(m)), and for the
# weighted targets sum v (z - shift(m)) and sum v. It is swept in the compute
# dtype and merged in float64 (exact for m, which is one of the values).

@cuda.jit(device=True)
def _shift(m, zero):
    """What a row's values are shifted by: the max, or 0 while it is -inf
    (exp(z - 0) then gives 0 or NaN where exp(z + inf) would give NaN)."""
    return m if m > -INF else zero


@cuda.jit(device=True)
def _capped(x, cap):
    """x under the soft cap, cap tanh(x / cap); x itself for cap 0 (none)."""
    return cap * math.tanh(x / cap) if cap != 0 else x


@cuda.jit(device=True)
def _merge(m1, s1, d1, t1, m2, s2, d2, t2):
    """Two float64 states as one; symmetric, so both sides of a butterfly get
    the same bits. A part that saw only -inf (s = 0, or NaN) adds s * 0."""
    m = m2 if m2 > m1 else m1
    sh = m if m > -INF else 0.0
    sh1 = m1 if m1 > -INF else 0.0
    sh2 = m2 if m2 > -INF else 0.0
    f1 = math.exp(sh1 - sh) if m1 > -INF else 0.0
    f2 = math.exp(sh2 - sh) if m2 > -INF else 0.0
    return m, s1 * f1 + s2 * f2, (d1 - t1 * (sh - sh1)) + (d2 - t2 * (sh - sh2)), t1 + t2


@cuda.jit(device=True)
def _xor(value, offset, xs):
    """The value held by thread ``threadIdx ^ offset`` (same warp)."""
    if SIM:
        tid = cuda.threadIdx.x
        xs[tid] = value
        cuda.syncthreads()
        other = xs[tid ^ offset]
        cuda.syncthreads()
        return other
    return cuda.shfl_xor_sync(FULL_MASK, value, offset)


@cuda.jit(device=True)
def _group_merge(m, s, d, t, with_dot, tpr, xs, part):
    """The merged state of a row's group of tpr threads, in each of them:
    a butterfly within the warp, then the warps in order through ``part``."""
    offset = 1
    while offset < tpr and offset < WARP:
        m2 = _xor(m, offset, xs)
        s2 = _xor(s, offset, xs)
        d2 = t2 = 0.0
        if with_dot:
            d2 = _xor(d, offset, xs)
            t2 = _xor(t, offset, xs)
        m, s, d, t = _merge(m, s, d, t, m2, s2, d2, t2)
        offset *= 2
    if tpr > WARP:
        tid = cuda.threadIdx.x
        if tid % WARP == 0:
            w = tid // WARP
            part[0, w] = m
            part[1, w] = s
            part[2, w] = d
            part[3, w] = t
        cuda.syncthreads()
        m, s, d, t = part[0, 0], part[1, 0], part[2, 0], part[3, 0]
        for w in range(1, tpr // WARP):
            m, s, d, t = _merge(m, s, d, t, part[0, w], part[1, w], part[2, w], part[3, w])
        cuda.syncthreads()  # part is reused by the next row
    return m, s, d, t


@cuda.jit(device=True)
def _mx(m, x):
    """max that skips NaN in x (the sums propagate it)."""
    return x if x > m else m


@cuda.jit(device=True)
def _sweep(z, i, n, lane, tpr):
    """This thread's (m, s) over columns lane, lane + tpr, ... < n of row i:
    UNROLL loads in flight, their max, then one exp each against it."""
    ninf = like(z, -INF)
    zero = like(z, 0.0)
    m = ninf
    s = 0.0
    step = tpr * UNROLL
    for j in range(lane, n, step):
        x0 = to_compute(z[i, j])
        x1 = to_compute(z[i, j + tpr]) if j + tpr < n else ninf
        x2 = to_compute(z[i, j + 2 * tpr]) if j + 2 * tpr < n else ninf
        x3 = to_compute(z[i, j + 3 * tpr]) if j + 3 * tpr < n else ninf
        bm = _mx(_mx(_mx(x0, x1), x2), x3)
        if bm > m:
            if s != 0.0:
                s *= math.exp(float64(_shift(m, zero)) - float64(bm))
            m = bm
        sh = _shift(m, zero)
        s += float64((math.exp(x0 - sh) + math.exp(x1 - sh)) + (math.exp(x2 - sh) + math.exp(x3 - sh)))
    return float64(m), s


@cuda.jit(device=True)
def _sweep_capped(z, i, n, lane, tpr, cap):
    """_sweep of the row under the soft cap cap, a column at a time: the tanh
    costs more than the loads, and unrolled it would hold registers that the
    uncapped sweep wants."""
    m = like(z, -INF)
    zero = like(z, 0.0)
    s = 0.0
    for j in range(lane, n, tpr):
        x = cap * math.tanh(to_compute(z[i, j]) / cap)
        if x > m:
            if s != 0.0:
                s *= math.exp(float64(_shift(m, zero)) - float64(x))
            m = x
        s += float64(math.exp(x - _shift(m, zero)))
    return float64(m), s


@cuda.jit(device=True)
def _sweep_dot(z, i, n, lane, tpr, t, w, keep, spread, has_t, has_w, cap):
    """_sweep with the weighted target: also d = sum v (z - shift) and
    t = sum v, v = (t keep + spread) w (1 without t, w = 1 without w)."""
    m = like(z, -INF)
    zero = like(z, 0.0)
    s = 0.0
    d = 0.0
    tot = 0.0
    for j in range(lane, n, tpr):
        x = _capped(to_compute(z[i, j]), cap)
        v = 1.0
        if has_t:
            v = float64(to_compute(t[i, j])) * keep + spread
        if has_w:
            v *= float64(to_compute(w[j]))
        if x > m:
            sh_old = float64(_shift(m, zero))
            if s != 0.0:
                s *= math.exp(sh_old - float64(x))
            if tot != 0.0:
                d -= tot * (float64(x) - sh_old)
            m = x
        sh = _shift(m, zero)
        s += float64(math.exp(x - sh))
        d += v * float64(x - sh)
        tot += v
    return float64(m), s, d, tot


@cuda.jit(device=True)
def _upstream(go, i):
    """The upstream gradient of row i in float64: go[i], go[0] where go holds
    one value, 1 where it is empty (absent); an empty go is never read."""
    n_go = go.shape[0]
    if n_go == 0:
        return 1.0
    return float64(go[i if n_go > 1 else 0])


@cuda.jit(device=True)
def _row_state(z, i, n, lane, tpr, t, w, keep, spread, has_t, has_w, with_dot, cap, xs,
               part):
    """The merged state of row i, capped by cap unless 0 (n = 0 sweeps nothing)."""
    if with_dot:
        m, s, d, tot = _sweep_dot(z, i, n, lane, tpr, t, w, keep, spread, has_t, has_w, cap)
    else:
        if cap != 0:
            m, s = _sweep_capped(z, i, n, lane, tpr, cap)
        else:
            m, s = _sweep(z, i, n, lane, tpr)
        d = tot = 0.0
    return _group_merge(m, s, d, tot, with_dot, tpr, xs, part)


# ------------------------------------------------------------- row kernels

def _xent_index(z, y, w, eps, ignore_index, z_loss, softcap, go, sw, inv_denom, loss_out, g,
                tpr):  # IN ... OUT
    """Loss of each row with class index y[i] into loss_out[i]; with g of z's
    shape, the gradient scaled by go[i] (or go[0]) * inv_denom into g (which
    may be z). With sw (not empty), row i's loss and gradient are also
    multiplied by sw[i]. softcap (0 for none) caps each logit as it is read;
    z_loss adds z_loss lse**2. See _numba/_row.py for the formulas."""
    xs = cuda.shared.array(XS, float64)
    part = cuda.shared.array((4, 32), float64)
    n_rows, n = z.shape
    rows_per_block = cuda.blockDim.x // tpr
    lane = cuda.threadIdx.x % tpr
    slot = cuda.threadIdx.x // tpr
    has_w = w.shape[0] != 0
    has_sw = sw.shape[0] != 0
    with_grad = g.shape[0] != 0
    smooth = eps != 0.0
    cap = like(z, softcap)
    one = like(z, 1.0)
    for group in range(cuda.blockIdx.x, (n_rows + rows_per_block - 1) // rows_per_block,
                       cuda.gridDim.x):
        i = group * rows_per_block + slot
        live = i < n_rows
        label = int64(y[i]) if live else int64(ignore_index)
        kept = live and label != ignore_index
        # read before g (maybe z) is written
        zy = _capped(to_compute(z[i, label]), cap) if kept else like(z, 0)
        m, s, d, tot = _row_state(z, i, n if kept else 0, lane, tpr, z, w, 1.0, 0.0, False,
                                  has_w, smooth, cap, xs, part)
        if kept:
            sh = m if m > -INF else 0.0
            zy_shifted = float64(zy) - sh
            wy = float64(to_compute(w[label])) if has_w else 1.0
            w_sum = tot if smooth else float64(n)  # only smoothing needs it
            row_weight = float64(to_compute(sw[i])) if has_sw else 1.0
            # go is empty without a gradient: read only with one
            scale = _upstream(go, i) * row_weight * inv_denom if with_grad else 0.0
            log_s = _log(s)
            loss, k, c, fix = _index_loss(zy_shifted, wy, w_sum, eps, n, scale, 1.0 / s,
                                          log_s, math.exp(zy_shifted) if with_grad
                                          else 0.0, d, with_grad, sh + log_s, z_loss)
            if lane == 0:
                loss_out[i] = loss * row_weight
            if with_grad:
                sh_c = like(z, sh)
                k_c = like(z, k)
                c_c = like(z, c)
                for j in range(lane, n, tpr):
                    x = to_compute(z[i, j])
                    slope = one  # of the cap: 1 - tanh**2
                    if cap != 0:
                        th = math.tanh(x / cap)
                        x = cap * th
                        slope = one - th * th
                    v = k_c * math.exp(x - sh_c)
                    if smooth:
                        v -= c_c * to_compute(w[j]) if has_w else c_c
                    if j == label:
                        store(g[i], j, fix * slope)
                    else:
                        store(g[i], j, v * slope)
        elif live:
            if lane == 0:
                loss_out[i] = 0.0
            if with_grad:
                for j in range(lane, n, tpr):
                    store(g[i], j, 0.0)


xent_index = cuda.jit(_xent_index)
# For a 32-bit compute dtype, at most 64 registers, so that two blocks of
# MAX_THREADS fit an SM: ptxas takes 68 unbounded but fits 64 without a spill
# (float64 does not).
xent_index_narrow = xent_index if SIM else cuda.jit(max_registers=64)(_xent_index)


@cuda.jit
def xent_probs(z, t, w, eps, z_loss, softcap, go, sw, inv_denom, loss_out, g,
               tpr):  # IN ... OUT
    """Loss of each row with target probabilities t[i] (smoothed by eps), and
    with g the gradient, as xent_index."""
    xs = cuda.shared.array(XS, float64)
    part = cuda.shared.array((4, 32), float64)
    n_rows, n = z.shape
    rows_per_block = cuda.blockDim.x // tpr
    lane = cuda.threadIdx.x % tpr
    has_w = w.shape[0] != 0
    has_sw = sw.shape[0] != 0
    with_grad = g.shape[0] != 0
    keep = 1.0 - eps
    spread = eps / n
    cap = like(z, softcap)
    one = like(z, 1.0)
    for group in range(cuda.blockIdx.x, (n_rows + rows_per_block - 1) // rows_per_block,
                       cuda.gridDim.x):
        i = group * rows_per_block + cuda.threadIdx.x // tpr
        live = i < n_rows
        m, s, d, tot = _row_state(z, i, n if live else 0, lane, tpr, t, w, keep, spread,
                                  True, has_w, True, cap, xs, part)
        if live:
            sh = m if m > -INF else 0.0
            log_s = _log(s)
            row_weight = float64(to_compute(sw[i])) if has_sw else 1.0
            total = tot  # the coefficient of softmax in the gradient
            loss = tot * log_s - d
            if z_loss != 0.0:  # 0 changes nothing, even where lse is infinite
                lse = sh + log_s
                total += 2.0 * z_loss * lse
                loss += z_loss * lse * lse
            if lane == 0:
                loss_out[i] = loss * row_weight
            if with_grad:
                scale = _upstream(go, i) * row_weight * inv_denom
                sh_c = like(z, sh)
                k_c = like(z, scale * total / s)
                c_c = like(z, scale)
                for j in range(lane, n, tpr):
                    x = to_compute(z[i, j])
                    slope = one
                    if cap != 0:
                        th = math.tanh(x / cap)
                        x = cap * th
                        slope = one - th * th
                    v = to_compute(t[i, j]) * like(z, keep) + like(z, spread)
                    if has_w:
                        v *= to_compute(w[j])
                    store(g[i], j, (k_c * math.exp(x - sh_c) - c_c * v) * slope)


@cuda.jit
def transform(z, out, log, tpr):  # IN, OUT, IN
    """log_softmax (log) or softmax of each row into out (which may be z)."""
    xs = cuda.shared.array(XS, float64)
    part = cuda.shared.array((4, 32), float64)
    n_rows, n = z.shape
    rows_per_block = cuda.blockDim.x // tpr
    lane = cuda.threadIdx.x % tpr
    for group in range(cuda.blockIdx.x, (n_rows + rows_per_block - 1) // rows_per_block,
                       cuda.gridDim.x):
        i = group * rows_per_block + cuda.threadIdx.x // tpr
        live = i < n_rows
        m, s, _, _ = _row_state(z, i, n if live else 0, lane, tpr, z, z[0], 1.0, 0.0, False,
                                False, False, like(z, 0.0), xs, part)
        if live:
            sh_c = like(z, m if m > -INF else 0.0)
            if log:
                log_s = like(z, _log(s))
                for j in range(lane, n, tpr):
                    store(out[i], j, (to_compute(z[i, j]) - sh_c) - log_s)
            else:
                inv_s = like(z, 1.0 / s)
                for j in range(lane, n, tpr):
                    store(out[i], j, math.exp(to_compute(z[i, j]) - sh_c) * inv_s)


@cuda.jit
def logsumexp(z, lse_out, tpr):  # IN, OUT
    """log(sum(exp(z[i]))) of each row; +inf with a +inf entry unless a NaN is
    there too (as torch.logsumexp)."""
    xs = cuda.shared.array(XS, float64)
    part = cuda.shared.array((4, 32), float64)
    n_rows, n = z.shape
    rows_per_block = cuda.blockDim.x // tpr
    lane = cuda.threadIdx.x % tpr
    for group in range(cuda.blockIdx.x, (n_rows + rows_per_block - 1) // rows_per_block,
                       cuda.gridDim.x):
        i = group * rows_per_block + cuda.threadIdx.x // tpr
        live = i < n_rows
        m, s, _, _ = _row_state(z, i, n if live else 0, lane, tpr, z, z[0], 1.0, 0.0, False,
                                False, False, like(z, 0.0), xs, part)
        if live and lane == 0:
            if m == INF:  # rare: look for a NaN, serially
                lse = INF
                for j in range(n):
                    x = to_compute(z[i, j])
                    if x != x:
                        lse = math.nan
                store(lse_out, i, lse)
            else:
                store(lse_out, i, (m if m > -INF else 0.0) + _log(s))


# ------------------------------------------------------------- evaluate
# Its state is (m, s, d, first max, first NaN, before): d = sum e (z - shift)
# with e = exp(z - shift) (for the entropy), the first index holding m and the
# first NaN (n while none), and how many classes rank before the target.

@cuda.jit(device=True)
def _eval_merge(m1, s1, d1, a1, m2, s2, d2, a2):
    """Two float64 (m, s, d, first max) as one; symmetric, as _merge. A part
    that saw only -inf (or NaN) adds d * 0."""
    m = m2 if m2 > m1 else m1
    sh = m if m > -INF else 0.0
    sh1 = m1 if m1 > -INF else 0.0
    sh2 = m2 if m2 > -INF else 0.0
    f1 = math.exp(sh1 - sh) if m1 > -INF else 0.0
    f2 = math.exp(sh2 - sh) if m2 > -INF else 0.0
    # e rebased by f, and z - shift lowered by sh - sh_k
    e1 = (d1 - s1 * (sh - sh1)) * f1 if m1 > -INF else d1 * 0.0
    e2 = (d2 - s2 * (sh - sh2)) * f2 if m2 > -INF else d2 * 0.0
    a = a1 if m1 > m2 else (a2 if m2 > m1 else min(a1, a2))
    return m, s1 * f1 + s2 * f2, e1 + e2, a


@cuda.jit(device=True)
def _eval_group_merge(m, s, d, a, nan, before, tpr, xs, part):
    """The merged evaluate state of a row's group, as _group_merge (all in
    float64: the indices and counts are exact there)."""
    offset = 1
    while offset < tpr and offset < WARP:
        m2 = _xor(m, offset, xs)
        s2 = _xor(s, offset, xs)
        d2 = _xor(d, offset, xs)
        a2 = _xor(a, offset, xs)
        nan2 = _xor(nan, offset, xs)
        before2 = _xor(before, offset, xs)
        m, s, d, a = _eval_merge(m, s, d, a, m2, s2, d2, a2)
        nan = min(nan, nan2)
        before += before2
        offset *= 2
    if tpr > WARP:
        tid = cuda.threadIdx.x
        if tid % WARP == 0:
            w = tid // WARP
            part[0, w] = m
            part[1, w] = s
            part[2, w] = d
            part[3, w] = a
            part[4, w] = nan
            part[5, w] = before
        cuda.syncthreads()
        m, s, d, a = part[0, 0], part[1, 0], part[2, 0], part[3, 0]
        nan, before = part[4, 0], part[5, 0]
        for w in range(1, tpr // WARP):
            m, s, d, a = _eval_merge(m, s, d, a, part[0, w], part[1, w], part[2, w],
                                     part[3, w])
            nan = min(nan, part[4, w])
            before += part[5, w]
        cuda.syncthreads()  # part is reused by the next row
    return m, s, d, a, nan, before


@cuda.jit(device=True)
def _eval_sweep(z, i, n, lane, tpr, y, zy, with_target):
    """This thread's evaluate state over columns lane, lane + tpr, ... < n of
    row i, in column order (so the first index it sees is the first)."""
    m = like(z, -INF)
    zero = like(z, 0.0)
    s = float64(0.0)
    d = float64(0.0)
    a = n
    nan = n
    before = 0
    zy_nan = zy != zy
    for j in range(lane, n, tpr):
        x = to_compute(z[i, j])
        x_nan = x != x
        if x > m:
            sh_old = float64(_shift(m, zero))
            if s != 0.0:
                r = math.exp(sh_old - float64(x))
                d = (d - (float64(x) - sh_old) * s) * r
                s *= r
            m = x
            a = j
        elif x == m and a == n:  # -inf before anything larger
            a = j
        if x_nan and nan == n:
            nan = j
        sh = _shift(m, zero)
        e = math.exp(x - sh)
        if e != 0:  # z = -inf adds nothing (not 0 * -inf)
            s += float64(e)
            d += float64(e) * float64(x - sh)
        # np.argsort(row, kind="stable")[::-1]: larger first, NaN first of
        # all, and among equals the larger index
        if with_target and ((x > zy) or (x_nan and not zy_nan)
                            or (((x == zy) or (x_nan and zy_nan)) and j > y)):
            before += 1
    return float64(m), s, d, float64(a), float64(nan), float64(before)


@cuda.jit
def evaluate(z, y, w, ignore_index, loss_out, lse_out, entropy_out, argmax_out, rank_out,
             tpr):  # IN ... OUT
    """Per row i: the loss w_y (lse - z_y) (0 where y[i] is ignore_index),
    the logsumexp (as the logsumexp kernel), the entropy -sum p log p, the
    argmax (the first max, or the first NaN: np.argmax) and the rank of the
    target (n where ignored), as _reference._evaluate defines them."""
    xs = cuda.shared.array(XS, float64)
    part = cuda.shared.array((6, 32), float64)
    n_rows, n = z.shape
    rows_per_block = cuda.blockDim.x // tpr
    lane = cuda.threadIdx.x % tpr
    has_w = w.shape[0] != 0
    for group in range(cuda.blockIdx.x, (n_rows + rows_per_block - 1) // rows_per_block,
                       cuda.gridDim.x):
        i = group * rows_per_block + cuda.threadIdx.x // tpr
        live = i < n_rows
        label = int64(y[i]) if live else int64(ignore_index)
        kept = live and label != ignore_index
        zy = to_compute(z[i, label]) if kept else like(z, 0)
        m, s, d, a, nan, before = _eval_sweep(z, i, n if live else 0, lane, tpr, label, zy,
                                              kept)
        m, s, d, a, nan, before = _eval_group_merge(m, s, d, a, nan, before, tpr, xs, part)
        if live and lane == 0:
            sh = m if m > -INF else 0.0
            log_s = _log(s)
            if m == INF:  # +inf, unless a NaN is there too (as torch.logsumexp)
                lse_out[i] = math.nan if nan < n else INF
            else:
                lse_out[i] = sh + log_s
            entropy_out[i] = log_s - d / s
            argmax_out[i] = int64(nan) if nan < n else int64(a)
            if kept:
                wy = float64(to_compute(w[label])) if has_w else 1.0
                loss_out[i] = wy * (log_s - (float64(zy) - sh))
                rank_out[i] = int64(before)
            else:
                loss_out[i] = 0.0
                rank_out[i] = n


# ------------------------------------------------------------- elementwise

@cuda.jit(device=True)
def _block_sum(value, scratch):
    """The sum over the block of each thread's value, in a fixed tree order
    (thread 0 gets it); blockDim.x is a power of two."""
    tid = cuda.threadIdx.x
    scratch[tid] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if tid < half:
            scratch[tid] += scratch[tid + half]
        cuda.syncthreads()
        half //= 2
    total = scratch[0]
    cuda.syncthreads()
    return total


@cuda.jit
def bce(x, y, w, pw, from_logits, scale, go, block_sums, loss_out, g):  # IN ... OUT
    """Binary cross-entropy of flat x against y, element j weighted by
    w[j % len(w)] (and pw[j % len(pw)]); absent (empty) arrays are ones or
    not written. Block b sums elements [b CHUNK, (b + 1) CHUNK) into
    block_sums[b]. The formulas of _numba/_binary.py, in the compute dtype."""
    scratch = cuda.shared.array(REDUCE_THREADS, float64)
    n = x.shape[0]
    nw = w.shape[0]
    npw = pw.shape[0]
    one = like(x, 1.0)
    zero = like(x, 0.0)
    eps = like(x, 9.999999960041972e-13)  # PyTorch's 1e-12, as a float
    floor = like(x, -100.0)
    sc = like(x, scale)
    for b in range(cuda.blockIdx.x, (n + CHUNK - 1) // CHUNK, cuda.gridDim.x):
        acc = 0.0
        for j in range(b * CHUNK + cuda.threadIdx.x, min(n, (b + 1) * CHUNK), cuda.blockDim.x):
            z = to_compute(x[j])
            t = to_compute(y[j])
            wj = to_compute(w[j % nw]) if nw else one
            if from_logits:
                pos = to_compute(pw[j % npw]) if npw else one
                lw = one + (pos - one) * t
                e = math.exp(z if z < zero else -z)
                z_pos = z if z > zero else zero
                z_neg = z if z < zero else zero
                loss = lw * math.log1p(e) + (one - t) * z_pos - (lw - one + t) * z_neg
                # z = -inf: (1 - t) z - lw log_sigmoid(z) in IEEE arithmetic, as PyTorch
                loss = loss if z > -INF else (one - t) * z + lw * like(x, INF)
                d = lw * ((one if z >= zero else e) / (one + e)) - pos * t
            else:
                log_p = math.log(z)
                log_q = math.log1p(-z)
                log_p = floor if log_p < floor else log_p  # NaN stays NaN
                log_q = floor if log_q < floor else log_q
                loss = -(t * log_p + (one - t) * log_q)
                den = z * (one - z)
                d = (z - t) / (eps if den < eps else den)
            loss = wj * loss
            acc += float64(loss)
            if loss_out.shape[0]:
                store(loss_out, j, loss)
            if g.shape[0]:
                gj = sc * wj * d
                if go.shape[0]:  # one value, or one per element
                    gj *= like(x, go[j if go.shape[0] > 1 else 0])
                store(g, j, gj)
        total = _block_sum(acc, scratch)
        if cuda.threadIdx.x == 0:
            block_sums[b] = total


# ------------------------------------------------------------- reductions and checks

@cuda.jit
def sum_into(values, factor, out, k):  # IN, IN, OUT, IN
    """out[k + b] = factor * sum(values[b]) for each row b of a 2-D ``values``
    (a block each), in float64, in a fixed order; 16-bit floats are read as
    such."""
    scratch = cuda.shared.array(REDUCE_THREADS, float64)
    b = cuda.blockIdx.x
    acc = 0.0
    for j in range(cuda.threadIdx.x, values.shape[1], cuda.blockDim.x):
        acc += float64(to_compute(values[b, j]))
    total = _block_sum(acc, scratch)
    if cuda.threadIdx.x == 0:
        out[k + b] = total * factor


@cuda.jit
def fill(values, value):  # OUT, IN
    for j in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
        values[j] = value


@cuda.jit
def label_stats(labels, n_classes, ignore_index, w, sw, stats, block_weights):  # IN ... OUT
    """stats[0]: the lowest position of a label outside [0, n_classes) that is
    not ignore_index (left as it is when there is none); block_weights[0, b]:
    the summed weight sw[j] w[label] (1 for an absent array) of the kept
    labels of chunk b, block_weights[1, b]: their summed sw[j] (their count
    without sw)."""
    scratch = cuda.shared.array(REDUCE_THREADS, float64)
    n = labels.shape[0]
    has_w = w.shape[0] != 0
    has_sw = sw.shape[0] != 0
    for b in range(cuda.blockIdx.x, (n + CHUNK - 1) // CHUNK, cuda.gridDim.x):
        acc = 0.0
        acc_sw = 0.0
        for j in range(b * CHUNK + cuda.threadIdx.x, min(n, (b + 1) * CHUNK), cuda.blockDim.x):
            label = int64(labels[j])
            if label != ignore_index:
                if label < 0 or label >= n_classes:
                    cuda.atomic.min(stats, 0, float64(j))
                else:
                    row_weight = float64(to_compute(sw[j])) if has_sw else 1.0
                    acc += row_weight * (float64(to_compute(w[label])) if has_w else 1.0)
                    acc_sw += row_weight
        total = _block_sum(acc, scratch)
        total_sw = _block_sum(acc_sw, scratch)
        if cuda.threadIdx.x == 0:
            block_weights[0, b] = total
            block_weights[1, b] = total_sw


@cuda.jit
def first_outside_unit(values, stats):  # IN, OUT
    """stats[0]: the lowest position of a value outside [0, 1] (NaN is inside)."""
    for j in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
        v = to_compute(values[j])
        if v < 0 or v > 1:
            cuda.atomic.min(stats, 0, float64(j))
