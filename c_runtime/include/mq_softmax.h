/* microq runtime: int8 softmax, bit-exact with TFLite Micro / CMSIS-NN. */
#ifndef MQ_SOFTMAX_H
#define MQ_SOFTMAX_H

#include "mq_types.h"

/* input_multiplier/input_left_shift encode beta * input_scale * 2^26 (left_shift >= 0);
 * diff_min = -floor(31 * 2^26 / 2^input_left_shift). Output scale 1/256, zero point -128. */
typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} mq_softmax_params;

/* Softmax over the last axis of a [rows, row_size] tensor. */
mq_status mq_softmax_s8(const mq_softmax_params *params, int32_t rows, int32_t row_size,
                        const int8_t *input, int8_t *output);

#endif /* MQ_SOFTMAX_H */
