"""exp(x) for x <= 0 (and NaN), log(x), the binary losses' log1p and the
soft cap's tanh, as branch-free Numba functions that LLVM vectorises: the transcription of
``_cython/_fastmath.h`` (same reductions, same polynomials, same constants).

Each public name has a float32 and a float64 implementation, chosen by the
argument's type at compile time (``@overload``): a float32 kernel then does
all its arithmetic in float32. They are compiled without fast-math flags:
the rounding trick below must not be reassociated away.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

f32 = np.float32
INF = np.inf


@intrinsic
def _bits(typingctx, x):
    """The bits of a float as the integer of the same width, and back."""
    pairs = {types.float32: types.int32, types.float64: types.int64,
             types.int32: types.float32, types.int64: types.float64}
    if x not in pairs:
        return None
    result = pairs[x]

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(x), codegen


@intrinsic
def fx_max(typingctx, a, b):
    """max(a, b), the other one where one is NaN (LLVM's maxnum, which LLVM
    vectorises as a reduction without fast-math flags, where it leaves
    ``a if a > b else b`` scalar)."""
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        maxnum = builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(maxnum, args)

    return a(a, b), codegen


@intrinsic
def fx_fma(typingctx, a, b, c):
    """a b + c, fused where the CPU has FMA (LLVM's fmuladd): the same choice
    in the vectorised loop and in its scalar remainder, unlike contraction."""
    if not (a == b == c) or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fmuladd = builder.module.declare_intrinsic("llvm.fmuladd", [t],
                                                   ir.FunctionType(t, [t, t, t]))
        return builder.call(fmuladd, args)

    return a(a, b, c), codegen


def fx_exp(x):
    """exp(x) for x <= 0 (and NaN); results below the smallest normal are 0."""
    raise NotImplementedError("only inside Numba-compiled code")


def fx_log(x):
    """log(x) for every x: 0 gives -inf, +inf +inf, negatives and NaN NaN."""
    raise NotImplementedError("only inside Numba-compiled code")


def fx_log1p(x):
    """log(1 + x) for x >= -1."""
    raise NotImplementedError("only inside Numba-compiled code")


def fx_log1p_unit(x):
    """log(1 + x) for x in [0, 1] only."""
    raise NotImplementedError("only inside Numba-compiled code")


def fx_tanh(x):
    """tanh(x) for every x (NaN stays NaN), within 2 ulp."""
    raise NotImplementedError("only inside Numba-compiled code")


@njit(cache=True, error_model="numpy")
def _expf(x):
    magic = f32(12582912.0)                           # 1.5 * 2^23
    t = x * f32(1.44269504088896341) + magic          # n = round(x / ln2), in t's low bits
    n = t - magic
    r = x - n * f32(0.693359375)                      # ln2 split in two (Cephes)
    r = r - n * f32(-2.12194440e-4)
    p = f32(1.9875691500e-4)                          # Cephes expf polynomial
    p = fx_fma(p, r, f32(1.3981999507e-3))
    p = fx_fma(p, r, f32(8.3334519073e-3))
    p = fx_fma(p, r, f32(4.1665795894e-2))
    p = fx_fma(p, r, f32(1.6666665459e-1))
    p = fx_fma(p, r, f32(5.0000001201e-1))
    p = p * r * r + r + f32(1.0)
    scale = _bits(np.int32((_bits(t) - _bits(magic) + 127) << 23))  # 2^n
    return f32(0.0) if x < f32(-87.33654475) else p * scale  # NaN fails the test


@njit(cache=True, error_model="numpy")
def _exp(x):
    magic = 6755399441055744.0                        # 1.5 * 2^52
    t = x * 1.4426950408889634074 + magic
    n = t - magic
    r = x - n * 6.93147180369123816490e-01            # ln2 hi, 32 bits: n * hi is exact
    r = r - n * 1.90821492927058770002e-10            # ln2 lo
    p = 1.0 / 6227020800.0                            # Taylor series to degree 13
    p = fx_fma(p, r, 1.0 / 479001600.0)
    p = fx_fma(p, r, 1.0 / 39916800.0)
    p = fx_fma(p, r, 1.0 / 3628800.0)
    p = fx_fma(p, r, 1.0 / 362880.0)
    p = fx_fma(p, r, 1.0 / 40320.0)
    p = fx_fma(p, r, 1.0 / 5040.0)
    p = fx_fma(p, r, 1.0 / 720.0)
    p = fx_fma(p, r, 1.0 / 120.0)
    p = fx_fma(p, r, 1.0 / 24.0)
    p = fx_fma(p, r, 1.0 / 6.0)
    p = fx_fma(p, r, 0.5)
    p = p * r * r + r + 1.0
    scale = _bits((_bits(t) - _bits(magic) + 1023) << 52)
    return 0.0 if x < -708.39641853226408 else p * scale


@njit(cache=True, error_model="numpy", inline="always")
def _logf_normal(x):
    """log(x) for normal positive float32 x: x = 2^e f, f in [sqrt(1/2), sqrt(2)),
    log f = 2 atanh(u), u = (f - 1) / (f + 1), summed to u^9."""
    bits = _bits(x)
    f = _bits(np.int32((bits & 0x007FFFFF) | 0x3F800000))       # f in [1, 2)
    e = _bits(np.int32((bits >> 23) | 0x4B000000)) - f32(8388735.0)  # 2^23 + 127
    big = f > f32(1.41421356)
    f = f * f32(0.5) if big else f
    e = e + f32(1.0) if big else e
    u = (f - f32(1.0)) / (f + f32(1.0))
    u2 = u * u
    p = f32(1.0 / 9)
    p = fx_fma(p, u2, f32(1.0 / 7))
    p = fx_fma(p, u2, f32(1.0 / 5))
    p = fx_fma(p, u2, f32(1.0 / 3))
    r = f32(2.0) * u + f32(2.0) * u * u2 * p
    return e * f32(0.693359375) + (r + e * f32(-2.12194440e-4))


@njit(cache=True, error_model="numpy", inline="always")
def _log_normal(x):
    """log(x) for normal positive float64 x, summed to u^23."""
    bits = _bits(x)
    f = _bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    e = _bits((bits >> 52) | 0x4330000000000000) - 4503599627371519.0
    big = f > 1.4142135623730951
    f = f * 0.5 if big else f
    e = e + 1.0 if big else e
    u = (f - 1.0) / (f + 1.0)
    u2 = u * u
    p = 1.0 / 23
    p = fx_fma(p, u2, 1.0 / 21)
    p = fx_fma(p, u2, 1.0 / 19)
    p = fx_fma(p, u2, 1.0 / 17)
    p = fx_fma(p, u2, 1.0 / 15)
    p = fx_fma(p, u2, 1.0 / 13)
    p = fx_fma(p, u2, 1.0 / 11)
    p = fx_fma(p, u2, 1.0 / 9)
    p = fx_fma(p, u2, 1.0 / 7)
    p = fx_fma(p, u2, 1.0 / 5)
    p = fx_fma(p, u2, 1.0 / 3)
    r = 2.0 * u + 2.0 * u * u2 * p
    return e * 6.93147180369123816490e-01 + (r + e * 1.90821492927058770002e-10)


@njit(cache=True, error_model="numpy", inline="always")
def _logf_any(x):
    tiny = x < f32(1.17549435e-38)
    r = _logf_normal(x * f32(16777216.0) if tiny else x)    # 2^24
    r = r - f32(16.6355323) if tiny else r                  # 24 ln2
    r = r if x > f32(0.0) else (f32(-INF) if x == f32(0.0) else f32(np.nan))
    return f32(INF) if x == f32(INF) else r


@njit(cache=True, error_model="numpy", inline="always")
def _log_any(x):
    tiny = x < 2.2250738585072014e-308
    r = _log_normal(x * 18014398509481984.0 if tiny else x)  # 2^54
    r = r - 37.429947750237046 if tiny else r                # 54 ln2
    r = r if x > 0.0 else (-INF if x == 0.0 else np.nan)
    return INF if x == INF else r


@njit(cache=True, error_model="numpy")
def _log1pf(x):
    # log(u) x / (u - 1), u = 1 + x, corrects the rounding of u (Goldberg)
    u = f32(1.0) + x
    r = x if u == f32(1.0) else _logf_any(u) * (x / (u - f32(1.0)))
    return f32(INF) if u == f32(INF) else r


@njit(cache=True, error_model="numpy")
def _log1p(x):
    u = 1.0 + x
    r = x if u == 1.0 else _log_any(u) * (x / (u - 1.0))
    return INF if u == INF else r


@njit(cache=True, error_model="numpy")
def _log1pf_unit(x):
    # 2 atanh(u), u = x / (2 + x) in [0, 1/3], summed to u^15
    u = x / (f32(2.0) + x)
    u2 = u * u
    p = f32(1.0 / 15)
    p = fx_fma(p, u2, f32(1.0 / 13))
    p = fx_fma(p, u2, f32(1.0 / 11))
    p = fx_fma(p, u2, f32(1.0 / 9))
    p = fx_fma(p, u2, f32(1.0 / 7))
    p = fx_fma(p, u2, f32(1.0 / 5))
    p = fx_fma(p, u2, f32(1.0 / 3))
    return f32(2.0) * u + f32(2.0) * u * u2 * p


@njit(cache=True, error_model="numpy")
def _tanhf(x):
    # Cephes tanhf: a polynomial for |x| <= 0.625, else (1 - e) / (1 + e) with
    # e = exp(-2|x|) <= 1 (fx_exp's domain), both computed and one selected
    # (no branch: the loops calling it vectorise).
    a = abs(x)
    e = _expf(f32(-2.0) * a)
    big = (f32(1.0) - e) / (f32(1.0) + e)
    z = x * x
    p = f32(-5.70498872745e-3)
    p = p * z + f32(2.06390887954e-2)
    p = p * z - f32(5.37397155531e-2)
    p = p * z + f32(1.33314422036e-1)
    p = p * z - f32(3.33332819422e-1)
    small = p * z * x + x
    # NaN fails the test (small is NaN); the sign is x's, -0 included.
    return math.copysign(big if a > f32(0.625) else small, x)


@njit(cache=True, error_model="numpy")
def _tanh(x):
    # Cephes tanh: a rational function for |x| <= 0.625, else as _tanhf.
    a = abs(x)
    e = _exp(-2.0 * a)
    big = (1.0 - e) / (1.0 + e)
    s = x * x
    p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s \
        - 1.61468768441708447952e3
    q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s \
        + 4.84406305325125486048e3
    small = x + x * s * p / q
    return math.copysign(big if a > 0.625 else small, x)


def _by_type(public, for_float32, for_float64, inline="never"):
    """``public`` compiled as ``for_float32`` or ``for_float64`` by argument type."""
    @overload(public, inline=inline)
    def _choose(x):
        if x == types.float32:
            return lambda x: for_float32(x)
        if x == types.float64:
            return lambda x: for_float64(x)
        return None


_by_type(fx_exp, _expf, _exp)
# log is inlined before LLVM sees the loops that call it: those loops then
# vectorise (as exp's do without; log, larger, LLVM would call instead).
_by_type(fx_log, _logf_any, _log_any, inline="always")
_by_type(fx_log1p, _log1pf, _log1p)
_by_type(fx_log1p_unit, _log1pf_unit, _log1p)
_by_type(fx_tanh, _tanhf, _tanh)
