/* microq runtime: the 16x8 kernels (int16 activations, int8 weights, int64 bias).
 * Bit-exact with TFLite Micro's int16 reference kernels (integer_ops/conv.h, depthwise_conv.h,
 * fully_connected.h int16 paths, reference/add.h AddGeneralParamScale, integer_ops/mul.h,
 * reference/softmax.h SoftmaxInt16, integer_ops/logistic.h and tanh.h int16). The numpy
 * reference is python/microq/ref/s16.py. int16 activations are symmetric (zero point 0): the
 * offsets of the shared parameter structs are ignored by conv/depthwise/FC and must be 0
 * for add/mul. */
#ifndef MQ_S16_H
#define MQ_S16_H

#include "mq_conv.h"
#include "mq_elementwise.h"
#include "mq_fc.h"
#include "mq_layernorm.h"
#include "mq_pool.h"
#include "mq_types.h"

/* acc = bias + sum over in-image taps of input * filter in int64 (|acc| < 2^47, proved at
 * compile time), requantized by TFLite's 64-bit MultiplyByQuantizedMultiplier (multiplier
 * rounded to 16 bits, one rounding half up), clamped to [act_min, act_max] within int16.
 * Shapes as mq_conv2d_s8 / mq_depthwise_conv2d_s8; bias [C_out] int64 or NULL. */
mq_status mq_conv2d_s16(const mq_conv_params *params, const mq_per_channel_quant *quant,
                        const mq_dims *input_dims, const int16_t *input, const mq_dims *filter_dims,
                        const int8_t *filter, const int64_t *bias, const mq_dims *output_dims,
                        int16_t *output);
mq_status mq_depthwise_conv2d_s16(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                  const mq_dims *input_dims, const int16_t *input,
                                  const mq_dims *filter_dims, const int8_t *filter,
                                  const int64_t *bias, const mq_dims *output_dims, int16_t *output);
/* input [rows, K] (input_dims n = rows, c = K), filter [out, K], output [rows, out]. */
mq_status mq_fully_connected_s16(const mq_fc_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int16_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int64_t *bias, const mq_dims *output_dims, int16_t *output);

/* int16 ADD / SUB (left_shift 15) and MUL (output_shift <= 0) with numpy broadcasting. */
mq_status mq_add_s16(const mq_add_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output);
mq_status mq_sub_s16(const mq_add_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output);
mq_status mq_mul_s16(const mq_mul_params *params, const mq_broadcast *bcast, const int16_t *input1,
                     const int16_t *input2, int16_t *output);

typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;               /* <= 15 */
    const int16_t *exp_lut;                 /* [513]: exp over [-10, 0] in Q0.15 */
    const int16_t *one_over_one_plus_x_lut; /* [513]: 1 / (1 + x) over [0, 1] in Q0.15 */
} mq_softmax_s16_params;

/* Softmax over rows of row_size (<= 65536) int16 values; output scale 1/32768. The output
 * may be the input (in place). */
mq_status mq_softmax_s16(const mq_softmax_s16_params *params, int32_t rows, int32_t row_size,
                         const int16_t *input, int16_t *output);

typedef struct {
    int32_t input_multiplier; /* 0..32767; 0: power-of-two input scale, 3 << input_left_shift */
    int32_t input_left_shift; /* 0..31 */
} mq_sigmoid_s16_params;

/* Logistic / tanh of size int16 values, output Q0.15 (scale 2^-15). In place allowed. */
mq_status mq_logistic_s16(const mq_sigmoid_s16_params *params, int32_t size, const int16_t *input,
                          int16_t *output);
mq_status mq_tanh_s16(const mq_sigmoid_s16_params *params, int32_t size, const int16_t *input,
                      int16_t *output);

/* int16 max / average pooling (TFLite integer_ops MaxPool / AveragePool int16): as
 * mq_max_pool_s8 / mq_avg_pool_s8 with input_offset = output_offset = 0 and an int16 clamp;
 * count_include_pad as there. */
mq_status mq_max_pool_s16(const mq_pool_params *params, const mq_dims *input_dims,
                          const int16_t *input, const mq_dims *filter_dims,
                          const mq_dims *output_dims, int16_t *output);
mq_status mq_avg_pool_s16(const mq_pool_params *params, const mq_dims *input_dims,
                          const int16_t *input, const mq_dims *filter_dims,
                          const mq_dims *output_dims, int16_t *output);

/* out[i] = TFLite's LUTLookup(in[i], table): anchors table[256 + (x >> 7)] and the next one,
 * linear interpolation on the low 7 bits, for any elementwise function (table [513]). In place
 * allowed. */
mq_status mq_lut_s16(const int16_t *table, int32_t size, const int16_t *input, int16_t *output);

/* Change of quantization between int8 and int16 (TFLite QUANTIZE / Requantize):
 * out = clamp(MBQM(x + input_offset) + output_offset, act_min, act_max), shift <= 14. */
mq_status mq_requantize_s8_s16(const mq_requantize_params *params, int32_t size,
                               const int8_t *input, int16_t *output);
mq_status mq_requantize_s16_s8(const mq_requantize_params *params, int32_t size,
                               const int16_t *input, int8_t *output);
mq_status mq_requantize_s16_s16(const mq_requantize_params *params, int32_t size,
                                const int16_t *input, int16_t *output);

/* Longest LayerNorm row with an int16 input: C^2 * 2^30 (the variance) stays below 2^62. */
#define MQ_LAYERNORM_S16_MAX_ROW 4096
/* Fractional bits, in output steps, of gamma * z + beta before the final rounding (4, not
 * mq_layernorm_s8's 8: an int16 output needs gamma / output_scale up to 2^16). */
#define MQ_LAYERNORM_S16_OUT_BITS 4

/* LayerNorm over rows of row_size int16 values (microq's own kernel: mq_layernorm_s8's
 * arithmetic on int16 inputs with no extra variance bits, V = C sum(x^2) - sum(x)^2 + eps);
 * output int16 (mq_layernorm_s16) or int8 (mq_layernorm_s16_s8) with the given zero point. */
mq_status mq_layernorm_s16(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                           const int32_t *bias, int32_t rows, int32_t row_size,
                           const int16_t *input, int16_t *output);
mq_status mq_layernorm_s16_s8(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                              const int32_t *bias, int32_t rows, int32_t row_size,
                              const int16_t *input, int8_t *output);

/* Exported for tests: TFLite's MultiplyByQuantizedMultiplier(int64_t, int32_t, int). */
int32_t mq_mbqm64(int64_t acc, int32_t multiplier, int32_t shift);

#endif /* MQ_S16_H */
