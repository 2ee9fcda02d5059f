/* microq runtime: int8 transposed convolution as a gather over the taps (see the header). */
#include "mq_transpose_conv.h"
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

mq_status mq_transpose_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output)
{
    int32_t groups, f_c, out_per_group, n, oy, ox, oc, ky, kx, c;
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
                for (oc = 0; oc < output_dims->c; ++oc) {
                    const int32_t first_c = (oc / out_per_group) * f_c;
                    int32_t acc = bias ? bias[oc] : 0;
                    for (ky = 0; ky < filter_dims->h; ++ky) {
                        const int32_t iy = source_index(oy, params->pad_top, ky,
                                                        params->dilation_h, params->stride_h,
                                                        input_dims->h);
                        if (iy < 0) {
                            continue;
                        }
                        for (kx = 0; kx < filter_dims->w; ++kx) {
                            const int32_t ix = source_index(ox, params->pad_left, kx,
                                                            params->dilation_w, params->stride_w,
                                                            input_dims->w);
                            const int8_t *x;
                            const int8_t *w;
                            if (ix < 0) {
                                continue;
                            }
                            x = image + (iy * input_dims->w + ix) * input_dims->c + first_c;
                            w = filter + ((oc * filter_dims->h + ky) * filter_dims->w + kx) * f_c;
                            for (c = 0; c < f_c; ++c) {
                                acc += (x[c] + params->input_offset) * w[c];
                            }
                        }
                    }
                    acc = mq_mbqm(acc, quant->multiplier[oc], quant->shift[oc]) +
                          params->output_offset;
                    *output++ = (int8_t)mq_clamp(acc, params->act_min, params->act_max);
                }
            }
        }
    }
    return MQ_OK;
}
