/* microq runtime: elementwise add, sub, mul with numpy broadcasting; lookup tables;
 * requantize. */
#ifndef MQ_ELEMENTWISE_H
#define MQ_ELEMENTWISE_H

#include "mq_types.h"

/* TFLite int8 ADD: a = MBQM((x1 + input1_offset) << left_shift, input1_multiplier,
 * input1_shift), b likewise, out = clamp(MBQM(a + b, output_multiplier, output_shift) +
 * output_offset). SUB uses a - b. left_shift is 20 for int8. */
typedef struct {
    int32_t input1_offset;
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_offset;
    int32_t input2_multiplier;
    int32_t input2_shift;
    int32_t left_shift;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} mq_add_params;

/* TFLite int8 MUL: out = clamp(MBQM((x1 + input1_offset) * (x2 + input2_offset),
 * output_multiplier, output_shift) + output_offset). */
typedef struct {
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} mq_mul_params;

mq_status mq_add_s8(const mq_add_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output);
mq_status mq_sub_s8(const mq_add_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output);
mq_status mq_mul_s8(const mq_mul_params *params, const mq_broadcast *bcast, const int8_t *input1,
                    const int8_t *input2, int8_t *output);

/* ONNX Max / Min of two int8 inputs (numpy broadcasting), ADD's arithmetic with the sum
 * replaced by the larger / smaller rescaled input: both inputs rescaled by input1/2_multiplier
 * to one scale (the requantization is monotonic, so the order is kept), then the extreme one
 * requantized to the output. Same mq_add_params, same ranges as mq_add_s8. */
mq_status mq_maximum_s8(const mq_add_params *params, const mq_broadcast *bcast,
                        const int8_t *input1, const int8_t *input2, int8_t *output);
mq_status mq_minimum_s8(const mq_add_params *params, const mq_broadcast *bcast,
                        const int8_t *input1, const int8_t *input2, int8_t *output);

/* TFLite int8 PRELU, input1 = x, input2 = alpha (numpy broadcasting, e.g. alpha [C] per
 * channel or [1]): with v = x + input_offset,
 *   v >= 0: out = clamp(MBQM(v, output_multiplier_1, output_shift_1) + output_offset)
 *   v < 0:  out = clamp(MBQM(v * (alpha + alpha_offset), output_multiplier_2, output_shift_2)
 *                       + output_offset)
 * multiplier 1 encodes input_scale / output_scale, 2 input_scale * alpha_scale / output_scale;
 * shift_1 <= 22 and shift_2 <= 14 (|v| <= 255, |v * alpha| < 2^16: no int32 overflow). */
typedef struct {
    int32_t input_offset;
    int32_t alpha_offset;
    int32_t output_offset;
    int32_t output_multiplier_1;
    int32_t output_shift_1;
    int32_t output_multiplier_2;
    int32_t output_shift_2;
    int32_t act_min;
    int32_t act_max;
} mq_prelu_params;

mq_status mq_prelu_s8(const mq_prelu_params *params, const mq_broadcast *bcast, const int8_t *input,
                      const int8_t *alpha, int8_t *output);

/* out[i] = table[in[i] + 128]. Any elementwise function of one int8 input. */
mq_status mq_lut_s8(const int8_t *table, int32_t size, const int8_t *input, int8_t *output);

/* Change of quantization: out = clamp(MBQM(x + input_offset, multiplier, shift) +
 * output_offset). In place (input == output) is allowed. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
    int32_t act_min;
    int32_t act_max;
} mq_requantize_params;

mq_status mq_requantize_s8(const mq_requantize_params *params, int32_t size, const int8_t *input,
                           int8_t *output);

/* Exported for tests: the requantization primitive of mq_requant.h. */
int32_t mq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

#endif /* MQ_ELEMENTWISE_H */
