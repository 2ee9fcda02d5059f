/* microq runtime: int8 fully connected layer.
 *
 * Accumulator range: each term is (x + input_offset) * (w + filter_offset) with both factors in
 * [-255, 255], so |term| < 2^16 and an int32 accumulator holds 2^15 terms plus a realistic
 * bias. With microq's symmetric weights (filter_offset = 0, |w| <= 127) |term| < 2^15 and the
 * bound is 2^16 terms, far above the in_features of any MCU layer.
 */
#include "mq_dsp.h"
#include "mq_fc.h"
#include "mq_gemm.h"

mq_status mq_fully_connected_s8(const mq_fc_params *params, const mq_per_channel_quant *quant,
                                const mq_dims *input_dims, const int8_t *input,
                                const mq_dims *filter_dims, const int8_t *filter,
                                const int32_t *bias, const mq_dims *output_dims, int8_t *output)
{
    int32_t rows, depth, out_c;

    if (!params || !quant || !quant->multiplier || !quant->shift || !input_dims || !input ||
        !filter_dims || !filter || !output_dims || !output || params->act_min < -128 ||
        params->act_min > params->act_max || params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    rows = input_dims->n;
    out_c = filter_dims->n;
    depth = filter_dims->c;
    if (rows <= 0 || out_c <= 0 || depth <= 0 || input_dims->h <= 0 || input_dims->w <= 0 ||
        input_dims->c <= 0) {
        return MQ_ERR_ARG;
    }
    /* A flattened [n, h, w, c] input is accepted: only the row length has to match. */
    if (input_dims->h * input_dims->w * input_dims->c != depth || output_dims->n != rows ||
        output_dims->c != out_c) {
        return MQ_ERR_ARG;
    }

    mq_rows_s8(input, rows, depth, depth, filter, bias, out_c, params->input_offset,
               params->filter_offset, params->output_offset, params->act_min, params->act_max,
               quant->multiplier, quant->shift, output);
    return MQ_OK;
}
