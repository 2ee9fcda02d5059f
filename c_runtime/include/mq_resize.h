/* microq runtime: Resize of H and W (nearest neighbour, bilinear), int8 NHWC. The output keeps
 * the input's quantization (as TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR), so the
 * kernels work on the raw int8 values. The coordinate transform (ONNX
 * coordinate_transformation_mode / nearest_mode) is evaluated offline into per-row and
 * per-column tables; the kernels only read them, with integer arithmetic. */
#ifndef MQ_RESIZE_H
#define MQ_RESIZE_H

#include "mq_types.h"

/* The taps of one axis for each output index o: input indices lo[o], hi[o] in [0, in_size) and
 * the weight of hi, frac[o] in [0, 1024] (Q10); nearest reads lo only. */
typedef struct {
    const int32_t *lo;
    const int32_t *hi;
    const int32_t *frac;
} mq_resize_taps;

/* output[n, oy, ox, c] = input[n, y->lo[oy], x->lo[ox], c].
 * @param input_dims [N, H, W, C]; output_dims [N, OH, OW, C]; y has OH entries, x has OW.
 * A table entry outside the input gives MQ_ERR_ARG (nothing written). */
mq_status mq_resize_nearest_s8(const mq_dims *input_dims, const mq_resize_taps *y,
                               const mq_resize_taps *x, const mq_dims *output_dims,
                               const int8_t *input, int8_t *output);

/* top = in[y.lo, x.lo] * (1024 - fx) + in[y.lo, x.hi] * fx, bottom likewise on row y.hi,
 * acc = top * (1024 - fy) + bottom * fy, output = acc / 2^20 rounded half away from zero.
 * |acc| <= 128 * 2^20 = 2^27: int32 cannot overflow; a convex blend stays in [-128, 127]. */
mq_status mq_resize_bilinear_s8(const mq_dims *input_dims, const mq_resize_taps *y,
                                const mq_resize_taps *x, const mq_dims *output_dims,
                                const int8_t *input, int8_t *output);

#endif /* MQ_RESIZE_H */
