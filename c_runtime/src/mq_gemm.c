/* microq runtime: the row engine shared by the fully connected layer and the 1x1 convolution
 * (mq_gemm.h). One translation unit, so that its code is in flash once however many kernels
 * call it. The dot-product cores it builds on are in mq_dsp.h. */
#include "mq_gemm.h"

#include "mq_dsp.h"

#if MQ_DSP
/* Size in words of mq_rows_s8's int16 scratch (512 bytes of stack): two widened rows or a
 * widened filter pair up to this depth, one widened row up to twice it. Deeper rows use the
 * byte cores. */
#define MQ_WIDE_MAX_DEPTH 128

/* Two rows x0, x1 widened once, for every filter pair: per group of 4 bytes the words
 * (x0[0], x0[2]), (x0[1], x0[3]), (x1[0], x1[2]), (x1[1], x1[3]) with input_offset added, the
 * pairing SXTB16 / SXTB16-ror-8 gives the filter words. */
static inline void mq_widen_2rows(const int8_t *x0, const int8_t *x1, int32_t quads,
                                  int32_t input_offset, uint32_t *buf)
{
    const uint32_t off2 = mq_offset2(input_offset);
    int32_t q;
    for (q = 0; q < quads; ++q) {
        const uint32_t v0 = mq_read_s8x4(x0 + 4 * q);
        const uint32_t v1 = mq_read_s8x4(x1 + 4 * q);
        buf[4 * q] = __sxtab16(off2, v0);
        buf[4 * q + 1] = mq_sxtab16_ror8(off2, v0);
        buf[4 * q + 2] = __sxtab16(off2, v1);
        buf[4 * q + 3] = mq_sxtab16_ror8(off2, v1);
    }
}

/* mq_dot_2x2 over `quads` groups of 4 with the rows pre-widened by mq_widen_2rows: the inner
 * step is two filter loads, four SXTB16 and eight SMLAD for 16 MACs. */
static MQ_NOINLINE void mq_dot_2x2_wide(const uint32_t *xw, const int8_t *w0, int32_t w_step,
                                        int32_t quads, int32_t *acc)
{
    int32_t a00 = acc[0];
    int32_t a01 = acc[1];
    int32_t a10 = acc[2];
    int32_t a11 = acc[3];
    const uint32_t *end = xw + 4 * quads;
    while (xw != end) {
        uint32_t wv = mq_read_s8x4(w0);
        const uint32_t w0e = __sxtb16(wv);
        const uint32_t w0o = mq_sxtb16_ror8(wv);
        uint32_t w1e, w1o;
        wv = mq_read_s8x4(w0 + w_step);
        w1e = __sxtb16(wv);
        w1o = mq_sxtb16_ror8(wv);
        a00 = (int32_t)__smlad(xw[0], w0e, (uint32_t)a00);
        a00 = (int32_t)__smlad(xw[1], w0o, (uint32_t)a00);
        a01 = (int32_t)__smlad(xw[0], w1e, (uint32_t)a01);
        a01 = (int32_t)__smlad(xw[1], w1o, (uint32_t)a01);
        a10 = (int32_t)__smlad(xw[2], w0e, (uint32_t)a10);
        a10 = (int32_t)__smlad(xw[3], w0o, (uint32_t)a10);
        a11 = (int32_t)__smlad(xw[2], w1e, (uint32_t)a11);
        a11 = (int32_t)__smlad(xw[3], w1o, (uint32_t)a11);
        xw += 4;
        w0 += 4;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* One row widened once for every filter pair: per group of 4 bytes the words (x[0], x[2]),
 * (x[1], x[3]) with input_offset added. */
static inline void mq_widen_row(const int8_t *x, int32_t quads, int32_t input_offset, uint32_t *buf)
{
    const uint32_t off2 = mq_offset2(input_offset);
    int32_t q;
    for (q = 0; q < quads; ++q) {
        const uint32_t v = mq_read_s8x4(x + 4 * q);
        buf[2 * q] = __sxtab16(off2, v);
        buf[2 * q + 1] = mq_sxtab16_ror8(off2, v);
    }
}

/* mq_dot_1x2 over `quads` groups of 4 with the row pre-widened by mq_widen_row. */
static inline void mq_dot_1x2_wide(const uint32_t *xw, const int8_t *w0, const int8_t *w1,
                                   int32_t quads, int32_t *acc)
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    const uint32_t *end = xw + 2 * quads;
    while (xw != end) {
        const uint32_t xe = xw[0];
        const uint32_t xo = xw[1];
        uint32_t wv = mq_read_s8x4(w0);
        a0 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a0);
        a0 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a0);
        wv = mq_read_s8x4(w1);
        a1 = (int32_t)__smlad(xe, __sxtb16(wv), (uint32_t)a1);
        a1 = (int32_t)__smlad(xo, mq_sxtb16_ror8(wv), (uint32_t)a1);
        xw += 2;
        w0 += 4;
        w1 += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* A filter pair widened once for every row: per group of 4 bytes the words (w0[0], w0[2]),
 * (w0[1], w0[3]), (w1[0], w1[2]), (w1[1], w1[3]). sum[f] += the sum of filter f's widened
 * bytes (for the input-offset fold of mq_pair_rows). */
static inline void mq_widen_2filters(const int8_t *w0, const int8_t *w1, int32_t quads,
                                     uint32_t *buf, int32_t *sum)
{
    int32_t q;
    for (q = 0; q < quads; ++q) {
        const uint32_t v0 = mq_read_s8x4(w0 + 4 * q);
        const uint32_t v1 = mq_read_s8x4(w1 + 4 * q);
        buf[4 * q] = __sxtb16(v0);
        buf[4 * q + 1] = mq_sxtb16_ror8(v0);
        buf[4 * q + 2] = __sxtb16(v1);
        buf[4 * q + 3] = mq_sxtb16_ror8(v1);
        sum[0] = (int32_t)__smlad(buf[4 * q], 0x10001u, (uint32_t)sum[0]);
        sum[0] = (int32_t)__smlad(buf[4 * q + 1], 0x10001u, (uint32_t)sum[0]);
        sum[1] = (int32_t)__smlad(buf[4 * q + 2], 0x10001u, (uint32_t)sum[1]);
        sum[1] = (int32_t)__smlad(buf[4 * q + 3], 0x10001u, (uint32_t)sum[1]);
    }
}

/* One filter pair of mq_rows_s8 against row pairs, both channels on mq_mbqm_fast. */
typedef struct {
    const int8_t *x;    /* the first row of the first pair */
    const uint32_t *ww; /* the filter pair widened by mq_widen_2filters */
    int8_t *y;          /* its output: out + r * out_c + o */
    int32_t row_pairs;
    int32_t depth;  /* a multiple of 4 */
    int32_t x_step; /* bytes from one row to the next */
    int32_t out_c;
    int32_t b0; /* bias + input_offset * sum(w), per filter */
    int32_t b1;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
    mq_rq q0;
    mq_rq q1;
} mq_pair_job;

/* acc[0..3] (rows x0, x1 by filters 0, 1) += one group of 4 bytes. */
static inline void mq_pair_quad(const int8_t *x0, const int8_t *x1, const uint32_t *ww,
                                int32_t *acc)
{
    const uint32_t xv0 = mq_read_s8x4(x0);
    const uint32_t xv1 = mq_read_s8x4(x1);
    const uint32_t x0e = __sxtb16(xv0);
    const uint32_t x0o = mq_sxtb16_ror8(xv0);
    const uint32_t x1e = __sxtb16(xv1);
    const uint32_t x1o = mq_sxtb16_ror8(xv1);
    uint32_t wv = ww[0];
    acc[0] = (int32_t)__smlad(x0e, wv, (uint32_t)acc[0]);
    acc[2] = (int32_t)__smlad(x1e, wv, (uint32_t)acc[2]);
    wv = ww[1];
    acc[0] = (int32_t)__smlad(x0o, wv, (uint32_t)acc[0]);
    acc[2] = (int32_t)__smlad(x1o, wv, (uint32_t)acc[2]);
    wv = ww[2];
    acc[1] = (int32_t)__smlad(x0e, wv, (uint32_t)acc[1]);
    acc[3] = (int32_t)__smlad(x1e, wv, (uint32_t)acc[3]);
    wv = ww[3];
    acc[1] = (int32_t)__smlad(x0o, wv, (uint32_t)acc[1]);
    acc[3] = (int32_t)__smlad(x1o, wv, (uint32_t)acc[3]);
}

/* acc[0..1] (one row by the widened filter pair of mq_pair_rows, input offset folded into the
 * bias) += x . w: the odd last row of mq_pair_rows' caller. */
static MQ_NOINLINE void mq_pair_row1(const int8_t *x, const uint32_t *ww, int32_t depth,
                                     int32_t *acc)
{
    const int8_t *end = x + depth;
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    while (x != end) {
        const uint32_t xv = mq_read_s8x4(x);
        const uint32_t xe = __sxtb16(xv);
        const uint32_t xo = mq_sxtb16_ror8(xv);
        a0 = (int32_t)__smlad(xe, ww[0], (uint32_t)a0);
        a0 = (int32_t)__smlad(xo, ww[1], (uint32_t)a0);
        a1 = (int32_t)__smlad(xe, ww[2], (uint32_t)a1);
        a1 = (int32_t)__smlad(xo, ww[3], (uint32_t)a1);
        ww += 4;
        x += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* Filter pairs outermost: the pair's widening, bias and requantization set-up are done once and
 * every row pair then costs one 2x2 pass (two row loads widened by SXTB16, four widened filter
 * words, eight SMLAD per 16 MACs) and four requantizations. The input offset is folded into the
 * bias, sum_k (x[k] + input_offset) w[k] = sum_k x[k] w[k] + input_offset sum_k w[k], exact
 * as a 1x1 / fully connected row has no padding. */

static MQ_ALWAYS_INLINE void mq_pair_rows_at(const mq_pair_job *j, int32_t x_step)
{
    const int32_t depth = j->depth;
    const int32_t out_c = j->out_c;
    const int8_t *x = j->x;
    int8_t *y = j->y;
    int32_t r;
    for (r = 0; r < j->row_pairs; ++r) {
        const uint32_t *ww = j->ww;
        const int8_t *xp = x;
        const int8_t *end = x + depth;
        int32_t acc[4];
        acc[0] = j->b0;
        acc[1] = j->b1;
        acc[2] = j->b0;
        acc[3] = j->b1;
        const int8_t *xp1 = xp + x_step;
        while (xp != end) {
            mq_pair_quad(xp, xp1, ww, acc);
            ww += 4;
            xp += 4;
            xp1 += 4;
        }
        mq_pair_out(acc[0], acc[2], &j->q0, j->output_offset, j->act_min, j->act_max, y, out_c);
        mq_pair_out(acc[1], acc[3], &j->q1, j->output_offset, j->act_min, j->act_max, y + 1, out_c);
        x += 2 * x_step;
        y += 2 * out_c;
    }
}

/* mq_pair_rows_at for contiguous rows (x_step = depth: the end of a row is the start of the
 * next, one register less in the loop) and for rows x_step apart (strided 1x1 convolution). */
static MQ_NOINLINE void mq_pair_rows(const mq_pair_job *j)
{
    mq_pair_rows_at(j, j->depth);
}

static MQ_NOINLINE void mq_pair_rows_strided(const mq_pair_job *j)
{
    mq_pair_rows_at(j, j->x_step);
}
#endif /* MQ_DSP */

/* One row of mq_rows_s8 (below) against all filters, four at a time; extra is the row's
 * filter-offset term. */
static inline void mq_row_s8(const int8_t *x, int32_t depth, const int8_t *w, const int32_t *bias,
                             int32_t out_c, int32_t input_offset, int32_t extra,
                             int32_t output_offset, int32_t act_min, int32_t act_max,
                             const int32_t *multiplier, const int32_t *shift, int8_t *y,
                             uint32_t *wide)
{
    int32_t o = 0;
    int32_t j;
    /* On DSP cores four accumulators plus the widened operands exceed the register file, so
     * filters go in pairs there. */
    const int32_t block = MQ_DSP ? 2 : 4;
    (void)wide; /* the widened row is a DSP-core buffer */
    for (; o + block <= out_c; o += block) {
        int32_t acc[4];
        for (j = 0; j < block; ++j) {
            acc[j] = (bias ? bias[o + j] : 0) + extra;
        }
        if (MQ_DSP) {
#if MQ_DSP
            if (wide) {
                const int32_t quads = depth >> 2;
                int32_t k;
                const int8_t *w0 = w + o * depth;
                const int8_t *w1 = w0 + depth;
                if (o == 0) {
                    mq_widen_row(x, quads, input_offset, wide);
                }
                mq_dot_1x2_wide(wide, w0, w1, quads, acc);
                for (k = 4 * quads; k < depth; ++k) {
                    const int32_t xk = (int32_t)x[k] + input_offset;
                    acc[0] += xk * w0[k];
                    acc[1] += xk * w1[k];
                }
            } else
#endif
            {
                mq_dot_1x2(x, w + o * depth, w + (o + 1) * depth, depth, input_offset, acc);
            }
        } else {
            mq_dot_1x4(x, w + o * depth, depth, depth, input_offset, acc);
        }
        for (j = 0; j < block; ++j) {
            const mq_rq q = mq_rq_channel(multiplier[o + j], shift[o + j]);
            y[o + j] = mq_rq_out(&q, acc[j], output_offset, act_min, act_max);
        }
    }
    for (; o < out_c; ++o) {
        const mq_rq q = mq_rq_channel(multiplier[o], shift[o]);
        const int32_t acc =
            mq_dot_1x1(x, w + o * depth, depth, input_offset, (bias ? bias[o] : 0) + extra);
        y[o] = mq_rq_out(&q, acc, output_offset, act_min, act_max);
    }
}

#if !MQ_DSP
/* mq_rows_s8 without DSP and without a filter offset, its own function so that its registers are
 * not shared with the other paths (ARMv6-M spills otherwise). */
static MQ_NOINLINE void mq_rows_1x4(const int8_t *x, int32_t rows, int32_t depth, int32_t x_step,
                                    const int8_t *w, const int32_t *bias, int32_t out_c,
                                    int32_t input_offset, int32_t output_offset, int32_t act_min,
                                    int32_t act_max, const int32_t *multiplier,
                                    const int32_t *shift, int8_t *out)
{
    int32_t r, o, i;
    /* Blocks of four filters outermost, so that their bias and requantization set-up are
     * done once for every row (mq_dot_1x4 per row); the last out_c % 4 filters one by
     * one. */
    for (o = 0; o + 4 <= out_c; o += 4) {
        int32_t b[4];
        mq_rq q[4];
        int fast = 1;
        for (i = 0; i < 4; ++i) {
            b[i] = bias ? bias[o + i] : 0;
            q[i] = mq_rq_channel(multiplier[o + i], shift[o + i]);
            fast = fast && q[i].e_minus_1 >= 0;
        }
        for (r = 0; r < rows; ++r) {
            int8_t *y = out + r * out_c + o;
            int32_t acc[4];
            acc[0] = b[0];
            acc[1] = b[1];
            acc[2] = b[2];
            acc[3] = b[3];
            mq_dot_1x4(x + r * x_step, w + o * depth, depth, depth, input_offset, acc);
            if (fast) {
                y[0] = mq_rq_out_fast(&q[0], acc[0], output_offset, act_min, act_max);
                y[1] = mq_rq_out_fast(&q[1], acc[1], output_offset, act_min, act_max);
                y[2] = mq_rq_out_fast(&q[2], acc[2], output_offset, act_min, act_max);
                y[3] = mq_rq_out_fast(&q[3], acc[3], output_offset, act_min, act_max);
            } else {
                for (i = 0; i < 4; ++i) {
                    y[i] = mq_rq_out(&q[i], acc[i], output_offset, act_min, act_max);
                }
            }
        }
    }
    for (; o < out_c; ++o) {
        const mq_rq q = mq_rq_channel(multiplier[o], shift[o]);
        for (r = 0; r < rows; ++r) {
            const int32_t acc =
                mq_dot_1x1(x + r * x_step, w + o * depth, depth, input_offset, bias ? bias[o] : 0);
            out[r * out_c + o] = mq_rq_out(&q, acc, output_offset, act_min, act_max);
        }
    }
}
#endif

/* out[r, o] = clamp(output_offset + MBQM(bias[o] + sum_k (x[r, k] + input_offset) *
 * (w[o, k] + filter_offset))) for rows x [rows, depth] and filters w [out_c, depth]: the
 * fully connected layer and the 1x1 convolution. A non-zero filter_offset adds
 * filter_offset * sum_k (x[r, k] + input_offset) per row (exact). Two rows by two filters at a
 * time; odd tails use the narrower cores. On DSP cores a row pair is widened to int16 once
 * (mq_widen_2rows) and shared by all filter pairs. */
void mq_rows_s8(const int8_t *x, int32_t rows, int32_t depth, int32_t x_step, const int8_t *w,
                const int32_t *bias, int32_t out_c, int32_t input_offset, int32_t filter_offset,
                int32_t output_offset, int32_t act_min, int32_t act_max, const int32_t *multiplier,
                const int32_t *shift, int8_t *out)
{
    int32_t r, o, i;
#if MQ_DSP
    uint32_t wide[MQ_WIDE_MAX_DEPTH]; /* 2 rows (or 2 filters, or 1 row) x depth int16 */
    const int32_t quads = depth / 4;
    uint32_t *const row_wide = depth <= 2 * MQ_WIDE_MAX_DEPTH ? wide : 0;
#else
    uint32_t *const row_wide = 0;
#endif
#if MQ_DSP
    if (rows >= 2 && (depth & 3) == 0 && depth <= MQ_WIDE_MAX_DEPTH && filter_offset == 0) {
        /* Filter pairs of two channels on mq_mbqm_fast by every row pair (mq_pair_rows);
         * an odd last row, an odd last filter and other channels go to the cores below,
         * with the same writes as the general loop. */
        mq_pair_job j;
        j.x = x;
        j.ww = wide;
        j.row_pairs = rows / 2;
        j.depth = depth;
        j.x_step = x_step;
        j.out_c = out_c;
        j.output_offset = output_offset;
        j.act_min = act_min;
        j.act_max = act_max;
        for (o = 0; o < out_c; o += 2) {
            const int32_t nf = out_c - o >= 2 ? 2 : 1;
            int32_t sum[2] = {0, 0};
            j.q0 = mq_rq_channel(multiplier[o], shift[o]);
            j.q1 = mq_rq_channel(multiplier[o + nf - 1], shift[o + nf - 1]);
            if (nf == 2 && j.q0.e_minus_1 >= 0 && j.q1.e_minus_1 >= 0) {
                mq_widen_2filters(w + o * depth, w + (o + 1) * depth, quads, wide, sum);
                j.b0 = (bias ? bias[o] : 0) + input_offset * sum[0];
                j.b1 = (bias ? bias[o + 1] : 0) + input_offset * sum[1];
                j.y = out + o;
                if (x_step == depth) {
                    mq_pair_rows(&j);
                } else {
                    mq_pair_rows_strided(&j);
                }
                if (rows & 1) {
                    int32_t acc[2];
                    acc[0] = j.b0;
                    acc[1] = j.b1;
                    mq_pair_row1(x + (rows - 1) * x_step, wide, depth, acc);
                    out[(rows - 1) * out_c + o] =
                        mq_rq_out(&j.q0, acc[0], output_offset, act_min, act_max);
                    out[(rows - 1) * out_c + o + 1] =
                        mq_rq_out(&j.q1, acc[1], output_offset, act_min, act_max);
                }
                continue;
            }
            for (r = 0; r < rows; ++r) {
                for (i = 0; i < nf; ++i) {
                    const mq_rq *q = i == 0 ? &j.q0 : &j.q1;
                    const int32_t acc = mq_dot_1x1(x + r * x_step, w + (o + i) * depth, depth,
                                                   input_offset, bias ? bias[o + i] : 0);
                    out[r * out_c + o + i] = mq_rq_out(q, acc, output_offset, act_min, act_max);
                }
            }
        }
        return;
    }
#endif
#if !MQ_DSP
    if (filter_offset == 0) {
        mq_rows_1x4(x, rows, depth, x_step, w, bias, out_c, input_offset, output_offset, act_min,
                    act_max, multiplier, shift, out);
        return;
    }
#endif
    for (r = 0; r < rows; r += 2) {
        const int8_t *x0 = x + r * x_step;
        const int32_t nr = rows - r >= 2 ? 2 : 1;
        const int8_t *x1 = x0 + (nr - 1) * x_step;
        int32_t extra[2] = {0, 0};
        if (!MQ_DSP || nr == 1 || out_c < 2) {
            /* Single rows, and every row on cores without DSP (whose few registers cannot
             * hold a 2x2 block), use the 1x4 core. */
            for (i = 0; i < nr; ++i) {
                const int8_t *xi = x0 + i * x_step;
                mq_row_s8(xi, depth, w, bias, out_c, input_offset,
                          filter_offset != 0 ? filter_offset * mq_dot_sum(xi, depth, input_offset)
                                             : 0,
                          output_offset, act_min, act_max, multiplier, shift, out + (r + i) * out_c,
                          row_wide);
            }
            continue;
        }
#if MQ_DSP
        const int use_wide = nr == 2 && depth <= MQ_WIDE_MAX_DEPTH && out_c >= 2;
        if (use_wide) {
            mq_widen_2rows(x0, x1, quads, input_offset, wide);
        }
#endif
        if (filter_offset != 0) {
            for (i = 0; i < nr; ++i) {
                extra[i] = filter_offset * mq_dot_sum(x0 + i * x_step, depth, input_offset);
            }
        }
        for (o = 0; o < out_c; o += 2) {
            const int32_t nf = out_c - o >= 2 ? 2 : 1;
            const int8_t *w0 = w + o * depth;
            const int8_t *w1 = w0 + (nf - 1) * depth;
            const int32_t b0 = bias ? bias[o] : 0;
            const int32_t b1 = bias ? bias[o + nf - 1] : 0;
            mq_rq q[2];
            int32_t acc[4];
            acc[0] = b0 + extra[0];
            acc[1] = b1 + extra[0];
            acc[2] = b0 + extra[1];
            acc[3] = b1 + extra[1];
            if (nr == 2 && nf == 2) {
#if MQ_DSP
                if (use_wide) {
                    int32_t k;
                    mq_dot_2x2_wide(wide, w0, depth, quads, acc);
                    for (k = 4 * quads; k < depth; ++k) {
                        const int32_t xk0 = (int32_t)x0[k] + input_offset;
                        const int32_t xk1 = (int32_t)x1[k] + input_offset;
                        acc[0] += xk0 * w0[k];
                        acc[1] += xk0 * w1[k];
                        acc[2] += xk1 * w0[k];
                        acc[3] += xk1 * w1[k];
                    }
                } else
#endif
                {
                    mq_dot_2x2(x0, x1, w0, w1, depth, input_offset, acc);
                }
            } else if (nf == 2) {
                mq_dot_1x2(x0, w0, w1, depth, input_offset, acc);
            } else {
                acc[0] = mq_dot_1x1(x0, w0, depth, input_offset, acc[0]);
                acc[2] = mq_dot_1x1(x1, w0, depth, input_offset, acc[2]);
            }
            q[0] = mq_rq_channel(multiplier[o], shift[o]);
            q[1] = mq_rq_channel(multiplier[o + nf - 1], shift[o + nf - 1]);
            for (i = 0; i < nr * 2; i += 2) {
                int8_t *y = out + (r + i / 2) * out_c + o;
                int32_t f;
                for (f = 0; f < nf; ++f) {
                    y[f] = mq_rq_out(&q[f], acc[i + f], output_offset, act_min, act_max);
                }
            }
        }
    }
}
