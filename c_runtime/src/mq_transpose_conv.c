/* microq runtime: int8 transposed convolution as a gather over the taps (see the header). */
#include "mq_transpose_conv.h"
#include "mq_dsp.h"
#include "mq_requant.h"

static int dims_positive(const mq_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

/* The input index a tap reads for output index o, or -1 when the tap does not reach o:
 * o + pad - k * dilation must be a non-negative multiple of stride inside the input. */
static int32_t source_index(int32_t o, int32_t pad, int32_t k, int32_t dilation, int32_t stride,
                            int32_t size)
{
    const int32_t t = o + pad - k * dilation;
    int32_t i;
    if (t < 0) {
        return -1;
    }
    i = t / stride;
    return (i * stride == t && i < size) ? i : -1;
}

/* acc[j] += the taps reaching output pixel (oy, ox) for filters w_oc + j * (KH * KW * f_c),
 * j < nf (1, or 4 sharing each input load through mq_dot_1x4). */
static void tap_sums(const mq_conv_params *p, const mq_dims *in, const int8_t *x_first,
                     const mq_dims *f, const int8_t *w_oc, int32_t oy, int32_t ox, int32_t nf,
                     int32_t *acc)
{
    const int32_t w_step = f->h * f->w * f->c;
    int32_t ky, kx;
    for (ky = 0; ky < f->h; ++ky) {
        const int32_t iy = source_index(oy, p->pad_top, ky, p->dilation_h, p->stride_h, in->h);
        if (iy < 0) {
            continue;
        }
        for (kx = 0; kx < f->w; ++kx) {
            const int32_t ix = source_index(ox, p->pad_left, kx, p->dilation_w, p->stride_w, in->w);
            const int8_t *x;
            const int8_t *w;
            if (ix < 0) {
                continue;
            }
            x = x_first + (iy * in->w + ix) * in->c;
            w = w_oc + (ky * f->w + kx) * f->c;
            if (nf == 4) {
                mq_dot_1x4(x, w, w_step, f->c, p->input_offset, acc);
            } else {
                acc[0] = mq_dot_1x1(x, w, f->c, p->input_offset, acc[0]);
            }
        }
    }
}

mq_status mq_transpose_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output)
{
    int32_t groups, f_c, out_per_group, n, oy, ox, oc, j, nf;
    int32_t acc[4];
    if (!params || !quant || !quant->multiplier || !quant->shift || !input_dims || !input ||
        !filter_dims || !filter || !output_dims || !output || !dims_positive(input_dims) ||
        !dims_positive(filter_dims) || !dims_positive(output_dims) || params->stride_h < 1 ||
        params->stride_w < 1 || params->dilation_h < 1 || params->dilation_w < 1 ||
        params->pad_top < 0 || params->pad_left < 0 || params->act_min < -128 ||
        params->act_min > params->act_max || params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    f_c = filter_dims->c;
    if (input_dims->c % f_c != 0 || output_dims->n != input_dims->n ||
        output_dims->c != filter_dims->n) {
        return MQ_ERR_ARG;
    }
    groups = input_dims->c / f_c;
    if (output_dims->c % groups != 0) {
        return MQ_ERR_ARG;
    }
    out_per_group = output_dims->c / groups;
    for (n = 0; n < output_dims->n; ++n) {
        const int8_t *image = input + n * input_dims->h * input_dims->w * input_dims->c;
        for (oy = 0; oy < output_dims->h; ++oy) {
            for (ox = 0; ox < output_dims->w; ++ox) {
                /* four filters of one group at a time where the group has them */
                for (oc = 0; oc < output_dims->c; oc += nf) {
                    nf = (oc % out_per_group) + 4 <= out_per_group ? 4 : 1;
                    for (j = 0; j < nf; ++j) {
                        acc[j] = bias ? bias[oc + j] : 0;
                    }
                    tap_sums(params, input_dims, image + (oc / out_per_group) * f_c, filter_dims,
                             filter + oc * filter_dims->h * filter_dims->w * f_c, oy, ox, nf, acc);
                    for (j = 0; j < nf; ++j) {
                        const int32_t y =
                            mq_mbqm(acc[j], quant->multiplier[oc + j], quant->shift[oc + j]) +
                            params->output_offset;
                        output[oc + j] = (int8_t)mq_clamp(y, params->act_min, params->act_max);
                    }
                }
                output += output_dims->c;
            }
        }
    }
    return MQ_OK;
}
