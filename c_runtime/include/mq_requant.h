/* microq runtime: fixed-point requantization, written once.
 *
 * Bit-exact with TFLite Micro's MultiplyByQuantizedMultiplier (gemmlowp "double rounding"),
 * the default of TFLite Micro and CMSIS-NN. Define MQ_SINGLE_ROUNDING=1 at compile time to get
 * TFLite's single-rounding mode ((x * M + 2^(30 - shift)) >> (31 - shift)) instead.
 *
 * This header is internal to kernels (static inline); it is not part of the cffi cdef.
 */
#ifndef MQ_REQUANT_H
#define MQ_REQUANT_H

#include <stdint.h>

#ifndef MQ_SINGLE_ROUNDING
#define MQ_SINGLE_ROUNDING 0
#endif

/* 1 where the core has no 32x32->64 multiply (ARMv6-M, ARMv8-M baseline: it would be an
 * __aeabi_lmul call); mq_mbqm_fast then multiplies in 16-bit halves. Defining it on the host
 * tests that path (tests/test_kernel_perf.py). */
#ifndef MQ_NO_MUL64
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define MQ_NO_MUL64 1
#else
#define MQ_NO_MUL64 0
#endif
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul (ARM VQRDMULH). The 64-bit product of two int32
 * never overflows; the only saturating case is INT32_MIN * INT32_MIN. */
static inline int32_t mq_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    /* gemmlowp's (ab + nudge) / 2^31, nudge = ab >= 0 ? 2^30 : 1 - 2^30, truncating, equals
     * floor((ab + 2^30) / 2^31) for every ab: for ab < 0 both give -(q + 1) exactly when
     * |ab| = q 2^31 + r has r > 2^30, else -q. The floor is an arithmetic shift (as in
     * mq_rdbpot; SMLAL and two shifts on Cortex-M). */
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero, 0 <= e <= 31. */
static inline int32_t mq_rdbpot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t rem = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* Right shift of a negative int32 is arithmetic on every compiler we target. */
    return (x >> e) + (rem > threshold ? 1 : 0);
}

/* x * multiplier * 2^(shift - 31), rounded as TFLite Micro does.
 *
 * Fast path, shift = -e <= -2 and multiplier >= 0 (every conv/fc/add multiplier below 1/2):
 * one 64-bit multiply-accumulate and one shift, hi(P + R) >> (e - 1) with P = x * multiplier,
 * i.e. floor((P + R) / 2^(31 + e)).
 * - Single rounding: R = 2^(30 + e) is exactly the formula.
 * - Double rounding: with s = floor((P + 2^30) / 2^31) (mq_srdhm; it cannot saturate, as
 *   multiplier >= 0 excludes INT32_MIN * INT32_MIN), mq_rdbpot(s, e) rounds up iff the
 *   remainder of s / 2^e is >= 2^(e-1) + [s < 0], so it equals floor((s + 2^(e-1) - [s < 0]) /
 *   2^e). Nested floors by powers of two merge, floor((floor(A / 2^31) + c) / 2^e) = floor((A +
 *   c 2^31) / 2^(31 + e)), so R = 2^30 + 2^(30 + e) - [s < 0] 2^31. [s < 0] is [P < -2^30]; we
 *   use [x < 0] = [P < 0] (multiplier >= 0) instead, which differs only for P in [-2^30, 0]
 *   (or x < 0 = multiplier), where s = 0 and both give floor((2^(e-1) - 1) / 2^e) = 0.
 * With e >= 2 the low word of R is 2^30 - [x < 0] 2^31 and the high word 2^(e-2) - [x < 0]
 * (the term 2^(30+e) lies wholly in the high word), so R costs two instructions. |P| <= 2^62,
 * so P + R never overflows int64. Checked against python/microq/ref/arith.py exhaustively on
 * edge values in tests/test_kernel_perf.py. */
static inline int32_t mq_mbqm_fast(int32_t x, int32_t multiplier, int32_t round_hi,
                                   int32_t e_minus_1)
{
#if MQ_SINGLE_ROUNDING
    const int32_t neg = 0;
    const uint32_t round_lo = 0;
#else
    const int32_t neg = x >> 31; /* 0 or -1: arithmetic shift, as in mq_rdbpot */
    const uint32_t round_lo = 0x40000000u + ((uint32_t)neg << 31);
#endif
#if MQ_NO_MUL64
    /* The high word of x * multiplier + R from 16-bit halves. With x = xh 2^16 + xl and
     * multiplier = mh 2^16 + ml (xh signed, xl, ml < 2^16, 0 <= mh < 2^15) every partial
     * product fits its type: |xh ml| < 2^31, xl mh < 2^31, xl ml < 2^32. Each cross term c 2^16
     * splits exactly into (c >> 16) 2^32 (arithmetic shift, a floor) plus its low half << 16;
     * the low-word sums carry into the high word. */
    const int32_t xh = x >> 16;
    const uint32_t xl = (uint32_t)x & 0xFFFFu;
    const int32_t mh = multiplier >> 16;
    const uint32_t ml = (uint32_t)multiplier & 0xFFFFu;
    const int32_t c1 = xh * (int32_t)ml;
    const int32_t c2 = (int32_t)(xl * (uint32_t)mh);
    uint32_t lo = xl * ml;
    uint32_t t = (uint32_t)c1 << 16;
    int32_t hi = xh * mh + (round_hi + neg) + (c1 >> 16) + (c2 >> 16);
    lo += t;
    hi += lo < t;
    t = (uint32_t)c2 << 16;
    lo += t;
    hi += lo < t;
    lo += round_lo;
    hi += lo < round_lo;
    return hi >> e_minus_1;
#else
    const int64_t round =
        (int64_t)(((uint64_t)(uint32_t)(round_hi + neg) << 32) | (uint64_t)round_lo);
    return (int32_t)((round + (int64_t)x * multiplier) >> 32) >> e_minus_1;
#endif
}

static inline int32_t mq_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    if (shift <= -2 && multiplier >= 0) {
        return mq_mbqm_fast(x, multiplier, (int32_t)1 << (-shift - 2), -shift - 1);
    }
    {
#if MQ_SINGLE_ROUNDING
        const int32_t total = 31 - shift;
        const int64_t round = (int64_t)1 << (total - 1);
        return (int32_t)(((int64_t)x * multiplier + round) >> total);
#else
        const int32_t left = shift > 0 ? shift : 0;
        const int32_t right = shift > 0 ? 0 : -shift;
        /* Callers guarantee x * 2^left fits in int32 (left shifts only occur for small |x|);
         * multiply in uint32 so the shift itself is never undefined for negative x. */
        return mq_rdbpot(mq_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
#endif
    }
}

static inline int32_t mq_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

#endif /* MQ_REQUANT_H */
