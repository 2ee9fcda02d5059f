/* microq runtime: max and average pooling (global pooling is a window of the whole input). */
#ifndef MQ_POOL_H
#define MQ_POOL_H

#include "mq_types.h"

typedef struct {
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t pad_bottom; /* used only when count_include_pad != 0 */
    int32_t pad_right;
    int32_t count_include_pad; /* avg: 0 = divide by in-image taps (TFLite); 1 = by taps inside
                                  the padded input (ONNX count_include_pad=1) */
    int32_t input_offset;      /* avg: added to each tap before summing (-zp, or 0 for TFLite) */
    int32_t output_offset;     /* avg: added after dividing (+zp, or 0 for TFLite) */
    int32_t act_min;
    int32_t act_max;
} mq_pool_params;

/* Input and output share scale and zero point. Taps outside the input never contribute.
 * @param input_dims  [N, H, W, C]
 * @param filter_dims h = KH, w = KW (n, c unused)
 * @param output_dims [N, OH, OW, C] */
mq_status mq_max_pool_s8(const mq_pool_params *params, const mq_dims *input_dims,
                         const int8_t *input, const mq_dims *filter_dims,
                         const mq_dims *output_dims, int8_t *output);

/* avg = S > 0 ? (S + cnt/2) / cnt : (S - cnt/2) / cnt (half away from zero), where
 * S = sum of (x + input_offset) over in-image taps; out = clamp(avg + output_offset). */
mq_status mq_avg_pool_s8(const mq_pool_params *params, const mq_dims *input_dims,
                         const int8_t *input, const mq_dims *filter_dims,
                         const mq_dims *output_dims, int8_t *output);

#endif /* MQ_POOL_H */
