/* microq runtime: strided slice, int8, no requantization. */
#include "mq_slice.h"

mq_status mq_slice_s8(const mq_slice_params *params, const int32_t *in_shape, const int8_t *input,
                      int8_t *output)
{
    /* Axes are right-aligned in MQ_MAX_DIMS-long arrays; the unused leading ones take one
     * index. Output axis d advances the input by step[d] * (input stride of d). */
    int32_t count[MQ_MAX_DIMS];
    int32_t strides[MQ_MAX_DIMS];
    int32_t idx[MQ_MAX_DIMS] = {0};
    int32_t rank, first, d, i, r, rows;
    int32_t stride = 1;
    int32_t total = 1;
    int32_t off = 0;

    if (!params || !in_shape || !input || !output || params->rank < 1 ||
        params->rank > MQ_MAX_DIMS) {
        return MQ_ERR_ARG;
    }
    rank = params->rank;
    first = MQ_MAX_DIMS - rank;
    for (d = MQ_MAX_DIMS - 1; d >= 0; --d) {
        const int32_t a = d - first;
        int32_t begin, end, step, n, last;
        if (a < 0) {
            count[d] = 1;
            strides[d] = 0;
            continue;
        }
        begin = params->begin[a];
        end = params->end[a];
        step = params->step[a];
        if (step == 0 || in_shape[a] < 0) {
            return MQ_ERR_ARG;
        }
        if (step > 0) {
            n = end > begin ? (end - begin + step - 1) / step : 0;
        } else {
            n = begin > end ? (begin - end - step - 1) / -step : 0;
        }
        last = begin + (n - 1) * step;
        if (n > 0 && (begin < 0 || begin >= in_shape[a] || last < 0 || last >= in_shape[a])) {
            return MQ_ERR_ARG;
        }
        count[d] = n;
        strides[d] = step * stride;
        off += n > 0 ? begin * stride : 0;
        stride *= in_shape[a];
        total *= n;
    }
    if (total == 0) {
        return MQ_OK;
    }
    rows = total / count[MQ_MAX_DIMS - 1];
    for (r = 0; r < rows; ++r) {
        const int32_t inner_stride = strides[MQ_MAX_DIMS - 1];
        for (i = 0; i < count[MQ_MAX_DIMS - 1]; ++i) {
            output[i] = input[off + i * inner_stride];
        }
        output += count[MQ_MAX_DIMS - 1];
        for (d = MQ_MAX_DIMS - 2; d >= first; --d) {
            off += strides[d];
            if (++idx[d] < count[d]) {
                break;
            }
            off -= strides[d] * count[d];
            idx[d] = 0;
        }
    }
    return MQ_OK;
}
