/* microq runtime: shared types. C99, no libc beyond <stdint.h>/<stddef.h>.
 *
 * Layout convention: activations are NHWC, row-major, batch outermost (as TFLite Micro and
 * CMSIS-NN). Quantization follows the TFLite int8 spec: real = (q - zero_point) * scale.
 * An "offset" added to an input is -zero_point; an offset added to an output is +zero_point.
 *
 * This header is cdef-clean: plain declarations only, so cffi can read it after the
 * preprocessor lines are dropped.
 */
#ifndef MQ_TYPES_H
#define MQ_TYPES_H

#include <stddef.h>
#include <stdint.h>

#define MQ_MAX_DIMS 6

typedef enum {
    MQ_OK = 0,
    MQ_ERR_ARG = 1, /* a dimension or parameter is out of the kernel's range */
    MQ_ERR_SIZE = 2 /* an input or output size does not match */
} mq_status;

/* Dimensions of a 4-D NHWC tensor. Unused dimensions are 1. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} mq_dims;

/* Per-output-channel requantization: real_multiplier[c] ~= multiplier[c] * 2^(shift[c] - 31),
 * multiplier in [2^30, 2^31 - 1] (or 0), shift > 0 means a left shift. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} mq_per_channel_quant;

/* Elementwise broadcasting, numpy rules, on at most MQ_MAX_DIMS axes. out_shape is the
 * output shape; in1_strides/in2_strides are element strides of each input for that output
 * axis (0 on a broadcast axis). Unused leading axes have size 1 and stride 0. */
typedef struct {
    int32_t rank;
    int32_t out_shape[MQ_MAX_DIMS];
    int32_t in1_strides[MQ_MAX_DIMS];
    int32_t in2_strides[MQ_MAX_DIMS];
} mq_broadcast;

#endif /* MQ_TYPES_H */
