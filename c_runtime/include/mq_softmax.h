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

/* Softmax over the last axis with a constant keep mask (attention masks: causal, attn_mask).
 * mask is [mask_rows, row_size] bytes, rows % mask_rows == 0; row r uses mask row
 * r % mask_rows (e.g. one [T, T] causal mask for every head). A key whose byte is 0 gets
 * probability exactly 0 (-128) and takes no part in the row's max or sum; the kept keys are
 * normalized among themselves, bit-exact with mq_softmax_s8 on the kept entries alone. A row
 * whose keys are all masked is all -128 (zero probability everywhere, torch's SDPA rule). */
mq_status mq_softmax_masked_s8(const mq_softmax_params *params, int32_t rows, int32_t row_size,
                               int32_t mask_rows, const uint8_t *mask, const int8_t *input,
                               int8_t *output);

#endif /* MQ_SOFTMAX_H */
