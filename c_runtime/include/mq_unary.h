/* microq runtime: elementwise unary ops: absolute value with requantization (ONNX Abs). */
#ifndef MQ_UNARY_H
#define MQ_UNARY_H

#include "mq_elementwise.h"
#include "mq_types.h"

/* out = clamp(MBQM(|x + input_offset|, multiplier, shift) + output_offset, act_min, act_max)
 * over `size` elements; multiplier encodes input_scale / output_scale (shift <= 22: |v| <= 256,
 * no int32 overflow). The output may be the input (element i is written after it is read). */
mq_status mq_abs_s8(const mq_requantize_params *params, int32_t size, const int8_t *input,
                    int8_t *output);

#endif /* MQ_UNARY_H */
