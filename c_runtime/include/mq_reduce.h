/* microq runtime: int8 ReduceMax / ReduceMin over any axes and ArgMax along one axis. No
 * requantization: a reduced output shares its input's scale and zero point (max and min of
 * int8 values are the int8 of the real max and min, since dequantization is increasing). */
#ifndef MQ_REDUCE_H
#define MQ_REDUCE_H

#include "mq_types.h"

/* The input [in_shape[0], ..., in_shape[rank - 1]] (row-major, rank <= MQ_MAX_DIMS); axis d is
 * reduced when reduce[d] is 1. The output is the input's shape with every reduced axis of size
 * 1 (keepdims; dropping those axes does not move bytes). An empty reduced axis (size 0) is an
 * error. */
typedef struct {
    int32_t rank;
    int32_t in_shape[MQ_MAX_DIMS];
    int32_t reduce[MQ_MAX_DIMS];
} mq_reduce_params;

mq_status mq_reduce_max_s8(const mq_reduce_params *params, const int8_t *input, int8_t *output);
mq_status mq_reduce_min_s8(const mq_reduce_params *params, const int8_t *input, int8_t *output);

/* ArgMax of input [outer, axis_size, inner] along the middle axis: output [outer, inner] holds
 * the index of the largest value, the first one on ties (the last with select_last_index = 1).
 * The index is written as an int8 (the model's int8 output with scale 1 and zero point 0 is
 * the index itself), so 1 <= axis_size <= 128. */
typedef struct {
    int32_t outer;
    int32_t axis_size;
    int32_t inner;
    int32_t select_last_index;
} mq_argmax_params;

mq_status mq_argmax_s8(const mq_argmax_params *params, const int8_t *input, int8_t *output);

#endif /* MQ_REDUCE_H */
