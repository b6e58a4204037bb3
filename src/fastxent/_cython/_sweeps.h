/* The vectorised sweeps over one row that the Cython kernels are built from.
 *
 * Each is a plain loop marked `omp simd` (active with -fopenmp or
 * -fopenmp-simd, no threads involved): the pragma lets the compiler split a
 * reduction into vector lanes, which it may not do for floating point on its
 * own, and to vectorise through inlining. The lane order is fixed at compile
 * time, so results are deterministic. Written once for float and double by
 * FX_SWEEPS below; g may be z itself (element j is read before it is written).
 */
#ifndef FASTXENT_SWEEPS_H
#define FASTXENT_SWEEPS_H

#include <math.h>
#include <stddef.h>
#include "_fastexp.h"

#if defined(_OPENMP) || defined(__clang__) || defined(__GNUC__)
#define FX_SIMD(clause) _Pragma(FX_STR(omp simd clause))
#else
#define FX_SIMD(clause)
#endif
#define FX_STR(x) #x

#define FX_SWEEPS(T, S, EXP)                                                          \
/* max(z), skipping NaN (the sums that follow propagate it); -inf if n == 0 */        \
static inline T fx_max_##S(const T *z, ptrdiff_t n)                                   \
{                                                                                     \
    T m = -INFINITY;                                                                  \
    FX_SIMD(reduction(max : m))                                                       \
    for (ptrdiff_t j = 0; j < n; j++)                                                 \
        m = z[j] > m ? z[j] : m;                                                      \
    return m;                                                                         \
}                                                                                     \
/* sum(exp(z - shift)), for shift >= max(z) */                                        \
static inline double fx_sum_exp_##S(const T *z, ptrdiff_t n, T shift)                 \
{                                                                                     \
    T s = 0;                                                                          \
    FX_SIMD(reduction(+ : s))                                                         \
    for (ptrdiff_t j = 0; j < n; j++)                                                 \
        s += EXP(z[j] - shift);                                                       \
    return s;                                                                         \
}                                                                                     \
/* sum(w * (z - m)), w = 1 when NULL */                                               \
static inline double fx_sum_shifted_##S(const T *z, const T *w, ptrdiff_t n, T m)     \
{                                                                                     \
    T s = 0;                                                                          \
    if (w == NULL) {                                                                  \
        FX_SIMD(reduction(+ : s))                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            s += z[j] - m;                                                            \
    } else {                                                                          \
        FX_SIMD(reduction(+ : s))                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            s += w[j] * (z[j] - m);                                                   \
    }                                                                                 \
    return s;                                                                         \
}                                                                                     \
/* sum(w q (z - m)) and, into *total, sum(w q), with q = keep * t + spread */         \
static inline double fx_target_dot_##S(const T *z, const T *t, const T *w,            \
                                       ptrdiff_t n, T m, T keep, T spread,            \
                                       double *total)                                 \
{                                                                                     \
    T dot = 0, tot = 0;                                                               \
    if (w == NULL) {                                                                  \
        FX_SIMD(reduction(+ : dot, tot))                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                           \
            T q = t[j] * keep + spread;                                               \
            tot += q;                                                                 \
            dot += q * (z[j] - m);                                                    \
        }                                                                             \
    } else {                                                                          \
        FX_SIMD(reduction(+ : dot, tot))                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                           \
            T wq = (t[j] * keep + spread) * w[j];                                     \
            tot += wq;                                                                \
            dot += wq * (z[j] - m);                                                   \
        }                                                                             \
    }                                                                                 \
    *total = tot;                                                                     \
    return dot;                                                                       \
}                                                                                     \
/* g = exp(z - m) * k - c * w, w = 1 when NULL */                                     \
static inline void fx_write_grad_##S(const T *z, const T *w, ptrdiff_t n, T m, T k,   \
                                     T c, T *g)                                       \
{                                                                                     \
    if (w == NULL) {                                                                  \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = EXP(z[j] - m) * k - c;                                             \
    } else {                                                                          \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = EXP(z[j] - m) * k - c * w[j];                                      \
    }                                                                                 \
}                                                                                     \
/* g = exp(z - m) * k - c * w * q, q = keep * t + spread, w = 1 when NULL */          \
static inline void fx_write_grad_probs_##S(const T *z, const T *t, const T *w,        \
                                           ptrdiff_t n, T m, T k, T c, T keep,        \
                                           T spread, T *g)                            \
{                                                                                     \
    if (w == NULL) {                                                                  \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = EXP(z[j] - m) * k - c * (t[j] * keep + spread);                    \
    } else {                                                                          \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = EXP(z[j] - m) * k - c * (t[j] * keep + spread) * w[j];             \
    }                                                                                 \
}                                                                                     \
/* out = (z - m) - log_s */                                                           \
static inline void fx_write_shifted_##S(const T *z, ptrdiff_t n, T m, T log_s, T *out)\
{                                                                                     \
    FX_SIMD()                                                                         \
    for (ptrdiff_t j = 0; j < n; j++)                                                 \
        out[j] = (z[j] - m) - log_s;                                                  \
}

FX_SWEEPS(float, f32, fx_expf)
FX_SWEEPS(double, f64, fx_exp)

#endif
