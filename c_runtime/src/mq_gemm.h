/* microq runtime: the row engine shared by fully connected and 1x1 convolution (internal). */
#ifndef MQ_GEMM_H
#define MQ_GEMM_H

#include <stdint.h>

/* out[r, o] = clamp(output_offset + MBQM(bias[o] + sum_k (x[r, k] + input_offset) *
 * (w[o, k] + filter_offset))) for rows x [rows, depth] and filters w [out_c, depth]: the
 * fully connected layer and the 1x1 convolution. Row r starts at x + r * x_step (x_step =
 * depth for contiguous rows; stride * depth for the pixels of a strided 1x1 convolution's
 * output row, read in place). bias may be NULL. Arguments are checked by the calling kernel.
 * Defined in mq_gemm.c. */
void mq_rows_s8(const int8_t *x, int32_t rows, int32_t depth, int32_t x_step, const int8_t *w,
                const int32_t *bias, int32_t out_c, int32_t input_offset, int32_t filter_offset,
                int32_t output_offset, int32_t act_min, int32_t act_max, const int32_t *multiplier,
                const int32_t *shift, int8_t *out);

#endif /* MQ_GEMM_H */
