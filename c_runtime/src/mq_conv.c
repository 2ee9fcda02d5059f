/* microq runtime: int8 convolution (conv2d incl. grouped / 1-D / 1x1, depthwise).
 *
 * Accumulator range: every term is (x + input_offset) * w with x + input_offset in [-255, 255]
 * (x in [-128, 127], input_offset in [-127, 128]) and w in [-128, 127], so |term| <= 32640 < 2^15.
 * An int32 accumulator therefore holds at least 2^16 terms plus a bias of realistic size; a
 * depth KH * KW * C_in / groups of 65536 (e.g. 3x3x7281) is far beyond any MCU layer. Weights
 * from microq are symmetric (|w| <= 127), which only widens the margin.
 */
#include "mq_conv.h"
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

static int32_t mq_dot_s8(const int8_t *x, const int8_t *w, int32_t len, int32_t input_offset)
{
    int32_t acc = 0;
    int32_t i;
    for (i = 0; i < len; ++i) {
        acc += ((int32_t)x[i] + input_offset) * (int32_t)w[i];
    }
    return acc;
}

static int8_t mq_requant_out(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                             int32_t act_min, int32_t act_max)
{
    const int32_t v = mq_mbqm(acc, multiplier, shift) + output_offset;
    return (int8_t)mq_clamp(v, act_min, act_max);
}

static int mq_dims_positive(const mq_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int mq_conv_params_ok(const mq_conv_params *p, const mq_per_channel_quant *q)
{
    return p->stride_h > 0 && p->stride_w > 0 && p->dilation_h > 0 && p->dilation_w > 0 &&
           p->pad_top >= 0 && p->pad_left >= 0 && p->act_min >= -128 &&
           p->act_min <= p->act_max && p->act_max <= 127 && q->multiplier && q->shift;
}

/* 1x1, stride 1, no padding, one group, output size = input size: a plain [rows, C_in] x
 * [C_out, C_in]^T product over contiguous rows. */
static void mq_conv2d_1x1_s8(const mq_conv_params *p, const mq_per_channel_quant *q, int32_t rows,
                             int32_t in_c, const int8_t *input, const int8_t *filter,
                             const int32_t *bias, int32_t out_c, int8_t *output)
{
    int32_t r;
    int32_t oc;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + r * in_c;
        for (oc = 0; oc < out_c; ++oc) {
            int32_t acc = bias ? bias[oc] : 0;
            acc += mq_dot_s8(x, filter + oc * in_c, in_c, p->input_offset);
            *output++ = mq_requant_out(acc, q->multiplier[oc], q->shift[oc], p->output_offset,
                                       p->act_min, p->act_max);
        }
    }
}

mq_status mq_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                       const mq_dims *input_dims, const int8_t *input,
                       const mq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mq_dims *output_dims, int8_t *output)
{
    int32_t batch, groups, f_c, oc_per_group, in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c;
    int32_t n, oy, ox, oc;

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
    oc_per_group = out_c / groups;

    if (k_h == 1 && k_w == 1 && params->stride_h == 1 && params->stride_w == 1 &&
        params->pad_top == 0 && params->pad_left == 0 && groups == 1 && out_h == in_h &&
        out_w == in_w) {
        mq_conv2d_1x1_s8(params, quant, batch * in_h * in_w, in_c, input, filter, bias, out_c,
                         output);
        return MQ_OK;
    }

    for (n = 0; n < batch; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            mq_tap_range(y0, params->dilation_h, in_h, k_h, &ky_start, &ky_end);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                mq_tap_range(x0, params->dilation_w, in_w, k_w, &kx_start, &kx_end);
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t c0 = (oc / oc_per_group) * f_c;
                    const int8_t *w_oc = filter + oc * k_h * k_w * f_c;
                    int32_t acc = bias ? bias[oc] : 0;
                    int32_t ky, kx;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int32_t iy = y0 + ky * params->dilation_h;
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            const int32_t ix = x0 + kx * params->dilation_w;
                            acc += mq_dot_s8(in_batch + (iy * in_w + ix) * in_c + c0,
                                             w_oc + (ky * k_w + kx) * f_c, f_c,
                                             params->input_offset);
                        }
                    }
                    *output++ = mq_requant_out(acc, quant->multiplier[oc], quant->shift[oc],
                                               params->output_offset, params->act_min,
                                               params->act_max);
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
    int32_t batch, in_h, in_w, in_c, ch_mult, k_h, k_w, out_h, out_w, out_c;
    int32_t n, oy, ox, ic, m;

    if (!params || !quant || !input_dims || !input || !filter_dims || !filter || !output_dims ||
        !output || !mq_conv_params_ok(params, quant) || !mq_dims_positive(input_dims) ||
        !mq_dims_positive(filter_dims) || !mq_dims_positive(output_dims) ||
        params->ch_mult <= 0) {
        return MQ_ERR_ARG;
    }
    batch = input_dims->n;
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
        output_dims->n != batch) {
        return MQ_ERR_ARG;
    }

    for (n = 0; n < batch; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            mq_tap_range(y0, params->dilation_h, in_h, k_h, &ky_start, &ky_end);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                mq_tap_range(x0, params->dilation_w, in_w, k_w, &kx_start, &kx_end);
                /* Output channels are ic * ch_mult + m, so the output pixel is written in
                 * order; each channel walks its taps with a stride of in_c / out_c bytes. */
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < ch_mult; ++m) {
                        const int32_t oc = ic * ch_mult + m;
                        int32_t acc = bias ? bias[oc] : 0;
                        int32_t ky, kx;
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
                        *output++ = mq_requant_out(acc, quant->multiplier[oc], quant->shift[oc],
                                                   params->output_offset, params->act_min,
                                                   params->act_max);
                    }
                }
            }
        }
    }
    return MQ_OK;
}
