/* microq runtime: strided slice (ONNX Slice / Split / Gather of one index), int8, no
 * requantization. */
#ifndef MQ_SLICE_H
#define MQ_SLICE_H

#include "mq_types.h"

/* Per axis d < rank the output takes count[d] input indices begin[d] + i * step[d], where
 * count[d] = max(0, ceil((end[d] - begin[d]) / step[d])): python's in[begin:end:step] for
 * normalized bounds. step != 0; with step < 0, end = -1 means "through index 0". */
typedef struct {
    int32_t rank;
    int32_t begin[MQ_MAX_DIMS];
    int32_t end[MQ_MAX_DIMS];
    int32_t step[MQ_MAX_DIMS];
} mq_slice_params;

/* @param in_shape [rank] input shape, row-major; rank <= MQ_MAX_DIMS.
 * Every index taken must lie in [0, in_shape[d]) (else MQ_ERR_ARG, nothing written). */
mq_status mq_slice_s8(const mq_slice_params *params, const int32_t *in_shape, const int8_t *input,
                      int8_t *output);

#endif /* MQ_SLICE_H */
