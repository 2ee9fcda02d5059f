/* microq runtime: transposed convolution (ONNX ConvTranspose, TFLite TRANSPOSE_CONV), int8 NHWC,
 * per-channel requantization. */
#ifndef MQ_TRANSPOSE_CONV_H
#define MQ_TRANSPOSE_CONV_H

#include "mq_conv.h"
#include "mq_types.h"

/* Input pixel (iy, ix) with tap (ky, kx) adds to output pixel
 *   oy = iy * stride_h - pad_top + ky * dilation_h,
 *   ox = ix * stride_w - pad_left + kx * dilation_w.
 * Computed as a gather (each output pixel sums the taps that reach it), so there is no scratch
 * accumulator. Output pixels no tap reaches (output_padding) get the bias only. ch_mult is
 * unused (1). The bottom/right padding and output_padding are implied by output_dims.
 * @param input_dims  [N, H, W, C_in]
 * @param filter_dims [C_out, KH, KW, C_in / groups], OHWI (not flipped); groups = C_in / filter c
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OH, OW, C_out]
 * 1-D is the case H = KH = 1. The accumulator bound is the conv's (mq_conv.c). */
mq_status mq_transpose_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output);

#endif /* MQ_TRANSPOSE_CONV_H */
