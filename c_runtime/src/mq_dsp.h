/* microq runtime: int8 dot-product cores shared by conv and fully connected (internal).
 *
 * Every core adds sum_k (x[k] + input_offset) * w[k] to its accumulators. Integer sums are
 * exact, so the order of the terms (pairs, blocks of 4) never changes a result: the DSP and
 * the portable cores are bit-exact with each other and with the numpy reference.
 *
 * MQ_DSP selects the Armv7E-M / Armv8-M DSP-extension path (Cortex-M4, M7, M33, M55): four int8
 * values are read with one 32-bit load, widened to two int16 pairs with SXTAB16 (the input
 * offset packed in both halves is added at the same time), and multiplied-accumulated two at a
 * time with SMLAD. Define MQ_NO_DSP=1 to build the portable path on those cores. The 2x2 cores
 * (two input rows against two filters) reuse each widened word twice, as CMSIS-NN's mat-mult
 * kernels do, without an im2col buffer.
 *
 * Range: x + input_offset and w fit in int16 (|.| <= 255), as SMLAD requires; each SMLAD adds
 * at most 2 * 32640 < 2^16, and the accumulator bound of the kernels (see mq_conv.c) holds.
 */
#ifndef MQ_DSP_H
#define MQ_DSP_H

#include <stdint.h>

#include "mq_requant.h"

#if defined(__ARM_FEATURE_DSP) && !defined(MQ_NO_DSP)
#define MQ_DSP 1
#include <arm_acle.h>
#else
#define MQ_DSP 0
#endif

/* Keeps a hot loop out of its (large) caller, so that the register allocator sees only the
 * loop: on ARMv6-M, inlined into a kernel, the 1x4 core's bases spill to the stack. */
#if defined(__GNUC__)
#define MQ_NOINLINE __attribute__((noinline, unused))
#else
#define MQ_NOINLINE
#endif

/* A body instantiated at each call with its constant arguments folded (a shared kernel loop
 * whose order or layout flags must cost nothing in the plain call). */
#if defined(__GNUC__)
#define MQ_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define MQ_ALWAYS_INLINE inline
#endif

#if MQ_DSP

/* Unaligned 32-bit load (LDR allows it on v7-M/v8-M mainline); __builtin_memcpy stays a single
 * load even under -ffreestanding, where plain memcpy would become a call. */
static inline uint32_t mq_read_s8x4(const int8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* (x1, x3) + offset2: SXTAB16 with the rotation folded in (gcc 12 has no __ror to fold). */
static inline uint32_t mq_sxtab16_ror8(uint32_t offset2, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(offset2), "r"(x));
    return r;
}

static inline uint32_t mq_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* input_offset in both 16-bit halves: SXTAB16 adds it to each widened byte. */
static inline uint32_t mq_offset2(int32_t input_offset)
{
    return ((uint32_t)input_offset & 0xFFFFu) * 0x10001u;
}

#endif /* MQ_DSP */

/* Per-channel requantization constants, set up once per channel and reused for every output
 * of it (mq_mbqm_fast in mq_requant.h: one SMLAL and one shift on the M4). */
typedef struct {
    int32_t multiplier;
    int32_t shift;
    int32_t round_hi;  /* 2^(e-2) with e = -shift */
    int32_t e_minus_1; /* e - 1, or -1 where mq_mbqm's general path applies */
} mq_rq;

static inline mq_rq mq_rq_channel(int32_t multiplier, int32_t shift)
{
    mq_rq q;
    const int fast = shift <= -2 && shift >= -31 && multiplier >= 0;
    q.multiplier = multiplier;
    q.shift = shift;
    q.round_hi = fast ? (int32_t)1 << (-shift - 2) : 0;
    q.e_minus_1 = fast ? -shift - 1 : -1;
    return q;
}

static inline int32_t mq_rq_apply(const mq_rq *q, int32_t x)
{
    return q->e_minus_1 >= 0 ? mq_mbqm_fast(x, q->multiplier, q->round_hi, q->e_minus_1)
                             : mq_mbqm(x, q->multiplier, q->shift);
}

static inline int8_t mq_rq_out(const mq_rq *q, int32_t acc, int32_t output_offset, int32_t act_min,
                               int32_t act_max)
{
    return (int8_t)mq_clamp(mq_rq_apply(q, acc) + output_offset, act_min, act_max);
}

/* mq_rq_out for a channel known to take mq_mbqm_fast (e_minus_1 >= 0). */
static inline int8_t mq_rq_out_fast(const mq_rq *q, int32_t acc, int32_t output_offset,
                                    int32_t act_min, int32_t act_max)
{
    return (int8_t)mq_clamp(mq_mbqm_fast(acc, q->multiplier, q->round_hi, q->e_minus_1) +
                                output_offset,
                            act_min, act_max);
}

/* sum_k (x[k] + input_offset). */
static inline int32_t mq_dot_sum(const int8_t *x, int32_t len, int32_t input_offset)
{
    int32_t s = 0;
    int32_t k;
    for (k = 0; k < len; ++k) {
        s += x[k];
    }
    return s + len * input_offset;
}

/* acc + x.w, one row against one filter. */
static inline int32_t mq_dot_1x1(const int8_t *x, const int8_t *w, int32_t len,
                                 int32_t input_offset, int32_t acc)
{
    int32_t k = 0;
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
    for (; k + 4 <= len; k += 4) {
        const uint32_t xv = mq_read_s8x4(x + k);
        const uint32_t wv = mq_read_s8x4(w + k);
        acc = (int32_t)__smlad(__sxtab16(off2, xv), __sxtb16(wv), (uint32_t)acc);
        acc = (int32_t)__smlad(mq_sxtab16_ror8(off2, xv), mq_sxtb16_ror8(wv), (uint32_t)acc);
    }
#else
    for (; k + 4 <= len; k += 4) {
        acc += ((int32_t)x[k] + input_offset) * w[k];
        acc += ((int32_t)x[k + 1] + input_offset) * w[k + 1];
        acc += ((int32_t)x[k + 2] + input_offset) * w[k + 2];
        acc += ((int32_t)x[k + 3] + input_offset) * w[k + 3];
    }
#endif
    for (; k < len; ++k) {
        acc += ((int32_t)x[k] + input_offset) * w[k];
    }
    return acc;
}

/* acc[0] += x.w0, acc[1] += x.w1: one row against two filters. */
static inline void mq_dot_1x2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t len,
                              int32_t input_offset, int32_t *acc)
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t k = 0;
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
    for (; k + 4 <= len; k += 4) {
        const uint32_t xv = mq_read_s8x4(x + k);
        const uint32_t xe = __sxtab16(off2, xv);
        const uint32_t xo = mq_sxtab16_ror8(off2, xv);
        uint32_t wv = mq_read_s8x4(w0 + k);
        a0 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a0);
        a0 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a0);
        wv = mq_read_s8x4(w1 + k);
        a1 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a1);
        a1 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a1);
    }
#endif
    for (; k < len; ++k) {
        const int32_t xk = (int32_t)x[k] + input_offset;
        a0 += xk * w0[k];
        a1 += xk * w1[k];
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* acc[j] += x.w_j for the four filters w_j = w + j * w_step: one row against four filters, each
 * input load (and its offset add) shared by four products. The portable loop runs a negative
 * index up to zero, so ARMv6-M needs no compare and keeps every base in a register. */
static MQ_NOINLINE void mq_dot_1x4(const int8_t *x, const int8_t *w, int32_t w_step, int32_t len,
                                   int32_t input_offset, int32_t *acc)
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
    const int8_t *w1 = w + w_step;
    const int8_t *w2 = w1 + w_step;
    const int8_t *w3 = w2 + w_step;
    const int8_t *end = x + (len & ~3);
    int32_t k;
    while (x != end) {
        const uint32_t xv = mq_read_s8x4(x);
        const uint32_t xe = __sxtab16(off2, xv);
        const uint32_t xo = mq_sxtab16_ror8(off2, xv);
        uint32_t wv = mq_read_s8x4(w);
        a0 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a0);
        a0 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a0);
        wv = mq_read_s8x4(w1);
        a1 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a1);
        a1 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a1);
        wv = mq_read_s8x4(w2);
        a2 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a2);
        a2 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a2);
        wv = mq_read_s8x4(w3);
        a3 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a3);
        a3 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a3);
        x += 4;
        w += 4;
        w1 += 4;
        w2 += 4;
        w3 += 4;
    }
    for (k = 0; k < (len & 3); ++k) {
        const int32_t xk = (int32_t)x[k] + input_offset;
        a0 += xk * w[k];
        a1 += xk * w1[k];
        a2 += xk * w2[k];
        a3 += xk * w3[k];
    }
#else
    const int8_t *w0 = w + len;
    const int8_t *w1 = w0 + w_step;
    const int8_t *w2 = w1 + w_step;
    const int8_t *w3 = w2 + w_step;
    int32_t k;
    x += len;
    for (k = -len; k != 0; ++k) {
        const int32_t xk = (int32_t)x[k] + input_offset;
        a0 += xk * w0[k];
        a1 += xk * w1[k];
        a2 += xk * w2[k];
        a3 += xk * w3[k];
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc[0] += x0.w0, acc[1] += x0.w1, acc[2] += x1.w0, acc[3] += x1.w1: two rows against two
 * filters, each load used twice. */
static inline void mq_dot_2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0,
                              const int8_t *w1, int32_t len, int32_t input_offset, int32_t *acc)
{
    int32_t a00 = acc[0];
    int32_t a01 = acc[1];
    int32_t a10 = acc[2];
    int32_t a11 = acc[3];
    int32_t k = 0;
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
    for (; k + 4 <= len; k += 4) {
        const uint32_t wv0 = mq_read_s8x4(w0 + k);
        const uint32_t wv1 = mq_read_s8x4(w1 + k);
        const uint32_t w0e = __sxtb16(wv0);
        const uint32_t w0o = mq_sxtb16_ror8(wv0);
        const uint32_t w1e = __sxtb16(wv1);
        const uint32_t w1o = mq_sxtb16_ror8(wv1);
        uint32_t xv = mq_read_s8x4(x0 + k);
        uint32_t xe = __sxtab16(off2, xv);
        uint32_t xo = mq_sxtab16_ror8(off2, xv);
        a00 = (int32_t)__smlad(xe, w0e, (uint32_t)a00);
        a00 = (int32_t)__smlad(xo, w0o, (uint32_t)a00);
        a01 = (int32_t)__smlad(xe, w1e, (uint32_t)a01);
        a01 = (int32_t)__smlad(xo, w1o, (uint32_t)a01);
        xv = mq_read_s8x4(x1 + k);
        xe = __sxtab16(off2, xv);
        xo = mq_sxtab16_ror8(off2, xv);
        a10 = (int32_t)__smlad(xe, w0e, (uint32_t)a10);
        a10 = (int32_t)__smlad(xo, w0o, (uint32_t)a10);
        a11 = (int32_t)__smlad(xe, w1e, (uint32_t)a11);
        a11 = (int32_t)__smlad(xo, w1o, (uint32_t)a11);
    }
#endif
    for (; k < len; ++k) {
        const int32_t wk0 = w0[k];
        const int32_t wk1 = w1[k];
        const int32_t xk0 = (int32_t)x0[k] + input_offset;
        const int32_t xk1 = (int32_t)x1[k] + input_offset;
        a00 += xk0 * wk0;
        a01 += xk0 * wk1;
        a10 += xk1 * wk0;
        a11 += xk1 * wk1;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

#if MQ_DSP
/* y[0] and y[step]: two rows of one channel, its constants loaded once. */
static inline void mq_pair_out(int32_t acc0, int32_t acc1, const mq_rq *q, int32_t output_offset,
                               int32_t act_min, int32_t act_max, int8_t *y, int32_t step)
{
    const int32_t multiplier = q->multiplier;
    const int32_t round_hi = q->round_hi;
    const int32_t e_minus_1 = q->e_minus_1;
    y[0] = (int8_t)mq_clamp(mq_mbqm_fast(acc0, multiplier, round_hi, e_minus_1) + output_offset,
                            act_min, act_max);
    y[step] = (int8_t)mq_clamp(mq_mbqm_fast(acc1, multiplier, round_hi, e_minus_1) + output_offset,
                               act_min, act_max);
}

#endif /* MQ_DSP */

/* The row engine (mq_rows_s8: fully connected and 1x1 convolution) is one translation unit,
 * mq_gemm.c, shared by mq_conv.c and mq_fc.c (mq_gemm.h). */

#endif /* MQ_DSP_H */
