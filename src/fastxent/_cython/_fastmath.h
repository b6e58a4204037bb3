/* exp(x) for x <= 0 (and NaN), and log(x), branch-free so that loops calling
 * them vectorise.
 *
 * exp:
 *
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, a polynomial for exp(r),
 * and 2^n built in the exponent bits. n is rounded with the 1.5 * 2^k trick,
 * which needs neither floor() nor a float-to-int conversion (neither has a
 * vector instruction in baseline x86-64). Results below the smallest normal
 * number are flushed to 0; exp(-inf) is 0 and exp(NaN) is NaN. The build must
 * not allow reassociation (-ffast-math), which would undo the rounding trick.
 * Accuracy: about 1 ulp (float) and 2 ulp (double), checked in the tests.
 */
#ifndef FASTXENT_FASTMATH_H
#define FASTXENT_FASTMATH_H

#include <math.h>
#include <stdint.h>

static inline float fx_expf(float x)
{
    const float magic = 12582912.0f;              /* 1.5 * 2^23 */
    float t = x * 1.44269504088896341f + magic;   /* n = round(x / ln2), in t's low bits */
    float n = t - magic;
    float r = x - n * 0.693359375f;               /* ln2 split in two (Cephes) */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;                   /* Cephes expf polynomial */
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* Unsigned: shifting a negative n left is undefined behaviour in C. */
    union { float f; uint32_t u; } tb = {t}, mb = {magic}, scale;
    scale.u = (tb.u - mb.u + 127) << 23;          /* 2^n */
    return x < -87.33654475f ? 0.0f : p * scale.f;  /* NaN fails the test and stays NaN */
}

static inline double fx_exp(double x)
{
    const double magic = 6755399441055744.0;      /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + magic;
    double n = t - magic;
    double r = x - n * 6.93147180369123816490e-01;  /* ln2 hi, 32 bits: n * hi is exact */
    r = r - n * 1.90821492927058770002e-10;         /* ln2 lo */
    /* Taylor series to degree 13: truncation < 0.1 ulp on |r| <= ln2 / 2. */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    union { double f; uint64_t u; } tb = {t}, mb = {magic}, scale;
    scale.u = (tb.u - mb.u + 1023) << 52;
    return x < -708.39641853226408 ? 0.0 : p * scale.f;
}

/* log(x) in double: x = 2^e f with f in [sqrt(1/2), sqrt(2)), and
 * log(f) = 2 atanh(u) with u = (f - 1) / (f + 1), |u| < 0.1716, summed to u^23
 * (truncation < 1e-18). Within 2 ulp, for normal positive x only: callers
 * send 0, subnormals, negatives, inf and NaN to libm (fx_is_normal). */
static inline int fx_is_normal(double x)
{
    return x >= 2.2250738585072014e-308 && x <= 1.7976931348623157e308;
}

static inline double fx_log(double x)
{
    union { double f; int64_t i; } bits = {x}, fb, eb;
    double f, e, u, u2, p, r;
    fb.i = (bits.i & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;  /* f in [1, 2) */
    f = fb.f;
    /* The exponent as a double without an int64 conversion (none in AVX2):
     * 2^52 + biased exponent, read as a double, minus 2^52 + 1023. */
    eb.i = (bits.i >> 52) | 0x4330000000000000LL;
    e = eb.f - 4503599627371519.0;
    if (f > 1.4142135623730951) {  /* a select once vectorised */
        f *= 0.5;
        e += 1.0;
    }
    u = (f - 1.0) / (f + 1.0);
    u2 = u * u;
    p = 1.0 / 23;
    p = p * u2 + 1.0 / 21;
    p = p * u2 + 1.0 / 19;
    p = p * u2 + 1.0 / 17;
    p = p * u2 + 1.0 / 15;
    p = p * u2 + 1.0 / 13;
    p = p * u2 + 1.0 / 11;
    p = p * u2 + 1.0 / 9;
    p = p * u2 + 1.0 / 7;
    p = p * u2 + 1.0 / 5;
    p = p * u2 + 1.0 / 3;
    r = 2.0 * u + 2.0 * u * u2 * p;
    /* e ln2 in two parts, the first exact for |e| < 2^21 */
    return e * 6.93147180369123816490e-01 + (r + e * 1.90821492927058770002e-10);
}

/* log(x) for every x, still branch-free: subnormals are scaled into the
 * normal range first; 0 gives -inf, +inf gives +inf, negatives and NaN NaN. */
static inline double fx_log_any(double x)
{
    int tiny = x < 2.2250738585072014e-308;
    double r = fx_log(tiny ? x * 18014398509481984.0 : x);  /* 2^54 */
    r = tiny ? r - 37.429947750237046 : r;                   /* 54 ln2 */
    r = x > 0 ? r : (x == 0 ? -INFINITY : NAN);
    return x == INFINITY ? INFINITY : r;
}

/* log(1 + x) for x >= -1: log(u) x / (u - 1) with u = 1 + x corrects the
 * rounding of u (Goldberg 1991), so small x keep their relative accuracy. */
static inline double fx_log1p(double x)
{
    double u = 1.0 + x;
    double r = u == 1.0 ? x : fx_log_any(u) * (x / (u - 1.0));
    return u == INFINITY ? INFINITY : r;
}

/* The same three in float, for float kernels: u summed to u^9 (truncation
 * < 1e-13 relative), within 2 float ulp. */
static inline float fx_logf(float x)
{
    union { float f; int32_t i; } bits = {x}, fb, eb;
    float f, e, u, u2, p, r;
    fb.i = (bits.i & 0x007fffff) | 0x3f800000;    /* f in [1, 2) */
    f = fb.f;
    eb.i = (bits.i >> 23) | 0x4b000000;           /* 2^23 + biased exponent */
    e = eb.f - 8388735.0f;                        /* 2^23 + 127 */
    if (f > 1.41421356f) {
        f *= 0.5f;
        e += 1.0f;
    }
    u = (f - 1.0f) / (f + 1.0f);
    u2 = u * u;
    p = 1.0f / 9;
    p = p * u2 + 1.0f / 7;
    p = p * u2 + 1.0f / 5;
    p = p * u2 + 1.0f / 3;
    r = 2.0f * u + 2.0f * u * u2 * p;
    /* e ln2 in two parts, the first (9 bits) exact for every float exponent */
    return e * 0.693359375f + (r + e * -2.12194440e-4f);
}

static inline float fx_logf_any(float x)
{
    int tiny = x < 1.17549435e-38f;
    float r = fx_logf(tiny ? x * 16777216.0f : x);           /* 2^24 */
    r = tiny ? r - 16.6355323f : r;                          /* 24 ln2 */
    r = x > 0 ? r : (x == 0 ? -INFINITY : NAN);
    return x == INFINITY ? INFINITY : r;
}

static inline float fx_log1pf(float x)
{
    float u = 1.0f + x;
    float r = u == 1.0f ? x : fx_logf_any(u) * (x / (u - 1.0f));
    return u == INFINITY ? INFINITY : r;
}

/* log(1 + x) for x in [0, 1] only (softplus of a non-positive argument):
 * 2 atanh(u) with u = x / (2 + x) in [0, 1/3], summed to u^15 (truncation
 * < 2e-9 relative): one division and no exponent split. */
static inline float fx_log1pf_unit(float x)
{
    float u = x / (2.0f + x), u2 = u * u;
    float p = 1.0f / 15;
    p = p * u2 + 1.0f / 13;
    p = p * u2 + 1.0f / 11;
    p = p * u2 + 1.0f / 9;
    p = p * u2 + 1.0f / 7;
    p = p * u2 + 1.0f / 5;
    p = p * u2 + 1.0f / 3;
    return 2.0f * u + 2.0f * u * u2 * p;
}

/* tanh(x), branch-free (Cephes): (1 - e) / (1 + e) with e = exp(-2|x|) and the
 * sign restored where |x| > 0.625 (no cancellation there), a rational (double)
 * or polynomial (float) odd approximation below. Within 2 ulp (double) and
 * 3 ulp (float), checked in the tests; NaN gives NaN. */
static inline double fx_tanh(double x)
{
    double a = fabs(x), e = fx_exp(-2.0 * a);
    double big = copysign((1.0 - e) / (1.0 + e), x);
    double s = x * x;
    double p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s
               - 1.61468768441708447952e3;
    double q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s
               + 4.84406305325125486048e3;
    double small = x + x * s * (p / q);
    return a > 0.625 ? big : small;
}

static inline float fx_tanhf(float x)
{
    float a = fabsf(x), e = fx_expf(-2.0f * a);
    float big = copysignf((1.0f - e) / (1.0f + e), x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    return a > 0.625f ? big : small;
}

/* Whether this CPU can run the module built with -mavx2 -mfma. */
static inline int fx_cpu_has_avx2_fma(void)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#endif
