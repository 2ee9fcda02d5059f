/* microq runtime: fully connected (linear) layer. */
#ifndef MQ_FC_H
#define MQ_FC_H

#include "mq_types.h"

typedef struct {
    int32_t input_offset;  /* -input zero point */
    int32_t filter_offset; /* -weight zero point (0 for microq's symmetric weights) */
    int32_t output_offset; /* +output zero point */
    int32_t act_min;
    int32_t act_max;
} mq_fc_params;

/* out[b, o] = clamp(output_offset + MBQM(bias[o] + sum_k (in[b,k] + input_offset) *
 *                                        (w[o,k] + filter_offset), M[o], shift[o]))
 * @param input_dims  n = rows (batches), c = in_features (h = w = 1)
 * @param filter_dims n = out_features, c = in_features; filter is [out, in] row-major
 * @param bias        [out_features] int32 or NULL
 * @param output_dims n = rows, c = out_features */
mq_status mq_fully_connected_s8(const mq_fc_params *params, const mq_per_channel_quant *quant,
                                const mq_dims *input_dims, const int8_t *input,
                                const mq_dims *filter_dims, const int8_t *filter,
                                const int32_t *bias, const mq_dims *output_dims, int8_t *output);

#endif /* MQ_FC_H */
