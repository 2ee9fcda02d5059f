/* microq runtime: int8 ReduceMax / ReduceMin over any axes, ArgMax along one axis.
 *
 * The reduction walks the input once in row-major order with an odometer over its axes and
 * keeps the output offset in step: out_stride[d] is 0 on a reduced axis, so every input element
 * lands on its output element. The output is first set to the identity of the reduction
 * (-128 for max, 127 for min). */
#include "mq_reduce.h"

static mq_status reduce(const mq_reduce_params *p, const int8_t *input, int8_t *output, int is_min)
{
    int32_t out_stride[MQ_MAX_DIMS];
    int32_t idx[MQ_MAX_DIMS] = {0};
    int32_t total = 1;
    int32_t out_total = 1;
    int32_t off = 0;
    int32_t d, i;

    if (!p || !input || !output || p->rank < 1 || p->rank > MQ_MAX_DIMS) {
        return MQ_ERR_ARG;
    }
    for (d = p->rank - 1; d >= 0; --d) {
        if (p->in_shape[d] < 1 || (p->reduce[d] != 0 && p->reduce[d] != 1)) {
            return MQ_ERR_ARG;
        }
        out_stride[d] = p->reduce[d] ? 0 : out_total;
        if (!p->reduce[d]) {
            out_total *= p->in_shape[d];
        }
        total *= p->in_shape[d];
    }
    for (i = 0; i < out_total; ++i) {
        output[i] = (int8_t)(is_min ? 127 : -128);
    }
    for (i = 0; i < total; ++i) {
        const int8_t v = input[i];
        if (is_min ? v < output[off] : v > output[off]) {
            output[off] = v;
        }
        for (d = p->rank - 1; d >= 0; --d) {
            off += out_stride[d];
            if (++idx[d] < p->in_shape[d]) {
                break;
            }
            off -= out_stride[d] * p->in_shape[d];
            idx[d] = 0;
        }
    }
    return MQ_OK;
}

mq_status mq_reduce_max_s8(const mq_reduce_params *params, const int8_t *input, int8_t *output)
{
    return reduce(params, input, output, 0);
}

mq_status mq_reduce_min_s8(const mq_reduce_params *params, const int8_t *input, int8_t *output)
{
    return reduce(params, input, output, 1);
}

mq_status mq_argmax_s8(const mq_argmax_params *params, const int8_t *input, int8_t *output)
{
    int32_t o, i, k;

    if (!params || !input || !output || params->outer < 0 || params->inner < 0 ||
        params->axis_size < 1 || params->axis_size > 128 ||
        (params->select_last_index != 0 && params->select_last_index != 1)) {
        return MQ_ERR_ARG;
    }
    for (o = 0; o < params->outer; ++o) {
        const int8_t *x = input + (int64_t)o * params->axis_size * params->inner;
        int8_t *y = output + (int64_t)o * params->inner;
        for (i = 0; i < params->inner; ++i) {
            int32_t best = 0;
            int8_t best_v = x[i];
            for (k = 1; k < params->axis_size; ++k) {
                const int8_t v = x[(int64_t)k * params->inner + i];
                if (v > best_v || (params->select_last_index && v == best_v)) {
                    best = k;
                    best_v = v;
                }
            }
            y[i] = (int8_t)best;
        }
    }
    return MQ_OK;
}
