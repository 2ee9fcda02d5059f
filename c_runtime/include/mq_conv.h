/* microq runtime: convolution kernels (conv2d incl. 1-D, 1x1 and grouped; depthwise). */
#ifndef MQ_CONV_H
#define MQ_CONV_H

#include "mq_types.h"

/* Parameters shared by conv2d and depthwise conv2d. Padding: only top/left are given; any
 * tap outside the input is skipped, which equals padding with the input zero point. The
 * bottom/right padding is implied by output_dims. */
typedef struct {
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t input_offset;  /* -input zero point, in [-127, 128] */
    int32_t output_offset; /* +output zero point, in [-128, 127] */
    int32_t act_min;       /* output clamp, quantized domain */
    int32_t act_max;
    int32_t ch_mult;       /* depthwise only: output channels per input channel */
} mq_conv_params;

/* 2-D convolution, per-channel requantization.
 * @param input_dims  [N, H, W, C_in]
 * @param filter_dims [C_out, KH, KW, C_in / groups], OHWI; groups = input_dims.c / filter_dims.c
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OH, OW, C_out]
 * 1-D convolution is the case H = KH = 1. */
mq_status mq_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                       const mq_dims *input_dims, const int8_t *input,
                       const mq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                       const mq_dims *output_dims, int8_t *output);

/* Depthwise 2-D convolution: output channel oc reads input channel oc / ch_mult.
 * @param input_dims  [N, H, W, C_in]
 * @param filter_dims [1, KH, KW, C_out], 1HWO, C_out = C_in * ch_mult
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OH, OW, C_out] */
mq_status mq_depthwise_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output);

#endif /* MQ_CONV_H */
