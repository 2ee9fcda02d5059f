/* microq runtime: data movement kernels (concat, pad, transpose). No requantization: the
 * quantizer inserts mq_requantize_s8 where quantization parameters differ. */
#ifndef MQ_TENSOR_H
#define MQ_TENSOR_H

#include "mq_types.h"

/* Concatenation viewed as [outer, axis, inner]: input i is [outer, axis_sizes[i], inner]. */
mq_status mq_concat_s8(int32_t num_inputs, const int8_t *const *inputs, const int32_t *axis_sizes,
                       int32_t outer, int32_t inner, int8_t *output);

/* Constant pad of a 4-D tensor (any axis order; NHWC by convention).
 * @param input_dims [N, H, W, C]; pre_pad/post_pad elements added before/after on each axis. */
mq_status mq_pad_s8(const mq_dims *input_dims, const mq_dims *pre_pad, const mq_dims *post_pad,
                    int8_t pad_value, const int8_t *input, int8_t *output);

/* output = numpy.transpose(input.reshape(in_shape[:rank]), perm); rank <= MQ_MAX_DIMS. */
mq_status mq_transpose_s8(int32_t rank, const int32_t *in_shape, const int32_t *perm,
                          const int8_t *input, int8_t *output);

#endif /* MQ_TENSOR_H */
