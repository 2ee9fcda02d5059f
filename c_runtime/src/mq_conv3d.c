/* microq runtime: int8 3-D convolution, NDHWC, direct loop (see the header). */
#include "mq_conv3d.h"
#include "mq_dsp.h"
#include "mq_requant.h"

static int dims5_positive(const mq_dims5 *d)
{
    return d->n > 0 && d->d > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int params_ok(const mq_conv3d_params *p)
{
    return p->stride_d > 0 && p->stride_h > 0 && p->stride_w > 0 && p->dilation_d > 0 &&
           p->dilation_h > 0 && p->dilation_w > 0 && p->pad_front >= 0 && p->pad_top >= 0 &&
           p->pad_left >= 0 && p->act_min >= -128 && p->act_min <= p->act_max && p->act_max <= 127;
}

/* acc[j] += the in-input taps of the output voxel whose window starts at (d0, y0, x0), for
 * filters w_oc + j * (KD * KH * KW * f_c), j < nf (1, or 4 sharing each input load). */
static void tap_sums(const mq_conv3d_params *p, const mq_dims5 *in, const int8_t *x_first,
                     const mq_dims5 *f, const int8_t *w_oc, int32_t d0, int32_t y0, int32_t x0,
                     int32_t nf, int32_t *acc)
{
    const int32_t w_step = f->d * f->h * f->w * f->c;
    int32_t kd, ky, kx;
    for (kd = 0; kd < f->d; ++kd) {
        const int32_t id = d0 + kd * p->dilation_d;
        if (id < 0 || id >= in->d) {
            continue;
        }
        for (ky = 0; ky < f->h; ++ky) {
            const int32_t iy = y0 + ky * p->dilation_h;
            if (iy < 0 || iy >= in->h) {
                continue;
            }
            for (kx = 0; kx < f->w; ++kx) {
                const int32_t ix = x0 + kx * p->dilation_w;
                const int8_t *x;
                const int8_t *w;
                if (ix < 0 || ix >= in->w) {
                    continue;
                }
                x = x_first + ((id * in->h + iy) * in->w + ix) * in->c;
                w = w_oc + ((kd * f->h + ky) * f->w + kx) * f->c;
                if (nf == 4) {
                    mq_dot_1x4(x, w, w_step, f->c, p->input_offset, acc);
                } else {
                    acc[0] = mq_dot_1x1(x, w, f->c, p->input_offset, acc[0]);
                }
            }
        }
    }
}

mq_status mq_conv3d_s8(const mq_conv3d_params *params, const mq_per_channel_quant *quant,
                       const mq_dims5 *input_dims, const int8_t *input, const mq_dims5 *filter_dims,
                       const int8_t *filter, const int32_t *bias, const mq_dims5 *output_dims,
                       int8_t *output)
{
    int32_t f_c, groups, out_per_group, n, od, oy, ox, oc, j, nf;
    int32_t acc[4];
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
            for (oy = 0; oy < output_dims->h; ++oy) {
                for (ox = 0; ox < output_dims->w; ++ox) {
                    for (oc = 0; oc < output_dims->c; oc += nf) {
                        nf = (oc % out_per_group) + 4 <= out_per_group ? 4 : 1;
                        for (j = 0; j < nf; ++j) {
                            acc[j] = bias ? bias[oc + j] : 0;
                        }
                        tap_sums(
                            params, input_dims, volume + (oc / out_per_group) * f_c, filter_dims,
                            filter + oc * filter_dims->d * filter_dims->h * filter_dims->w * f_c,
                            od * params->stride_d - params->pad_front,
                            oy * params->stride_h - params->pad_top,
                            ox * params->stride_w - params->pad_left, nf, acc);
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
    }
    return MQ_OK;
}
