/* microq runtime: nearest / bilinear resize, int8 NHWC, table-driven (see mq_resize.h). */
#include "mq_resize.h"

#define MQ_RESIZE_ONE 1024 /* Q10 */

static int dims_ok(const mq_dims *in, const mq_dims *out)
{
    return in->n > 0 && in->h > 0 && in->w > 0 && in->c > 0 && out->n == in->n && out->h > 0 &&
           out->w > 0 && out->c == in->c;
}

/* Every index in [0, size) and, for bilinear, every weight in [0, 1024]: the tables come from
 * the model, so they are checked before any byte is written. */
static int taps_ok(const mq_resize_taps *t, int32_t count, int32_t size, int bilinear)
{
    int32_t i;
    if (!t || !t->lo || (bilinear && (!t->hi || !t->frac))) {
        return 0;
    }
    for (i = 0; i < count; ++i) {
        if (t->lo[i] < 0 || t->lo[i] >= size) {
            return 0;
        }
        if (bilinear &&
            (t->hi[i] < 0 || t->hi[i] >= size || t->frac[i] < 0 || t->frac[i] > MQ_RESIZE_ONE)) {
            return 0;
        }
    }
    return 1;
}

mq_status mq_resize_nearest_s8(const mq_dims *input_dims, const mq_resize_taps *y,
                               const mq_resize_taps *x, const mq_dims *output_dims,
                               const int8_t *input, int8_t *output)
{
    int32_t n, oy, ox, c;
    if (!input_dims || !output_dims || !input || !output || !dims_ok(input_dims, output_dims) ||
        !taps_ok(y, output_dims->h, input_dims->h, 0) ||
        !taps_ok(x, output_dims->w, input_dims->w, 0)) {
        return MQ_ERR_ARG;
    }
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *image = input + n * input_dims->h * input_dims->w * input_dims->c;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int8_t *row = image + y->lo[oy] * input_dims->w * input_dims->c;
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int8_t *src = row + x->lo[ox] * input_dims->c;
                for (c = 0; c < input_dims->c; ++c) {
                    *output++ = src[c];
                }
            }
        }
    }
    return MQ_OK;
}

mq_status mq_resize_bilinear_s8(const mq_dims *input_dims, const mq_resize_taps *y,
                                const mq_resize_taps *x, const mq_dims *output_dims,
                                const int8_t *input, int8_t *output)
{
    /* locals: a store through int8_t *output may alias the dims, so fields would be reloaded */
    const int32_t channels = input_dims ? input_dims->c : 0;
    const int32_t row_size = input_dims ? input_dims->w * channels : 0;
    int32_t n, oy, ox, c;
    if (!input_dims || !output_dims || !input || !output || !dims_ok(input_dims, output_dims) ||
        !taps_ok(y, output_dims->h, input_dims->h, 1) ||
        !taps_ok(x, output_dims->w, input_dims->w, 1)) {
        return MQ_ERR_ARG;
    }
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *image = input + n * input_dims->h * row_size;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int8_t *row0 = image + y->lo[oy] * row_size;
            const int8_t *row1 = image + y->hi[oy] * row_size;
            const int32_t fy = y->frac[oy];
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int8_t *a = row0 + x->lo[ox] * channels;
                const int8_t *b = row0 + x->hi[ox] * channels;
                const int8_t *d = row1 + x->lo[ox] * channels;
                const int8_t *e = row1 + x->hi[ox] * channels;
                const int32_t fx = x->frac[ox];
                /* top * (1024 - fy) + bottom * fy distributed: the same integer, four products
                 * per channel with the weights formed once per pixel (each <= 2^20). */
                const int32_t w00 = (MQ_RESIZE_ONE - fx) * (MQ_RESIZE_ONE - fy);
                const int32_t w01 = fx * (MQ_RESIZE_ONE - fy);
                const int32_t w10 = (MQ_RESIZE_ONE - fx) * fy;
                const int32_t w11 = fx * fy;
                for (c = 0; c < channels; ++c) {
                    const int32_t acc = a[c] * w00 + b[c] * w01 + d[c] * w10 + e[c] * w11;
                    /* acc / 2^20 rounded half away from zero: for acc < 0,
                     * floor((acc + 2^19 - 1) / 2^20) = -floor((-acc + 2^19) / 2^20); the shift
                     * is arithmetic on every supported compiler (as in mq_requant.h). */
                    *output++ = (int8_t)((acc + (1 << 19) - (acc < 0)) >> 20);
                }
            }
        }
    }
    return MQ_OK;
}
