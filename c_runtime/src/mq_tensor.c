/* microq runtime: data movement kernels (concat, pad, transpose), int8, no requantization. */
#include "mq_tensor.h"

/* No libc: a byte loop stands in for memcpy/memset. */
static void copy_s8(const int8_t *src, int32_t n, int8_t *dst)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        dst[i] = src[i];
    }
}

static void fill_s8(int8_t value, int32_t n, int8_t *dst)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        dst[i] = value;
    }
}

mq_status mq_concat_s8(int32_t num_inputs, const int8_t *const *inputs, const int32_t *axis_sizes,
                       int32_t outer, int32_t inner, int8_t *output)
{
    int32_t o;
    int32_t i;
    if (num_inputs < 0 || outer < 0 || inner < 0) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < num_inputs; ++i) {
        if (axis_sizes[i] < 0) {
            return MQ_ERR_ARG;
        }
    }
    /* Each output row [axis_total, inner] is the inputs' rows laid end to end. */
    for (o = 0; o < outer; ++o) {
        for (i = 0; i < num_inputs; ++i) {
            const int32_t chunk = axis_sizes[i] * inner;
            copy_s8(inputs[i] + o * chunk, chunk, output);
            output += chunk;
        }
    }
    return MQ_OK;
}

mq_status mq_pad_s8(const mq_dims *input_dims, const mq_dims *pre_pad, const mq_dims *post_pad,
                    int8_t pad_value, const int8_t *input, int8_t *output)
{
    const int32_t out_n = pre_pad->n + input_dims->n + post_pad->n;
    const int32_t out_h = pre_pad->h + input_dims->h + post_pad->h;
    const int32_t out_w = pre_pad->w + input_dims->w + post_pad->w;
    const int32_t out_c = pre_pad->c + input_dims->c + post_pad->c;
    int32_t n;
    int32_t h;
    int32_t w;
    if (input_dims->n < 0 || input_dims->h < 0 || input_dims->w < 0 || input_dims->c < 0 ||
        pre_pad->n < 0 || pre_pad->h < 0 || pre_pad->w < 0 || pre_pad->c < 0 || post_pad->n < 0 ||
        post_pad->h < 0 || post_pad->w < 0 || post_pad->c < 0) {
        return MQ_ERR_ARG;
    }
    for (n = 0; n < out_n; ++n) {
        const int32_t in_n = n - pre_pad->n;
        for (h = 0; h < out_h; ++h) {
            const int32_t in_h = h - pre_pad->h;
            for (w = 0; w < out_w; ++w) {
                const int32_t in_w = w - pre_pad->w;
                if (in_n < 0 || in_n >= input_dims->n || in_h < 0 || in_h >= input_dims->h ||
                    in_w < 0 || in_w >= input_dims->w) {
                    fill_s8(pad_value, out_c, output);
                } else {
                    const int32_t row =
                        ((in_n * input_dims->h + in_h) * input_dims->w + in_w) * input_dims->c;
                    fill_s8(pad_value, pre_pad->c, output);
                    copy_s8(input + row, input_dims->c, output + pre_pad->c);
                    fill_s8(pad_value, post_pad->c, output + pre_pad->c + input_dims->c);
                }
                output += out_c;
            }
        }
    }
    return MQ_OK;
}

mq_status mq_transpose_s8(int32_t rank, const int32_t *in_shape, const int32_t *perm,
                          const int8_t *input, int8_t *output)
{
    /* Output axis d walks input axis perm[d], so it advances the input by that axis' stride.
     * Axes are right-aligned in MQ_MAX_DIMS-long arrays; the unused leading ones have size 1. */
    int32_t in_strides[MQ_MAX_DIMS];
    int32_t out_shape[MQ_MAX_DIMS];
    int32_t strides[MQ_MAX_DIMS];
    int32_t idx[MQ_MAX_DIMS] = {0};
    int32_t seen = 0;
    int32_t first;
    int32_t total = 1;
    int32_t stride = 1;
    int32_t rows;
    int32_t off = 0;
    int32_t d;
    int32_t r;
    int32_t i;

    if (rank < 1 || rank > MQ_MAX_DIMS) {
        return MQ_ERR_ARG;
    }
    for (d = rank - 1; d >= 0; --d) {
        if (in_shape[d] < 0 || perm[d] < 0 || perm[d] >= rank || (seen & (1 << perm[d]))) {
            return MQ_ERR_ARG;
        }
        seen |= 1 << perm[d];
        in_strides[d] = stride;
        stride *= in_shape[d];
    }
    first = MQ_MAX_DIMS - rank;
    for (d = 0; d < MQ_MAX_DIMS; ++d) {
        out_shape[d] = d < first ? 1 : in_shape[perm[d - first]];
        strides[d] = d < first ? 0 : in_strides[perm[d - first]];
        total *= out_shape[d];
    }
    if (total == 0) {
        return MQ_OK;
    }
    rows = total / out_shape[MQ_MAX_DIMS - 1];
    for (r = 0; r < rows; ++r) {
        const int32_t inner_stride = strides[MQ_MAX_DIMS - 1];
        for (i = 0; i < out_shape[MQ_MAX_DIMS - 1]; ++i) {
            output[i] = input[off + i * inner_stride];
        }
        output += out_shape[MQ_MAX_DIMS - 1];
        for (d = MQ_MAX_DIMS - 2; d >= first; --d) {
            off += strides[d];
            if (++idx[d] < out_shape[d]) {
                break;
            }
            off -= strides[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    return MQ_OK;
}
