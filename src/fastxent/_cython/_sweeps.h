/* The vectorised sweeps over one row that the Cython kernels are built from.
 *
 * Each is a plain loop marked `omp simd` (active with -fopenmp or
 * -fopenmp-simd, no threads involved): the pragma lets the compiler split a
 * reduction into vector lanes, which it may not do for floating point on its
 * own, and to vectorise through inlining. The lane order is fixed at compile
 * time, so results are deterministic. Written once for float and double by
 * FX_SWEEPS below; e may be z itself (element j is read before it is written).
 */
#ifndef FASTXENT_SWEEPS_H
#define FASTXENT_SWEEPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "_fastmath.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(_OPENMP) || defined(__clang__) || defined(__GNUC__)
#define FX_SIMD(clause) _Pragma(FX_STR(omp simd clause))
#else
#define FX_SIMD(clause)
#endif
#define FX_STR(x) #x

#if defined(_MSC_VER) && !defined(__clang__)
#define FX_NOINLINE __declspec(noinline)
#else
#define FX_NOINLINE __attribute__((noinline))
#endif

/* A reduction over j in [0, n): the simd loop covers a multiple of 16 (of
 * every vector width), so it never runs its own scalar epilogue, where GCC
 * stores to and reloads the lanes from memory (a store-forwarding stall that
 * costs more than a short row); the tail runs in plain scalar code. */
#define FX_REDUCE(clause, body)                                                       \
    do {                                                                              \
        ptrdiff_t n_main_ = n - n % 16;                                               \
        FX_SIMD(clause)                                                               \
        for (ptrdiff_t j = 0; j < n_main_; j++) { body }                              \
        for (ptrdiff_t j = n_main_; j < n; j++) { body }                              \
    } while (0)

/* Ask for the cache lines of p[0:bytes] ahead of use: reading a row from
 * memory then overlaps the arithmetic on the row before it. */
static inline void fx_prefetch(const void *p, ptrdiff_t bytes)
{
#if defined(__GNUC__) || defined(__clang__)
    for (ptrdiff_t offset = 0; offset < bytes; offset += 64)
        __builtin_prefetch((const char *)p + offset, 0, 3);
#else
    (void)p;
    (void)bytes;
#endif
}

#define FX_SWEEPS(T, S, EXP)                                                          \
/* max(z), skipping NaN (the sums that follow propagate it); -inf if n == 0 */        \
static inline T fx_max_##S(const T *z, ptrdiff_t n)                                   \
{                                                                                     \
    T m = -INFINITY;                                                                  \
    FX_REDUCE(reduction(max : m), m = z[j] > m ? z[j] : m;);                          \
    return m;                                                                         \
}                                                                                     \
/* sum(exp(z - shift)), for shift >= max(z) */                                        \
static inline double fx_sum_exp_##S(const T *z, ptrdiff_t n, T shift)                 \
{                                                                                     \
    T s = 0;                                                                          \
    FX_REDUCE(reduction(+ : s), s += EXP(z[j] - shift););                             \
    return s;                                                                         \
}                                                                                     \
/* sum(exp(z - shift)), also stored into e (which may be z) */                          \
static inline double fx_sum_exp_store_##S(const T *z, ptrdiff_t n, T shift, T *e)     \
{                                                                                     \
    T s = 0;                                                                          \
    FX_REDUCE(reduction(+ : s), T ej = EXP(z[j] - shift); e[j] = ej; s += ej;);       \
    return s;                                                                         \
}                                                                                     \
/* sum(v (z - shift)) and, into *total, sum(v), where v = q w with                    \
   q = keep * t + spread (1 when t is NULL) and w = 1 when NULL */                    \
static inline double fx_weighted_shifted_##S(const T *z, const T *t, const T *w,      \
                                             ptrdiff_t n, T shift, T keep, T spread,  \
                                             double *total)                           \
{                                                                                     \
    T dot = 0, tot = 0;                                                               \
    if (t == NULL && w == NULL) {                                                     \
        FX_REDUCE(reduction(+ : dot), dot += z[j] - shift;);                          \
        tot = (T)n;                                                                   \
    } else if (t == NULL) {                                                           \
        FX_REDUCE(reduction(+ : dot, tot), tot += w[j]; dot += w[j] * (z[j] - shift););\
    } else if (w == NULL) {                                                           \
        FX_REDUCE(reduction(+ : dot, tot),                                            \
                  T v = t[j] * keep + spread; tot += v; dot += v * (z[j] - shift););  \
    } else {                                                                          \
        FX_REDUCE(reduction(+ : dot, tot),                                            \
                  T v = (t[j] * keep + spread) * w[j]; tot += v;                      \
                  dot += v * (z[j] - shift););                                        \
    }                                                                                 \
    *total = tot;                                                                     \
    return dot;                                                                       \
}                                                                                     \
/* g = g * factor - c v, with v as in fx_weighted_shifted */                          \
static inline void fx_rescale_##S(T *g, const T *t, const T *w, ptrdiff_t n,          \
                                  T factor, T c, T keep, T spread)                    \
{                                                                                     \
    if (t == NULL && w == NULL) {                                                     \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = g[j] * factor - c;                                                 \
    } else if (t == NULL) {                                                           \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = g[j] * factor - c * w[j];                                          \
    } else if (w == NULL) {                                                           \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = g[j] * factor - c * (t[j] * keep + spread);                        \
    } else {                                                                          \
        FX_SIMD()                                                                     \
        for (ptrdiff_t j = 0; j < n; j++)                                             \
            g[j] = g[j] * factor - c * (t[j] * keep + spread) * w[j];                 \
    }                                                                                 \
}                                                                                     \
/* out = (z - m) - log_s */                                                           \
static inline void fx_write_shifted_##S(const T *z, ptrdiff_t n, T m, T log_s, T *out)\
{                                                                                     \
    FX_SIMD()                                                                         \
    for (ptrdiff_t j = 0; j < n; j++)                                                 \
        out[j] = (z[j] - m) - log_s;                                                  \
}

/* The sweeps of the soft cap and of evaluate; TANH as fx_tanh. */
#define FX_EVAL_SWEEPS(T, S, EXP, TANH)                                               \
/* out = cap tanh(z / cap) (out may be z) */                                          \
static inline void fx_softcap_##S(const T *z, ptrdiff_t n, T cap, T *out)             \
{                                                                                     \
    FX_SIMD()                                                                         \
    for (ptrdiff_t j = 0; j < n; j++)                                                 \
        out[j] = cap * TANH(z[j] / cap);                                              \
}                                                                                     \
/* g = g (1 - (t / cap)^2) with t = cap tanh(z / cap): the chain rule */              \
static inline void fx_softcap_grad_##S(T *g, const T *t, ptrdiff_t n, T cap)          \
{                                                                                     \
    FX_SIMD()                                                                         \
    for (ptrdiff_t j = 0; j < n; j++) {                                               \
        T u = t[j] / cap;                                                             \
        g[j] = g[j] * (1 - u * u);                                                    \
    }                                                                                 \
}                                                                                     \
/* sum(e) and, into *dot, sum(e (z - shift)), e = exp(z - shift): the entropy's        \
   terms. z - shift is clamped at -1e30, far below where e is 0, so that z = -inf     \
   adds 0, not 0 * -inf (a max and an fma: a test of e == 0 cost 30% more). Not     \
   inlined: inside evaluate's row code the loop ran out of vector registers and    \
   reloaded its constants (measured: evaluate 6% faster at 32000 classes). */         \
FX_NOINLINE static double fx_sum_exp_dot_##S(const T *z, ptrdiff_t n, T shift,        \
                                             double *dot)                             \
{                                                                                     \
    const T lowest = (T)-1e30;                                                        \
    T s = 0, d = 0;                                                                   \
    FX_REDUCE(reduction(+ : s, d),                                                    \
              T x = z[j] - shift; T e = EXP(x); s += e;                               \
              d += e * (x > lowest ? x : lowest););                                   \
    *dot = d;                                                                         \
    return s;                                                                         \
}                                                                                     \
/* max(z[0:n]), and into *count how many z[j] sort before a target of value zy    \
   (not NaN) at position y in np.argsort's stable order, reversed: greater or        \
   NaN, also equal after y. One loop counts the greater and NaN (!(z <= zy)) and     \
   the equal; only a tie beyond the target itself needs the scalar recount. */       \
static inline T fx_max_count_##S(const T *z, ptrdiff_t n, T zy, ptrdiff_t y,          \
                                 ptrdiff_t *count)                                    \
{                                                                                     \
    T m = -INFINITY;                                                                  \
    int c = 0, equal = 0;                                                             \
    FX_REDUCE(reduction(max : m) reduction(+ : c, equal),                             \
              m = z[j] > m ? z[j] : m; c += !(z[j] <= zy); equal += z[j] == zy;);     \
    if (equal > (y >= 0 && y < n))                                                    \
        for (ptrdiff_t j = y < 0 ? 0 : y + 1; j < n; j++)                             \
            c += z[j] == zy;                                                          \
    *count += c;                                                                      \
    return m;                                                                         \
}                                                                                     \
/* the first j with z[j] == m, or n: a vector test per 64 elements up to the     \
   first block that has it, then per 16 the least matching lane, without a           \
   branch per lane (measured at C = 1000: half the time of steps of 16) */           \
static inline ptrdiff_t fx_first_equal_##S(const T *z, ptrdiff_t n, T m)              \
{                                                                                     \
    ptrdiff_t j = 0;                                                                  \
    for (; j + 64 <= n; j += 64) {                                                    \
        int any = 0;                                                                  \
        FX_SIMD(reduction(| : any))                                                   \
        for (int k = 0; k < 64; k++)                                                  \
            any |= z[j + k] == m;                                                     \
        if (any)                                                                      \
            break;                                                                    \
    }                                                                                 \
    for (; j + 16 <= n; j += 16) {                                                    \
        int first = 16;                                                               \
        FX_SIMD(reduction(min : first))                                               \
        for (int k = 0; k < 16; k++)                                                  \
            first = z[j + k] == m && k < first ? k : first;                           \
        if (first < 16)                                                               \
            return j + first;                                                         \
    }                                                                                 \
    for (; j < n; j++)                                                                \
        if (z[j] == m)                                                                \
            return j;                                                                 \
    return n;                                                                         \
}

FX_EVAL_SWEEPS(float, f32, fx_expf, fx_tanhf)
FX_EVAL_SWEEPS(double, f64, fx_exp, fx_tanh)

/* Binary cross-entropy, element by element, computed in C (float for float
 * data, double for double): for j in [0, n), with w and pos_weight 1 where
 * NULL and go the upstream gradient (1 where NULL), the loss of element j
 * goes into loss[j] unless loss is NULL, scale * go[j] * dloss/dx into g[j]
 * unless g is NULL (g may be x), and the sum of the losses, accumulated in
 * double, is returned.
 *
 * The loops run over chunks in which every pointer is real (absent arrays
 * stand in as chunks of ones, absent outputs as scratch): a loop without
 * branches is one the compiler vectorises. */
#define FX_CHUNK 256
#define FX_BCE_LOOP(T, C, ...)                                                        \
    T ones[FX_CHUNK], go_c[FX_CHUNK], sink_loss[FX_CHUNK], sink_g[FX_CHUNK];          \
    double total = 0;                                                                 \
    const C sc = (C)scale;                                                            \
    for (ptrdiff_t j = 0; j < FX_CHUNK; j++)                                          \
        ones[j] = 1;                                                                  \
    for (ptrdiff_t c = 0; c < n; c += FX_CHUNK) {                                     \
        ptrdiff_t m = n - c < FX_CHUNK ? n - c : FX_CHUNK;                            \
        const T *xc = x + c, *yc = y + c;                                             \
        const T *wc = w ? w + c : ones, *pwc = pw ? pw + c : ones;                    \
        const T *goc = ones;                                                          \
        if (go) {  /* in T once, so the main loop converts nothing */                 \
            for (ptrdiff_t j = 0; j < m; j++)                                         \
                go_c[j] = (T)go[c + j];                                               \
            goc = go_c;                                                               \
        }                                                                             \
        T *lc = loss ? loss + c : sink_loss, *gc = g ? g + c : sink_g;                \
        double sub = 0;                                                               \
        FX_SIMD(reduction(+ : sub))                                                   \
        for (ptrdiff_t j = 0; j < m; j++) {                                           \
            C z = xc[j], t = yc[j], wj = wc[j], pos = pwc[j], l, d;                   \
            __VA_ARGS__                                                               \
            gc[j] = sc * goc[j] * wj * d;                                                \
            lc[j] = wj * l;                                                           \
            sub += (double)(wj * l);                                                  \
        }                                                                             \
        total += sub;                                                                 \
    }                                                                                 \
    return total;

/* C, then its exp (for arguments <= 0), log (of any argument), log1p (of any
   argument) and log1p of arguments in [0, 1] */
#define FX_BCE(T, S, C, EXP, LOG, LOG1P, LOG1P_UNIT)                                              \
/* x probabilities, PyTorch's formula: each log clamped at -100, and the           \
   gradient w (x - y) / max(x (1 - x), eps) with PyTorch's eps: 1e-12 in float */     \
static inline double fx_bce_##S(const T *x, const T *y, const T *w, ptrdiff_t n,      \
                                double scale, const double *go, T *loss, T *g)        \
{                                                                                     \
    const T *pw = NULL;                                                               \
    const C eps = (C)9.999999960041972e-13, floor = -100;                             \
    FX_BCE_LOOP(T, C,                                                                 \
        (void)pos;                                                                    \
        C log_p = LOG(z), log_q = LOG1P(-z);                                          \
        log_p = log_p < floor ? floor : log_p;  /* NaN stays NaN */                   \
        log_q = log_q < floor ? floor : log_q;                                        \
        l = -(t * log_p + (1 - t) * log_q);                                           \
        C den = z * (1 - z);                                                          \
        d = (z - t) / (den < eps ? eps : den);)                                       \
}                                                                                     \
/* x logits: (1 - y) x - lw log(sigmoid(x)) with lw = 1 + (pw - 1) y, written        \
   as lw L + (1 - y) x for x >= 0 and lw L - (lw - 1 + y) x for x < 0, where          \
   L = log(1 + exp(-|x|)): no term cancels another; gradient lw sigmoid(x) - pw y */ \
static inline double fx_bce_logits_##S(const T *x, const T *y, const T *w,            \
                                       const T *pw, ptrdiff_t n, double scale,        \
                                       const double *go, T *loss, T *g)               \
{                                                                                     \
    FX_BCE_LOOP(T, C,                                                                 \
        C lw = 1 + (pos - 1) * t;                                                     \
        C e = EXP(z < 0 ? z : -z);                                                    \
        C z_pos = z > 0 ? z : 0, z_neg = z < 0 ? z : 0;  /* max and min, no branch */ \
        l = lw * LOG1P_UNIT(e) + (1 - t) * z_pos - (lw - 1 + t) * z_neg;              \
        /* z = -inf: the definition (1 - t) z - lw log_sigmoid(z) in IEEE arithmetic, \
           as PyTorch: -inf + inf = NaN for t <= 1, +inf for t > 1 */               \
        l = z > -INFINITY ? l : (1 - t) * z + lw * INFINITY;                          \
        d = lw * ((z >= 0 ? 1 : e) / (1 + e)) - pos * t;)                             \
}

FX_BCE(float, f32, float, fx_expf, fx_logf_any, fx_log1pf, fx_log1pf_unit)
FX_BCE(double, f64, double, fx_exp, fx_log_any, fx_log1p, fx_log1p)

/* Short rows (n_classes <= FX_TILE_MAX_C), vectorised across rows instead:
 * a tile of up to FX_TILE_ROWS rows is transposed into zt (n_classes x
 * FX_TILE_ROWS, lanes past the tile's rows padded with 0) so that every loop
 * runs over the rows of the tile. */
#define FX_TILE_ROWS 16
#define FX_TILE_MAX_C 32

/* A full tile of float rows transposed in 8 x 8 blocks of AVX2 registers
 * instead of one element at a time: measured 15-20% off the whole kernel for
 * 3 to 17 classes. Each returns 0, having done nothing, where it does not
 * apply (the scalar loops then do the work). Nothing outside the tile is read
 * or written: masked loads on the way in, a buffer in L1 on the way out. */
#if defined(__AVX2__) && FX_TILE_ROWS == 16
static inline void fx_transpose8_f32(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* lanes [0, k) of a mask, for k in [0, 8] */
static inline __m256i fx_lanes_f32(ptrdiff_t k)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* zt[c * 16 + i] = z[i * row_stride + c] for the 16 rows and n columns */
static inline int fx_transpose_in_f32(const float *z, ptrdiff_t row_stride, ptrdiff_t n,
                                      float *zt)
{
    for (ptrdiff_t c0 = 0; c0 < n; c0 += 8) {
        ptrdiff_t width = n - c0 < 8 ? n - c0 : 8;
        __m256i lanes = fx_lanes_f32(width);
        for (ptrdiff_t i0 = 0; i0 < 16; i0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_maskload_ps(z + (i0 + i) * row_stride + c0, lanes);
            fx_transpose8_f32(r);
            for (ptrdiff_t c = 0; c < width; c++)
                _mm256_storeu_ps(zt + (c0 + c) * 16 + i0, r[c]);
        }
    }
    return 1;
}

/* g[i * n + c] = zt[c * 16 + i] for the 16 rows and n columns, when the rows
 * are contiguous (row_stride == n): transposed into a buffer in L1 whose last
 * block of columns spills into the next row (written over by the first block,
 * which comes last), then copied out in whole vectors. (Masked stores would
 * avoid the spill, but are slow on some CPUs.) */
static inline int fx_transpose_out_f32(const float *zt, ptrdiff_t n, float *g,
                                       ptrdiff_t row_stride)
{
    float rm[16 * FX_TILE_MAX_C + 8];
    if (row_stride != n)
        return 0;
    for (ptrdiff_t c0 = (n - 1) / 8 * 8; c0 >= 0; c0 -= 8) {
        ptrdiff_t width = n - c0 < 8 ? n - c0 : 8;
        for (ptrdiff_t i0 = 0; i0 < 16; i0 += 8) {
            __m256 r[8];
            for (ptrdiff_t c = 0; c < 8; c++)
                r[c] = c < width ? _mm256_loadu_ps(zt + (c0 + c) * 16 + i0)
                                 : _mm256_setzero_ps();
            fx_transpose8_f32(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(rm + (i0 + i) * n + c0, r[i]);
        }
    }
    ptrdiff_t j = 0;
    for (; j + 8 <= 16 * n; j += 8)
        _mm256_storeu_ps(g + j, _mm256_loadu_ps(rm + j));
    for (; j < 16 * n; j++)
        g[j] = rm[j];
    return 1;
}
#endif

/* The transposes where there are none: the scalar loops do the work. */
#define FX_NO_TRANSPOSE(T, S)                                                         \
static inline int fx_transpose_in_##S(const T *z, ptrdiff_t row_stride, ptrdiff_t n,  \
                                      T *zt)                                          \
{                                                                                     \
    (void)z; (void)row_stride; (void)n; (void)zt;                                     \
    return 0;                                                                         \
}                                                                                     \
static inline int fx_transpose_out_##S(const T *zt, ptrdiff_t n, T *g,                \
                                       ptrdiff_t row_stride)                          \
{                                                                                     \
    (void)zt; (void)n; (void)g; (void)row_stride;                                     \
    return 0;                                                                         \
}

#if !(defined(__AVX2__) && FX_TILE_ROWS == 16)
FX_NO_TRANSPOSE(float, f32)
#endif
FX_NO_TRANSPOSE(double, f64)

#define FX_TILES(T, S, EXP)                                                           \
/* zt = the tile transposed (lanes past its rows 0) and m = the max of each row     \
   (skipping NaN; 0 past the rows) */                                                 \
static inline void fx_tile_load_##S(const T *z, ptrdiff_t row_stride, ptrdiff_t rows, \
                                    ptrdiff_t n, T *zt, T *m)                         \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    if (rows < R || !fx_transpose_in_##S(z, row_stride, n, zt)) {                     \
        for (ptrdiff_t i = 0; i < rows; i++)                                          \
            for (ptrdiff_t c = 0; c < n; c++)                                         \
                zt[c * R + i] = z[i * row_stride + c];                                \
        for (ptrdiff_t i = rows; i < R; i++)                                          \
            for (ptrdiff_t c = 0; c < n; c++)                                         \
                zt[c * R + i] = 0;                                                    \
    }                                                                                 \
    for (ptrdiff_t i = 0; i < R; i++)                                                 \
        m[i] = -INFINITY;                                                             \
    for (ptrdiff_t c = 0; c < n; c++) {                                               \
        FX_SIMD()                                                                     \
        for (ptrdiff_t i = 0; i < R; i++)                                             \
            m[i] = zt[c * R + i] > m[i] ? zt[c * R + i] : m[i];                       \
    }                                                                                 \
}                                                                                     \
/* zt = the tile transposed; m, s, dot per row as in the row sweeps, with          \
   shift = m (0 where m is -inf); zt then holds exp(z - shift). w: see             \
   fx_weighted_shifted (t = NULL); dot only when with_dot. */                         \
static inline void fx_tile_online_##S(const T *z, ptrdiff_t row_stride,               \
                                      ptrdiff_t rows, ptrdiff_t n, const T *w,        \
                                      int with_dot, T *zt, T *m, T *s, T *dot)        \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    T shift[R];                                                                       \
    fx_tile_load_##S(z, row_stride, rows, n, zt, m);                                  \
    FX_SIMD()                                                                         \
    for (ptrdiff_t i = 0; i < R; i++) {                                               \
        shift[i] = m[i] > -INFINITY ? m[i] : (T)0;                                    \
        s[i] = 0;                                                                     \
        dot[i] = 0;                                                                   \
    }                                                                                 \
    for (ptrdiff_t c = 0; c < n; c++) {                                               \
        T wc = w == NULL ? (T)1 : w[c];                                               \
        if (with_dot) {                                                               \
            FX_SIMD()                                                                 \
            for (ptrdiff_t i = 0; i < R; i++)                                         \
                dot[i] += wc * (zt[c * R + i] - shift[i]);                            \
        }                                                                             \
        FX_SIMD()                                                                     \
        for (ptrdiff_t i = 0; i < R; i++) {                                           \
            T e = EXP(zt[c * R + i] - shift[i]);                                      \
            zt[c * R + i] = e;                                                        \
            s[i] += e;                                                                \
        }                                                                             \
    }                                                                                 \
}                                                                                     \
/* evaluate's sweep of a tile, after fx_tile_load: per row, with shift = m (0      \
   where m is -inf) and y the target's column (any column where there is none),    \
   s and d = sum e (z - shift) as fx_sum_exp_dot (-inf counted as -1e30, so that    \
   e = 0 adds 0), and counted in the same pass over the columns: rank, the         \
   columns that sort before the target's value zy as in fx_max_count (zy NaN:       \
   to be counted again) and top, the first column equal to m; then first_nan,     \
   the first NaN of the rows where s is NaN (n where there is none). */            \
static inline void fx_tile_evaluate_##S(const T *zt, ptrdiff_t n, const T *m,         \
                                        const int32_t *y, T *shift, T *zy, T *s,      \
                                        T *d, int32_t *rank, int32_t *top,            \
                                        int32_t *first_nan)                           \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    const T lowest = (T)-1e30;                                                        \
    const int32_t none = (int32_t)n;                                                  \
    FX_SIMD()                                                                         \
    for (ptrdiff_t i = 0; i < R; i++) {                                               \
        shift[i] = m[i] > -INFINITY ? m[i] : (T)0;                                    \
        s[i] = d[i] = 0;                                                              \
        rank[i] = 0;                                                                  \
        top[i] = first_nan[i] = none;                                                 \
    }                                                                                 \
    for (ptrdiff_t i = 0; i < R; i++)                                                 \
        zy[i] = zt[y[i] * R + i];                                                     \
    for (int32_t c = 0; c < none; c++) {                                              \
        const T *col = zt + c * R;                                                    \
        FX_SIMD()                                                                     \
        for (ptrdiff_t i = 0; i < R; i++) {                                           \
            T x = col[i] - shift[i], e = EXP(x);                                      \
            s[i] += e;                                                                \
            d[i] += e * (x > lowest ? x : lowest);                                    \
            rank[i] += c > y[i] ? !(col[i] < zy[i]) : !(col[i] <= zy[i]);             \
            int32_t at = col[i] == m[i] ? c : none;                                   \
            top[i] = at < top[i] ? at : top[i];                                       \
        }                                                                             \
    }                                                                                 \
    /* Only a row with a NaN has s NaN (+inf - +inf aside): looked for there. */      \
    for (ptrdiff_t i = 0; i < R; i++)                                                 \
        for (int32_t c = 0; s[i] != s[i] && c < none; c++)                           \
            if (zt[c * R + i] != zt[c * R + i]) {                                     \
                first_nan[i] = c;                                                     \
                break;                                                                \
            }                                                                         \
}                                                                                     \
/* evaluate's values of each row of the tile from those of fx_tile_evaluate, in   \
   double (lanes where kept is 0: loss 0, rank n): the loss wy (log s - (zy -        \
   shift)), lse = shift + log s (+inf where m is, NaN if the row has a NaN too),     \
   the entropy log s - d / s, the argmax (the first NaN, else top) and the rank.     \
   Returns whether a kept row has a NaN target, whose rank is then to be counted     \
   (only the NaNs after it come first). */                                           \
static inline int fx_tile_finish_##S(ptrdiff_t n, const T *m, const T *shift,         \
                                     const T *zy, const T *s, const T *d,             \
                                     const int32_t *rank_in, const int32_t *top,      \
                                     const int32_t *first_nan, const double *kept,    \
                                     const double *wy, double *loss, double *lse,     \
                                     double *entropy, int64_t *argmax, int64_t *rank) \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    double log_s[R];                                                                  \
    int odd = 0, nan_target = 0;                                                      \
    FX_SIMD(reduction(| : odd))                                                       \
    for (ptrdiff_t i = 0; i < R; i++) {                                               \
        log_s[i] = fx_log((double)s[i]);                                              \
        odd |= !fx_is_normal((double)s[i]);                                           \
    }                                                                                 \
    for (ptrdiff_t i = 0; odd && i < R; i++)                                          \
        if (!fx_is_normal((double)s[i]))                                              \
            log_s[i] = log((double)s[i]);                                             \
    FX_SIMD(reduction(| : nan_target))                                                \
    for (ptrdiff_t i = 0; i < R; i++) {                                               \
        int nan = first_nan[i] < n, counted = kept[i] != 0;                           \
        double sh = (double)shift[i];                                                 \
        lse[i] = m[i] == INFINITY ? (nan ? NAN : INFINITY) : sh + log_s[i];           \
        entropy[i] = log_s[i] - (double)d[i] / (double)s[i];                          \
        loss[i] = counted ? wy[i] * (log_s[i] - ((double)zy[i] - sh)) : 0.0;          \
        argmax[i] = nan ? first_nan[i] : top[i];                                      \
        rank[i] = counted ? rank_in[i] : n;                                           \
        nan_target |= counted && zy[i] != zy[i];                                      \
    }                                                                                 \
    return nan_target;                                                                \
}                                                                                     \
/* log(s), 1 / s and exp(x) for each row of the tile (x <= 0), in double */         \
static inline void fx_tile_log_exp_##S(const T *s, const double *x, double *log_s,    \
                                       double *inv_s, double *exp_x)                  \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    FX_SIMD()                                                                         \
    for (ptrdiff_t i = 0; i < R; i++) {                                               \
        log_s[i] = fx_log((double)s[i]);                                              \
        inv_s[i] = 1.0 / (double)s[i];                                                \
        exp_x[i] = fx_exp(x[i]);                                                      \
    }                                                                                 \
    for (ptrdiff_t i = 0; i < R; i++)                                                 \
        if (!fx_is_normal((double)s[i]))                                              \
            log_s[i] = log((double)s[i]);                                             \
}                                                                                     \
/* g row i = k[i] e - c[i] w, from the e in zt, transposed back */                    \
static inline void fx_tile_rescale_##S(T *zt, ptrdiff_t rows, ptrdiff_t n,            \
                                       const T *k, const T *c, const T *w, T *g,      \
                                       ptrdiff_t row_stride)                          \
{                                                                                     \
    enum { R = FX_TILE_ROWS };                                                        \
    for (ptrdiff_t col = 0; col < n; col++) {                                         \
        T wc = w == NULL ? (T)1 : w[col];                                             \
        FX_SIMD()                                                                     \
        for (ptrdiff_t i = 0; i < R; i++)                                             \
            zt[col * R + i] = zt[col * R + i] * k[i] - c[i] * wc;                     \
    }                                                                                 \
    if (rows < R || !fx_transpose_out_##S(zt, n, g, row_stride))                      \
        for (ptrdiff_t i = 0; i < rows; i++)                                          \
            for (ptrdiff_t col = 0; col < n; col++)                                   \
                g[i * row_stride + col] = zt[col * R + i];                            \
}

/* Adds the evaluate sums of FX_TILE_ROWS rows (see _reference.py) into lanes:
 * acc[k * FX_TILE_ROWS + i] += row i's term of sum k. A row where kept is 0
 * adds nothing (its values are not read); v is the sample weight. */
static inline void fx_add_evaluated(const double *kept, const double *v, const double *wy,
                                    const double *loss, const double *lse,
                                    const double *entropy, const int64_t *argmax,
                                    const int64_t *rank, const int64_t *y,
                                    const int64_t *topk, ptrdiff_t n_topk, double *acc)
{
    enum { R = FX_TILE_ROWS };
    FX_SIMD()
    for (ptrdiff_t i = 0; i < R; i++) {
        int counted = kept[i] != 0;
        double vi = v[i];
        acc[0 * R + i] += kept[i];
        acc[1 * R + i] += counted ? vi * loss[i] : 0.0;
        acc[2 * R + i] += counted ? vi * wy[i] : 0.0;
        acc[3 * R + i] += counted ? vi : 0.0;
        acc[4 * R + i] += counted ? vi * (double)(argmax[i] == y[i]) : 0.0;
        acc[5 * R + i] += counted ? vi * entropy[i] : 0.0;
        acc[6 * R + i] += counted ? vi * lse[i] : 0.0;
    }
    for (ptrdiff_t k = 0; k < n_topk; k++) {
        int64_t top_k = topk[k];  /* read once: acc might alias it, for all GCC knows */
        FX_SIMD()
        for (ptrdiff_t i = 0; i < R; i++)
            acc[(7 + k) * R + i] += kept[i] != 0 ? v[i] * (double)(rank[i] < top_k) : 0.0;
    }
}

/* sums[k] = the lanes of acc[k * FX_TILE_ROWS:] added in order, k < n_sums */
static inline void fx_lane_sums(const double *acc, ptrdiff_t n_sums, double *sums)
{
    for (ptrdiff_t k = 0; k < n_sums; k++) {
        double total = 0.0;
        for (ptrdiff_t i = 0; i < FX_TILE_ROWS; i++)
            total += acc[k * FX_TILE_ROWS + i];
        sums[k] = total;
    }
}

FX_SWEEPS(float, f32, fx_expf)
FX_SWEEPS(double, f64, fx_exp)
FX_TILES(float, f32, fx_expf)
FX_TILES(double, f64, fx_exp)

#endif
