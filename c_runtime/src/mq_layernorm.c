/* microq runtime: int8 layer normalization, integer-only.
 *
 * Mean and variance are never divided out: with n = row_size * (x - mean) and
 * V = row_size^2 * var * 2^16, both exact integers, the normalized value is n * 2^8 / sqrt(V).
 * The 16 extra bits of V only serve eps: added at row_size^2 * 2^16 / input_scale^2 per unit,
 * a typical 1e-5 keeps its precision even for narrow rows. The input zero point cancels in
 * x - mean, so raw int8 values are summed.
 *
 * Ranges, row_size <= 2^15: |x| <= 128 so sum(x^2) <= 2^29 and |n| <= 255 * 2^15 < 2^23 fit
 * int32; V <= 2^15 * 2^29 * 2^16 + eps <= 2^60 + 2^61 is int64. |n| * 2^8 / sqrt(V) <=
 * sqrt(row_size - 1) < 2^7.5, hence |z| < 2^28. A shift <= 0 makes MBQM a multiplication by
 * less than one, so |MBQM(z)| <= |z| + 1 and adding |bias| <= 2^30 stays inside int32.
 */
#include "mq_layernorm.h"
#include "mq_isqrt.h"
#include "mq_requant.h"

mq_status mq_layernorm_s8(const mq_layernorm_params *params, const mq_per_channel_quant *quant,
                          const int32_t *bias, int32_t rows, int32_t row_size, const int8_t *input,
                          int8_t *output)
{
    const int32_t bias_max = (int32_t)1 << 30;
    int32_t r, c;

    if (!params || !quant || !quant->multiplier || !quant->shift || !bias || !input || !output ||
        rows < 0 || row_size < 1 || row_size > MQ_LAYERNORM_MAX_ROW || params->eps < 0 ||
        params->eps > ((int64_t)1 << 61) || params->act_min < -128 ||
        params->act_min > params->act_max || params->act_max > 127) {
        return MQ_ERR_ARG;
    }
    for (c = 0; c < row_size; ++c) {
        if (quant->shift[c] > 0 || quant->shift[c] < -31 || quant->multiplier[c] == INT32_MIN ||
            bias[c] > bias_max || bias[c] < -bias_max) {
            return MQ_ERR_ARG;
        }
    }

    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + r * row_size;
        int8_t *y = output + r * row_size;
        int32_t sum = 0;
        int32_t sum_sq = 0;
        int64_t var;
        int32_t inv = 0;
        int32_t k = 0;
        int32_t norm_shift;
        int64_t round;

        for (c = 0; c < row_size; ++c) {
            sum += x[c];
            sum_sq += (int32_t)x[c] * x[c];
        }
        var = (int64_t)row_size * sum_sq - (int64_t)sum * sum;
        var = var * ((int64_t)1 << MQ_LAYERNORM_VAR_BITS) + params->eps;
        /* var == 0 only for a constant row without eps: then every n is 0 and inv = 0 keeps
         * z = 0, so the output is beta. */
        if (var > 0) {
            inv = mq_inv_sqrt_q30(var, &k);
        }
        /* z = n * 2^(VAR_BITS / 2) * inv * 2^-(30 + k) * 2^NORM_BITS; the shift is >= 2. */
        norm_shift = 30 + k - MQ_LAYERNORM_NORM_BITS - MQ_LAYERNORM_VAR_BITS / 2;
        round = (int64_t)1 << (norm_shift - 1);
        for (c = 0; c < row_size; ++c) {
            const int32_t n = row_size * x[c] - sum;
            /* |n * inv| < 2^23 * 2^30; arithmetic right shift rounds to nearest, ties up. */
            const int32_t z = (int32_t)(((int64_t)n * inv + round) >> norm_shift);
            const int32_t acc = mq_mbqm(z, quant->multiplier[c], quant->shift[c]) + bias[c];
            const int32_t v = mq_rdbpot(acc, MQ_LAYERNORM_OUT_BITS) + params->output_offset;
            y[c] = (int8_t)mq_clamp(v, params->act_min, params->act_max);
        }
    }
    return MQ_OK;
}
