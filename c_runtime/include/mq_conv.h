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
    int32_t ch_mult; /* depthwise only: output channels per input channel */
} mq_conv_params;

/* 2-D convolution, per-channel requantization.
 * @param input_dims  [N, H, W, C_in]
 * @param filter_dims [C_out, KH, KW, C_in / groups], OHWI; groups = input_dims.c / filter_dims.c
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OH, OW, C_out]
 * 1-D convolution is the case H = KH = 1. */
mq_status mq_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                       const mq_dims *input_dims, const int8_t *input, const mq_dims *filter_dims,
                       const int8_t *filter, const int32_t *bias, const mq_dims *output_dims,
                       int8_t *output);

/* Depthwise 2-D convolution: output channel oc reads input channel oc / ch_mult.
 * @param input_dims  [N, H, W, C_in]
 * @param filter_dims [1, KH, KW, C_out], 1HWO, C_out = C_in * ch_mult
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OH, OW, C_out] */
mq_status mq_depthwise_conv2d_s8(const mq_conv_params *params, const mq_per_channel_quant *quant,
                                 const mq_dims *input_dims, const int8_t *input,
                                 const mq_dims *filter_dims, const int8_t *filter,
                                 const int32_t *bias, const mq_dims *output_dims, int8_t *output);

/* Access order of the overlap variants below (codegen/overlap.py states, per variant, how far
 * the output may be placed over the input it reads). */
typedef struct {
    int32_t reverse; /* 0: increasing pixel order; 1: the last pixel first */
    int32_t chunk;   /* > 0: pixels (1x1) or output rows (depthwise) per step */
} mq_order;

/* mq_conv2d_s8 restricted to its 1x1 fast path (1x1 filter, stride 1, no padding, one group,
 * output size == input size; anything else is MQ_ERR_ARG), run as steps of order->chunk pixels
 * in increasing pixel order, or from the last pixel down when order->reverse. Each step is one
 * call of the 1x1/FC engine (mq_rows_s8), which may read and write its own pixels in any order;
 * a step never touches another step's pixels. Results equal mq_conv2d_s8's. */
mq_status mq_conv2d_1x1_ordered_s8(const mq_order *order, const mq_conv_params *params,
                                   const mq_per_channel_quant *quant, const mq_dims *input_dims,
                                   const int8_t *input, const mq_dims *filter_dims,
                                   const int8_t *filter, const int32_t *bias,
                                   const mq_dims *output_dims, int8_t *output);

/* mq_depthwise_conv2d_s8 in steps of order->chunk output rows, the top rows first, or the
 * bottom rows first with every row's pixels from the right when order->reverse. Inside a step:
 * channel multiplier 1, blocks of four channels outermost (each block: the step's rows and
 * pixels in the step's order, a pixel's taps read before its four outputs are written; on DSP
 * cores two neighbouring pixels with all three tap columns share one pass, both read before
 * either is written); then the remaining channels (or every channel with a multiplier > 1)
 * pixel by pixel, channel by channel. Results equal mq_depthwise_conv2d_s8's. */
mq_status mq_depthwise_conv2d_ordered_s8(const mq_order *order, const mq_conv_params *params,
                                         const mq_per_channel_quant *quant,
                                         const mq_dims *input_dims, const int8_t *input,
                                         const mq_dims *filter_dims, const int8_t *filter,
                                         const int32_t *bias, const mq_dims *output_dims,
                                         int8_t *output);

#endif /* MQ_CONV_H */
