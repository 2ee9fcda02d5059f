/* microq runtime: 3-D convolution, int8 NDHWC, per-channel requantization (a direct loop: a
 * slower kernel than conv2d's). */
#ifndef MQ_CONV3D_H
#define MQ_CONV3D_H

#include "mq_types.h"

/* Dimensions of a 5-D NDHWC tensor. */
typedef struct {
    int32_t n;
    int32_t d;
    int32_t h;
    int32_t w;
    int32_t c;
} mq_dims5;

/* Padding: only front/top/left are given; a tap outside the input is skipped (padding with the
 * input zero point); the back/bottom/right padding is implied by output_dims. */
typedef struct {
    int32_t stride_d;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_front;
    int32_t pad_top;
    int32_t pad_left;
    int32_t dilation_d;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t input_offset;  /* -input zero point, in [-127, 128] */
    int32_t output_offset; /* +output zero point, in [-128, 127] */
    int32_t act_min;       /* output clamp, quantized domain */
    int32_t act_max;
} mq_conv3d_params;

/* acc[n,od,oy,ox,oc] = bias[oc] + sum over in-input taps (kd,ky,kx) and c < C_in/groups of
 * (x[n, od*stride_d - pad_front + kd*dilation_d, oy*..., ox*..., g*f_c + c] + input_offset)
 * * filter[oc,kd,ky,kx,c], g = oc / (C_out/groups); then per-channel requantization.
 * @param input_dims  [N, D, H, W, C_in]
 * @param filter_dims [C_out, KD, KH, KW, C_in / groups]; groups = C_in / filter c
 * @param bias        [C_out] int32 or NULL
 * @param output_dims [N, OD, OH, OW, C_out]
 * The accumulator bound is the conv's (mq_conv.c): |term| < 2^15. */
mq_status mq_conv3d_s8(const mq_conv3d_params *params, const mq_per_channel_quant *quant,
                       const mq_dims5 *input_dims, const int8_t *input, const mq_dims5 *filter_dims,
                       const int8_t *filter, const int32_t *bias, const mq_dims5 *output_dims,
                       int8_t *output);

#endif /* MQ_CONV3D_H */
