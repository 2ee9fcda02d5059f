/* microq runtime: int8 3-D convolution, NDHWC, direct loop (see the header). */
#include "mq_conv3d.h"
#include "mq_requant.h"

static int dims5_positive(const mq_dims5 *d)
{
    return d->n > 0 && d->d > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int params_ok(const mq_conv3d_params *p)
{
    return p->stride_d > 0 && p->stride_h > 0 && p->stride_w > 0 && p->dilation_d > 0 &&
           p->dilation_h > 0 && p->dilation_w > 0 && p->pad_front >= 0 && p->pad_top >= 0 &&
           p->pad_left >= 0 && p->act_min >= -128 && p->act_min <= p->act_max &&
           p->act_max <= 127;
}

mq_status mq_conv3d_s8(const mq_conv3d_params *params, const mq_per_channel_quant *quant,
                       const mq_dims5 *input_dims, const int8_t *input,
                       const mq_dims5 *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mq_dims5 *output_dims, int8_t *output)
{
    int32_t f_c, groups, out_per_group, n, od, oy, ox, oc, kd, ky, kx, c;
    if (!params || !quant || !quant->multiplier || !quant->shift || !input_dims || !input ||
        !filter_dims || !filter || !output_dims || !output || !params_ok(params) ||
        !dims5_positive(input_dims) || !dims5_positive(filter_dims) ||
        !dims5_positive(output_dims)) {
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
        const int8_t *volume =
            input + n * input_dims->d * input_dims->h * input_dims->w * input_dims->c;
        for (od = 0; od < output_dims->d; ++od) {
            const int32_t d0 = od * params->stride_d - params->pad_front;
            for (oy = 0; oy < output_dims->h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_top;
                for (ox = 0; ox < output_dims->w; ++ox) {
                    const int32_t x0 = ox * params->stride_w - params->pad_left;
                    for (oc = 0; oc < output_dims->c; ++oc) {
                        const int32_t first_c = (oc / out_per_group) * f_c;
                        const int8_t *w = filter + oc * filter_dims->d * filter_dims->h *
                                                       filter_dims->w * f_c;
                        int32_t acc = bias ? bias[oc] : 0;
                        for (kd = 0; kd < filter_dims->d; ++kd) {
                            const int32_t id = d0 + kd * params->dilation_d;
                            for (ky = 0; ky < filter_dims->h; ++ky) {
                                const int32_t iy = y0 + ky * params->dilation_h;
                                for (kx = 0; kx < filter_dims->w; ++kx) {
                                    const int32_t ix = x0 + kx * params->dilation_w;
                                    const int8_t *tap =
                                        w + ((kd * filter_dims->h + ky) * filter_dims->w + kx) *
                                                f_c;
                                    const int8_t *x;
                                    if (id < 0 || id >= input_dims->d || iy < 0 ||
                                        iy >= input_dims->h || ix < 0 || ix >= input_dims->w) {
                                        continue;
                                    }
                                    x = volume +
                                        ((id * input_dims->h + iy) * input_dims->w + ix) *
                                            input_dims->c +
                                        first_c;
                                    for (c = 0; c < f_c; ++c) {
                                        acc += (x[c] + params->input_offset) * tap[c];
                                    }
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
    }
    return MQ_OK;
}
