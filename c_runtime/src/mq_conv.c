/* microq runtime: int8 convolution (conv2d incl. grouped / 1-D / 1x1, depthwise).
 *
 * Accumulator range: every term is (x + input_offset) * w with x + input_offset in [-255, 255]
 * (x in [-128, 127], input_offset in [-127, 128]) and w in [-128, 127], so |term| <= 32640 < 2^15.
 * An int32 accumulator therefore holds at least 2^16 terms plus a bias of realistic size; a
 * depth KH * KW * C_in / groups of 65536 (e.g. 3x3x7281) is far beyond any MCU layer. Weights
 * from microq are symmetric (|w| <= 127), which only widens the margin.
 */
#include "mq_conv.h"
#include "mq_dsp.h"
#include "mq_gemm.h"
#include "mq_requant.h"

/* Kernel taps k in [*k_start, *k_end) with 0 <= origin + k * dilation < size. Computed once per
 * output row/column so the inner loops never test bounds. */
static void mq_tap_range(int32_t origin, int32_t dilation, int32_t size, int32_t k_size,
                         int32_t *k_start, int32_t *k_end)
{
    int32_t start = 0;
    int32_t end = k_size;
    if (origin < 0) {
        start = (-origin + dilation - 1) / dilation;
    }
    if (origin + (k_size - 1) * dilation >= size) {
        end = size - origin > 0 ? (size - origin + dilation - 1) / dilation : 0;
    }
    *k_start = start;
    *k_end = end > start ? end : start;
}

static int mq_dims_positive(const mq_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int mq_conv_params_ok(const mq_conv_params *p, const mq_per_channel_quant *q)
{
    return p->stride_h > 0 && p->stride_w > 0 && p->dilation_h > 0 && p->dilation_w > 0 &&
           p->pad_top >= 0 && p->pad_left >= 0 && p->act_min >= -128 && p->act_min <= p->act_max &&
           p->act_max <= 127 && q->multiplier && q->shift;
}

/* The taps of one output pixel that lie inside the input: rows x cols taps, each a run of `run`
 * contiguous channels. x and w point at the first valid tap. */
typedef struct {
    const int8_t *x;
    const int8_t *w;
    int32_t rows;
    int32_t cols;
    int32_t run;
    int32_t x_row; /* input bytes between tap rows */
    int32_t x_col; /* input bytes between tap columns */
    int32_t w_row; /* filter bytes between tap rows */
} mq_patch;

/* acc += the patch of pixels (x, x + x_step) against filters (w, w + w_step, ...); acc as in
 * mq_dot_2x2, or mq_dot_1x4 for one pixel against four filters. pixels is 1 or 2, filters 1, 2
 * or 4 (with one pixel). */
static void mq_patch_dot(const mq_patch *pt, int32_t pixels, int32_t x_step, int32_t filters,
                         int32_t w_step, int32_t input_offset, int32_t *acc)
{
    int32_t r, c;
    for (r = 0; r < pt->rows; ++r) {
        const int8_t *x = pt->x + r * pt->x_row;
        const int8_t *w = pt->w + r * pt->w_row;
        for (c = 0; c < pt->cols; ++c) {
            if (filters == 4) {
                mq_dot_1x4(x, w, w_step, pt->run, input_offset, acc);
            } else if (pixels == 2 && filters == 2) {
                mq_dot_2x2(x, x + x_step, w, w + w_step, pt->run, input_offset, acc);
            } else if (filters == 2) {
                mq_dot_1x2(x, w, w + w_step, pt->run, input_offset, acc);
            } else {
                acc[0] = mq_dot_1x1(x, w, pt->run, input_offset, acc[0]);
                if (pixels == 2) {
                    acc[2] = mq_dot_1x1(x + x_step, w, pt->run, input_offset, acc[2]);
                }
            }
            x += pt->x_col;
            w += pt->run;
        }
    }
}

/* mq_patch_dot for two pixels against two filters, out of line so that its loop keeps the
 * operands in registers rather than sharing them with the kernel's bookkeeping. The bases
 * stay fixed and a negative index runs up to zero: if a base spills, it is only reloaded. */
static MQ_NOINLINE void mq_patch_2x2(const int8_t *x, int32_t x_step, const int8_t *w,
                                     int32_t w_step, int32_t rows, int32_t run, int32_t x_row,
                                     int32_t w_row, int32_t input_offset, int32_t *acc)
{
    int32_t r;
#if MQ_DSP
    if ((run & 3) == 0) {
        const uint32_t off2 = mq_offset2(input_offset);
        int32_t a00 = acc[0];
        int32_t a01 = acc[1];
        int32_t a10 = acc[2];
        int32_t a11 = acc[3];
        for (r = 0; r < rows; ++r) {
            const int8_t *x0 = x + run;
            const int8_t *x1 = x0 + x_step;
            const int8_t *w0 = w + run;
            const int8_t *w1 = w0 + w_step;
            int32_t k;
            for (k = -run; k != 0; k += 4) {
                uint32_t wv = mq_read_s8x4(w0 + k);
                const uint32_t w0e = __sxtb16(wv);
                const uint32_t w0o = mq_sxtb16_ror8(wv);
                uint32_t w1e, w1o;
                uint32_t xv = mq_read_s8x4(x0 + k);
                uint32_t xe = __sxtab16(off2, xv);
                uint32_t xo = mq_sxtab16_ror8(off2, xv);
                a00 = (int32_t)__smlad(xe, w0e, (uint32_t)a00);
                a00 = (int32_t)__smlad(xo, w0o, (uint32_t)a00);
                wv = mq_read_s8x4(w1 + k);
                w1e = __sxtb16(wv);
                w1o = mq_sxtb16_ror8(wv);
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
            x += x_row;
            w += w_row;
        }
        acc[0] = a00;
        acc[1] = a01;
        acc[2] = a10;
        acc[3] = a11;
        return;
    }
#endif
    for (r = 0; r < rows; ++r) {
        mq_dot_2x2(x, x + x_step, w, w + w_step, run, input_offset, acc);
        x += x_row;
        w += w_row;
    }
}

/* Every other convolution, with arguments checked by mq_conv2d_s8; out of line, so that its
 * frame stays off the 1x1 path's stack. */
static MQ_NOINLINE void mq_conv_general(const mq_conv_params *params,
                                        const mq_per_channel_quant *quant,
                                        const mq_dims *input_dims, const int8_t *input,
                                        const mq_dims *filter_dims, const int8_t *filter,
                                        const int32_t *bias, const mq_dims *output_dims,
                                        int8_t *output)
{
    int32_t batch, groups, f_c, oc_per_group, in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c;
    int32_t n, oy, ox, oc, filter_size;
    int32_t pixels = 1;
    int32_t filters = 1;

    batch = input_dims->n;
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    out_c = filter_dims->n;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    f_c = filter_dims->c;
    out_h = output_dims->h;
    out_w = output_dims->w;
    groups = in_c / f_c;
    oc_per_group = out_c / groups;

    filter_size = k_h * k_w * f_c;
    for (n = 0; n < batch; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            mq_tap_range(y0, params->dilation_h, in_h, k_h, &ky_start, &ky_end);
            for (ox = 0; ox < out_w; ox += pixels) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end, kx_start1, kx_end1;
                mq_patch pt;
                mq_tap_range(x0, params->dilation_w, in_w, k_w, &kx_start, &kx_end);
                /* Two neighbouring pixels share one pass when their valid taps are the same. */
                pixels = 1;
                if (MQ_DSP && ox + 1 < out_w) {
                    mq_tap_range(x0 + params->stride_w, params->dilation_w, in_w, k_w, &kx_start1,
                                 &kx_end1);
                    pixels = kx_start1 == kx_start && kx_end1 == kx_end ? 2 : 1;
                }
                pt.rows = ky_end - ky_start;
                pt.cols = kx_end - kx_start;
                pt.run = f_c;
                pt.x_row = params->dilation_h * in_w * in_c;
                pt.x_col = params->dilation_w * in_c;
                pt.w_row = k_w * f_c;
                if (params->dilation_w == 1 && groups == 1) {
                    /* A tap row is one contiguous run in both input and filter (NHWC, OHWI). */
                    pt.run = pt.cols * f_c;
                    pt.cols = pt.cols > 0 ? 1 : 0;
                }
                for (oc = 0; oc < out_c; oc += filters) {
                    const int32_t g = oc / oc_per_group;
                    int32_t acc[4];
                    mq_rq q[4];
                    int32_t i, f;
                    /* Without DSP a pixel takes four filters at a time (mq_dot_1x4); with DSP
                     * two pixels take two filters (mq_dot_2x2). */
                    if (!MQ_DSP && oc % oc_per_group + 4 <= oc_per_group) {
                        filters = 4;
                    } else {
                        filters = (oc + 1) % oc_per_group != 0 && oc + 1 < out_c ? 2 : 1;
                    }
                    acc[0] = bias ? bias[oc] : 0;
                    acc[1] = bias && filters >= 2 ? bias[oc + 1] : 0;
                    acc[2] = filters == 4 ? (bias ? bias[oc + 2] : 0) : acc[0];
                    acc[3] = filters == 4 ? (bias ? bias[oc + 3] : 0) : acc[1];
                    if (pt.rows > 0 && pt.cols > 0) {
                        pt.x = in_batch +
                               ((y0 + ky_start * params->dilation_h) * in_w + x0 +
                                kx_start * params->dilation_w) *
                                   in_c +
                               g * f_c;
                        pt.w = filter + oc * filter_size + (ky_start * k_w + kx_start) * f_c;
                        if (pixels == 2 && filters == 2 && pt.cols == 1) {
                            mq_patch_2x2(pt.x, params->stride_w * in_c, pt.w, filter_size, pt.rows,
                                         pt.run, pt.x_row, pt.w_row, params->input_offset, acc);
                        } else {
                            mq_patch_dot(&pt, pixels, params->stride_w * in_c, filters, filter_size,
                                         params->input_offset, acc);
                        }
                    }
                    for (f = 0; f < filters; ++f) {
                        q[f] = mq_rq_channel(quant->multiplier[oc + f], quant->shift[oc + f]);
                    }
                    for (i = 0; i < pixels; ++i) {
                        int8_t *y = output + (((n * out_h + oy) * out_w) + ox + i) * out_c + oc;
                        for (f = 0; f < filters; ++f) {
                            y[f] = mq_rq_out(&q[f], acc[2 * i + f], params->output_offset,
                                             params->act_min, params->act_max);
                        }
                    }
                }
            }
        }
    }
}

/* Convolutions with at most MQ_FEW_CHANNELS input channels and a receptive field of at most
 * MQ_COL_MAX taps (KH * KW * C_in) take mq_conv_few_channels. */
#define MQ_FEW_CHANNELS 4
#define MQ_COL_MAX 64
/* Output pixels per pass of mq_conv_few_channels' DSP core. */
#define MQ_COL_PIXELS 4

/* gcc turns the short copy and fill loops of mq_gather_col into memcpy / memset calls (loop
 * distribution), which cost more than the 1-12 byte runs they move. */
#if defined(__GNUC__) && !defined(__clang__)
#define MQ_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define MQ_NO_LIBCALLS
#endif

/* d[0..n) = s[0..n); four bytes at a time on DSP cores (unaligned word accesses). */
static inline void mq_copy_s8(int8_t *d, const int8_t *s, int32_t n)
{
    int32_t i = 0;
#if MQ_DSP
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = mq_read_s8x4(s + i);
        __builtin_memcpy(d + i, &v, 4);
    }
#endif
    for (; i < n; ++i) {
        d[i] = s[i];
    }
}

static inline void mq_fill_s8(int8_t *d, int8_t v, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        d[i] = v;
    }
}

/* mq_gather_col for a pixel whose taps are all inside the input and tap columns contiguous
 * (dilation_w 1): `rows` runs of `run` bytes, `stride` bytes apart, then `pad` up to k4. */
static MQ_NOINLINE MQ_NO_LIBCALLS void mq_gather_inside(const int8_t *src, int32_t rows,
                                                        int32_t run, int32_t stride, int32_t k4,
                                                        int8_t pad, int8_t *col)
{
    int8_t *c = col;
    int32_t r;
    for (r = 0; r < rows; ++r) {
        mq_copy_s8(c, src, run);
        src += stride;
        c += run;
    }
    mq_fill_s8(c, pad, k4 - rows * run);
}

/* The receptive field of the output pixel whose top-left tap is (y0, x0), padding included, as
 * one contiguous column of KH * KW * C_in bytes in OHWI tap order, filled up to k4 bytes. Taps
 * outside the input get `pad` = -input_offset, so that x + input_offset is 0 there: the
 * reference skips those taps, and a zero term leaves the same sum. */
static MQ_NOINLINE MQ_NO_LIBCALLS void mq_gather_col(const int8_t *in_batch, const mq_dims *in,
                                                     const mq_dims *f, const mq_conv_params *params,
                                                     int32_t y0, int32_t x0, int32_t k4, int8_t pad,
                                                     int8_t *col)
{
    const int32_t in_c = in->c;
    const int32_t k_w = f->w;
    const int32_t run = k_w * in_c;
    const int32_t row_bytes = in->w * in_c;
    const int32_t dil_h = params->dilation_h;
    const int32_t dil_w = params->dilation_w;
    int32_t kx_start, kx_end, ky, kx;
    int8_t *c = col;
    mq_tap_range(x0, dil_w, in->w, k_w, &kx_start, &kx_end);
    if (kx_start == 0 && kx_end == k_w && dil_w == 1) {
        /* Every tap column inside: a tap row is one run of the input row. */
        for (ky = 0; ky < f->h; ++ky) {
            const int32_t iy = y0 + ky * dil_h;
            if (iy >= 0 && iy < in->h) {
                mq_copy_s8(c, in_batch + iy * row_bytes + x0 * in_c, run);
            } else {
                mq_fill_s8(c, pad, run);
            }
            c += run;
        }
    } else {
        for (ky = 0; ky < f->h; ++ky) {
            const int32_t iy = y0 + ky * dil_h;
            if (iy < 0 || iy >= in->h) {
                mq_fill_s8(c, pad, run);
            } else {
                const int8_t *r = in_batch + iy * row_bytes;
                mq_fill_s8(c, pad, kx_start * in_c);
                if (dil_w == 1) {
                    mq_copy_s8(c + kx_start * in_c, r + (x0 + kx_start) * in_c,
                               (kx_end - kx_start) * in_c);
                } else {
                    for (kx = kx_start; kx < kx_end; ++kx) {
                        mq_copy_s8(c + kx * in_c, r + (x0 + kx * dil_w) * in_c, in_c);
                    }
                }
                mq_fill_s8(c + kx_end * in_c, pad, run - kx_end * in_c);
            }
            c += run;
        }
    }
    mq_fill_s8(c, pad, k4 - f->h * run);
}

/* The filters of mq_conv_few_channels against gathered columns. */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t out_c;
    int32_t depth; /* KH * KW * C_in */
    int32_t k4;    /* depth rounded up to a multiple of 4: the columns' length */
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} mq_cols_job;

/* y[0..out_c) = the outputs of one gathered column (odd pixels of mq_conv_few_channels): four
 * filters at a time without DSP (mq_dot_1x4), two with it (mq_dot_1x2). */
static void mq_col_1(const mq_cols_job *j, const int8_t *col, int8_t *y)
{
    const int32_t depth = j->depth;
    const int32_t block = MQ_DSP ? 2 : 4;
    int32_t oc = 0;
    int32_t f;
    for (; oc + block <= j->out_c; oc += block) {
        const int8_t *w = j->filter + oc * depth;
        int32_t acc[4];
        for (f = 0; f < block; ++f) {
            acc[f] = j->bias ? j->bias[oc + f] : 0;
        }
        if (MQ_DSP) {
            mq_dot_1x2(col, w, w + depth, depth, j->input_offset, acc);
        } else {
            mq_dot_1x4(col, w, depth, depth, j->input_offset, acc);
        }
        for (f = 0; f < block; ++f) {
            const mq_rq q = mq_rq_channel(j->multiplier[oc + f], j->shift[oc + f]);
            y[oc + f] = mq_rq_out(&q, acc[f], j->output_offset, j->act_min, j->act_max);
        }
    }
    for (; oc < j->out_c; ++oc) {
        const mq_rq q = mq_rq_channel(j->multiplier[oc], j->shift[oc]);
        y[oc] = mq_rq_out(&q,
                          mq_dot_1x1(col, j->filter + oc * depth, depth, j->input_offset,
                                     j->bias ? j->bias[oc] : 0),
                          j->output_offset, j->act_min, j->act_max);
    }
}

#if MQ_DSP
/* Four columns (k4 bytes apart) widened once for every filter: per group of 4 taps and for
 * column p = 0..3 the words (x_p[0], x_p[2]), (x_p[1], x_p[3]) with input_offset added (padded
 * taps become 0), at buf[8 q + 2 p], the pairing SXTB16 / SXTB16-ror-8 gives a filter word. */
static void mq_widen_4cols(const int8_t *cols, int32_t k4, int32_t input_offset, uint32_t *buf)
{
    const uint32_t off2 = mq_offset2(input_offset);
    int32_t p, q;
    for (p = 0; p < MQ_COL_PIXELS; ++p) {
        const int8_t *c = cols + p * k4;
        uint32_t *b = buf + 2 * p;
        for (q = 0; q < k4; q += 4) {
            const uint32_t v = mq_read_s8x4(c + q);
            b[0] = __sxtab16(off2, v);
            b[1] = mq_sxtab16_ror8(off2, v);
            b += 2 * MQ_COL_PIXELS;
        }
    }
}

/* acc[p] += sum over the taps [xw, end) of column p (p = 0..3, widened by mq_widen_4cols)
 * times filter w. Per group of 4 taps: one filter load, two SXTB16, two LDM of four widened
 * words and eight SMLAD for 16 MACs (inline assembly: gcc loads the eight words one by one and
 * spills). end > xw. */
static inline void mq_dot_4cols(const uint32_t *xw, const uint32_t *end, const int8_t *w,
                                int32_t *acc)
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    uint32_t wv, we;
    __asm__ volatile("1:\n\t"
                     "ldr %[wv], [%[w]], #4\n\t"
                     "ldm %[xw]!, {r8, r9, r10, r11}\n\t"
                     "sxtb16 %[we], %[wv]\n\t"
                     "sxtb16 %[wv], %[wv], ror #8\n\t"
                     "smlad %[a0], r8, %[we], %[a0]\n\t"
                     "smlad %[a0], r9, %[wv], %[a0]\n\t"
                     "smlad %[a1], r10, %[we], %[a1]\n\t"
                     "smlad %[a1], r11, %[wv], %[a1]\n\t"
                     "ldm %[xw]!, {r8, r9, r10, r11}\n\t"
                     "smlad %[a2], r8, %[we], %[a2]\n\t"
                     "smlad %[a2], r9, %[wv], %[a2]\n\t"
                     "smlad %[a3], r10, %[we], %[a3]\n\t"
                     "smlad %[a3], r11, %[wv], %[a3]\n\t"
                     "cmp %[xw], %[end]\n\t"
                     "bne 1b\n\t"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xw] "+r"(xw),
                       [w] "+r"(w), [wv] "=&r"(wv), [we] "=&r"(we)
                     : [end] "r"(end)
                     : "r8", "r9", "r10", "r11", "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Filters per block of mq_cols_4x1: their accumulators wait in a 4 x MQ_COLS_BLOCK buffer for
 * the requantization loop (which then has the registers to itself). */
#define MQ_COLS_BLOCK 8

/* mq_rq_out out of line, for channels off mq_mbqm_fast (rare: shift > -2). */
static MQ_NOINLINE int8_t mq_rq_out_any(const mq_rq *q, int32_t acc, int32_t output_offset,
                                        int32_t act_min, int32_t act_max)
{
    return mq_rq_out(q, acc, output_offset, act_min, act_max);
}

/* y[f + p * out_c] (p = 0..3) = the requantized acc[4 f + p] of channel f, f < nf. The
 * constants are arguments (locals), so that the int8 stores cannot make the compiler reload
 * them. */
static void mq_cols_out(const int32_t *acc, int32_t nf, const int32_t *multiplier,
                        const int32_t *shift, int32_t output_offset, int32_t act_min,
                        int32_t act_max, int8_t *y, int32_t out_c)
{
    const int8_t *end = y + nf;
    while (y != end) {
        const mq_rq q = mq_rq_channel(*multiplier++, *shift++);
        if (q.e_minus_1 >= 0) {
            mq_pair_out(acc[0], acc[1], &q, output_offset, act_min, act_max, y, out_c);
            mq_pair_out(acc[2], acc[3], &q, output_offset, act_min, act_max, y + 2 * out_c, out_c);
        } else {
            int32_t p;
            for (p = 0; p < MQ_COL_PIXELS; ++p) {
                y[p * out_c] = mq_rq_out_any(&q, acc[p], output_offset, act_min, act_max);
            }
        }
        acc += 4;
        ++y;
    }
}

/* Outputs y + p * out_c (p = 0..3) of four columns widened by mq_widen_4cols, for every filter:
 * in blocks of MQ_COLS_BLOCK filters, first all dot products (mq_dot_4cols), then all
 * requantizations (mq_cols_out: one constant set-up per four outputs). */
static MQ_NOINLINE void mq_cols_4x1(const mq_cols_job *j, const uint32_t *wide, const int8_t *cols,
                                    int8_t *y)
{
    const int32_t out_c = j->out_c;
    const int32_t depth = j->depth;
    const int32_t k4 = j->k4;
    const int32_t *const bias = j->bias;
    const int8_t *w = j->filter;
    /* Filters that read whole groups of 4 stay inside the filter array (past its own taps a
     * filter reads the next one and meets zero column entries): oc * depth + k4 <= out_c *
     * depth. The last filter(s) stop before a partial group and finish tap by tap. */
    const int32_t last_whole = out_c * depth - k4;
    int32_t w_at = 0;                         /* w - j->filter */
    const uint32_t *wide_end = wide + 2 * k4; /* 8 words per 4 taps */
    int32_t acc[4 * MQ_COLS_BLOCK];
    int32_t o0, f, nf;
    for (o0 = 0; o0 < out_c; o0 += nf) {
        int32_t *a = acc;
        nf = out_c - o0 < MQ_COLS_BLOCK ? out_c - o0 : MQ_COLS_BLOCK;
        for (f = 0; f < nf; ++f) {
            const int32_t b = bias ? bias[o0 + f] : 0;
            a[0] = b;
            a[1] = b;
            a[2] = b;
            a[3] = b;
            if (w_at <= last_whole) {
                mq_dot_4cols(wide, wide_end, w, a);
            } else {
                const int32_t off = j->input_offset;
                const int32_t taps = depth & ~3;
                int32_t k;
                if (taps > 0) {
                    mq_dot_4cols(wide, wide + 2 * taps, w, a);
                }
                for (k = taps; k < depth; ++k) {
                    const int32_t wk = w[k];
                    a[0] += ((int32_t)cols[k] + off) * wk;
                    a[1] += ((int32_t)cols[k4 + k] + off) * wk;
                    a[2] += ((int32_t)cols[2 * k4 + k] + off) * wk;
                    a[3] += ((int32_t)cols[3 * k4 + k] + off) * wk;
                }
            }
            w += depth;
            w_at += depth;
            a += 4;
        }
        mq_cols_out(acc, nf, j->multiplier + o0, j->shift + o0, j->output_offset, j->act_min,
                    j->act_max, y + o0, out_c);
    }
}
#endif

/* Convolutions with few input channels (first layers: 1-4 channels): each output pixel's whole
 * receptive field is gathered into one contiguous column (mq_gather_col), so the dot products
 * run over all KH * KW * C_in taps at once instead of runs of 1-12 bytes per tap row. On DSP
 * cores four pixels' columns are widened to int16 once (mq_widen_4cols) and shared by every
 * filter (mq_cols_4x1); the pixels left over, and every pixel without DSP, take one column
 * against 2 or 4 filters (mq_col_1). Pixels are grouped in output order across row ends. One
 * group, depth <= MQ_COL_MAX; arguments checked by mq_conv2d_s8. */
static MQ_NOINLINE void mq_conv_few_channels(const mq_conv_params *params,
                                             const mq_per_channel_quant *quant,
                                             const mq_dims *input_dims, const int8_t *input,
                                             const mq_dims *filter_dims, const int8_t *filter,
                                             const int32_t *bias, const mq_dims *output_dims,
                                             int8_t *output)
{
    const int32_t out_c = filter_dims->n;
    const int32_t out_w = output_dims->w;
    const int32_t pixels = output_dims->h * out_w;
    const int32_t depth = filter_dims->h * filter_dims->w * input_dims->c;
    const int32_t k4 = (depth + 3) & ~3;
    const int8_t pad = (int8_t)-params->input_offset; /* input_offset in [-127, 128] */
    /* Pixels whose top-left tap (y0, x0) is in [0, y_last] x [0, x_last] have every tap inside
     * the input; with dilation_w 1 (else x_last = -1) their tap rows are runs of `run` bytes. */
    const int32_t y_last = input_dims->h - 1 - (filter_dims->h - 1) * params->dilation_h;
    const int32_t x_last = params->dilation_w == 1 ? input_dims->w - filter_dims->w : -1;
    const int32_t run = filter_dims->w * input_dims->c;
    const int32_t row_step = params->dilation_h * input_dims->w * input_dims->c;
#if MQ_DSP
    int8_t cols[MQ_COL_PIXELS * MQ_COL_MAX];
    uint32_t wide[MQ_COL_PIXELS * MQ_COL_MAX / 2];
#else
    int8_t cols[MQ_COL_MAX]; /* one pixel at a time */
#endif
    mq_cols_job job;
    int32_t n, p, i;
    job.filter = filter;
    job.bias = bias;
    job.multiplier = quant->multiplier;
    job.shift = quant->shift;
    job.out_c = out_c;
    job.depth = depth;
    job.k4 = k4;
    job.input_offset = params->input_offset;
    job.output_offset = params->output_offset;
    job.act_min = params->act_min;
    job.act_max = params->act_max;
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *in_batch = input + n * input_dims->h * input_dims->w * input_dims->c;
        int8_t *out_batch = output + n * pixels * out_c;
        int32_t oy = 0;
        int32_t ox = 0;
        for (p = 0; p < pixels;) {
            /* Four pixels at once on DSP cores, else one. */
            const int32_t group = MQ_DSP && pixels - p >= MQ_COL_PIXELS ? MQ_COL_PIXELS : 1;
            for (i = 0; i < group; ++i) {
                const int32_t y0 = oy * params->stride_h - params->pad_top;
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                if (y0 >= 0 && y0 <= y_last && x0 >= 0 && x0 <= x_last) {
                    mq_gather_inside(in_batch + (y0 * input_dims->w + x0) * input_dims->c,
                                     filter_dims->h, run, row_step, k4, pad, cols + i * k4);
                } else {
                    mq_gather_col(in_batch, input_dims, filter_dims, params, y0, x0, k4, pad,
                                  cols + i * k4);
                }
                if (++ox == out_w) {
                    ox = 0;
                    ++oy;
                }
            }
#if MQ_DSP
            if (group == MQ_COL_PIXELS) {
                mq_widen_4cols(cols, k4, params->input_offset, wide);
                mq_cols_4x1(&job, wide, cols, out_batch + p * out_c);
                p += MQ_COL_PIXELS;
                continue;
            }
#endif
            mq_col_1(&job, cols, out_batch + p * out_c);
            ++p;
        }
    }
}

/* Rows per call of the 1x1 fast path (codegen/overlap.py ROWS_CHUNK must match). */
#define MQ_ROWS_CHUNK 256
/* Output rows per chunk of the depthwise kernel (codegen/overlap.py DW_ROWS must match). */
#define MQ_DW_ROWS 2

mq_status mq_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                       const mq_dims *input_dims, const int8_t *input, const mq_dims *filter_dims,
                       const int8_t *filter, const int32_t *bias, const mq_dims *output_dims,
                       int8_t *output)
{
    int32_t batch, groups, f_c, in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c;

    if (!params || !quant || !input_dims || !input || !filter_dims || !filter || !output_dims ||
        !output || !mq_conv_params_ok(params, quant) || !mq_dims_positive(input_dims) ||
        !mq_dims_positive(filter_dims) || !mq_dims_positive(output_dims)) {
        return MQ_ERR_ARG;
    }
    batch = input_dims->n;
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    out_c = filter_dims->n;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    f_c = filter_dims->c;
    out_h = output_dims->h;
    out_w = output_dims->w;
    if (in_c % f_c != 0 || output_dims->n != batch || output_dims->c != out_c) {
        return MQ_ERR_ARG;
    }
    groups = in_c / f_c;
    if (out_c % groups != 0) {
        return MQ_ERR_ARG;
    }
    if (k_h == 1 && k_w == 1 && params->stride_h == 1 && params->stride_w == 1 &&
        params->pad_top == 0 && params->pad_left == 0 && groups == 1 && out_h == in_h &&
        out_w == in_w) {
        /* Chunks of MQ_ROWS_CHUNK rows in increasing order, each chunk's rows read and written
         * only while that chunk runs: the planner may place the output over the input as far as
         * codegen/overlap.py rows_chunk_lag states (the core inside re-reads a chunk's rows once
         * per filter block, so overlap within a chunk is never allowed). */
        const int32_t rows = batch * in_h * in_w;
        int32_t r0;
        for (r0 = 0; r0 < rows; r0 += MQ_ROWS_CHUNK) {
            const int32_t n = rows - r0 < MQ_ROWS_CHUNK ? rows - r0 : MQ_ROWS_CHUNK;
            mq_rows_s8(input + r0 * in_c, n, in_c, in_c, filter, bias, out_c, params->input_offset,
                       0, params->output_offset, params->act_min, params->act_max,
                       quant->multiplier, quant->shift, output + r0 * out_c);
        }
        return MQ_OK;
    }
    if (k_h == 1 && k_w == 1 && groups == 1 && params->pad_top == 0 && params->pad_left == 0 &&
        (out_h - 1) * params->stride_h < in_h && (out_w - 1) * params->stride_w < in_w) {
        /* Strided 1x1 without padding: each output row is one row-engine call on the input
         * pixels stride_w apart, read in place (no im2col copy). The output must not overlap
         * the input (codegen/overlap.py gives this case no lag). */
        int32_t n, oy;
        for (n = 0; n < batch; ++n) {
            for (oy = 0; oy < out_h; ++oy) {
                mq_rows_s8(input + ((n * in_h + oy * params->stride_h) * in_w) * in_c, out_w, in_c,
                           params->stride_w * in_c, filter, bias, out_c, params->input_offset, 0,
                           params->output_offset, params->act_min, params->act_max,
                           quant->multiplier, quant->shift,
                           output + ((n * out_h + oy) * out_w) * out_c);
            }
        }
        return MQ_OK;
    }

    if (groups == 1 && in_c <= MQ_FEW_CHANNELS && k_h * k_w * in_c <= MQ_COL_MAX) {
        mq_conv_few_channels(params, quant, input_dims, input, filter_dims, filter, bias,
                             output_dims, output);
        return MQ_OK;
    }
    mq_conv_general(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                    output);
    return MQ_OK;
}

/* Depthwise, channel multiplier 1: acc[j] += the valid taps of channels c..c+3 of one pixel.
 * NHWC and 1HWO keep four neighbouring channels in one 32-bit word of input and filter. */
static inline void mq_dw_4ch(const int8_t *x, const int8_t *w, int32_t rows, int32_t cols,
                             int32_t x_row, int32_t x_col, int32_t w_row, int32_t w_col,
                             int32_t input_offset, int32_t *acc)
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    int32_t r, c;
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
#endif
    for (r = 0; r < rows; ++r) {
        const int8_t *xp = x + r * x_row;
        const int8_t *wp = w + r * w_row;
        for (c = 0; c < cols; ++c) {
#if MQ_DSP
            const uint32_t xv = mq_read_s8x4(xp);
            const uint32_t wv = mq_read_s8x4(wp);
            const uint32_t xe = __sxtab16(off2, xv);
            const uint32_t xo = mq_sxtab16_ror8(off2, xv);
            const uint32_t we = __sxtb16(wv);
            const uint32_t wo = mq_sxtb16_ror8(wv);
            a0 = __smlabb((int32_t)xe, (int32_t)we, a0);
            a2 = __smlatt((int32_t)xe, (int32_t)we, a2);
            a1 = __smlabb((int32_t)xo, (int32_t)wo, a1);
            a3 = __smlatt((int32_t)xo, (int32_t)wo, a3);
#else
            a0 += ((int32_t)xp[0] + input_offset) * wp[0];
            a1 += ((int32_t)xp[1] + input_offset) * wp[1];
            a2 += ((int32_t)xp[2] + input_offset) * wp[2];
            a3 += ((int32_t)xp[3] + input_offset) * wp[3];
#endif
            xp += x_col;
            wp += w_col;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One tap of four channels: a[j] += (x[j] + input_offset) * w[j]. */
static inline void mq_dw_tap4(const int8_t *x, const int8_t *w, int32_t input_offset, int32_t *a)
{
#if MQ_DSP
    const uint32_t off2 = mq_offset2(input_offset);
    const uint32_t xv = mq_read_s8x4(x);
    const uint32_t wv = mq_read_s8x4(w);
    const uint32_t xe = __sxtab16(off2, xv);
    const uint32_t xo = mq_sxtab16_ror8(off2, xv);
    const uint32_t we = __sxtb16(wv);
    const uint32_t wo = mq_sxtb16_ror8(wv);
    a[0] = __smlabb((int32_t)xe, (int32_t)we, a[0]);
    a[2] = __smlatt((int32_t)xe, (int32_t)we, a[2]);
    a[1] = __smlabb((int32_t)xo, (int32_t)wo, a[1]);
    a[3] = __smlatt((int32_t)xo, (int32_t)wo, a[3]);
#else
    a[0] += ((int32_t)x[0] + input_offset) * w[0];
    a[1] += ((int32_t)x[1] + input_offset) * w[1];
    a[2] += ((int32_t)x[2] + input_offset) * w[2];
    a[3] += ((int32_t)x[3] + input_offset) * w[3];
#endif
}

/* mq_dw_4ch with three columns per tap row (a 3-wide kernel away from the left and right
 * borders): the columns are unrolled, the loop runs over tap rows only. Used on DSP cores; on
 * ARMv6-M the unrolled body spills and costs more than the loop it saves. */
static void mq_dw_4ch_3col(const int8_t *x, const int8_t *w, int32_t rows, int32_t x_row,
                           int32_t x_col, int32_t w_row, int32_t w_col, int32_t input_offset,
                           int32_t *acc)
{
    int32_t a[4];
    int32_t r;
    a[0] = acc[0];
    a[1] = acc[1];
    a[2] = acc[2];
    a[3] = acc[3];
    for (r = 0; r < rows; ++r) {
        mq_dw_tap4(x, w, input_offset, a);
        mq_dw_tap4(x + x_col, w + w_col, input_offset, a);
        mq_dw_tap4(x + 2 * x_col, w + 2 * w_col, input_offset, a);
        x += x_row;
        w += w_row;
    }
    acc[0] = a[0];
    acc[1] = a[1];
    acc[2] = a[2];
    acc[3] = a[3];
}

#if MQ_DSP
/* One tap of four channels for two pixels: the filter word is widened once for both. */
#define MQ_DW_TAP2(xa, xb, wq)                                                                     \
    do {                                                                                           \
        const uint32_t wv_ = mq_read_s8x4(wq);                                                     \
        const uint32_t we_ = __sxtb16(wv_);                                                        \
        const uint32_t wo_ = mq_sxtb16_ror8(wv_);                                                  \
        uint32_t xv_ = mq_read_s8x4(xa);                                                           \
        uint32_t xe_ = __sxtab16(off2, xv_);                                                       \
        uint32_t xo_ = mq_sxtab16_ror8(off2, xv_);                                                 \
        a0 = __smlabb((int32_t)xe_, (int32_t)we_, a0);                                             \
        a2 = __smlatt((int32_t)xe_, (int32_t)we_, a2);                                             \
        a1 = __smlabb((int32_t)xo_, (int32_t)wo_, a1);                                             \
        a3 = __smlatt((int32_t)xo_, (int32_t)wo_, a3);                                             \
        xv_ = mq_read_s8x4(xb);                                                                    \
        xe_ = __sxtab16(off2, xv_);                                                                \
        xo_ = mq_sxtab16_ror8(off2, xv_);                                                          \
        b0 = __smlabb((int32_t)xe_, (int32_t)we_, b0);                                             \
        b2 = __smlatt((int32_t)xe_, (int32_t)we_, b2);                                             \
        b1 = __smlabb((int32_t)xo_, (int32_t)wo_, b1);                                             \
        b3 = __smlatt((int32_t)xo_, (int32_t)wo_, b3);                                             \
    } while (0)

/* mq_dw_4ch_3col for two neighbouring output pixels (stride and dilation 1, so that tap
 * columns, filter columns and the two pixels are all `c` bytes apart): each widened filter
 * word serves both pixels. acc[0..3] is the first pixel, acc[4..7] the second. */
static MQ_NOINLINE void mq_dw_3col_2px(const int8_t *x, const int8_t *w, int32_t rows,
                                       int32_t x_row, int32_t w_row, int32_t c,
                                       int32_t input_offset, int32_t *acc)
{
    const uint32_t off2 = mq_offset2(input_offset);
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    int32_t b0 = acc[4];
    int32_t b1 = acc[5];
    int32_t b2 = acc[6];
    int32_t b3 = acc[7];
    const int8_t *end = x + rows * x_row;
    while (x != end) {
        MQ_DW_TAP2(x, x + c, w);
        MQ_DW_TAP2(x + c, x + 2 * c, w + c);
        MQ_DW_TAP2(x + 2 * c, x + 3 * c, w + 2 * c);
        x += x_row;
        w += w_row;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = b0;
    acc[5] = b1;
    acc[6] = b2;
    acc[7] = b3;
}
#endif

static inline int8_t mq_dw_out1(int32_t acc, const mq_rq *q, int32_t output_offset, int32_t act_min,
                                int32_t act_max)
{
    return (int8_t)mq_clamp(mq_mbqm_fast(acc, q->multiplier, q->round_hi, q->e_minus_1) +
                                output_offset,
                            act_min, act_max);
}

/* Four channels of one output pixel; their requantization constants are set up by the caller
 * once for all pixels (fast: every channel on mq_mbqm_fast). */
static inline void mq_dw_out4(const int32_t *acc, const mq_rq *q, int fast, int32_t output_offset,
                              int32_t act_min, int32_t act_max, int8_t *y)
{
    int32_t j;
    if (fast) {
        y[0] = mq_dw_out1(acc[0], &q[0], output_offset, act_min, act_max);
        y[1] = mq_dw_out1(acc[1], &q[1], output_offset, act_min, act_max);
        y[2] = mq_dw_out1(acc[2], &q[2], output_offset, act_min, act_max);
        y[3] = mq_dw_out1(acc[3], &q[3], output_offset, act_min, act_max);
    } else {
        for (j = 0; j < 4; ++j) {
            y[j] = mq_rq_out(&q[j], acc[j], output_offset, act_min, act_max);
        }
    }
}

/* Depthwise conv in chunks of `chunk` output rows, forward or (reverse) last row and last pixel
 * first. Multiplier 1: groups of four channels outermost inside a chunk, so that a group's
 * bias and requantization set-up are done once for the chunk's pixels. The planner's overlap
 * facts (codegen/overlap.py) rely on a chunk's input and output rows being touched only while
 * it runs, in this order. The plain call is the forward order with MQ_DW_ROWS rows (reverse
 * folded to 0 at compile time); the ordered variant passes its mq_order. */
static MQ_ALWAYS_INLINE mq_status mq_dw_rows(
    int reverse, int32_t chunk, const mq_conv_params *params, const mq_per_channel_quant *quant,
    const mq_dims *input_dims, const int8_t *input, const mq_dims *filter_dims,
    const int8_t *filter, const int32_t *bias, const mq_dims *output_dims, int8_t *output)
{
    int32_t in_h, in_w, in_c, ch_mult, k_h, k_w, out_h, out_w, out_c;
    int32_t n, done, ic, c4;

    if (chunk <= 0 || !params || !quant || !input_dims || !input || !filter_dims || !filter ||
        !output_dims || !output || !mq_conv_params_ok(params, quant) ||
        !mq_dims_positive(input_dims) || !mq_dims_positive(filter_dims) ||
        !mq_dims_positive(output_dims) || params->ch_mult <= 0) {
        return MQ_ERR_ARG;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    ch_mult = params->ch_mult;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    if (filter_dims->n != 1 || filter_dims->c != out_c || in_c * ch_mult != out_c ||
        output_dims->n != input_dims->n) {
        return MQ_ERR_ARG;
    }
    c4 = ch_mult == 1 ? in_c & ~3 : 0;
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * in_c;
        int8_t *out_batch = output + n * out_h * out_w * out_c;
        for (done = 0; done < out_h;) {
            const int32_t rows = out_h - done < chunk ? out_h - done : chunk;
            const int32_t oy0 = reverse ? out_h - done - rows : done;
            int32_t i, j;
            done += rows;
            for (ic = 0; ic < c4; ic += 4) {
                int32_t b[4];
                mq_rq q[4];
                int fast = 1;
                for (j = 0; j < 4; ++j) {
                    b[j] = bias ? bias[ic + j] : 0;
                    q[j] = mq_rq_channel(quant->multiplier[ic + j], quant->shift[ic + j]);
                    fast = fast && q[j].e_minus_1 >= 0;
                }
                for (i = 0; i < rows; ++i) {
                    const int32_t oy = reverse ? oy0 + rows - 1 - i : oy0 + i;
                    const int32_t y0 = oy * params->stride_h - params->pad_top;
                    int8_t *y_row = out_batch + oy * out_w * out_c + ic;
                    /* the pixel being written: walks the row in the step's order */
                    int8_t *yp = reverse ? y_row + (out_w - 1) * out_c : y_row;
                    int32_t ky_start, ky_end;
                    mq_tap_range(y0, params->dilation_h, in_h, k_h, &ky_start, &ky_end);
                    for (j = 0; j < out_w; ++j) {
                        const int32_t ox = reverse ? out_w - 1 - j : j;
                        const int32_t x0 = ox * params->stride_w - params->pad_left;
                        int32_t kx_start, kx_end, t;
                        int32_t acc[8];
#if MQ_DSP
                        /* The pair (first, first + 1): this pixel and the next one in the
                         * step's order. */
                        const int32_t first = reverse ? ox - 1 : ox;
                        const int32_t fx0 = first * params->stride_w - params->pad_left;
                        if (k_w == 3 && params->stride_w == 1 && params->dilation_w == 1 &&
                            first >= 0 && first + 1 < out_w && fx0 >= 0 && fx0 + 3 < in_w &&
                            ky_end > ky_start) {
                            for (t = 0; t < 4; ++t) {
                                acc[t] = b[t];
                                acc[4 + t] = b[t];
                            }
                            mq_dw_3col_2px(
                                in_batch +
                                    ((y0 + ky_start * params->dilation_h) * in_w + fx0) * in_c + ic,
                                filter + ky_start * 3 * out_c + ic, ky_end - ky_start,
                                params->dilation_h * in_w * in_c, 3 * out_c, out_c,
                                params->input_offset, acc);
                            mq_dw_out4(acc, q, fast, params->output_offset, params->act_min,
                                       params->act_max, reverse ? yp - out_c : yp);
                            mq_dw_out4(acc + 4, q, fast, params->output_offset, params->act_min,
                                       params->act_max, reverse ? yp : yp + out_c);
                            yp += reverse ? -2 * out_c : 2 * out_c;
                            ++j;
                            continue;
                        }
#endif
                        mq_tap_range(x0, params->dilation_w, in_w, k_w, &kx_start, &kx_end);
                        for (t = 0; t < 4; ++t) {
                            acc[t] = b[t];
                        }
                        if (ky_end > ky_start && kx_end > kx_start) {
                            const int32_t first_tap = ((y0 + ky_start * params->dilation_h) * in_w +
                                                       x0 + kx_start * params->dilation_w) *
                                                      in_c;
                            const int8_t *xp = in_batch + first_tap + ic;
                            const int8_t *wp = filter + (ky_start * k_w + kx_start) * out_c + ic;
                            if (MQ_DSP && kx_end - kx_start == 3) {
                                mq_dw_4ch_3col(xp, wp, ky_end - ky_start,
                                               params->dilation_h * in_w * in_c,
                                               params->dilation_w * in_c, k_w * out_c, out_c,
                                               params->input_offset, acc);
                            } else {
                                mq_dw_4ch(xp, wp, ky_end - ky_start, kx_end - kx_start,
                                          params->dilation_h * in_w * in_c,
                                          params->dilation_w * in_c, k_w * out_c, out_c,
                                          params->input_offset, acc);
                            }
                        }
                        mq_dw_out4(acc, q, fast, params->output_offset, params->act_min,
                                   params->act_max, yp);
                        yp += reverse ? -out_c : out_c;
                    }
                }
            }
            for (i = 0; c4 < in_c && i < rows; ++i) {
                const int32_t oy = reverse ? oy0 + rows - 1 - i : oy0 + i;
                const int32_t y0 = oy * params->stride_h - params->pad_top;
                int32_t ky_start, ky_end;
                mq_tap_range(y0, params->dilation_h, in_h, k_h, &ky_start, &ky_end);
                for (j = 0; j < out_w; ++j) {
                    const int32_t ox = reverse ? out_w - 1 - j : j;
                    const int32_t x0 = ox * params->stride_w - params->pad_left;
                    int32_t kx_start, kx_end, m;
                    int8_t *y = out_batch + (oy * out_w + ox) * out_c + c4;
                    mq_tap_range(x0, params->dilation_w, in_w, k_w, &kx_start, &kx_end);
                    for (ic = c4; ic < in_c; ++ic) {
                        for (m = 0; m < ch_mult; ++m) {
                            const int32_t oc = ic * ch_mult + m;
                            int32_t acc = bias ? bias[oc] : 0;
                            int32_t ky, kx;
                            mq_rq q;
                            for (ky = ky_start; ky < ky_end; ++ky) {
                                const int32_t iy = y0 + ky * params->dilation_h;
                                const int8_t *x_row = in_batch + iy * in_w * in_c + ic;
                                const int8_t *w_row = filter + ky * k_w * out_c + oc;
                                for (kx = kx_start; kx < kx_end; ++kx) {
                                    const int32_t ix = x0 + kx * params->dilation_w;
                                    acc += ((int32_t)x_row[ix * in_c] + params->input_offset) *
                                           (int32_t)w_row[kx * out_c];
                                }
                            }
                            q = mq_rq_channel(quant->multiplier[oc], quant->shift[oc]);
                            *y++ = mq_rq_out(&q, acc, params->output_offset, params->act_min,
                                             params->act_max);
                        }
                    }
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_depthwise_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output)
{
    return mq_dw_rows(0, MQ_DW_ROWS, params, quant, input_dims, input, filter_dims, filter, bias,
                      output_dims, output);
}

/* --- Overlap variants (issue 12): the same results in a stated order, so that the planner may
 * place the output over the input it reads (codegen/overlap.py). ---------------------------- */

mq_status mq_conv2d_1x1_ordered_s8(const mq_order *order, const mq_conv_params *params,
                                   const mq_per_channel_quant *quant, const mq_dims *input_dims,
                                   const int8_t *input, const mq_dims *filter_dims,
                                   const int8_t *filter, const int32_t *bias,
                                   const mq_dims *output_dims, int8_t *output)
{
    int32_t rows, in_c, out_c, done;

    if (!order || order->chunk <= 0 || !params || !quant || !input_dims || !input || !filter_dims ||
        !filter || !output_dims || !output || !mq_conv_params_ok(params, quant) ||
        !mq_dims_positive(input_dims) || !mq_dims_positive(filter_dims) ||
        !mq_dims_positive(output_dims)) {
        return MQ_ERR_ARG;
    }
    in_c = input_dims->c;
    out_c = filter_dims->n;
    if (filter_dims->h != 1 || filter_dims->w != 1 || filter_dims->c != in_c ||
        params->stride_h != 1 || params->stride_w != 1 || params->pad_top != 0 ||
        params->pad_left != 0 || output_dims->n != input_dims->n ||
        output_dims->h != input_dims->h || output_dims->w != input_dims->w ||
        output_dims->c != out_c) {
        return MQ_ERR_ARG;
    }
    rows = input_dims->n * input_dims->h * input_dims->w;
    for (done = 0; done < rows;) {
        const int32_t n = rows - done < order->chunk ? rows - done : order->chunk;
        const int32_t r0 = order->reverse ? rows - done - n : done;
        mq_rows_s8(input + r0 * in_c, n, in_c, in_c, filter, bias, out_c, params->input_offset, 0,
                   params->output_offset, params->act_min, params->act_max, quant->multiplier,
                   quant->shift, output + r0 * out_c);
        done += n;
    }
    return MQ_OK;
}

mq_status mq_depthwise_conv2d_ordered_s8(const mq_order *order, const mq_conv_params *params,
                                         const mq_per_channel_quant *quant,
                                         const mq_dims *input_dims, const int8_t *input,
                                         const mq_dims *filter_dims, const int8_t *filter,
                                         const int32_t *bias, const mq_dims *output_dims,
                                         int8_t *output)
{
    if (!order) {
        return MQ_ERR_ARG;
    }
    return mq_dw_rows(order->reverse != 0, order->chunk, params, quant, input_dims, input,
                      filter_dims, filter, bias, output_dims, output);
}
