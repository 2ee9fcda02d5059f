/* microq runtime: int8 Abs, |x - zp_in| requantized to the output scale. */
#include "mq_unary.h"
#include "mq_requant.h"

mq_status mq_abs_s8(const mq_requantize_params *params, int32_t size, const int8_t *input,
                    int8_t *output)
{
    int32_t i;
    if (size < 0 || params->input_offset < -255 || params->input_offset > 255 ||
        params->output_offset < -255 || params->output_offset > 255 || params->shift < -31 ||
        params->shift > 22 || params->multiplier < 0 || params->act_min > params->act_max) {
        return MQ_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t v = (int32_t)input[i] + params->input_offset;
        const int32_t a = v < 0 ? -v : v;
        const int32_t out = mq_mbqm(a, params->multiplier, params->shift) + params->output_offset;
        output[i] = (int8_t)mq_clamp(out, params->act_min, params->act_max);
    }
    return MQ_OK;
}
