/* microq runtime: int8 max and average pooling (NHWC, channels innermost).
 *
 * Every window must hold at least one in-image tap (pad < kernel, and the last window starts
 * inside the input); otherwise the maximum and the TFLite divisor are undefined, so such
 * shapes are rejected with MQ_ERR_ARG.
 *
 * Average sum range: each tap adds x + input_offset in [-255, 255]; an int32 sum holds 2^23
 * taps, i.e. any global pooling window an MCU can store.
 */
#include "mq_pool.h"
#include "mq_requant.h"

/* Channels summed at once by average pooling: the sums live on the stack (no scratch buffer)
 * and the inner loop still runs over contiguous channels. */
#define MQ_POOL_CH_BLOCK 16

/* In-image taps k in [*k_start, *k_end) for a window whose first tap is at `origin`. */
static void mq_pool_range(int32_t origin, int32_t size, int32_t k_size, int32_t *k_start,
                          int32_t *k_end)
{
    const int32_t start = origin < 0 ? -origin : 0;
    const int32_t end = size - origin < k_size ? size - origin : k_size;
    *k_start = start;
    *k_end = end;
}

static mq_status mq_pool_check(const mq_pool_params *p, const mq_dims *input_dims,
                               const int8_t *input, const mq_dims *filter_dims,
                               const mq_dims *output_dims, const int8_t *output)
{
    const mq_dims *in = input_dims;
    const mq_dims *out = output_dims;
    if (!p || !in || !input || !filter_dims || !out || !output) {
        return MQ_ERR_ARG;
    }
    if (in->n <= 0 || in->h <= 0 || in->w <= 0 || in->c <= 0 || out->h <= 0 || out->w <= 0 ||
        filter_dims->h <= 0 || filter_dims->w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
        out->n != in->n || out->c != in->c || p->act_min < -128 || p->act_min > p->act_max ||
        p->act_max > 127) {
        return MQ_ERR_ARG;
    }
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_top >= filter_dims->h ||
        p->pad_left >= filter_dims->w || (out->h - 1) * p->stride_h - p->pad_top >= in->h ||
        (out->w - 1) * p->stride_w - p->pad_left >= in->w) {
        return MQ_ERR_ARG;
    }
    if (p->count_include_pad && (p->pad_bottom < 0 || p->pad_right < 0)) {
        return MQ_ERR_ARG;
    }
    return MQ_OK;
}

mq_status mq_max_pool_s8(const mq_pool_params *params, const mq_dims *input_dims,
                         const int8_t *input, const mq_dims *filter_dims,
                         const mq_dims *output_dims, int8_t *output)
{
    int32_t n, oy, ox, ky, kx, c;
    const mq_status status =
        mq_pool_check(params, input_dims, input, filter_dims, output_dims, output);
    if (status != MQ_OK) {
        return status;
    }
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t ch = input_dims->c;

    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * ch;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end;
            mq_pool_range(y0, in_h, filter_dims->h, &ky_start, &ky_end);
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end;
                mq_pool_range(x0, in_w, filter_dims->w, &kx_start, &kx_end);
                /* The output pixel itself holds the running maximum of its channels. */
                for (c = 0; c < ch; ++c) {
                    output[c] = in_batch[((y0 + ky_start) * in_w + x0 + kx_start) * ch + c];
                }
                for (ky = ky_start; ky < ky_end; ++ky) {
                    for (kx = kx_start; kx < kx_end; ++kx) {
                        const int8_t *x = in_batch + ((y0 + ky) * in_w + x0 + kx) * ch;
                        for (c = 0; c < ch; ++c) {
                            if (x[c] > output[c]) {
                                output[c] = x[c];
                            }
                        }
                    }
                }
                for (c = 0; c < ch; ++c) {
                    output[c] = (int8_t)mq_clamp(output[c], params->act_min, params->act_max);
                }
                output += ch;
            }
        }
    }
    return MQ_OK;
}

mq_status mq_avg_pool_s8(const mq_pool_params *params, const mq_dims *input_dims,
                         const int8_t *input, const mq_dims *filter_dims,
                         const mq_dims *output_dims, int8_t *output)
{
    int32_t sum[MQ_POOL_CH_BLOCK];
    int32_t n, oy, ox, ky, kx, c0, c;
    const mq_status status =
        mq_pool_check(params, input_dims, input, filter_dims, output_dims, output);
    if (status != MQ_OK) {
        return status;
    }
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t ch = input_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;

    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *in_batch = input + n * in_h * in_w * ch;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t ky_start, ky_end, count_h;
            mq_pool_range(y0, in_h, k_h, &ky_start, &ky_end);
            count_h = ky_end - ky_start;
            if (params->count_include_pad) {
                /* ONNX (onnxruntime): the window is clipped to the padded extent only. */
                const int32_t y_end = in_h + params->pad_bottom;
                count_h = (y0 + k_h < y_end ? y0 + k_h : y_end) - y0;
            }
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t kx_start, kx_end, count_w, taps, count;
                mq_pool_range(x0, in_w, k_w, &kx_start, &kx_end);
                count_w = kx_end - kx_start;
                if (params->count_include_pad) {
                    const int32_t x_end = in_w + params->pad_right;
                    count_w = (x0 + k_w < x_end ? x0 + k_w : x_end) - x0;
                }
                taps = (ky_end - ky_start) * (kx_end - kx_start);
                count = count_h * count_w;
                for (c0 = 0; c0 < ch; c0 += MQ_POOL_CH_BLOCK) {
                    const int32_t block = ch - c0 < MQ_POOL_CH_BLOCK ? ch - c0 : MQ_POOL_CH_BLOCK;
                    for (c = 0; c < block; ++c) {
                        sum[c] = 0;
                    }
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            const int8_t *x = in_batch + ((y0 + ky) * in_w + x0 + kx) * ch + c0;
                            for (c = 0; c < block; ++c) {
                                sum[c] += x[c];
                            }
                        }
                    }
                    for (c = 0; c < block; ++c) {
                        /* Only in-image taps carry the offset; padded taps add 0. */
                        const int32_t s = sum[c] + taps * params->input_offset;
                        const int32_t avg =
                            s > 0 ? (s + count / 2) / count : (s - count / 2) / count;
                        output[c0 + c] = (int8_t)mq_clamp(avg + params->output_offset,
                                                          params->act_min, params->act_max);
                    }
                }
                output += ch;
            }
        }
    }
    return MQ_OK;
}
